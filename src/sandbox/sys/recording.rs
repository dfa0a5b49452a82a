//! [`RecordingSys`]: the [`Sys`] of the applier's tests, which records
//! every call and answers from what the test set up.

use std::io;
use std::path::{Path, PathBuf};

use super::{DirEntry, Stat, Sys};

/// One recorded call of [`RecordingSys`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Mount {
        source: String,
        target: PathBuf,
        fstype: String,
        flags: u64,
        data: String,
    },
    MakeReadOnly {
        target: PathBuf,
        recursive: bool,
    },
    MkdirAll {
        path: PathBuf,
        mode: u32,
    },
    Touch {
        path: PathBuf,
    },
    WriteFile {
        path: PathBuf,
        contents: String,
    },
    Symlink {
        target: String,
        link: PathBuf,
    },
    SetAttrs {
        path: PathBuf,
        mode: u32,
        owner: Option<(u32, u32)>,
    },
    PivotRoot {
        new_root: PathBuf,
    },
    SetHostname {
        name: String,
    },
    Run {
        program: String,
        args: Vec<String>,
    },
    RunIn {
        root: PathBuf,
        program: String,
        args: Vec<String>,
    },
}

#[cfg(test)]
impl Call {
    /// The call of a bind mount (`flags` holds BIND, maybe REC).
    pub(crate) fn bind(source: &str, target: &str, flags: u64) -> Call {
        Call::Mount {
            source: source.into(),
            target: target.into(),
            fstype: "".into(),
            flags,
            data: "".into(),
        }
    }
}

/// Records calls; mounts of a type in `fail_fstypes` and runs of a program
/// in `fail_programs` fail with EPERM, so tests can drive the fallbacks.
/// `stat` finds `dirs` (0755) and `files` (0644), owned by 0. `list_dir`
/// answers from `listings` (else EACCES); `in_memory` is true except under
/// `disk_dirs`.
#[derive(Debug, Default)]
pub struct RecordingSys {
    pub calls: Vec<Call>,
    pub fail_fstypes: Vec<String>,
    pub fail_programs: Vec<String>,
    pub dirs: Vec<PathBuf>,
    pub files: Vec<PathBuf>,
    /// Mounts onto these fail with ENOENT.
    pub missing: Vec<PathBuf>,
    pub listings: Vec<(PathBuf, Vec<DirEntry>)>,
    pub disk_dirs: Vec<PathBuf>,
}

impl RecordingSys {
    fn run_result(&self, program: &str) -> io::Result<()> {
        if self.fail_programs.iter().any(|p| p == program) {
            return Err(io::Error::from_raw_os_error(libc::EPERM));
        }
        Ok(())
    }
}

impl Sys for RecordingSys {
    fn mount(
        &mut self,
        source: &str,
        target: &Path,
        fstype: &str,
        flags: u64,
        data: &str,
    ) -> io::Result<()> {
        self.calls.push(Call::Mount {
            source: source.to_string(),
            target: target.to_path_buf(),
            fstype: fstype.to_string(),
            flags,
            data: data.to_string(),
        });
        if self.fail_fstypes.iter().any(|f| f == fstype) {
            return Err(io::Error::from_raw_os_error(libc::EPERM));
        }
        if self.missing.iter().any(|m| m == target) {
            return Err(io::Error::from_raw_os_error(libc::ENOENT));
        }
        // A directory over a file or a file over a directory, as the kernel.
        let source_is_dir = fstype == "tmpfs" || self.dirs.iter().any(|d| d == Path::new(source));
        let source_is_file =
            source == "/dev/null" || self.files.iter().any(|f| f == Path::new(source));
        let onto_file = self.files.iter().any(|f| f == target);
        let onto_dir = self.dirs.iter().any(|d| d == target);
        if (onto_file && source_is_dir) || (onto_dir && source_is_file) {
            return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
        }
        Ok(())
    }
    fn make_read_only(&mut self, target: &Path, recursive: bool) -> io::Result<()> {
        self.calls.push(Call::MakeReadOnly {
            target: target.to_path_buf(),
            recursive,
        });
        Ok(())
    }
    fn mkdir_all(&mut self, path: &Path, mode: u32) -> io::Result<()> {
        self.calls.push(Call::MkdirAll {
            path: path.to_path_buf(),
            mode,
        });
        Ok(())
    }
    fn write_file(&mut self, path: &Path, contents: &str) -> io::Result<()> {
        self.calls.push(Call::WriteFile {
            path: path.to_path_buf(),
            contents: contents.to_string(),
        });
        Ok(())
    }
    fn touch(&mut self, path: &Path) -> io::Result<()> {
        self.calls.push(Call::Touch {
            path: path.to_path_buf(),
        });
        Ok(())
    }
    fn symlink(&mut self, target: &str, link: &Path) -> io::Result<()> {
        self.calls.push(Call::Symlink {
            target: target.to_string(),
            link: link.to_path_buf(),
        });
        Ok(())
    }
    fn stat(&mut self, path: &Path, _follow: bool) -> Option<Stat> {
        let is_dir = self.dirs.iter().any(|d| d == path);
        (is_dir || self.files.iter().any(|f| f == path)).then_some(Stat {
            is_dir,
            mode: if is_dir { 0o755 } else { 0o644 },
            uid: 0,
            gid: 0,
        })
    }
    fn set_attrs(&mut self, path: &Path, mode: u32, owner: Option<(u32, u32)>) -> io::Result<()> {
        self.calls.push(Call::SetAttrs {
            path: path.to_path_buf(),
            mode,
            owner,
        });
        Ok(())
    }
    fn list_dir(&mut self, path: &Path) -> io::Result<Vec<DirEntry>> {
        self.listings
            .iter()
            .find(|(dir, _)| dir == path)
            .map(|(_, entries)| entries.clone())
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EACCES))
    }
    fn in_memory(&mut self, path: &Path) -> io::Result<bool> {
        Ok(!self.disk_dirs.iter().any(|d| path.starts_with(d)))
    }
    fn pivot_root(&mut self, new_root: &Path) -> io::Result<()> {
        self.calls.push(Call::PivotRoot {
            new_root: new_root.to_path_buf(),
        });
        Ok(())
    }
    fn set_hostname(&mut self, name: &str) -> io::Result<()> {
        self.calls.push(Call::SetHostname {
            name: name.to_string(),
        });
        Ok(())
    }
    fn run(&mut self, program: &str, args: &[String]) -> io::Result<()> {
        self.calls.push(Call::Run {
            program: program.to_string(),
            args: args.to_vec(),
        });
        self.run_result(program)
    }
    fn run_in(&mut self, root: &Path, program: &str, args: &[String]) -> io::Result<()> {
        self.calls.push(Call::RunIn {
            root: root.to_path_buf(),
            program: program.to_string(),
            args: args.to_vec(),
        });
        self.run_result(program)
    }
}
