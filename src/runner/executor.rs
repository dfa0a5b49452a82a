//! A whole run: the run directory and workspace, events, the terminal, and
//! the selected stages one after the other.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::cancel::{Cancel, Deadline};
use super::events::{Event, EventWriter};
use super::logs::TerminalSink;
use super::pull::{self, PullError, Reporter, Stop, Wanted};
use super::report::{self, StageResult, StageStatus};
use super::resolve::{self, RunContext};
use super::stage::{self, RunShared};
use super::status::HarnessStatus;
use super::workspace::Workspaces;
use crate::config::Config;
use crate::error_chain;
use crate::image::{Image, Progress, RegistryOptions, Store};
use crate::pipeline::secret::{Masker, SecretStore};
use crate::sandbox::{self, NetworkMode};

/// Grace between SIGTERM and SIGKILL at teardown unless the config's
/// `[run] grace_period` says otherwise.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// How to run a pipeline (everything `corral run` takes besides the file).
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Variables, `--stage` selection, ids of the run.
    pub resolve: resolve::RunOptions,
    /// `--secret` specs: `ID` (from env var ID), `ID=env:VAR`, `ID=file:PATH`.
    pub secrets: Vec<String>,
    pub secrets_file: Option<PathBuf>,
    /// Config file; `None` reads the default places.
    pub config_file: Option<PathBuf>,
    /// Store directory; `None`: the config's, else the default.
    pub store: Option<PathBuf>,
    /// Mounted at `/harness` in every stage; `None`: each stage instance
    /// gets its own, `workspace/<stage-id>` in the run directory.
    pub workspace: Option<PathBuf>,
    /// `None`: the config's `[run] network`, else private.
    pub network: Option<NetworkMode>,
    pub registry_mirrors: Vec<String>,
    pub insecure_registries: Vec<String>,
    pub offline: bool,
    /// JSON-lines events to this file (`-`: stdout).
    pub events: Option<PathBuf>,
    /// Step output on stdout, prefixed, colored when `color`.
    pub color: bool,
    /// No step output on stdout (still in the log files and events).
    pub quiet: bool,
    /// The executable that serves the sandbox roles (`corral __sandbox`);
    /// `None`: `CORRAL_EXE`, else this process's executable.
    pub exe: Option<PathBuf>,
    /// Set it to stop the run (see [`super::install_signal_handlers`]).
    pub cancel: Arc<Cancel>,
    /// Receives the progress of image pulls (a terminal's bars); `None`:
    /// a line per image on stderr (nothing when `quiet`).
    pub progress: Option<Arc<dyn Progress>>,
}

impl std::fmt::Debug for dyn Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("dyn Progress")
    }
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            resolve: resolve::RunOptions::default(),
            secrets: Vec::new(),
            secrets_file: None,
            config_file: None,
            store: None,
            workspace: None,
            network: None,
            registry_mirrors: Vec::new(),
            insecure_registries: Vec::new(),
            offline: false,
            events: None,
            color: false,
            quiet: false,
            exe: None,
            cancel: Cancel::new(),
            progress: None,
        }
    }
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub stages: Vec<StageResult>,
    /// `runs/<run-id>/` in the store: `logs/<stage>/<step>.log`, shared paths.
    pub run_dir: PathBuf,
    /// `--workspace DIR`, else the directory holding one workspace per
    /// stage instance (`<stage-id>`).
    pub workspace: PathBuf,
    /// Whether `workspace` holds one directory per stage instance.
    pub per_stage_workspace: bool,
    /// 0 when every stage succeeded; 128+N when interrupted by signal N.
    pub exit_code: u8,
    pub interrupted: Option<i32>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("failed to load pipeline {path}")]
    Load {
        path: PathBuf,
        #[source]
        source: Box<crate::pipeline::LoadError>,
    },
    #[error("failed to load the config")]
    Config {
        #[source]
        source: Box<crate::config::ConfigError>,
    },
    #[error("failed to load the secrets of the run")]
    Secrets {
        #[source]
        source: Box<crate::pipeline::secret::SecretError>,
    },
    #[error("failed to prepare the run")]
    Prepare {
        #[source]
        source: Box<resolve::ResolveError>,
    },
    #[error("failed to open the store at {path}")]
    OpenStore {
        path: PathBuf,
        #[source]
        source: crate::image::StoreError,
    },
    #[error("failed to create {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to count the run")]
    Sequence {
        #[source]
        source: super::sequence::SequenceError,
    },
    #[error("failed to open the events output")]
    Events {
        #[source]
        source: super::events::EventsError,
    },
    #[error("stage {stage}: failed to create a step log")]
    Log {
        stage: String,
        #[source]
        source: super::logs::LogError,
    },
}

