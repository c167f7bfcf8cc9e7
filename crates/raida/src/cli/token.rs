#[derive(clap::Subcommand)]
pub enum TokenCommand {}

pub fn run(cmd: TokenCommand) -> anyhow::Result<()> {
    match cmd {}
}
