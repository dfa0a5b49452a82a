//! Writing a file entry's data: as it is, or sparse (sparse.rs reads and
//! checks the maps). Holes are never written: the file is extended with
//! `ftruncate`, so a 1 GiB file of holes costs nothing on disk. Also the
//! applier's side of sparse entries: the layer-wide size limit and reading
//! a PAX 1.0 map before the file is created.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;

use tar::EntryType;

use super::apply::Applier;
use super::sparse::{self, Extent, Fault, MapSource, PaxSparse};
use super::UnpackError;

/// Granularity at which zeros from an expanded old-GNU entry become holes.
const HOLE_BLOCK: usize = 4096;

/// How a file entry's data is written.
#[derive(Debug)]
pub(super) enum Body {
    /// As it is.
    Plain,
    /// An old-GNU entry the tar crate expands: zero blocks become holes.
    Expanded { real_size: u64 },
    /// A PAX sparse entry: these extents from the data, holes between.
    Extents {
        extents: Vec<Extent>,
        real_size: u64,
    },
}

impl Body {
    /// Writes the entry's data into `file` (new and empty).
    pub(super) fn write(
        self,
        file: &mut File,
        data: &mut impl Read,
        buf: &mut [u8],
    ) -> Result<(), Fault> {
        match self {
            Body::Plain => loop {
                let n = match data.read(buf) {
                    Ok(0) => return Ok(()),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(Fault::Read(e)),
                };
                file.write_all(&buf[..n]).map_err(Fault::Write)?;
            },
            Body::Expanded { real_size } => write_skipping_zeros(file, data, real_size, buf),
            Body::Extents { extents, real_size } => {
                write_extents(file, data, &extents, real_size, buf)
            }
        }
    }
}

pub(super) fn sparse_refused(path: &[u8], reason: String) -> UnpackError {
    UnpackError::ReadSparseMap {
        path: String::from_utf8_lossy(path).into_owned(),
        reason,
    }
}

/// Maps a [`Fault`] on entry `path` to our error.
pub(super) fn fault(path: &[u8]) -> impl FnOnce(Fault) -> UnpackError + '_ {
    move |fault| {
        let path_str = String::from_utf8_lossy(path).into_owned();
        match fault {
            Fault::Read(source) => UnpackError::ReadEntryData {
                path: path_str,
                source,
            },
            Fault::Write(source) => UnpackError::WriteEntry {
                op: "write",
                path: path_str,
                source,
            },
            Fault::Invalid(reason) => sparse_refused(path, reason),
        }
    }
}

impl Applier<'_> {
    /// Counts a sparse file's real size against the layer's limit, so that a
    /// tiny layer cannot ask for exabytes of holes (or, old-GNU, for the tar
    /// crate to expand them as zeros).
    pub(super) fn charge_sparse(&mut self, name: &[u8], real_size: u64) -> Result<(), UnpackError> {
        self.sparse_left = self.sparse_left.checked_sub(real_size).ok_or_else(|| {
            sparse_refused(
                name,
                format!(
                    "its real size {real_size} takes the layer's sparse files past the \
                     {} byte expansion limit",
                    self.opts.max_bytes
                ),
            )
        })?;
        Ok(())
    }

    /// How a file entry's data is laid out; a PAX 1.0 map is read (and
    /// every map checked) here, before the file is created.
    pub(super) fn body<R: Read>(
        &self,
        name: &[u8],
        kind: EntryType,
        pax: Option<PaxSparse>,
        entry: &mut tar::Entry<'_, R>,
    ) -> Result<Body, UnpackError> {
        if kind.is_gnu_sparse() {
            return Ok(Body::Expanded {
                real_size: entry.size(),
            });
        }
        let Some(pax) = pax else {
            return Ok(Body::Plain);
        };
        let (extents, map_bytes) = match pax.map {
            MapSource::Records(extents) => (extents, 0),
            MapSource::Data => sparse::read_data_map(entry).map_err(fault(name))?,
        };
        let stored = entry.size().saturating_sub(map_bytes);
        sparse::validate(&extents, pax.real_size, stored)
            .map_err(|reason| sparse_refused(name, reason))?;
        Ok(Body::Extents {
            extents,
            real_size: pax.real_size,
        })
    }
}

