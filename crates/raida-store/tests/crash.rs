//! Crash test: a child process (this test binary re-executed with an environment variable)
//! does acknowledged updates from several threads and prints each one after `set` returned;
//! the parent kills it with SIGKILL at a random moment, then checks that every page file is
//! whole and every acknowledged update survived. Repeated 24 times on the same directory, so
//! later children also recover from earlier crashes, and four are killed as soon as they
//! start opening (recovering a journal the parent left); at least one such kill must land
//! before the store is open, which the test asserts.
//!
//! Seen failing with those early kills removed (every kill 60-460 ms in): 3 of 3 runs
//! ("no child was killed while opening"). Measured: 3 or 4 of the 4 land during recovery.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use raida_proto::CoinId;
use raida_store::*;
use rand_core::{OsRng, RngCore};

const CHILD_ENV: &str = "RAIDA_STORE_CRASH_CHILD_DIR";
const DNS: [i8; 2] = [-3, 4];
const PAGES: u32 = 12;
const THREADS: u32 = 4;
const ITERATIONS: usize = 24;

fn opts() -> StoreOptions {
    StoreOptions {
        // Far fewer cache pages than the 24 pages in use: dirty pages get evicted.
        cache_bytes: Some(1 << 20),
        segment_bytes: 64 << 10,
        checkpoint_bytes: 48 << 10,
        checkpoint_interval: Duration::from_millis(50),
    }
}

fn rand_u32() -> u32 {
    OsRng.next_u32()
}

/// The child: runs until killed (at most 30 s).
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    // The parent kills some children between these two lines: during recovery.
    println!("OPENING");
    let store = Store::open_with(Path::new(&dir), opts()).expect("child open");
    println!("OPENED");
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let start = Instant::now();
                while start.elapsed() < Duration::from_secs(30) {
                    let n = 1 + (rand_u32() % 3) as usize;
                    let mut batch = Vec::new();
                    for _ in 0..n {
                        let dn = DNS[(rand_u32() % 2) as usize];
                        // Thread t owns the serial numbers with sn % THREADS == t.
                        let sn = (rand_u32() % (PAGES * 1024 / THREADS)) * THREADS + t;
                        if batch.iter().any(|u: &CoinUpdate| u.coin == CoinId { dn, sn }) {
                            continue;
                        }
                        let mut an = [0u8; 16];
                        OsRng.fill_bytes(&mut an);
                        let mfs = 1 + (rand_u32() % 255) as u8;
                        batch.push(CoinUpdate { coin: CoinId { dn, sn }, an, mfs });
                    }
                    let line = |tag: &str, u: &CoinUpdate| {
                        format!("{tag} {} {} {} {}\n", u.coin.dn, u.coin.sn, hex::encode(u.an), u.mfs)
                    };
                    {
                        let mut out = std::io::stdout().lock();
                        for u in &batch {
                            out.write_all(line("TRY", u).as_bytes()).unwrap();
                        }
                        out.flush().unwrap();
                    }
                    if batch.len() == 1 {
                        let u = batch[0];
                        store.set(u.coin, u.an, u.mfs).unwrap();
                    } else {
                        store.set_many(&batch).unwrap();
                    }
                    let mut out = std::io::stdout().lock();
                    for u in &batch {
                        out.write_all(line("ACK", u).as_bytes()).unwrap();
                    }
                    out.flush().unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Rec {
    an: [u8; 16],
    mfs: u8,
}

fn parse(line: &str) -> Option<(&str, (i8, u32), Rec)> {
    let mut it = line.split_whitespace();
    let tag = it.next()?;
    let dn = it.next()?.parse().ok()?;
    let sn = it.next()?.parse().ok()?;
    let an = hex::decode(it.next()?).ok()?.try_into().ok()?;
    let mfs = it.next()?.parse().ok()?;
    Some((tag, (dn, sn), Rec { an, mfs }))
}

fn check_pages_whole(dir: &Path) {
    let mut n = 0;
    let mut stack = vec![dir.join("Data")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "bin") {
                assert_eq!(std::fs::metadata(&p).unwrap().len(), PAGE_BYTES as u64, "{}", p.display());
                n += 1;
            }
        }
    }
    assert_eq!(n, DNS.len() * PAGES as usize, "every page file present");
}

