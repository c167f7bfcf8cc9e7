//! Store benchmarks (a plain bench binary; `harness = false`).
//!
//! `cargo bench -p raida-store --bench store_bench` runs every scenario, each in its own
//! process so that its peak memory is its own. The data directory (15 denominations × 1000
//! pages, 261 MB) is created once in `$RAIDA_BENCH_DIR` (default `$TMPDIR/raida-store-bench`).
//! `-- SCENARIO` runs one: reads-in-cache, reads-4x-cache, writes, writes-batched,
//! writes-4x-cache. `RAIDA_BENCH_SECS` sets the seconds per configuration (default 3).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use raida_store::*;

const CACHE_MIB: u64 = 64;
/// Seconds per configuration: `$RAIDA_BENCH_SECS`, default 3.
/// Let the worker threads run for the configured time, stop and join them; elapsed seconds.
fn run_then_stop(stop: &AtomicBool, handles: Vec<std::thread::JoinHandle<()>>) -> f64 {
    let t = Instant::now();
    std::thread::sleep(run_time());
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().expect("bench thread");
    }
    t.elapsed().as_secs_f64()
}

fn run_time() -> Duration {
    let secs = std::env::var("RAIDA_BENCH_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    Duration::from_secs(secs)
}

fn bench_dir() -> PathBuf {
    std::env::var_os("RAIDA_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("raida-store-bench"))
}

fn proc_status(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

fn ensure_data(dir: &Path) {
    if dir.join("config.toml").exists() {
        return;
    }
    eprintln!("creating {} (15 x 1000 pages)...", dir.display());
    let t = Instant::now();
    init_data_dir(dir, InitOptions::new(0)).expect("init bench dir");
    eprintln!("created in {:.1} s", t.elapsed().as_secs_f64());
}

fn open(dir: &Path) -> Arc<Store> {
    Store::open_with(dir, StoreOptions { cache_bytes: Some(CACHE_MIB << 20), ..Default::default() }).expect("open")
}

/// Random reads over `pages_per_dn` × `dns` pages with 1 and 2 threads.
fn reads(dir: &Path, dns: &[i8], pages_per_dn: u32, label: &str) {
    let rss0 = proc_status("VmRSS:");
    let store = open(dir);
    let sns = pages_per_dn * 1024;
    // Warm up: touch every page of the working set.
    for &dn in dns {
        for p in 0..pages_per_dn {
            let _ = store.get((dn, p * 1024).into());
        }
    }
    for threads in [1usize, 2] {
        let stop = Arc::new(AtomicBool::new(false));
        let total = Arc::new(AtomicU64::new(0));
        let loads0 = store.stats().page_loads;
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (store, stop, total) = (store.clone(), stop.clone(), total.clone());
                let dns = dns.to_vec();
                std::thread::spawn(move || {
                    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15 ^ ((t as u64 + 1) * 0x1234_5678));
                    let mut n = 0u64;
                    let mut acc = 0u8;
                    while !stop.load(Ordering::Relaxed) {
                        for _ in 0..1024 {
                            let r = rng.next();
                            let dn = dns[(r as usize >> 40) % dns.len()];
                            let sn = (r as u32) % sns;
                            if let Ok(rec) = store.get((dn, sn).into()) {
                                acc ^= rec.an[0];
                            }
                        }
                        n += 1024;
                    }
                    std::hint::black_box(acc);
                    total.fetch_add(n, Ordering::Relaxed);
                })
            })
            .collect();
        let secs = run_then_stop(&stop, handles);
        let n = total.load(Ordering::Relaxed) as f64;
        let st = store.stats();
        let loads = st.page_loads - loads0;
        println!(
            "{label}: {threads} thread(s): {:.2} M reads/s ({:.2} M/s per thread), miss rate {:.1}%, cached pages {} / {}",
            n / secs / 1e6,
            n / secs / 1e6 / threads as f64,
            loads as f64 * 100.0 / n,
            st.cached_pages,
            st.capacity_pages
        );
    }
    let rss = proc_status("VmRSS:");
    let hwm = proc_status("VmHWM:");
    println!(
        "{label}: memory: RSS before open {:.1} MiB, after {:.1} MiB (+{:.1} MiB), peak {:.1} MiB (+{:.1} MiB over the pre-open RSS); bound {CACHE_MIB} MiB",
        mib(rss0),
        mib(rss),
        mib(rss.saturating_sub(rss0)),
        mib(hwm),
        mib(hwm.saturating_sub(rss0))
    );
}

