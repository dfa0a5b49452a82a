//! What we take from a tar entry: a cleaned name and the metadata, with PAX
//! overrides, before the entry's data is read.

use std::io::{self, Read};

use base64::Engine as _;

use super::sparse::SparseRecords;

/// Latest mtime we set: 9999-12-31T23:59:59Z. Later values (e.g. 2^40) are
/// clamped to it, negative ones to 0 (the epoch); 0 itself is kept (tar-rs's
/// unpacker would rewrite it to 1).
pub(super) const MAX_MTIME: i64 = 253_402_300_799;

/// Metadata of one entry.
#[derive(Debug, Clone, Default)]
pub(super) struct Meta {
    /// Permission bits including setuid/setgid/sticky.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Seconds since the epoch, clamped to `0..=MAX_MTIME`.
    pub mtime: i64,
    pub mtime_nsec: u32,
    /// `SCHILY.xattr.*` / `LIBARCHIVE.xattr.*` pairs from the PAX header.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// PAX `GNU.sparse.*` records (sparse.rs reads them).
    pub sparse: SparseRecords,
}

/// Why a name is refused.
pub(super) type Refusal = &'static str;

/// Entry names: leading `/`, empty and `.` components are dropped (so `/abs/x`
/// lands at `root/abs/x`); any `..` component is refused, since image
/// builders never write one and it only serves to escape.
pub(super) fn clean_entry_name(raw: &[u8]) -> Result<Vec<u8>, Refusal> {
    let mut out = Vec::with_capacity(raw.len());
    for comp in raw.split(|b| *b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => return Err("the name contains a `..` component"),
            c => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(c);
            }
        }
    }
    Ok(out)
}

/// Hard-link targets are root-relative: `..` is clamped at the root the way
/// the kernel treats `/..`, so `../../etc/shadow` means `root/etc/shadow`.
pub(super) fn clean_link_target(raw: &[u8]) -> Vec<u8> {
    let mut comps: Vec<&[u8]> = Vec::new();
    for comp in raw.split(|b| *b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                comps.pop();
            }
            c => comps.push(c),
        }
    }
    comps.join(&b'/')
}

/// Clamps a signed mtime into the range we set (see `MAX_MTIME`).
pub(super) fn clamp_mtime(secs: i64) -> i64 {
    secs.clamp(0, MAX_MTIME)
}

/// Parses a PAX `mtime` value such as `1700000000.123456789` or `-5`.
pub(super) fn parse_pax_time(value: &str) -> Option<(i64, u32)> {
    let (int, frac) = match value.split_once('.') {
        Some((i, f)) => (i, f),
        None => (value, ""),
    };
    let secs: i64 = if int.is_empty() || int == "-" {
        0
    } else {
        int.parse().ok()?
    };
    let mut nsec: u32 = 0;
    for (i, c) in frac.chars().take(9).enumerate() {
        let d = c.to_digit(10)?;
        nsec += d * 10u32.pow(8 - i as u32);
    }
    if value.starts_with('-') && nsec > 0 {
        // -1.5 is 1.5 s before the epoch; it gets clamped anyway.
        return Some((secs - 1, 0));
    }
    Some((secs, nsec))
}

