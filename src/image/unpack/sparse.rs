//! Sparse tar entries. GNU tar's PAX formats keep the map in `GNU.sparse.*`
//! records (0.0: repeated `offset`/`numbytes`; 0.1: one `map` list) or as
//! decimal lines at the start of the data (1.0); the entry's data is then
//! the extents, back to back. Old-GNU 'S' entries are read by the tar crate,
//! which validates their map and returns the file expanded (holes as
//! zeros); we write that skipping zero blocks.
//!
//! Every map is checked before anything is written: extents in order, not
//! overlapping, inside the real size, holding exactly the stored data, and
//! at most [`MAX_EXTENTS`] of them. sparse_write.rs writes the files.

use std::io::{self, Read};

/// Most extents a PAX sparse map may list (a 1 MiB 1.0 map holds no more).
pub(super) const MAX_EXTENTS: usize = 1 << 18;

/// Longest 1.0 map, as Go's archive/tar (`maxSpecialFileSize`).
pub(super) const MAX_MAP_BYTES: u64 = 1 << 20;

const BLOCK: usize = 512;

/// Longest decimal number in a map (u64::MAX has 20 digits).
const MAX_DIGITS: usize = 20;

/// One data extent of a sparse file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Extent {
    pub offset: u64,
    pub len: u64,
}

/// The `GNU.sparse.*` records of one entry, as read (a later record for
/// the same key wins; an empty value deletes it).
#[derive(Debug, Default, Clone)]
pub(super) struct SparseRecords {
    any: bool,
    major: Option<String>,
    minor: Option<String>,
    name: Option<Vec<u8>>,
    size: Option<String>,
    realsize: Option<String>,
    numblocks: Option<String>,
    map: Option<String>,
    /// Format 0.0: the `offset` and `numbytes` values, alternating.
    pairs: Vec<String>,
    /// More `offset`/`numbytes` records than any valid map has.
    too_many: bool,
    /// `offset` and `numbytes` records out of turn.
    misordered: bool,
}

impl SparseRecords {
    /// Takes one record; `field` is the key without `GNU.sparse.`.
    pub(super) fn record(&mut self, field: &str, value: &[u8]) {
        self.any = true;
        let text = || (!value.is_empty()).then(|| String::from_utf8_lossy(value).into_owned());
        match field {
            "major" => self.major = text(),
            "minor" => self.minor = text(),
            "name" => self.name = (!value.is_empty()).then(|| value.to_vec()),
            "size" => self.size = text(),
            "realsize" => self.realsize = text(),
            "numblocks" => self.numblocks = text(),
            "map" => self.map = text(),
            "offset" | "numbytes" => {
                if self.too_many {
                    return;
                }
                // Offsets come at even places, byte counts at odd ones.
                let want_offset = self.pairs.len() % 2 == 0;
                if want_offset != (field == "offset") {
                    self.misordered = true;
                } else if self.pairs.len() >= 2 * MAX_EXTENTS {
                    self.too_many = true;
                } else {
                    self.pairs.push(String::from_utf8_lossy(value).into_owned());
                }
            }
            _ => {}
        }
    }

    /// `GNU.sparse.name`, for errors about records that fail to plan.
    pub(super) fn name(&self) -> Option<&[u8]> {
        self.name.as_deref()
    }
}

/// Where a PAX sparse entry keeps its map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum MapSource {
    /// Formats 0.0 and 0.1: the records held it.
    Records(Vec<Extent>),
    /// Format 1.0: decimal lines at the start of the entry's data.
    Data,
}

/// A PAX sparse entry: its real name and size and where its map is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PaxSparse {
    /// `GNU.sparse.name` (the header holds `.../GNUSparseFile.N/name`).
    pub name: Option<Vec<u8>>,
    pub real_size: u64,
    pub map: MapSource,
}

/// Interprets the records the way GNU tar writes them (and Go's
/// archive/tar reads them): `None` when there are none. The reason comes
/// back as text for the caller's error.
pub(super) fn plan(rec: &SparseRecords) -> Result<Option<PaxSparse>, String> {
    if !rec.any {
        return Ok(None);
    }
    let in_data = match (&rec.major, &rec.minor) {
        (Some(major), Some(minor)) => match (major.as_str(), minor.as_str()) {
            ("1", "0") => true,
            ("0", "0") | ("0", "1") => false,
            _ => return Err(format!("unknown GNU sparse format version {major}.{minor}")),
        },
        // 0.1 writes no version; 0.0 only a size and offset/numbytes pairs.
        _ if (rec.name.is_some() && rec.map.is_some()) || rec.size.is_some() => false,
        _ => {
            return Err(
                "GNU.sparse records that name no sparse format (no version, map or size)".into(),
            )
        }
    };
    let size = rec
        .size
        .as_ref()
        .or(rec.realsize.as_ref())
        .ok_or("the GNU.sparse records give no real size")?;
    let real_size = parse_number(size).ok_or_else(|| format!("invalid real size {size:?}"))?;
    if real_size > i64::MAX as u64 {
        return Err(format!(
            "real size {real_size} is past the largest file offset"
        ));
    }
    let map = if in_data {
        MapSource::Data
    } else {
        MapSource::Records(records_map(rec)?)
    };
    Ok(Some(PaxSparse {
        name: rec.name.clone(),
        real_size,
        map,
    }))
}

