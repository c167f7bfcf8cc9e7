//! What every harness needs: a cursor that turns the fuzzer's bytes into choices (never
//! failing: an exhausted input reads as zeros) and per-process scratch directories on tmpfs.
//!
//! The harness files are also compiled into the stable test suites with `#[path]`
//! (`crates/*/tests/fuzz_corpus.rs`), so they use only std and the crate under test.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Reads choices from the fuzz input, front to back.
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    pub fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes(self.array())
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_be_bytes(self.array())
    }

    pub fn u64(&mut self) -> u64 {
        u64::from_be_bytes(self.array())
    }

    /// `N` bytes, zero-padded when the input runs out.
    pub fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let n = N.min(self.data.len());
        out[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        out
    }

    /// Up to `n` bytes (fewer when the input runs out).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head
    }

    /// A length (u16, at most `max`) followed by that many bytes.
    pub fn sized(&mut self, max: usize) -> &'a [u8] {
        let n = self.u16() as usize % (max + 1);
        self.bytes(n)
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }

    /// One of `items`, chosen by the next byte.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.u8() as usize % items.len()]
    }
}

/// 1-4 changes to built bytes: flip bits, truncate, append, overwrite a range.
pub fn tamper(packet: &mut Vec<u8>, inp: &mut Input) {
    let n = inp.u8() % 4 + 1;
    for _ in 0..n {
        let op = inp.u8();
        let pos = if packet.is_empty() { 0 } else { inp.u16() as usize % packet.len() };
        match op % 4 {
            0 => {
                if let Some(b) = packet.get_mut(pos) {
                    *b ^= inp.u8() | 1;
                }
            }
            1 => packet.truncate(pos),
            2 => {
                let n = inp.u8() as usize;
                packet.extend_from_slice(inp.bytes(n));
            }
            _ => {
                let src = inp.bytes(16);
                for (d, s) in packet.iter_mut().skip(pos).zip(src) {
                    *d = *s;
                }
            }
        }
    }
}

/// `RAIDA_FUZZ_DEBUG=1`: print each request's answer (to see what a seed reaches).
pub fn debug() -> bool {
    static DEBUG: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *DEBUG.get_or_init(|| std::env::var_os("RAIDA_FUZZ_DEBUG").is_some())
}

static SCRATCH_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh, empty scratch directory for `what`: on tmpfs (`/dev/shm`) when there is one,
/// else in the temp dir; unique per process and call. Directories left by fuzzing
/// processes that no longer run are removed on the way.
pub fn scratch_dir(what: &str) -> PathBuf {
    let base = if Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
    remove_stale(&base);
    let n = SCRATCH_COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = base.join(format!("raida-fuzz-{}-{what}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn remove_stale(base: &Path) {
    let Ok(rd) = std::fs::read_dir(base) else { return };
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name.strip_prefix("raida-fuzz-") else { continue };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else { continue };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Empties `dir` (keeps the directory itself).
pub fn clear_dir(dir: &Path) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                let _ = std::fs::remove_dir_all(&p);
            } else {
                let _ = std::fs::remove_file(&p);
            }
        }
    }
}

/// Replays every committed seed (`seed-*`) of `fuzz/corpus/<target>` through `run`
/// (the stable test suites). Returns how many files ran; panics when there are none.
pub fn replay_seeds(corpus_root: &Path, target: &str, mut run: impl FnMut(&[u8])) -> usize {
    let dir = corpus_root.join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("seed-")))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no seed-* files in {}", dir.display());
    for f in &files {
        let bytes = std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        eprintln!("replaying {}", f.display());
        run(&bytes);
    }
    files.len()
}