/// What the stages of a run need to know about the host.
pub struct Settings {
    pub store_dir: PathBuf,
    pub store: Store,
    pub registry: RegistryOptions,
    pub config: Config,
    pub network: NetworkMode,
    pub grace: Duration,
    pub exe: PathBuf,
    pub quiet: bool,
    pub progress: Option<Arc<dyn Progress>>,
    /// Masks what pulls print (an image reference may hold a secret).
    pub masker: Masker,
}

impl Settings {
    /// Pulls `wanted` concurrently until done or `stop` says so; the error
    /// names the step and the image.
    pub(crate) fn pull(
        &self,
        secrets: &SecretStore,
        wanted: &[Wanted],
        events: Option<Arc<EventWriter>>,
        stop: &Stop<'_>,
    ) -> Result<BTreeMap<String, Image>, PullError> {
        if wanted.is_empty() {
            return Ok(BTreeMap::new());
        }
        let reporter = Reporter::new(
            self.quiet,
            events,
            self.progress.clone(),
            self.masker.clone(),
        );
        pull::pull_all(
            &self.store,
            &self.registry,
            &self.config,
            secrets,
            wanted,
            &reporter,
            stop,
        )
    }
}

/// Loads, validates and runs a pipeline.
///
/// The sandboxes are started by re-executing a corral binary
/// ([`RunOptions::exe`], default `CORRAL_EXE` or this executable), which
/// must dispatch `corral __sandbox ...` to [`crate::sandbox::internal_main`].
///
/// ```no_run
/// use corral::runner::{run_pipeline, RunOptions};
///
/// let options = RunOptions {
///     secrets: vec!["Sauce_Access_Key".into()],
///     registry_mirrors: vec!["docker.io=http://127.0.0.1:5000".into()],
///     exe: Some("/usr/local/bin/corral".into()),
///     ..RunOptions::default()
/// };
/// let report = run_pipeline("pipeline.yaml".as_ref(), options)?;
/// println!("exit code {}, logs in {}", report.exit_code, report.run_dir.display());
/// # Ok::<(), corral::runner::RunError>(())
/// ```
pub fn run_pipeline(path: &Path, options: RunOptions) -> Result<RunReport, RunError> {
    let (pipeline, _warnings) = crate::pipeline::load(path).map_err(|source| RunError::Load {
        path: path.to_path_buf(),
        source: Box::new(source),
    })?;
    let mut config =
        Config::load(options.config_file.as_deref()).map_err(|source| RunError::Config {
            source: Box::new(source),
        })?;
    config
        .apply_registry_args(&options.registry_mirrors, &options.insecure_registries)
        .map_err(|source| RunError::Config {
            source: Box::new(source),
        })?;
    let secrets = SecretStore::load(
        &options.secrets,
        options.secrets_file.as_deref(),
        &config.secrets,
    )
    .map_err(|source| RunError::Secrets {
        source: Box::new(source),
    })?;
    let ctx = RunContext::new(&pipeline, secrets, &config, options.resolve.clone()).map_err(
        |source| RunError::Prepare {
            source: Box::new(source),
        },
    )?;
    execute(ctx, config, &options)
}

