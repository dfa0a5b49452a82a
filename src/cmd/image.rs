use std::process::ExitCode;

use corral::cli::{
    GlobalArgs, ImageInspectArgs, ImageUnpackArgs, ImagesArgs, ImportArgs, PruneArgs, PullArgs,
    RmiArgs,
};

pub fn pull(_global: &GlobalArgs, _args: PullArgs) -> anyhow::Result<ExitCode> {
    super::not_yet("pull")
}
pub fn images(_global: &GlobalArgs, _args: ImagesArgs) -> anyhow::Result<ExitCode> {
    super::not_yet("images")
}
pub fn inspect(_global: &GlobalArgs, _args: ImageInspectArgs) -> anyhow::Result<ExitCode> {
    super::not_yet("image inspect")
}
pub fn unpack(_global: &GlobalArgs, _args: ImageUnpackArgs) -> anyhow::Result<ExitCode> {
    super::not_yet("image unpack")
}
pub fn rmi(_global: &GlobalArgs, _args: RmiArgs) -> anyhow::Result<ExitCode> {
    super::not_yet("rmi")
}
pub fn prune(_global: &GlobalArgs, _args: PruneArgs) -> anyhow::Result<ExitCode> {
    super::not_yet("prune")
}
pub fn import(_global: &GlobalArgs, _args: ImportArgs) -> anyhow::Result<ExitCode> {
    super::not_yet("import")
}
