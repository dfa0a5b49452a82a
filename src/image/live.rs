//! A layer blob that is still downloading, read while it grows so the layer
//! is applied during the download instead of after it.
//!
//! The download writes the partial file as before (so a killed pull can
//! resume) and reports each extension from its writing thread; a
//! [`LiveReader`] reads the same file up to that length and waits for more.
//! It reports end of stream only once the download verified the blob digest
//! and committed the blob, so a chain built from it is renamed into place
//! only after both the blob digest and the diff_id checked out. A download
//! that restarts from zero (the registry ignored `Range`) or fails makes the
//! reader fail; the caller discards the staging dir and, after a restart,
//! applies the committed blob again.

use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::{Condvar, Mutex, MutexGuard};

use super::registry::PartialWatcher;
use super::ImageError;

#[derive(Debug)]
enum End {
    Running,
    /// Verified and committed to the store.
    Done,
    /// Failed or abandoned; the error (if not yet taken) says why.
    Failed(Option<ImageError>),
}

#[derive(Debug)]
struct State {
    /// Bytes of the partial file that are written.
    len: u64,
    /// Bumped when the partial file is truncated to zero.
    restarts: u64,
    end: End,
}

/// The shared state of one download (see the module doc).
#[derive(Debug)]
pub struct LiveBlob {
    partial: PathBuf,
    /// Where the partial file is renamed once verified.
    stored: PathBuf,
    state: Mutex<State>,
    changed: Condvar,
}

/// How a download ended, for the caller of a failed chain build.
#[derive(Debug)]
pub enum Outcome {
    Committed { restarted: bool },
    Failed(Option<ImageError>),
}

impl LiveBlob {
    pub fn new(partial: PathBuf, stored: PathBuf) -> Self {
        LiveBlob {
            partial,
            stored,
            state: Mutex::new(State {
                len: 0,
                restarts: 0,
                end: End::Running,
            }),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves consistent plain data.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update(&self, change: impl FnOnce(&mut State)) {
        change(&mut self.lock());
        self.changed.notify_all();
    }

    /// The blob is verified and in the store.
    pub fn committed(&self) {
        self.update(|s| s.end = End::Done);
    }

    /// The download failed; readers fail, the error waits for [`Self::outcome`].
    pub fn failed(&self, error: Option<ImageError>) {
        self.update(|s| {
            if matches!(s.end, End::Running) {
                s.end = End::Failed(error);
            }
        });
    }

    /// Whether a failed read of this blob may be the download's fault (it
    /// failed, or restarted under the reader).
    pub fn troubled(&self) -> bool {
        let state = self.lock();
        state.restarts > 0 || matches!(state.end, End::Failed(_))
    }

    /// Waits for the download to end (blocking).
    pub fn outcome(&self) -> Outcome {
        let mut state = self.lock();
        loop {
            match &mut state.end {
                End::Running => {}
                End::Done => {
                    return Outcome::Committed {
                        restarted: state.restarts > 0,
                    }
                }
                End::Failed(error) => return Outcome::Failed(error.take()),
            }
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// The partial file, or the stored blob if it was committed already.
    fn open(&self) -> io::Result<File> {
        match File::open(&self.partial) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => File::open(&self.stored),
            other => other,
        }
    }

    pub fn reader(self: &std::sync::Arc<Self>) -> LiveReader {
        LiveReader {
            blob: self.clone(),
            file: None,
            pos: 0,
            restarts: self.lock().restarts,
        }
    }
}

impl PartialWatcher for LiveBlob {
    fn extended(&self, len: u64) {
        self.update(|s| s.len = s.len.max(len));
    }
    fn restarted(&self) {
        self.update(|s| {
            s.len = 0;
            s.restarts += 1;
        });
    }
}

/// Marks the download abandoned if its future is dropped before it ended,
/// so a reader never waits forever.
pub struct AbandonGuard<'a>(pub &'a LiveBlob);

impl Drop for AbandonGuard<'_> {
    fn drop(&mut self) {
        self.0.failed(None);
    }
}

/// Reads a growing partial file (see the module doc).
pub struct LiveReader {
    blob: std::sync::Arc<LiveBlob>,
    file: Option<File>,
    pos: u64,
    restarts: u64,
}

impl LiveReader {
    /// Reads what is left, so the caller knows the download really ended
    /// well even if the decoder stopped before the blob's last byte.
    pub fn finish(&mut self) -> io::Result<()> {
        let mut sink = vec![0u8; 64 << 10];
        while self.read(&mut sink)? > 0 {}
        Ok(())
    }
}

impl Read for LiveReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        let available = {
            let mut state = self.blob.lock();
            loop {
                if state.restarts != self.restarts {
                    return Err(io::Error::other("the blob download restarted from zero"));
                }
                if state.len > self.pos {
                    break state.len - self.pos;
                }
                match state.end {
                    End::Done => return Ok(0),
                    End::Failed(_) => return Err(io::Error::other("the blob download failed")),
                    End::Running => {}
                }
                state = self
                    .blob
                    .changed
                    .wait(state)
                    .unwrap_or_else(|p| p.into_inner());
            }
        };
        let file = match &mut self.file {
            Some(f) => f,
            None => self.file.insert(self.blob.open()?),
        };
        let want = out
            .len()
            .min(usize::try_from(available).unwrap_or(usize::MAX));
        let n = file.read(&mut out[..want])?;
        if n == 0 {
            return Err(io::Error::other("the partial blob file shrank while read"));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::Arc;

    #[test]
    fn reader_follows_the_file_and_ends_only_when_committed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob.partial");
        let blob = Arc::new(LiveBlob::new(path.clone(), dir.path().join("blob")));
        let mut reader = blob.reader();
        let writer = {
            let blob = blob.clone();
            std::thread::spawn(move || {
                let mut f = File::create(&path).unwrap();
                for i in 0..50u8 {
                    f.write_all(&[i; 1000]).unwrap();
                    blob.extended(1000 * (u64::from(i) + 1));
                }
                blob.committed();
            })
        };
        let mut got = Vec::new();
        reader.read_to_end(&mut got).unwrap();
        writer.join().unwrap();
        assert_eq!(got.len(), 50_000);
        assert!(got
            .chunks(1000)
            .enumerate()
            .all(|(i, c)| c == [i as u8; 1000]));
        reader.finish().unwrap();
        assert!(matches!(
            blob.outcome(),
            Outcome::Committed { restarted: false }
        ));
    }

    #[test]
    fn reader_fails_on_restart_failure_and_abandon() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob.partial");
        std::fs::write(&path, b"abc").unwrap();
        let blob = Arc::new(LiveBlob::new(path.clone(), dir.path().join("blob")));
        let mut reader = blob.reader();
        blob.extended(3);
        let mut buf = [0u8; 8];
        assert_eq!(reader.read(&mut buf).unwrap(), 3);
        blob.restarted();
        assert!(reader.read(&mut buf).is_err());
        blob.committed();
        assert!(matches!(
            blob.outcome(),
            Outcome::Committed { restarted: true }
        ));

        let abandoned = Arc::new(LiveBlob::new(path, dir.path().join("blob")));
        let mut reader = abandoned.reader();
        drop(AbandonGuard(&abandoned));
        assert!(reader.read(&mut buf).is_err());
        assert!(matches!(abandoned.outcome(), Outcome::Failed(None)));
    }
}
