//! Faults are faults: a page that cannot be read is an error, never "coin not present";
//! a transient journal write error is retried; an update whose fsync failed is reported
//! and does not stay visible (nor come back after a restart).

use raida_proto::CoinId;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::sync::Arc;

use raida_store::*;

fn small_store() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("data");
    let mut o = InitOptions::new(1);
    o.pages = 2;
    o.denominations = vec![0, 1];
    init_data_dir(&d, o).unwrap();
    (t, d)
}

/// Fails the next `*_left` calls of each operation with its errno; counts every call.
#[derive(Default)]
struct Faults {
    write_left: AtomicU32,
    write_errno: AtomicI32,
    writes: AtomicU32,
    sync_left: AtomicU32,
    sync_errno: AtomicI32,
    syncs: AtomicU32,
    page_left: AtomicU32,
    page_errno: AtomicI32,
}

fn take(left: &AtomicU32, errno: &AtomicI32) -> io::Result<()> {
    match left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)) {
        Ok(_) => Err(io::Error::from_raw_os_error(errno.load(Ordering::SeqCst))),
        Err(_) => Ok(()),
    }
}

impl FaultInjector for Faults {
    fn journal_write(&self) -> io::Result<()> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        take(&self.write_left, &self.write_errno)
    }
    fn journal_sync(&self) -> io::Result<()> {
        self.syncs.fetch_add(1, Ordering::SeqCst);
        take(&self.sync_left, &self.sync_errno)
    }
    fn page_read(&self) -> io::Result<()> {
        take(&self.page_left, &self.page_errno)
    }
}

fn open_faulty(d: &Path) -> (Arc<Store>, Arc<Faults>) {
    let faults = Arc::new(Faults::default());
    let s = Store::open_with_faults(d, StoreOptions::default(), faults.clone()).unwrap();
    (s, faults)
}

#[test]
fn unreadable_page_is_a_fault_not_an_absent_coin() {
    let (_t, d) = small_store();
    {
        let s = Store::open(&d).unwrap();
        s.set((1, 5).into(), [7; 16], 3).unwrap();
    }
    // The page file of DN 1, SN 0..1023 exists but cannot be read as a page.
    let page = d.join(page_rel_path(1, 0));
    fs::remove_file(&page).unwrap();
    fs::create_dir(&page).unwrap();
    let s = Store::open(&d).unwrap();
    assert!(s.present_an(CoinId { dn: 1, sn: 5 }).is_err(), "an unreadable page is not an absent coin");
    // Absent stays absent: no page file, out of range, MFS 0.
    assert_eq!(s.present_an(CoinId { dn: 0, sn: 5000 }).unwrap().map(|k| *k.as_bytes()), None);
    assert_eq!(s.present_an(CoinId { dn: 1, sn: 1_024_000 }).unwrap().map(|k| *k.as_bytes()), None);
    assert_eq!(s.present_an(CoinId { dn: 9, sn: 5 }).unwrap().map(|k| *k.as_bytes()), None);
    assert_eq!(s.present_an(CoinId { dn: 1, sn: 1024 + 5 }).unwrap().map(|k| *k.as_bytes()), None);
}

#[test]
fn out_of_descriptors_while_loading_a_page_is_a_fault() {
    let (_t, d) = small_store();
    {
        let s = Store::open(&d).unwrap();
        s.set((1, 5).into(), [7; 16], 3).unwrap();
    }
    let (s, faults) = open_faulty(&d);
    faults.page_errno.store(libc::EMFILE, Ordering::SeqCst);
    faults.page_left.store(1, Ordering::SeqCst);
    let e = s.present_an(CoinId { dn: 1, sn: 5 }).unwrap_err();
    assert!(matches!(&e, StoreError::Io { source, .. } if source.raw_os_error() == Some(libc::EMFILE)), "{e}");
    // The next read (descriptors available again) finds the coin.
    assert_eq!(s.present_an(CoinId { dn: 1, sn: 5 }).unwrap().map(|k| *k.as_bytes()), Some([7; 16]));
}

#[test]
fn transient_journal_write_errors_are_retried() {
    let (_t, d) = small_store();
    {
        let (s, faults) = open_faulty(&d);
        // A new segment, then a write into the current one: both retried.
        for (sn, errno) in [(5u32, libc::EMFILE), (6, libc::EINTR), (7, libc::ENOSPC), (8, libc::EAGAIN)] {
            faults.write_errno.store(errno, Ordering::SeqCst);
            faults.write_left.store(2, Ordering::SeqCst);
            let before = faults.writes.load(Ordering::SeqCst);
            s.set((1, sn).into(), [sn as u8; 16], 3).unwrap();
            assert_eq!(faults.writes.load(Ordering::SeqCst) - before, 3, "errno {errno}: two failures, then success");
            assert_eq!(s.present_an(CoinId { dn: 1, sn }).unwrap().map(|k| *k.as_bytes()), Some([sn as u8; 16]));
        }
        // Bounded: a transient error that does not go away fails the update after the retries.
        faults.write_errno.store(libc::EMFILE, Ordering::SeqCst);
        faults.write_left.store(u32::MAX, Ordering::SeqCst);
        let before = faults.writes.load(Ordering::SeqCst);
        assert!(s.set((1, 9).into(), [9; 16], 3).is_err());
        let tries = faults.writes.load(Ordering::SeqCst) - before;
        assert!((6..=8).contains(&tries), "1 try + 5 retries (+ the erase attempt), got {tries}");
        assert_eq!(
            s.present_an(CoinId { dn: 1, sn: 9 }).unwrap().map(|k| *k.as_bytes()),
            None,
            "the failed update is not visible"
        );
    }
    let s = Store::open(&d).unwrap();
    for sn in 5..=8u32 {
        assert_eq!(
            s.present_an(CoinId { dn: 1, sn }).unwrap().map(|k| *k.as_bytes()),
            Some([sn as u8; 16]),
            "acknowledged update {sn} survives"
        );
    }
    assert_eq!(s.present_an(CoinId { dn: 1, sn: 9 }).unwrap().map(|k| *k.as_bytes()), None);
}

