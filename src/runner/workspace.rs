//! `/harness` of each stage instance. Harness gives every stage (and every
//! copy of a looped stage) a fresh workspace volume, so by default each
//! gets `workspace/<stage-id>` in the run directory (copies have their
//! `_N` suffix in the id); `--workspace DIR` mounts DIR in every stage, as
//! the user asked. Output files are per run and stage instance either way:
//! `.corral/outputs/<execution-id>/<stage-id>/` in the workspace, so runs
//! sharing a `--workspace DIR` at the same time never touch each other's;
//! in such a DIR the run's directory goes when the run ends.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::resolve::{StageContext, OUTPUT_DIR, WORKSPACE};
use crate::error_chain;

#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error("failed to create the workspace directory {path}")]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to copy the git checkout {top} into {dest} (cloneCodebase)")]
    Clone {
        top: PathBuf,
        dest: PathBuf,
        #[source]
        source: super::checkout::CheckoutError,
    },
}

/// Where the workspaces of a run are.
#[derive(Debug, Clone)]
pub struct Workspaces {
    /// `--workspace DIR`, else `runs/<run-id>/workspace`.
    root: PathBuf,
    /// Whether `root` is the user's DIR, shared by every stage.
    user_dir: bool,
}

impl Workspaces {
    pub fn new(root: PathBuf, user_dir: bool) -> Self {
        let root = std::path::absolute(&root).unwrap_or(root);
        Workspaces { root, user_dir }
    }

    /// `--workspace DIR`, or the directory holding one workspace per stage.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn is_user_dir(&self) -> bool {
        self.user_dir
    }

    /// The host directory mounted at `/harness` in stage `stage_id`.
    pub fn of(&self, stage_id: &str) -> PathBuf {
        if self.user_dir {
            self.root.clone()
        } else {
            self.root.join(stage_id)
        }
    }

    /// Makes the workspace of a stage instance: its directory (a copy of
    /// the git checkout with `cloneCodebase`), and its empty output
    /// directory. Returns the workspace.
    pub fn prepare(&self, sc: &StageContext<'_>) -> Result<PathBuf, WorkspaceError> {
        let stage_id = sc.stage().id.value.clone();
        let dir = self.of(&stage_id);
        let create = |path: &Path| {
            std::fs::create_dir_all(path).map_err(|source| WorkspaceError::Create {
                path: path.to_path_buf(),
                source,
            })
        };
        // Like Kubernetes' emptyDir (Harness's workspace volume): writable
        // by whatever user an image runs as. The store around it is 0700.
        // A --workspace DIR keeps its own permissions.
        let open_up = |path: &Path| {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777)).map_err(
                |source| WorkspaceError::Create {
                    path: path.to_path_buf(),
                    source,
                },
            )
        };
        create(&dir)?;
        if !self.user_dir {
            open_up(&dir)?;
        }
        self.clone_codebase(sc, &dir)?;
        let execution_id = &sc.run().options().execution_id;
        let outputs = dir.join(output_subdir(execution_id)).join(&stage_id);
        create(&outputs)?;
        if !self.user_dir {
            let mut parent = outputs.parent();
            while let Some(p) = parent.filter(|p| p.starts_with(&dir) && *p != dir) {
                open_up(p)?;
                parent = p.parent();
            }
        }
        open_up(&outputs)?;
        Ok(dir)
    }

    /// At the end of a run in a `--workspace DIR`: removes the run's output
    /// files, and `.corral/outputs` and `.corral` once nothing else is in
    /// them (another run may still be using them). A per-run workspace
    /// keeps everything, for a look afterwards.
    pub fn finish(&self, execution_id: &str) {
        if !self.user_dir {
            return;
        }
        let run_outputs = self.root.join(output_subdir(execution_id));
        if let Err(err) = std::fs::remove_dir_all(&run_outputs) {
            if err.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(
                    "could not remove this run's output files {}: {err}",
                    run_outputs.display()
                );
            }
            return;
        }
        // Fails harmlessly while another run's files are in them.
        let mut parent = run_outputs.parent();
        while let Some(dir) = parent.filter(|p| *p != self.root) {
            if std::fs::remove_dir(dir).is_err() {
                break;
            }
            parent = dir.parent();
        }
    }

    fn clone_codebase(&self, sc: &StageContext<'_>, dir: &Path) -> Result<(), WorkspaceError> {
        let stage_id = sc.stage().id.as_str();
        let file = sc.run().pipeline().file.display().to_string();
        let (clone, line) = match sc.clone_codebase() {
            Ok(decided) => decided,
            Err(err) => {
                tracing::warn!(
                    "stage {stage_id}: {}; the workspace starts empty",
                    error_chain(&err)
                );
                return Ok(());
            }
        };
        if !clone {
            return Ok(());
        }
        if self.user_dir {
            tracing::warn!(
                "stage {stage_id} ({file}:{line}): cloneCodebase: --workspace {} is used as it is, nothing is copied into it",
                self.root.display()
            );
            return Ok(());
        }
        let Some(codebase) = sc.run().codebase() else {
            tracing::warn!(
                "stage {stage_id} ({file}:{line}): cloneCodebase is set, but the pipeline's directory is not in a git checkout git can read (no checkout, git missing, or a checkout owned by another user): the workspace starts empty; run the pipeline from a checkout or set cloneCodebase: false"
            );
            return Ok(());
        };
        super::checkout::copy_checkout(&codebase.top, dir, codebase.repo_url.as_deref()).map_err(
            |source| WorkspaceError::Clone {
                top: codebase.top.clone(),
                dest: dir.to_path_buf(),
                source,
            },
        )
    }
}

/// `.corral/outputs/<execution-id>`: the output directories of a run's
/// stage instances, relative to a workspace.
fn output_subdir(execution_id: &str) -> PathBuf {
    Path::new(
        OUTPUT_DIR
            .trim_start_matches(WORKSPACE)
            .trim_start_matches('/'),
    )
    .join(execution_id)
}
