#[derive(clap::Subcommand)]
pub enum InboxCommand {}

pub fn run(cmd: InboxCommand) -> anyhow::Result<()> {
    match cmd {}
}
