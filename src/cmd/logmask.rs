//! Log lines on stderr pass through the run's masker: a library warning may
//! quote a value built from a secret (an image reference, a step setting),
//! and the library cannot know which values are secret.

use std::io::Write;
use std::sync::OnceLock;

use corral::pipeline::secret::Masker;

static MASKER: OnceLock<Masker> = OnceLock::new();

/// From now on every log line is masked with `masker`, including the
/// secrets added to it later (its clones share their patterns).
pub fn mask_logs_with(masker: &Masker) {
    let _ = MASKER.set(masker.clone());
}

/// One log event's text, written to stderr, masked, when dropped (the
/// tracing formatter writes each event whole, then drops its writer).
#[derive(Default)]
pub struct MaskedStderr(Vec<u8>);

impl MaskedStderr {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Write for MaskedStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for MaskedStderr {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.0);
        let text = match MASKER.get() {
            Some(masker) => masker.mask(&text).into_owned(),
            None => text.into_owned(),
        };
        let _ = std::io::stderr().write_all(text.as_bytes());
    }
}
