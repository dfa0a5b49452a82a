//! Command-line interface: clap structs only. `main.rs` turns them into calls
//! into the library; each area owns the args struct of its own subcommands.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// corral: run Harness CI pipelines in rootless Linux sandboxes, no daemon needed.
#[derive(Debug, Parser)]
#[command(name = "corral", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args, Clone)]
pub struct GlobalArgs {
    /// Config file (default: $XDG_CONFIG_HOME/corral/config.toml, then /etc/corral/config.toml).
    #[arg(long, global = true, env = "CORRAL_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Store directory for images and run state (default: $XDG_DATA_HOME/corral, /var/lib/corral for root).
    #[arg(long, global = true, env = "CORRAL_STORE", value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// More output (repeat for more). Given before the subcommand, because
    /// `exec -v` is a volume, as in docker.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Less output (repeat for less). Given before the subcommand.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub quiet: u8,
    /// When to use colors.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum NetworkMode {
    /// A new network namespace with `lo` (plus egress through pasta/slirp4netns when available).
    #[default]
    Private,
    /// A new network namespace with only `lo`, never any egress.
    None,
    /// The host's network namespace.
    Host,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a pipeline file and report every problem with its location.
    Validate(ValidateArgs),
    /// Run a pipeline (or show its resolved plan with --dry-run).
    Run(RunArgs),
    /// Pull images from a registry into the store.
    Pull(PullArgs),
    /// List images in the store.
    Images(ImagesArgs),
    /// Image commands: inspect, unpack.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Remove images from the store.
    Rmi(RmiArgs),
    /// Remove unreferenced blobs and layers from the store.
    Prune(PruneArgs),
    /// Import an image from an OCI layout, an oci-archive or a docker-save tar.
    Import(ImportArgs),
    /// Run a command from an image in fresh namespaces, like `docker run --rm`.
    Exec(ExecArgs),
    /// Show what this host allows and what corral will do here.
    Info(InfoArgs),
    /// Print shell completions.
    Completions(CompletionsArgs),
    /// Internal entry points of re-executed sandbox processes.
    #[command(name = "__sandbox", hide = true)]
    Sandbox(InternalArgs),
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Pipeline YAML file.
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Pipeline YAML file.
    pub file: PathBuf,
    /// Only run this stage (repeatable).
    #[arg(long = "stage", value_name = "ID")]
    pub stages: Vec<String>,
    /// Give a value to a variable or an `<+input>` (NAME=VALUE, repeatable).
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
    /// A secret: ID (from env var ID), ID=env:VAR or ID=file:PATH. Never a literal value.
    #[arg(long = "secret", value_name = "SPEC")]
    pub secrets: Vec<String>,
    /// Read secrets from a dotenv file.
    #[arg(long, value_name = "FILE")]
    pub secrets_file: Option<PathBuf>,
    /// Workspace directory mounted at /harness (default: a fresh directory kept after the run).
    #[arg(long, value_name = "DIR")]
    pub workspace: Option<PathBuf>,
    /// Network of each stage.
    #[arg(long, value_enum, default_value_t = NetworkMode::Private)]
    pub network: NetworkMode,
    #[command(flatten)]
    pub source: ImageSourceArgs,
    /// Write JSON-lines events to FILE (`-` for stdout).
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,
    /// Show the resolved plan of each stage and run nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Where images come from (`run`, and with a platform `pull` and `exec`).
#[derive(Debug, Args, Clone, Default)]
pub struct ImageSourceArgs {
    /// Mirror for a registry: REGISTRY=URL (repeatable).
    #[arg(long = "registry-mirror", value_name = "REGISTRY=URL")]
    pub registry_mirrors: Vec<String>,
    /// Allow plain HTTP to this registry (repeatable).
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registries: Vec<String>,
    /// Never touch the network; fail naming any missing image.
    #[arg(long)]
    pub offline: bool,
}

#[derive(Debug, Args, Clone, Default)]
pub struct RegistryArgs {
    #[command(flatten)]
    pub source: ImageSourceArgs,
    /// Platform to select from multi-arch images (os/arch[/variant]).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// Image references.
    #[arg(required = true)]
    pub images: Vec<String>,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Show an image's manifest digest, config and layers.
    Inspect(ImageInspectArgs),
    /// Write an image's flattened rootfs into a new directory.
    Unpack(ImageUnpackArgs),
}

#[derive(Debug, Args)]
pub struct ImageInspectArgs {
    pub image: String,
}

#[derive(Debug, Args)]
pub struct ImageUnpackArgs {
    pub image: String,
    /// Directory to create.
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct RmiArgs {
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Also remove the directories of finished runs in the store (their
    /// logs, and their workspaces unless `--workspace` was given).
    #[arg(long)]
    pub runs: bool,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// OCI layout directory, oci-archive tar or docker-save tar.
    pub path: PathBuf,
    /// Reference to store the image under.
    #[arg(long, value_name = "REF")]
    pub name: Option<String>,
}

#[derive(Debug, Args, Default)]
pub struct ExecArgs {
    /// Image reference (omit with --host-root or --rootfs).
    #[arg(required_unless_present_any = ["host_root", "rootfs"])]
    pub image: Option<String>,
    /// Command and arguments (default: the image's Entrypoint + Cmd).
    #[arg(last = true)]
    pub command: Vec<String>,
    /// Environment variable K=V (repeatable).
    #[arg(short = 'e', long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// Read environment variables from a file.
    #[arg(long, value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// Bind mount HOST:CTR[:ro] (repeatable).
    #[arg(short = 'v', long = "volume", value_name = "HOST:CTR[:ro]")]
    pub volumes: Vec<String>,
    /// Working directory inside the sandbox.
    #[arg(short = 'w', long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// USER[:GROUP] to run as (names from the image's /etc/passwd and /etc/group, or IDs).
    #[arg(short = 'u', long, value_name = "USER[:GROUP]")]
    pub user: Option<String>,
    /// Replace the image's Entrypoint (and its Cmd); "" clears it.
    #[arg(long, value_name = "CMD")]
    pub entrypoint: Option<String>,
    /// Network mode.
    #[arg(long, value_enum, default_value_t = NetworkMode::Private)]
    pub network: NetworkMode,
    /// Publish HOSTPORT:CTRPORT (TCP, repeatable).
    #[arg(short = 'p', long = "publish", value_name = "HOSTPORT:CTRPORT")]
    pub publish: Vec<String>,
    /// Hostname inside the sandbox.
    #[arg(long)]
    pub hostname: Option<String>,
    /// Mount the rootfs read-only.
    #[arg(long)]
    pub read_only: bool,
    /// Memory limit (e.g. 512m, 2g).
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<String>,
    /// CPU limit (e.g. 0.5, 2).
    #[arg(long, value_name = "N")]
    pub cpus: Option<String>,
    /// Run on the host's / (read-only, private /tmp) instead of an image.
    #[arg(long, conflicts_with_all = ["image", "rootfs"])]
    pub host_root: bool,
    /// Run a plain directory as the rootfs (overlaid, never written).
    #[arg(long, value_name = "DIR", conflicts_with = "image")]
    pub rootfs: Option<PathBuf>,
    /// Keep all capabilities inside (as root: full root).
    #[arg(long)]
    pub privileged: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct InternalArgs {
    /// Raw arguments, parsed by the sandbox module itself.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
