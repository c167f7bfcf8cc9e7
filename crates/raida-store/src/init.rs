//! `raida init`: a new data directory with config.toml and random page files.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;

use rand_core::{OsRng, RngCore};
use zeroize::Zeroize;

use crate::config::Config;
use crate::durable::{create_private_dir, fsync_dir, tighten_dir_mode, PRIVATE_DIR_MODE};
use crate::error::{Result, StoreError};
use crate::layout::*;

/// Options of [`init_data_dir`].
pub struct InitOptions {
    pub raida_id: u8,
    /// Default 6.
    pub coin_id: u16,
    /// `ADDR:PORT`; `None` = `0.0.0.0:<50000 + raida_id>`.
    pub listen: Option<String>,
    /// Pages per denomination, 1..=1000 (default 1000).
    pub pages: u32,
    /// Denominations to create (default all of -8..6).
    pub denominations: Vec<i8>,
    /// Called after each page with (pages written, total pages).
    pub progress: Option<Box<dyn FnMut(u64, u64)>>,
}

impl InitOptions {
    /// Defaults: coin id 6, default listen, 1000 pages of every denomination, no progress.
    pub fn new(raida_id: u8) -> InitOptions {
        InitOptions {
            raida_id,
            coin_id: 6,
            listen: None,
            pages: TOTAL_PAGES,
            denominations: all_denominations(),
            progress: None,
        }
    }
}

/// Creates a data directory: `config.toml` (random admin key), `pages` page files per listed
/// denomination with CSPRNG ANs and MFS 0, and the empty `coins/`, `Keys/`, `Inbox/`,
/// `Journal/` folders. Refuses an existing non-empty directory. `config.toml` is written
/// last, after every page is on disk. Every directory, `dir` itself included, is mode 0700.
pub fn init_data_dir(dir: &Path, mut opts: InitOptions) -> Result<Config> {
    if opts.raida_id > 24 {
        return Err(StoreError::BadRaidaId(opts.raida_id));
    }
    if opts.pages == 0 || opts.pages > TOTAL_PAGES {
        return Err(StoreError::Invalid(format!("pages must be 1..={TOTAL_PAGES}, not {}", opts.pages)));
    }
    let mut dns = opts.denominations.clone();
    dns.sort_unstable();
    dns.dedup();
    if dns.is_empty() {
        return Err(StoreError::Invalid("no denominations given".into()));
    }
    for dn in &dns {
        check_dn(*dn)?;
    }
    let mut config = Config::new(opts.raida_id)?;
    config.coin_id = opts.coin_id;
    if let Some(l) = &opts.listen {
        if l.parse::<std::net::SocketAddr>().is_err() {
            return Err(StoreError::Invalid(format!("listen address {l:?} is not ADDR:PORT")));
        }
        config.listen = l.clone();
    }

    match fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => {
            let mut rd = fs::read_dir(dir).map_err(|e| StoreError::io("cannot list", dir, e))?;
            if rd.next().is_some() {
                return Err(StoreError::DirNotEmpty(dir.to_path_buf()));
            }
            tighten_dir_mode(dir).map_err(|e| StoreError::io("cannot set the mode of", dir, e))?;
        }
        Ok(_) => return Err(StoreError::DirNotEmpty(dir.to_path_buf())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            create_private_dir(dir).map_err(|e| StoreError::io("cannot create", dir, e))?;
        }
        Err(e) => return Err(StoreError::io("cannot access", dir, e)),
    }

    let total = dns.len() as u64 * u64::from(opts.pages);
    let mut done = 0u64;
    let mut buf = vec![0u8; PAGE_BYTES];
    for dn in &dns {
        for page in 0..opts.pages {
            let rel = page_rel_path(*dn, page);
            let path = dir.join(&rel);
            if page % 256 == 0 {
                if let Some(parent) = path.parent() {
                    // fsynced below by sync_tree, with every other new entry
                    DirBuilder::new()
                        .recursive(true)
                        .mode(PRIVATE_DIR_MODE)
                        .create(parent)
                        .map_err(|e| StoreError::io("cannot create", parent, e))?;
                }
            }
            OsRng.try_fill_bytes(&mut buf).map_err(|e| StoreError::Random(e.to_string()))?;
            for r in 0..RECORDS_PER_PAGE as usize {
                buf[r * RECORD_BYTES + 16] = 0;
            }
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| StoreError::io("cannot create", &path, e))?;
            f.write_all(&buf).map_err(|e| StoreError::io("cannot write", &path, e))?;
            done += 1;
            if let Some(cb) = opts.progress.as_mut() {
                cb(done, total);
            }
        }
    }
    buf.zeroize();
    for sub in ["coins", "Keys", "Inbox", crate::store::JOURNAL_DIR] {
        let p = dir.join(sub);
        DirBuilder::new()
            .recursive(true)
            .mode(PRIVATE_DIR_MODE)
            .create(&p)
            .map_err(|e| StoreError::io("cannot create", &p, e))?;
    }
    // a umask cannot widen 0700, but a directory made by someone else in between could be wider
    secure_dir_modes(dir)?;
    sync_tree(dir)?;
    config.save(dir)?;
    Ok(config)
}