/// The 0.0/0.1 map: `numblocks` pairs from `GNU.sparse.map` or from the
/// repeated `offset`/`numbytes` records.
fn records_map(rec: &SparseRecords) -> Result<Vec<Extent>, String> {
    if rec.misordered {
        return Err("GNU.sparse.offset and GNU.sparse.numbytes records out of turn".into());
    }
    if rec.too_many {
        return Err(format!(
            "the sparse map lists more than {MAX_EXTENTS} extents"
        ));
    }
    let count = rec
        .numblocks
        .as_ref()
        .ok_or("GNU.sparse.numblocks is missing")?;
    let count =
        parse_number(count).ok_or_else(|| format!("invalid GNU.sparse.numblocks {count:?}"))?;
    if count > MAX_EXTENTS as u64 {
        return Err(format!(
            "the sparse map lists {count} extents; at most {MAX_EXTENTS} are accepted"
        ));
    }
    let values: Vec<&str> = match (&rec.map, rec.pairs.is_empty()) {
        (Some(_), false) => {
            return Err("both GNU.sparse.map and GNU.sparse.offset records".into());
        }
        (Some(map), true) => {
            if map.bytes().filter(|b| *b == b',').count() >= 2 * MAX_EXTENTS {
                return Err(format!(
                    "the sparse map lists more than {MAX_EXTENTS} extents"
                ));
            }
            map.split(',').collect()
        }
        (None, _) => rec.pairs.iter().map(String::as_str).collect(),
    };
    if values.len() as u64 != 2 * count {
        return Err(format!(
            "GNU.sparse.numblocks is {count} but the map has {} numbers",
            values.len()
        ));
    }
    let mut extents = Vec::with_capacity(count as usize);
    for pair in values.chunks(2) {
        let number = |v: &str| parse_number(v).ok_or_else(|| format!("invalid map number {v:?}"));
        extents.push(Extent {
            offset: number(pair[0])?,
            len: number(pair[1])?,
        });
    }
    Ok(extents)
}

/// Plain decimal, no sign, no spaces.
fn parse_number(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > MAX_DIGITS || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Why reading a map or writing a sparse file failed.
#[derive(Debug)]
pub(super) enum Fault {
    /// The layer stream failed.
    Read(io::Error),
    /// Writing the file failed.
    Write(io::Error),
    /// The map or the data is not what the format requires.
    Invalid(String),
}

/// Reads a 1.0 map from the start of `data`: the number of extents, then
/// offset and length of each, one decimal per line, padded to 512 bytes.
/// Returns the extents and how many bytes the map took.
pub(super) fn read_data_map(data: &mut impl Read) -> Result<(Vec<Extent>, u64), Fault> {
    let mut block = [0u8; BLOCK];
    let mut consumed: u64 = 0;
    let mut token: Vec<u8> = Vec::with_capacity(MAX_DIGITS);
    let mut count: Option<u64> = None;
    let mut numbers: Vec<u64> = Vec::new();
    loop {
        if consumed >= MAX_MAP_BYTES {
            return Err(Fault::Invalid(format!(
                "the sparse map is longer than {MAX_MAP_BYTES} bytes"
            )));
        }
        data.read_exact(&mut block).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => {
                Fault::Invalid("the entry's data ends inside its sparse map".into())
            }
            _ => Fault::Read(e),
        })?;
        consumed += BLOCK as u64;
        for &byte in &block {
            if byte != b'\n' {
                if !byte.is_ascii_digit() || token.len() == MAX_DIGITS {
                    return Err(Fault::Invalid(
                        "the sparse map holds something other than decimal lines".into(),
                    ));
                }
                token.push(byte);
                continue;
            }
            let value = std::str::from_utf8(&token)
                .ok()
                .and_then(parse_number)
                .ok_or_else(|| Fault::Invalid("the sparse map has an empty line".into()))?;
            token.clear();
            match count {
                None => {
                    if value > MAX_EXTENTS as u64 {
                        return Err(Fault::Invalid(format!(
                            "the sparse map lists {value} extents; at most {MAX_EXTENTS} are accepted"
                        )));
                    }
                    count = Some(value);
                }
                Some(_) => numbers.push(value),
            }
            if count.is_some_and(|c| numbers.len() as u64 == 2 * c) {
                // The rest of this block is padding.
                let extents = numbers
                    .chunks(2)
                    .map(|p| Extent {
                        offset: p[0],
                        len: p[1],
                    })
                    .collect();
                return Ok((extents, consumed));
            }
        }
    }
}

/// Checks a map against the real size and the data stored for it.
pub(super) fn validate(extents: &[Extent], real_size: u64, stored: u64) -> Result<(), String> {
    if extents.len() > MAX_EXTENTS {
        return Err(format!(
            "the sparse map lists {} extents; at most {MAX_EXTENTS} are accepted",
            extents.len()
        ));
    }
    let mut end: u64 = 0;
    let mut data: u64 = 0;
    for (i, e) in extents.iter().enumerate() {
        if e.offset < end {
            return Err(format!(
                "sparse extent #{i} at offset {} overlaps or precedes the one before (which ends at {end})",
                e.offset
            ));
        }
        end = e
            .offset
            .checked_add(e.len)
            .filter(|end| *end <= real_size)
            .ok_or_else(|| {
                format!(
                    "sparse extent #{i} ({} bytes at offset {}) ends past the real size {real_size}",
                    e.len, e.offset
                )
            })?;
        data += e.len;
    }
    if data != stored {
        return Err(format!(
            "the sparse map covers {data} bytes of data but the entry stores {stored}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
