//! Helpers shared by the integration tests. Each test binary includes this
//! with `mod common;`; not every binary uses every helper.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The corral binary under test. The rootless pass of `scripts/test.sh`
/// points this at a copy every user can read.
pub fn corral_bin() -> PathBuf {
    std::env::var_os("CORRAL_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_corral")))
}

/// A `Command` for the corral binary with a private store and an empty
/// config (`/dev/null`: an explicit `--config` that is missing is an error).
pub fn corral(store: &Path) -> Command {
    let mut cmd = Command::new(corral_bin());
    cmd.env("CORRAL_STORE", store)
        .env("CORRAL_CONFIG", "/dev/null")
        .env_remove("CORRAL_LOG");
    cmd
}

/// `tests/fixtures` of this repository (or its copy in the rootless pass).
pub fn testdata() -> PathBuf {
    std::env::var_os("CORRAL_TEST_TESTDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures"))
}

/// `../shared` beside the repository, when present (CI has it).
pub fn shared_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("CORRAL_TEST_SHARED") {
        let dir = PathBuf::from(dir);
        return dir.is_dir().then_some(dir);
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared");
    dir.is_dir().then_some(dir)
}

/// Images built by `scripts/fixtures.sh` (OCI layouts under `layouts/`).
pub fn fixtures_dir() -> Option<PathBuf> {
    std::env::var_os("CORRAL_TEST_FIXTURES").map(PathBuf::from)
}

/// `127.0.0.1:PORT` of the registry `scripts/registry.sh` started.
pub fn registry() -> Option<String> {
    std::env::var("CORRAL_TEST_REGISTRY")
        .ok()
        .filter(|s| !s.is_empty())
}

pub fn in_ci() -> bool {
    std::env::var("CI")
        .map(|v| v == "true" || v == "1")
        .unwrap_or(false)
}

/// Prints `SKIP <test>: <reason>`; in CI a skip is a failure.
pub fn skip(test: &str, reason: &str) {
    if in_ci() {
        panic!("SKIP {test}: {reason} (skips are failures when CI=true)");
    }
    eprintln!("SKIP {test}: {reason}");
}

/// True when this host lets us create user, mount, pid and net namespaces.
/// Otherwise prints a SKIP line naming the knob to change (a failure in CI).
pub fn require_namespaces(test: &str) -> bool {
    let probe = Command::new("unshare")
        .args([
            "--user",
            "--map-root-user",
            "--mount",
            "--pid",
            "--net",
            "--fork",
            "true",
        ])
        .output();
    match probe {
        Ok(out) if out.status.success() => true,
        Ok(out) => {
            let why = String::from_utf8_lossy(&out.stderr).trim().to_string();
            skip(
                test,
                &format!(
                    "user namespaces unavailable ({why}); check user.max_user_namespaces, \
                     kernel.unprivileged_userns_clone and AppArmor's userns restriction"
                ),
            );
            false
        }
        Err(err) => {
            skip(
                test,
                &format!("cannot run unshare(1) to probe namespaces: {err}"),
            );
            false
        }
    }
}

/// Returns the registry address, or prints a SKIP (a failure in CI).
pub fn require_registry(test: &str) -> Option<String> {
    let reg = registry();
    if reg.is_none() {
        skip(
            test,
            "no test registry (run through scripts/test.sh, which starts one)",
        );
    }
    reg
}

/// Returns the fixtures dir, or prints a SKIP (a failure in CI).
pub fn require_fixtures(test: &str) -> Option<PathBuf> {
    let dir = fixtures_dir();
    if dir.is_none() {
        skip(
            test,
            "no fixture images (run scripts/fixtures.sh DIR and set CORRAL_TEST_FIXTURES)",
        );
    }
    dir
}

/// True in the rootless pass of scripts/test.sh (or any non-root run).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Whether this user's sandboxes map a single ID (no subuid range or no
/// newuidmap), as `corral info` reports it.
#[allow(clippy::unwrap_used)]
pub fn single_id_mapping(store: &Path) -> bool {
    let out = corral(store).args(["info", "--json"]).output().unwrap();
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    info["modes"]["id_mapping"]
        .as_str()
        .unwrap()
        .starts_with("single")
}

/// A pty pair: (master, slave).
pub fn openpty() -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    use std::os::fd::{FromRawFd, OwnedFd};
    let (mut master, mut slave) = (0, 0);
    // SAFETY: out-pointers to two ints; no name, termios or winsize.
    let ret = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(ret, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: two fresh fds we own.
    unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) }
}

/// Panics with `what` and the process's stderr unless it exited 0.
#[track_caller]
pub fn assert_success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether the filesystem under `dir` keeps a hole as a hole (a probe file
/// of 8 MiB with one byte written allocates under 1 MiB).
#[allow(clippy::unwrap_used)]
pub fn keeps_holes(dir: &Path) -> bool {
    use std::os::unix::fs::{FileExt, MetadataExt};
    let probe = dir.join("hole-probe");
    let f = std::fs::File::create(&probe).unwrap();
    f.set_len(8 << 20).unwrap();
    f.write_at(b"x", 4 << 20).unwrap();
    f.sync_all().unwrap();
    let blocks = f.metadata().unwrap().blocks();
    std::fs::remove_file(&probe).unwrap();
    blocks * 512 < 1 << 20
}

/// The value of extended attribute `name` of `p` itself (not following a
/// symlink), if it has one of at most 256 bytes.
pub fn xattr(p: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    rustix::fs::lgetxattr(p, name, &mut buf[..])
        .ok()
        .map(|n| buf[..n].to_vec())
}

/// A writer the test can read back (clones share the bytes).
#[derive(Clone, Default)]
pub struct SharedBuf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bytes().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl SharedBuf {
    fn bytes(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Everything written so far, which must be UTF-8.
    #[allow(clippy::unwrap_used)]
    pub fn text(&self) -> String {
        String::from_utf8(self.bytes().clone()).unwrap()
    }
}

/// A temporary directory for one test, removed on drop even where a plain
/// `remove_dir_all` fails for an unprivileged user: image layers keep
/// read-only directories, and with a subuid range they hold files of mapped
/// IDs that only a process in a user namespace mapped like corral's may
/// delete. The suite's rootless pass fails on anything left in its TMPDIR.
pub struct TestDir(tempfile::TempDir);

pub fn tempdir() -> TestDir {
    TestDir(tempfile::tempdir().expect("create a temporary directory"))
}

impl TestDir {
    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let path = self.0.path().to_path_buf();
        if let Err(err) = corral::sandbox::remove_dirs(std::slice::from_ref(&path), &corral_bin()) {
            eprintln!("warning: cannot remove {}: {err}", path.display());
        }
    }
}