/// Writes each extent from `data` at its offset and extends the file to
/// `real_size`; the gaps stay holes.
pub(super) fn write_extents(
    file: &File,
    data: &mut impl Read,
    extents: &[Extent],
    real_size: u64,
    buf: &mut [u8],
) -> Result<(), Fault> {
    for e in extents {
        let (mut pos, mut left) = (e.offset, e.len);
        while left > 0 {
            let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            data.read_exact(&mut buf[..n]).map_err(Fault::Read)?;
            file.write_all_at(&buf[..n], pos).map_err(Fault::Write)?;
            pos += n as u64;
            left -= n as u64;
        }
    }
    file.set_len(real_size).map_err(Fault::Write)
}

/// Writes an expanded stream (an old-GNU entry as the tar crate returns it)
/// leaving every all-zero 4 KiB block as a hole; `real_size` is what the
/// stream must hold.
pub(super) fn write_skipping_zeros(
    file: &File,
    data: &mut impl Read,
    real_size: u64,
    buf: &mut [u8],
) -> Result<(), Fault> {
    let mut pos: u64 = 0;
    loop {
        // Whole buffers keep the blocks aligned to the file's offsets.
        let mut n = 0;
        while n < buf.len() {
            match data.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Fault::Read(e)),
            }
        }
        if n == 0 {
            break;
        }
        let chunk = &buf[..n];
        let mut start = 0;
        while start < n {
            let is_zero = |at: usize| chunk[at..n.min(at + HOLE_BLOCK)].iter().all(|b| *b == 0);
            if is_zero(start) {
                start += HOLE_BLOCK;
                continue;
            }
            let mut end = start;
            while end < n && !is_zero(end) {
                end += HOLE_BLOCK;
            }
            let end = end.min(n);
            file.write_all_at(&chunk[start..end], pos + start as u64)
                .map_err(Fault::Write)?;
            start = end;
        }
        pos += n as u64;
    }
    if pos != real_size {
        return Err(Fault::Invalid(format!(
            "the sparse entry expands to {pos} bytes, not its real size {real_size}"
        )));
    }
    file.set_len(real_size).map_err(Fault::Write)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(offset: u64, len: u64) -> Extent {
        Extent { offset, len }
    }

    #[test]
    fn extents_are_written_at_their_offsets_with_holes_between() {
        let dir = tempfile::tempdir().unwrap();
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(dir.path().join("f"))
            .unwrap();
        let mut buf = vec![0u8; 3];
        let extents = [ext(1, 4), ext(10, 2)];
        write_extents(&file, &mut &b"abcdXY"[..], &extents, 16, &mut buf).unwrap();
        let got = std::fs::read(dir.path().join("f")).unwrap();
        assert_eq!(got, b"\0abcd\0\0\0\0\0XY\0\0\0\0");
        // Short data is a read error, not a silent hole.
        let short = File::create(dir.path().join("g")).unwrap();
        let res = write_extents(&short, &mut &b"ab"[..], &extents, 16, &mut buf);
        assert!(matches!(res, Err(Fault::Read(_))), "{res:?}");
    }

    #[test]
    fn zero_blocks_of_an_expanded_stream_become_holes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = File::create(&path).unwrap();
        let mut data = vec![0u8; 64 << 20];
        data[(32 << 20) + 7] = 1;
        data.extend_from_slice(b"tail");
        let mut buf = vec![0u8; 1 << 20];
        write_skipping_zeros(&file, &mut &data[..], data.len() as u64, &mut buf).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), data);
        use std::os::unix::fs::MetadataExt;
        // Two 4 KiB blocks hold data; ext4, xfs, btrfs and tmpfs keep the rest as holes.
        assert!(
            std::fs::metadata(&path).unwrap().blocks() * 512 < 1 << 20,
            "holes were written"
        );
        let err = write_skipping_zeros(&file, &mut &b"ab"[..], 3, &mut buf).unwrap_err();
        assert!(matches!(err, Fault::Invalid(ref r) if r.contains("not its real size")));
    }
}
