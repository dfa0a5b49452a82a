//! Unpacking in a subuid-mapped user namespace, so that a rootless user
//! with an `/etc/subuid` range keeps the image's owners (uid N of the image
//! is host uid `sub_start + N - 1`, the user is 0), as podman does.
//!
//! The parent re-executes the corral binary as `corral __image-unpack OP …`
//! (see [`helper_main`]). The child unshares a user namespace and says
//! `ready`; the parent writes the maps with newuidmap/newgidmap and sends
//! one `g` byte on the child's stdin (followed by the layer blob for
//! `apply`); the child then runs as root of the namespace and prints its
//! result on stdout. Chain dirs made this way hold inodes the user cannot
//! chmod outside the namespace, so they are removed in it too. The id maps
//! are written by the sandbox module's writer (`sandbox::idmap`).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::unpack::{self, AppliedLayer, Ownership, UnpackOptions};
use crate::sandbox::idmap::{self, IdMapError};
use crate::sandbox::IdMapping;

/// The caller's ids and their subordinate ranges (`start`, `count`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubIds {
    pub uid: u32,
    pub gid: u32,
    pub sub_uid: (u32, u32),
    pub sub_gid: (u32, u32),
}

#[derive(Debug, thiserror::Error)]
pub enum UsernsError {
    #[error("failed to start the unpack helper {exe}")]
    Spawn {
        exe: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to talk to the unpack helper")]
    Pipe {
        #[source]
        source: io::Error,
    },
    #[error("failed to map the subordinate ids for the unpack helper (pid {pid}); check /etc/subuid and /etc/subgid")]
    WriteMaps {
        pid: u32,
        #[source]
        source: IdMapError,
    },
    #[error("the unpack helper failed to {op}: {stderr}")]
    HelperFailed { op: &'static str, stderr: String },
    #[error("the unpack helper printed an unexpected result {output:?}")]
    BadOutput { output: String },
}

/// The caller's subordinate ranges, when the sandbox would map them too
/// (not root, both ranges exist, newuidmap/newgidmap installed).
pub fn caller_sub_ids() -> Option<SubIds> {
    match idmap::choose() {
        IdMapping::SubordinateRange {
            uid,
            gid,
            sub_uid,
            sub_gid,
        } => Some(SubIds {
            uid,
            gid,
            sub_uid,
            sub_gid,
        }),
        IdMapping::Identity | IdMapping::Single { .. } => None,
    }
}

/// The sandbox's id-map writer: the user is root, the ranges follow.
fn write_maps(pid: u32, ids: &SubIds) -> Result<(), UsernsError> {
    let mapping = IdMapping::SubordinateRange {
        uid: ids.uid,
        gid: ids.gid,
        sub_uid: ids.sub_uid,
        sub_gid: ids.sub_gid,
    };
    let raw_pid = i32::try_from(pid).unwrap_or(i32::MAX);
    idmap::write_maps(raw_pid, mapping).map_err(|source| UsernsError::WriteMaps { pid, source })
}

/// Runs `exe __image-unpack ARGS…` in a mapped user namespace, feeding it
/// `input` after the go byte; returns its stdout.
pub fn run_helper(
    exe: &Path,
    ids: &SubIds,
    op: &'static str,
    args: &[&Path],
    input: Option<&mut dyn Read>,
) -> Result<String, UsernsError> {
    let mut child = Command::new(exe)
        .arg(HELPER_ARG)
        .arg(op)
        .args(args)
        .env_remove("CORRAL_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| UsernsError::Spawn {
            exe: exe.to_path_buf(),
            source,
        })?;
    let pipe = |source| UsernsError::Pipe { source };
    let (Some(mut stdin), Some(stdout), Some(mut stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(pipe(io::Error::other("missing child pipes")));
    };
    std::thread::scope(|scope| {
        let errors = scope.spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        let mut stdout = BufReader::new(stdout);
        let mut ready = String::new();
        let fed = stdout.read_line(&mut ready).map_err(pipe).and_then(|_| {
            if ready.trim() != "ready" {
                // The child failed before unsharing; stderr says why.
                return Ok(());
            }
            write_maps(child.id(), ids)?;
            stdin.write_all(b"g").map_err(pipe)?;
            if let Some(input) = input {
                // EPIPE: the child gave up; its stderr explains.
                let _ = io::copy(input, &mut stdin);
            }
            Ok(())
        });
        drop(stdin);
        let mut output = String::new();
        let read = stdout.read_to_string(&mut output).map_err(pipe);
        let status = child.wait().map_err(pipe);
        let stderr = errors.join().unwrap_or_default();
        fed?;
        read?;
        if !status?.success() || ready.trim() != "ready" {
            return Err(UsernsError::HelperFailed {
                op,
                stderr: stderr.trim().to_string(),
            });
        }
        Ok(output)
    })
}

/// Applies a layer inside the namespace; the result line is parsed back.
pub fn apply(
    exe: &Path,
    ids: &SubIds,
    root: &Path,
    layer: &mut dyn Read,
) -> Result<AppliedLayer, UsernsError> {
    let out = run_helper(exe, ids, "apply", &[root], Some(layer))?;
    let bad = || UsernsError::BadOutput {
        output: out.clone(),
    };
    let mut fields = out.split_whitespace();
    let diff_id = fields.next().ok_or_else(bad)?.to_string();
    let entries = fields.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    let uncompressed_bytes = fields.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    Ok(AppliedLayer {
        diff_id,
        entries,
        uncompressed_bytes,
    })
}

/// The first argument that makes `main` call [`helper_main`].
pub const HELPER_ARG: &str = "__image-unpack";

/// Options inside the namespace: owners kept (ids beyond the range are
/// recorded in the override xattr), no devices (mknod is refused there).
pub fn namespace_options() -> UnpackOptions {
    UnpackOptions {
        ownership: Ownership::Keep,
        allow_devices: false,
        max_bytes: super::applier::MAX_LAYER_BYTES,
        max_entries: super::applier::MAX_LAYER_ENTRIES,
    }
}

/// Entry of the re-executed helper (`corral __image-unpack OP ARGS…`, the
/// arguments after `HELPER_ARG`). Must run while single-threaded.
pub fn helper_main(args: &[std::ffi::OsString]) -> i32 {
    match helper(args) {
        Ok(()) => 0,
        Err(err) => {
            eprintln!("{}", crate::error_chain(&*err));
            1
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn helper(args: &[std::ffi::OsString]) -> Result<(), BoxError> {
    let (op, paths) = args.split_first().ok_or("missing operation")?;
    let op = op.to_string_lossy();
    let paths: Vec<&Path> = paths.iter().map(Path::new).collect();
    // SAFETY: plain syscall; we are single-threaded (called before any
    // thread exists), as unsharing a user namespace requires.
    if unsafe { libc::unshare(libc::CLONE_NEWUSER) } != 0 {
        return Err(format!(
            "cannot create a user namespace: {}",
            io::Error::last_os_error()
        )
        .into());
    }
    let mut stdout = io::stdout().lock();
    stdout.write_all(b"ready\n")?;
    stdout.flush()?;
    let mut stdin = io::stdin().lock();
    let mut go = [0u8; 1];
    stdin.read_exact(&mut go)?;
    if &go != b"g" || !rustix::process::geteuid().is_root() {
        return Err("the parent did not map our ids".into());
    }
    match (op.as_ref(), paths.as_slice()) {
        ("apply", [root]) => {
            let applied = unpack::apply_layer(root, &mut stdin, &namespace_options())?;
            writeln!(
                stdout,
                "{} {} {}",
                applied.diff_id, applied.entries, applied.uncompressed_bytes
            )?;
        }
        ("clone", [parent, dest]) => unpack::clone_tree(parent, dest)?,
        ("remove", [path]) => unpack::remove_tree(path)?,
        _ => return Err(format!("unknown helper operation {op:?}").into()),
    }
    Ok(())
}