/// Durable single-record updates from several writer threads (group commit).
fn writes(dir: &Path, batch: usize, dns: &[i8], label: &str) {
    let rss0 = proc_status("VmRSS:");
    let store = open(dir);
    let configs: &[usize] = if batch == 1 { &[1, 4, 16, 64] } else { &[1, 4] };
    // Warm up: the working set in the cache.
    for &dn in dns {
        for p in 0..1000 {
            let _ = store.get((dn, p * 1024).into());
        }
    }
    for &threads in configs {
        let stop = Arc::new(AtomicBool::new(false));
        let total = Arc::new(AtomicU64::new(0));
        let s0 = store.stats();
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (store, stop, total) = (store.clone(), stop.clone(), total.clone());
                let dns = dns.to_vec();
                std::thread::spawn(move || {
                    let mut rng = XorShift(0xDEAD_BEEF_1234_5678 ^ ((t as u64 + 7) * 0x9E37));
                    let mut n = 0u64;
                    let mut v = Vec::with_capacity(batch);
                    while !stop.load(Ordering::Relaxed) {
                        v.clear();
                        for _ in 0..batch {
                            let r = rng.next();
                            let dn = dns[((r >> 40) as usize) % dns.len()];
                            let sn = (r as u32) % 1_024_000;
                            let mut an = [0u8; 16];
                            an[..8].copy_from_slice(&rng.next().to_le_bytes());
                            v.push(CoinUpdate { coin: (dn, sn).into(), an, mfs: 1 + (r >> 56) as u8 % 200 });
                        }
                        store.set_many(&v).expect("set");
                        n += batch as u64;
                    }
                    total.fetch_add(n, Ordering::Relaxed);
                })
            })
            .collect();
        let secs = run_then_stop(&stop, handles);
        let n = total.load(Ordering::Relaxed) as f64;
        let st = store.stats();
        let syncs = (st.journal_syncs - s0.journal_syncs).max(1) as f64;
        println!(
            "{label}, batch {batch}: {threads:>2} writer(s): {:>8.0} durable updates/s, {:.0} fdatasync/s, {:.1} updates per fdatasync, {} checkpoints",
            n / secs,
            syncs / secs,
            n / syncs,
            st.checkpoints - s0.checkpoints
        );
    }
    let st = store.stats();
    println!(
        "{label}, batch {batch}: cache: {} / {} pages, {} dirty, {} overlay records ({:.1} MiB), RSS {:.1} MiB",
        st.cached_pages,
        st.capacity_pages,
        st.dirty_pages,
        st.overlay_records,
        mib(st.overlay_bytes),
        mib(proc_status("VmRSS:"))
    );
    let t = Instant::now();
    store.flush().expect("flush");
    println!("{label}, batch {batch}: final flush {:.2} s", t.elapsed().as_secs_f64());
    let hwm = proc_status("VmHWM:");
    println!(
        "{label}, batch {batch}: memory: peak {:.1} MiB (+{:.1} MiB over the pre-open RSS); bound {CACHE_MIB} MiB",
        mib(hwm),
        mib(hwm.saturating_sub(rss0))
    );
}

fn run(scenario: &str, dir: &Path) {
    match scenario {
        // 3 denominations × 1000 pages = 3000 pages = 51 MiB of records: fits the cache.
        "reads-in-cache" => reads(dir, &[-8, -7, -6], 1000, "reads, working set in cache (3000 pages)"),
        // 15 × 1000 pages = 255 MiB ≈ 4× the 64 MiB cache.
        "reads-4x-cache" => {
            reads(dir, &(-8..=6).collect::<Vec<i8>>(), 1000, "reads, working set 4x cache (15000 pages)")
        }
        "writes" => writes(dir, 1, &[-8, -7, -6], "durable writes, working set in cache"),
        "writes-batched" => writes(dir, 16, &[-8, -7, -6], "durable writes, working set in cache"),
        "writes-4x-cache" => writes(dir, 1, &(-8..=6).collect::<Vec<i8>>(), "durable writes, working set 4x cache"),
        other => {
            eprintln!("unknown scenario {other}");
            std::process::exit(2);
        }
    }
}

fn main() {
    let dir = bench_dir();
    let scenarios = ["reads-in-cache", "reads-4x-cache", "writes", "writes-batched", "writes-4x-cache"];
    let chosen: Vec<String> = std::env::args().skip(1).filter(|a| scenarios.contains(&a.as_str())).collect();
    ensure_data(&dir);
    if std::env::var_os("RAIDA_BENCH_CHILD").is_some() {
        for s in &chosen {
            run(s, &dir);
        }
        return;
    }
    let list: Vec<String> = if chosen.is_empty() { scenarios.iter().map(|s| s.to_string()).collect() } else { chosen };
    let exe = std::env::current_exe().expect("current exe");
    for s in list {
        let st = std::process::Command::new(&exe).arg(&s).env("RAIDA_BENCH_CHILD", "1").status().expect("run scenario");
        assert!(st.success(), "scenario {s} failed");
    }
}
