//! `<+pipeline.sequenceId>` (`HARNESS_BUILD_ID`, `DRONE_BUILD_NUMBER`): a
//! counter per pipeline identifier in the store, `sequence/<id>`, that
//! every run (not `--dry-run`) moves on by one. Concurrent runs hold the
//! store's lock `sequence-<id>` while they read and replace the counter, so
//! no two runs get the same number.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use crate::image::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum SequenceError {
    #[error("failed to create the sequence directory {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to lock the sequence counter")]
    Lock {
        #[source]
        source: StoreError,
    },
    #[error("failed to read the sequence counter {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the sequence counter {path} holds `{text}`, not a number; delete the file to restart at 1"
    )]
    Parse { path: PathBuf, text: String },
    #[error("failed to write the sequence counter {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The next sequence number of `pipeline` (1 for its first run).
/// `pipeline` is an identifier (`[A-Za-z_][0-9A-Za-z_]*`), safe as a file
/// name; anything else is reduced to one.
pub fn next(store: &Store, pipeline: &str) -> Result<u64, SequenceError> {
    let dir = store.root().join("sequence");
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|source| SequenceError::CreateDir {
            path: dir.clone(),
            source,
        })?;
    let name: String = pipeline
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let _lock = store
        .lock(&format!("sequence-{name}"), true)
        .map_err(|source| SequenceError::Lock { source })?;
    let path = dir.join(&name);
    let last = match fs::read_to_string(&path) {
        Ok(text) => text
            .trim()
            .parse::<u64>()
            .map_err(|_| SequenceError::Parse {
                path: path.clone(),
                text: text.trim().chars().take(40).collect(),
            })?,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => 0,
        Err(source) => return Err(SequenceError::Read { path, source }),
    };
    let next = last.saturating_add(1);
    // A new file renamed over the old: a crash leaves the old number or
    // the new one, never a torn file.
    let write = |tmp: &Path| -> std::io::Result<()> {
        let mut file = File::create(tmp)?;
        writeln!(file, "{next}")?;
        file.sync_all()?;
        fs::rename(tmp, &path)
    };
    write(&store.staging_path("sequence")).map_err(|source| SequenceError::Write {
        path: path.clone(),
        source,
    })?;
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_pipeline_from_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(next(&store, "a").unwrap(), 1);
        assert_eq!(next(&store, "a").unwrap(), 2);
        assert_eq!(next(&store, "b").unwrap(), 1);
        assert_eq!(next(&store, "a").unwrap(), 3);
    }

    #[test]
    fn concurrent_runs_never_share_a_number() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut got: Vec<u64> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        (0..10)
                            .map(|_| next(&store, "p").unwrap())
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        got.sort_unstable();
        assert_eq!(got, (1..=80).collect::<Vec<u64>>());
    }

    #[test]
    fn a_damaged_counter_is_an_error_saying_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        fs::create_dir_all(dir.path().join("sequence")).unwrap();
        fs::write(dir.path().join("sequence/p"), "x\n").unwrap();
        let err = next(&store, "p").unwrap_err();
        assert!(err.to_string().contains("delete the file"), "{err}");
    }
}