#[test]
fn kill_9_never_loses_acknowledged_updates() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("data");
    let mut o = InitOptions::new(2);
    o.pages = PAGES;
    o.denominations = DNS.to_vec();
    init_data_dir(&dir, o).unwrap();

    // Known state of every coin touched so far (verified after each crash).
    let mut state: HashMap<(i8, u32), Rec> = HashMap::new();
    {
        let store = Store::open_with(&dir, opts()).unwrap();
        for dn in DNS {
            for sn in 0..PAGES * 1024 {
                let r = store.get((dn, sn).into()).unwrap();
                state.insert((dn, sn), Rec { an: r.an, mfs: r.mfs });
            }
        }
    }
    let exe = std::env::current_exe().unwrap();
    let mut total_acks = 0usize;
    let mut kills_while_opening = 0;
    for iter in 0..ITERATIONS {
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads", "1"])
            .env(CHILD_ENV, &dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let (opening_tx, opening) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            let mut r = BufReader::new(stdout);
            let mut s = String::new();
            while r.read_line(&mut s).unwrap_or(0) > 0 {
                if s.ends_with('\n') {
                    if s.contains("OPENING") {
                        let _ = opening_tx.send(());
                    }
                    lines.push(std::mem::take(&mut s));
                } else {
                    break; // cut off by the kill
                }
            }
            lines
        });
        let err_reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        // Sometimes while the child is recovering: as soon as it says it is opening, after
        // a crash whose journal the parent left unreplayed (an odd iteration before);
        // usually later, while it writes.
        let during_recovery = iter % 6 == 2;
        let delay = if during_recovery {
            opening.recv_timeout(Duration::from_secs(10)).expect("the child never started opening");
            0
        } else {
            60 + rand_u32() % 400
        };
        std::thread::sleep(Duration::from_millis(delay as u64));
        let exited_early = child.try_wait().unwrap();
        assert!(exited_early.is_none(), "child exited by itself: {:?}\n{}", exited_early, err_reader.join().unwrap());
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let lines = reader.join().unwrap();
        let _ = err_reader.join();
        if lines.iter().any(|l| l.contains("OPENING")) && !lines.iter().any(|l| l.contains("OPENED")) {
            kills_while_opening += 1;
        }

        // Last acknowledged value and the pending (tried, unacknowledged) one per coin.
        let mut acked: HashMap<(i8, u32), Rec> = HashMap::new();
        let mut pending: HashMap<(i8, u32), Rec> = HashMap::new();
        for l in &lines {
            let Some((tag, k, r)) = parse(l) else {
                continue;
            };
            match tag {
                "TRY" => {
                    pending.insert(k, r);
                }
                "ACK" => {
                    acked.insert(k, r);
                    pending.remove(&k);
                    total_acks += 1;
                }
                _ => {}
            }
        }

        let t0 = Instant::now();
        check_pages_whole(&dir);
        let store = Store::open_with(&dir, opts()).unwrap();
        for (&k, _) in state.clone().iter() {
            let got = store.get((k.0, k.1).into()).unwrap();
            let got = Rec { an: got.an, mfs: got.mfs };
            let base = acked.get(&k).or(state.get(&k)).copied();
            let ok = Some(got) == base || Some(got) == pending.get(&k).copied();
            assert!(
                ok,
                "iteration {iter}: coin {k:?} is {got:?}, acknowledged {:?}, pending {:?}",
                acked.get(&k),
                pending.get(&k)
            );
            state.insert(k, got);
        }
        let t1 = t0.elapsed();
        // Alternate: sometimes leave the journal for the next child to recover.
        if iter % 2 == 0 {
            store.flush().unwrap();
            drop(store);
        } else {
            std::mem::forget(store);
            // The lock is released only when this process exits; drop it by hand instead:
            // forget keeps pages dirty in memory, the journal stays on disk.
            release_lock_for_test(&dir);
        }
        if std::env::var("CRASH_TIMING").is_ok() {
            eprintln!("iter {iter}: delay {delay} ms, {} lines, verify {t1:?}, total {:?}", lines.len(), t0.elapsed());
        }
    }
    eprintln!(
        "{ITERATIONS} kills, {total_acks} acknowledged updates checked, {kills_while_opening} kills while opening"
    );
    assert!(total_acks > 100, "too few updates were acknowledged: {total_acks}");
    // The kills meant for recovery must have hit it, or those iterations tested nothing new.
    assert!(kills_while_opening >= 1, "no child was killed while opening (recovering) the store");
}

/// `std::mem::forget` leaks the store with its lock file descriptor; close every descriptor
/// of this process that refers to DIR/.lock so a child can take the lock.
fn release_lock_for_test(dir: &Path) {
    let lock = std::fs::canonicalize(dir.join(LOCK_FILE)).unwrap();
    for e in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        if let Ok(target) = std::fs::read_link(e.path()) {
            if target == lock {
                if let Ok(fd) = e.file_name().to_string_lossy().parse::<i32>() {
                    // SAFETY: closing a descriptor owned by the leaked store, never used again.
                    unsafe { libc_close(fd) };
                }
            }
        }
    }
}

extern "C" {
    #[link_name = "close"]
    fn libc_close(fd: i32) -> i32;
}
