#[derive(clap::Subcommand)]
pub enum SecretCommand {}

pub fn run(cmd: SecretCommand) -> anyhow::Result<()> {
    match cmd {}
}