#[test]
fn failed_fsync_is_reported_and_not_visible() {
    let (_t, d) = small_store();
    let (a, b, c) = ([0xA; 16], [0xB; 16], [0xC; 16]);
    let other_before;
    {
        let (s, faults) = open_faulty(&d);
        s.set((1, 5).into(), a, 3).unwrap();
        other_before = s.get((0, 700).into()).unwrap();
        faults.sync_errno.store(libc::EIO, Ordering::SeqCst);
        faults.sync_left.store(1, Ordering::SeqCst);
        // One batch: a coin written twice and a coin on another page.
        let e = s
            .set_many(&[
                CoinUpdate { coin: CoinId { dn: 1, sn: 5 }, an: b, mfs: 4 },
                CoinUpdate { coin: CoinId { dn: 1, sn: 5 }, an: c, mfs: 5 },
                CoinUpdate { coin: CoinId { dn: 0, sn: 700 }, an: c, mfs: 6 },
            ])
            .unwrap_err();
        assert!(matches!(e, StoreError::JournalFailed(_)), "{e}");
        assert_eq!(s.get((1, 5).into()).unwrap(), CoinRecord { an: a, mfs: 3 }, "the previous AN is visible again");
        assert_eq!(s.get((0, 700).into()).unwrap(), other_before);
        // After a failed fsync nothing more is acknowledged (the disk's state is unknown).
        assert!(s.set((1, 6).into(), b, 3).is_err());
        assert_eq!(s.get((1, 5).into()).unwrap().an, a);
    }
    // A restart does not bring the failed batch back (its bytes were erased).
    let s = Store::open(&d).unwrap();
    assert_eq!(s.get((1, 5).into()).unwrap(), CoinRecord { an: a, mfs: 3 });
    assert_eq!(s.get((0, 700).into()).unwrap(), other_before);
}

#[test]
fn failed_fsync_rolls_back_pages_evicted_meanwhile() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("data");
    let mut o = InitOptions::new(1);
    o.pages = 24;
    o.denominations = vec![0];
    init_data_dir(&d, o).unwrap();
    let faults = Arc::new(Faults::default());
    // The smallest cache (16 pages): a batch over 24 pages evicts some of them (their
    // changes move to the overlay) before its fsync fails.
    let opts = StoreOptions { cache_bytes: Some(1 << 20), ..Default::default() };
    let s = Store::open_with_faults(&d, opts, faults.clone()).unwrap();
    let before: Vec<CoinRecord> = (0..24u32).map(|p| s.get((0, p * 1024 + 3).into()).unwrap()).collect();
    faults.sync_errno.store(libc::EIO, Ordering::SeqCst);
    faults.sync_left.store(1, Ordering::SeqCst);
    let batch: Vec<CoinUpdate> =
        (0..24u32).map(|p| CoinUpdate { coin: CoinId { dn: 0, sn: p * 1024 + 3 }, an: [0xEE; 16], mfs: 9 }).collect();
    assert!(s.set_many(&batch).is_err());
    assert!(s.stats().evictions > 0, "the batch evicted pages");
    for (p, b) in before.iter().enumerate() {
        assert_eq!(s.get((0, p as u32 * 1024 + 3).into()).unwrap(), *b, "page {p}");
    }
}

#[test]
fn failed_fsync_under_concurrent_writers_leaves_the_last_acknowledged_values() {
    let (_t, d) = small_store();
    let (s, faults) = open_faulty(&d);
    faults.sync_errno.store(libc::EIO, Ordering::SeqCst);
    // Fail the 40th fsync: some batches before it are acknowledged, the rest fail.
    let syncs = faults.syncs.load(Ordering::SeqCst);
    let armed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let threads: Vec<_> = (0..4u32)
        .map(|t| {
            let (s, faults, armed) = (s.clone(), faults.clone(), armed.clone());
            std::thread::spawn(move || {
                // Coins of all threads share the same two pages.
                let coins = [(1i8, t), (1, 1024 + t)];
                let mut acked = coins.map(|c| s.get((c.0, c.1).into()).unwrap());
                for i in 1..=200u32 {
                    if faults.syncs.load(Ordering::SeqCst) >= syncs + 40 && !armed.swap(true, Ordering::SeqCst) {
                        faults.sync_left.store(1, Ordering::SeqCst);
                    }
                    let rec = CoinRecord { an: [(t * 50 + i % 50) as u8; 16], mfs: (i % 200 + 1) as u8 };
                    let c = coins[(i % 2) as usize];
                    match s.set((c.0, c.1).into(), rec.an, rec.mfs) {
                        Ok(()) => acked[(i % 2) as usize] = rec,
                        Err(_) => break,
                    }
                }
                (coins, acked)
            })
        })
        .collect();
    for h in threads {
        let (coins, acked) = h.join().unwrap();
        for (c, a) in coins.iter().zip(acked) {
            assert_eq!(s.get((c.0, c.1).into()).unwrap(), a, "coin {c:?} shows its last acknowledged value");
        }
    }
    assert!(armed.load(Ordering::SeqCst), "the fault was injected");
}
