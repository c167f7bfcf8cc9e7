//! `raida init DIR --raida-id N [--coin-id C] [--listen ADDR:PORT] [--pages P] [--denominations LIST]`

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use raida_store::{init_data_dir, InitOptions};

use super::coin::{parse_dn, parse_num};

#[derive(clap::Args)]
pub(crate) struct InitArgs {
    /// Data directory to create (must not exist, or be empty).
    pub dir: PathBuf,
    /// This server's RAIDA id, 0..24.
    #[arg(long, value_name = "N")]
    pub raida_id: String,
    /// Coin id (default 6).
    #[arg(long, value_name = "C")]
    pub coin_id: Option<String>,
    /// Listen address (default 0.0.0.0:50000+N).
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<String>,
    /// Pages of 1024 coins per denomination, 1..1000 (default 1000).
    #[arg(long, value_name = "P")]
    pub pages: Option<String>,
    /// Comma-separated denominations, e.g. `-1,0,1` (default all of -8..6).
    #[arg(long, value_name = "LIST", allow_hyphen_values = true)]
    pub denominations: Option<String>,
}

pub(crate) fn run(args: InitArgs) -> anyhow::Result<()> {
    let raida_id: u8 = parse_num(&args.raida_id, "RAIDA id")?;
    anyhow::ensure!(raida_id <= 24, "RAIDA id {raida_id} is above 24");
    let mut opts = InitOptions::new(raida_id);
    if let Some(c) = &args.coin_id {
        opts.coin_id = parse_num(c, "coin id")?;
    }
    if let Some(p) = &args.pages {
        opts.pages = parse_num(p, "page count")?;
    }
    if let Some(list) = &args.denominations {
        opts.denominations = list.split(',').map(|s| parse_dn(s.trim())).collect::<anyhow::Result<Vec<i8>>>()?;
    }
    opts.listen = args.listen.clone();

    // A progress bar that appears only when the work takes longer than a second.
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
    if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos}/{len} pages {elapsed} (eta {eta})") {
        bar.set_style(style);
    }
    let start = Instant::now();
    let b = bar.clone();
    let mut shown = false;
    opts.progress = Some(Box::new(move |done, total| {
        if done == 1 {
            b.set_length(total);
        }
        if !shown && start.elapsed() > Duration::from_secs(1) {
            shown = true;
            b.set_draw_target(ProgressDrawTarget::stderr());
        }
        if done % 64 == 0 || done == total {
            b.set_position(done);
        }
    }));
    let pages = opts.pages;
    let dns = opts.denominations.len();
    let result = init_data_dir(&args.dir, opts);
    bar.finish_and_clear();
    let config = result.with_context(|| format!("init {}", args.dir.display()))?;
    println!(
        "created {}: raida id {}, coin id {}, listen {}, {} page(s) x {} denomination(s)",
        args.dir.display(),
        config.raida_id,
        config.coin_id,
        config.listen,
        pages,
        dns
    );
    Ok(())
}
