#[derive(clap::Subcommand)]
pub enum IdentityCommand {}

pub fn run(cmd: IdentityCommand) -> anyhow::Result<()> {
    match cmd {}
}