/// Runs the selected stages of a prepared run. `config` already has the
/// command line's registry mirrors merged in.
pub fn execute(
    mut ctx: RunContext,
    config: Config,
    options: &RunOptions,
) -> Result<RunReport, RunError> {
    let begin = Instant::now();
    let store_dir = config.store_dir(options.store.as_deref());
    let store = Store::open(&store_dir).map_err(|source| RunError::OpenStore {
        path: store_dir.clone(),
        source,
    })?;
    if ctx.options().sequence_id.is_none() {
        let n = super::sequence::next(&store, ctx.pipeline().id())
            .map_err(|source| RunError::Sequence { source })?;
        ctx.set_sequence_id(n);
    }
    let exe = options.exe.clone().unwrap_or_else(sandbox::default_exe);
    if let Err(err) = sandbox::remove_stale(&store_dir.join("run"), &exe) {
        tracing::warn!(
            "could not remove stale sandbox state: {}",
            error_chain(&err)
        );
    }
    let run_dir = store_dir.join("runs").join(run_id(&ctx));
    let workspaces = match &options.workspace {
        Some(dir) => Workspaces::new(dir.clone(), true),
        None => Workspaces::new(run_dir.join("workspace"), false),
    };
    for dir in [&run_dir, &workspaces.root().to_path_buf()] {
        std::fs::create_dir_all(dir).map_err(|source| RunError::CreateDir {
            path: dir.clone(),
            source,
        })?;
    }
    // Until this run ends, `corral prune --runs` leaves its directory alone.
    let _run_lock = super::runs::lock(&run_dir).map_err(|source| RunError::CreateDir {
        path: run_dir.join("lock"),
        source,
    })?;
    let masker = ctx.masker();
    let events = match &options.events {
        Some(path) => Some(Arc::new(
            EventWriter::open(path, masker.clone())
                .map_err(|source| RunError::Events { source })?,
        )),
        None => None,
    };
    let stages: Vec<_> = ctx.stages().into_iter().cloned().collect();
    let batches = super::batch::batches(&stages);
    let mut labels: Vec<String> = Vec::new();
    for range in &batches {
        let at_once = super::batch::runs_at_once(&stages[range.clone()]);
        for stage in &stages[range.clone()] {
            if let Ok(sc) = ctx.stage(stage) {
                labels.extend(sc.step_hosts().into_iter().map(|(name, _)| {
                    if at_once {
                        super::logs::staged_label(&stage.id.value, &name)
                    } else {
                        name
                    }
                }));
            }
        }
    }
    let label_refs: Vec<&str> = labels.iter().map(String::as_str).collect();
    // `--events -` owns stdout: step output goes to stderr then.
    let out: Box<dyn std::io::Write + Send> = if options.events.as_deref() == Some(Path::new("-")) {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::io::stdout())
    };
    let terminal = Arc::new(TerminalSink::new(out, options.color, &label_refs));
    let settings = Settings {
        store_dir,
        store,
        registry: pull::registry_options(&config, options.offline),
        grace: config.run.grace_period.unwrap_or(DEFAULT_GRACE),
        network: options.network.unwrap_or(match config.run.network {
            Some(crate::cli::NetworkMode::None) => NetworkMode::None,
            Some(crate::cli::NetworkMode::Host) => NetworkMode::Host,
            _ => NetworkMode::Private,
        }),
        config,
        exe,
        quiet: options.quiet,
        progress: options.progress.clone(),
        masker: masker.clone(),
    };
    let shared = RunShared {
        settings: &settings,
        events,
        terminal,
        cancel: options.cancel.clone(),
        run_dir: run_dir.clone(),
        workspaces: workspaces.clone(),
        masker,
        deadline: ctx
            .pipeline()
            .timeout
            .map(|t| Deadline::after(begin, t, "pipeline")),
        stage_label: None,
    };
    shared.emit(Event::RunStarted {
        pipeline: ctx.pipeline().id().to_string(),
        file: ctx.pipeline().file.display().to_string(),
    });
    let mut results: Vec<StageResult> = Vec::new();
    // A `parallel:` stage group (or a looped stage's copies) runs at once.
    for range in batches {
        if shared.cancel.signal().is_some() {
            break;
        }
        let batch = &stages[range];
        if let Some(deadline) = shared.deadline.as_ref().filter(|d| d.passed()) {
            for stage in batch {
                results.push(stage::not_reached(&shared, &stage.id.value, deadline));
            }
            continue;
        }
        let failed = results
            .iter()
            .any(|r| matches!(r.status, StageStatus::Failed | StageStatus::Aborted));
        let aborted = results.iter().any(|r| r.status == StageStatus::Aborted);
        let contexts: Vec<_> = batch.iter().map(|stage| ctx.stage(stage)).collect();
        let outcomes = super::batch::run_batch(&shared, &contexts, batch, failed, aborted);
        for (stage, (result, outputs, statuses)) in batch.iter().zip(outcomes) {
            let steps: Vec<HarnessStatus> = statuses.values().map(|s| s.status).collect();
            let status = HarnessStatus::of_stage(&result, &steps);
            ctx.record_outputs(&stage.id.value, outputs);
            ctx.record_statuses(&stage.id.value, status, statuses);
            results.push(result);
        }
    }
    workspaces.finish(&ctx.options().execution_id);
    let interrupted = shared.cancel.signal();
    let exit_code = match interrupted {
        Some(sig) => 128 + u8::try_from(sig).unwrap_or(0).min(127),
        None => report::exit_code(&results),
    };
    shared.emit(Event::RunFinished {
        exit_code,
        duration_ms: begin.elapsed().as_millis() as u64,
    });
    Ok(RunReport {
        stages: results,
        run_dir,
        workspace: workspaces.root().to_path_buf(),
        per_stage_workspace: !workspaces.is_user_dir(),
        exit_code,
        interrupted,
    })
}

/// `YYYYMMDD-HHMMSS-<execution id prefix>`: sorts by time, unique enough.
fn run_id(ctx: &RunContext) -> String {
    let now = time::OffsetDateTime::now_utc();
    let exec: String = ctx.options().execution_id.chars().take(8).collect();
    format!(
        "{:04}{:02}{:02}-{:02}{:02}{:02}-{exec}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}
