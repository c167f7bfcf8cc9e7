#[derive(clap::Subcommand)]
pub enum CoinCommand {}

pub fn run(cmd: CoinCommand) -> anyhow::Result<()> {
    match cmd {}
}
