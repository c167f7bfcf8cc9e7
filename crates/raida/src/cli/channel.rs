#[derive(clap::Subcommand)]
pub enum ChannelCommand {}

pub fn run(cmd: ChannelCommand) -> anyhow::Result<()> {
    match cmd {}
}
