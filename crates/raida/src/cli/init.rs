#[derive(clap::Args)]
pub struct InitArgs {}

pub fn run(_args: InitArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