/// Reads the metadata (header plus PAX records) of `entry`.
pub(super) fn read_meta<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<Meta> {
    let header = entry.header();
    let mode = header.mode()? & 0o7777;
    let uid = header.uid()?;
    let gid = header.gid()?;
    let (uid, gid) = match (u32::try_from(uid), u32::try_from(gid)) {
        (Ok(u), Ok(g)) => (u, g),
        _ => {
            return Err(io::Error::other(format!(
                "owner {uid}:{gid} is out of range"
            )))
        }
    };
    // A base-256 field starting with 0xff is negative (before the epoch).
    let negative = header.as_old().mtime[0] == 0xff;
    let mut mtime = if negative {
        0
    } else {
        i64::try_from(header.mtime()?).unwrap_or(i64::MAX)
    };
    let mut meta = Meta {
        mode,
        uid,
        gid,
        ..Meta::default()
    };
    if let Some(exts) = entry.pax_extensions()? {
        for ext in exts {
            let ext = ext?;
            let Ok(key) = ext.key() else { continue };
            // Before the empty-value rule: 0.0 maps repeat keys in order.
            if let Some(field) = key.strip_prefix("GNU.sparse.") {
                meta.sparse.record(field, ext.value_bytes());
                continue;
            }
            if ext.value_bytes().is_empty() {
                // POSIX pax: an empty value deletes the keyword (Go's
                // archive/tar, hence umoci and containerd, agree).
                if let Some(name) = key
                    .strip_prefix("SCHILY.xattr.")
                    .or_else(|| key.strip_prefix("LIBARCHIVE.xattr."))
                {
                    meta.xattrs.retain(|(k, _)| k.as_slice() != name.as_bytes());
                }
                continue;
            }
            if key == "mtime" {
                if let Some((secs, nsec)) = ext.value().ok().and_then(parse_pax_time) {
                    mtime = secs;
                    meta.mtime_nsec = nsec;
                }
            } else if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                meta.xattrs
                    .push((name.as_bytes().to_vec(), ext.value_bytes().to_vec()));
            } else if let Some(name) = key.strip_prefix("LIBARCHIVE.xattr.") {
                if let Ok(value) = decode_base64(ext.value_bytes()) {
                    meta.xattrs.push((name.as_bytes().to_vec(), value));
                }
            }
        }
    }
    meta.mtime = clamp_mtime(mtime);
    if meta.mtime != mtime {
        meta.mtime_nsec = 0;
    }
    Ok(meta)
}

/// libarchive may or may not pad its base64; accept both.
fn decode_base64(value: &[u8]) -> Result<Vec<u8>, base64::DecodeError> {
    let mut end = value.trim_ascii_end().len();
    while end > 0 && value[end - 1] == b'=' {
        end -= 1;
    }
    base64::engine::general_purpose::STANDARD_NO_PAD.decode(&value[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_are_cleaned_or_refused() {
        assert_eq!(clean_entry_name(b"./a//b/").unwrap(), b"a/b");
        assert_eq!(clean_entry_name(b"/abs/x").unwrap(), b"abs/x");
        assert_eq!(clean_entry_name(b"./").unwrap(), b"");
        assert_eq!(clean_entry_name(b"/.").unwrap(), b"");
        assert!(clean_entry_name(b"../../etc/x").is_err());
        assert!(clean_entry_name(b"a/../../x").is_err());
        assert!(clean_entry_name(b"a/..").is_err());
        assert_eq!(clean_entry_name(b"a/...").unwrap(), b"a/...");
    }

    #[test]
    fn link_targets_are_clamped_at_the_root() {
        assert_eq!(clean_link_target(b"../../etc/shadow"), b"etc/shadow");
        assert_eq!(clean_link_target(b"/etc/shadow"), b"etc/shadow");
        assert_eq!(clean_link_target(b"a/b/../c"), b"a/c");
        assert_eq!(clean_link_target(b"./bin/busybox"), b"bin/busybox");
        assert_eq!(clean_link_target(b".."), b"");
    }

    #[test]
    fn mtimes_are_clamped() {
        assert_eq!(clamp_mtime(-5), 0);
        assert_eq!(clamp_mtime(0), 0);
        assert_eq!(clamp_mtime(1 << 40), MAX_MTIME);
        assert_eq!(clamp_mtime(1_700_000_000), 1_700_000_000);
    }

    #[test]
    fn pax_times_parse() {
        assert_eq!(parse_pax_time("1700000000"), Some((1_700_000_000, 0)));
        assert_eq!(parse_pax_time("1.5"), Some((1, 500_000_000)));
        assert_eq!(parse_pax_time("-1.5"), Some((-2, 0)));
        assert_eq!(parse_pax_time("-7"), Some((-7, 0)));
        assert_eq!(parse_pax_time("x"), None);
    }
}