/// Gives every directory of the data directory `dir` mode 0700 (PROTOCOL.md section 7):
/// `dir` itself, each directory in it, and every directory under `Data/`. `Keys/`, `Inbox/`,
/// `coins/` and `Journal/` hold only files and are not listed (`Keys/` may hold a million).
/// Wider modes (an older version, a hand-made folder) are tightened and logged.
/// Called by `init` and by `Store::open`.
pub(crate) fn secure_dir_modes(dir: &Path) -> Result<()> {
    let tighten = |p: &Path| tighten_dir_mode(p).map_err(|e| StoreError::io("cannot set the mode of", p, e));
    tighten(dir)?;
    let rd = fs::read_dir(dir).map_err(|e| StoreError::io("cannot list", dir, e))?;
    for ent in rd {
        let ent = ent.map_err(|e| StoreError::io("cannot list", dir, e))?;
        // file_type does not follow symbolic links: a link is not one of our directories
        if !ent.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            continue;
        }
        let path = ent.path();
        if ent.file_name() == "Data" {
            tighten_tree(&path)?;
        } else {
            tighten(&path)?;
        }
    }
    Ok(())
}

fn tighten_tree(dir: &Path) -> Result<()> {
    tighten_dir_mode(dir).map_err(|e| StoreError::io("cannot set the mode of", dir, e))?;
    let rd = fs::read_dir(dir).map_err(|e| StoreError::io("cannot list", dir, e))?;
    for ent in rd {
        let ent = ent.map_err(|e| StoreError::io("cannot list", dir, e))?;
        if ent.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            tighten_tree(&ent.path())?;
        }
    }
    Ok(())
}

/// Makes every file written above durable: one syncfs of the file system on Linux, then
/// an fsync of each directory.
fn sync_tree(dir: &Path) -> Result<()> {
    let f = fs::File::open(dir).map_err(|e| StoreError::io("cannot open", dir, e))?;
    // SAFETY: syncfs on a descriptor we own.
    let r = unsafe { libc::syncfs(f.as_raw_fd()) };
    if r != 0 {
        return Err(StoreError::io("cannot sync", dir, std::io::Error::last_os_error()));
    }
    fsync_all_dirs(dir)?;
    if let Some(parent) = dir.parent() {
        if !parent.as_os_str().is_empty() {
            fsync_dir(parent).map_err(|e| StoreError::io("cannot fsync", parent, e))?;
        }
    }
    Ok(())
}

fn fsync_all_dirs(dir: &Path) -> Result<()> {
    let rd = fs::read_dir(dir).map_err(|e| StoreError::io("cannot list", dir, e))?;
    for ent in rd {
        let ent = ent.map_err(|e| StoreError::io("cannot list", dir, e))?;
        if ent.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            fsync_all_dirs(&ent.path())?;
        }
    }
    fsync_dir(dir).map_err(|e| StoreError::io("cannot fsync", dir, e))
}
