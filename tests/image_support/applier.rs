//! A test-only layer applier, enough to exercise the store.

use std::io::Read;
use std::path::Path;

use corral::image::applier::{ApplyError, LayerApplier};
use corral::image::unpack::AppliedLayer;

/// Test-only applier: extracts regular files and directories with the
/// `tar` crate and reports the diff_id. Enough to exercise the store;
/// the real applier is src/image/unpack.rs.
pub struct TestApplier;

struct HashingReader<R> {
    inner: R,
    hasher: sha2::Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        sha2::Digest::update(&mut self.hasher, &buf[..n]);
        Ok(n)
    }
}

impl LayerApplier for TestApplier {
    fn apply(&self, root: &Path, layer: &mut dyn Read) -> Result<AppliedLayer, ApplyError> {
        let mut magic = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            let n = layer.read(&mut magic[got..])?;
            if n == 0 {
                break;
            }
            got += n;
        }
        let chained = Read::chain(std::io::Cursor::new(magic[..got].to_vec()), layer);
        let decoded: Box<dyn Read> = match &magic[..got] {
            [0x1f, 0x8b, ..] => Box::new(flate2::read::MultiGzDecoder::new(chained)),
            [0x28, 0xb5, 0x2f, 0xfd] => Box::new(zstd::stream::read::Decoder::new(chained)?),
            _ => Box::new(chained),
        };
        let mut reader = HashingReader {
            inner: decoded,
            hasher: <sha2::Sha256 as sha2::Digest>::new(),
        };
        let mut entries = 0;
        // Read-only directories (0555) are made writable while filling them
        // (rootless has no CAP_DAC_OVERRIDE) and restored at the end.
        let mut restore = Vec::new();
        {
            let mut archive = tar::Archive::new(&mut reader);
            for entry in archive.entries()? {
                let mut entry = entry?;
                entries += 1;
                let kind = entry.header().entry_type();
                let path = entry.path()?.into_owned();
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default();
                if name.starts_with(".wh.") {
                    continue;
                }
                if kind.is_dir() {
                    entry.unpack_in(root)?;
                    let mode = entry.header().mode()?;
                    let dir = root.join(&path);
                    std::fs::set_permissions(
                        &dir,
                        std::os::unix::fs::PermissionsExt::from_mode(0o755),
                    )?;
                    restore.push((dir, mode));
                } else if kind.is_file() {
                    if let Some(parent) = root.join(&path).parent() {
                        use std::os::unix::fs::PermissionsExt;
                        if let Ok(meta) = std::fs::metadata(parent) {
                            let mode = meta.permissions().mode();
                            if mode & 0o200 == 0 {
                                std::fs::set_permissions(parent, PermissionsExt::from_mode(0o755))?;
                                restore.push((parent.to_path_buf(), mode));
                            }
                        }
                    }
                    entry.unpack_in(root)?;
                }
            }
        }
        std::io::copy(&mut reader, &mut std::io::sink())?;
        for (dir, mode) in restore.into_iter().rev() {
            std::fs::set_permissions(
                &dir,
                std::os::unix::fs::PermissionsExt::from_mode(mode & 0o7777),
            )?;
        }
        let digest = hex::encode(sha2::Digest::finalize(reader.hasher));
        Ok(AppliedLayer {
            diff_id: format!("sha256:{digest}"),
            entries,
            uncompressed_bytes: 0,
        })
    }

    fn clone_tree(&self, parent: &Path, dest: &Path) -> Result<(), ApplyError> {
        // Hard links, like the real clone_tree: no need to read mode-000 files.
        let status = std::process::Command::new("cp")
            .arg("-al")
            .arg(parent)
            .arg(dest)
            .status()?;
        if !status.success() {
            return Err(format!("cp -a failed: {status}").into());
        }
        Ok(())
    }
}
