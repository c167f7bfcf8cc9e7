#[derive(clap::Subcommand)]
pub enum LockerCommand {}

pub fn run(cmd: LockerCommand) -> anyhow::Result<()> {
    match cmd {}
}
