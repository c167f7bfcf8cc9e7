//! Typed errors of the data directory library.

use std::io;
use std::path::PathBuf;

/// Every error the store returns. `Display` is one line meant for an operator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// An I/O operation on `path` failed.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The data directory does not exist.
    #[error("no such data directory: {0}")]
    NoSuchDir(PathBuf),
    /// The directory exists but has no `config.toml`.
    #[error("{0} is not a RAIDA data directory (config.toml is missing)")]
    NotADataDir(PathBuf),
    /// `config.toml` could not be parsed or holds an invalid value.
    #[error("bad config {path}: {msg}")]
    Config { path: PathBuf, msg: String },
    /// Another process holds the data directory's lock file.
    #[error("data directory {0} is in use by another process (a running server holds its .lock); stop it first")]
    Locked(PathBuf),
    /// `raida init` target exists and is not empty.
    #[error("refusing to initialise {0}: it exists and is not an empty directory")]
    DirNotEmpty(PathBuf),
    /// A coin denomination outside -8..6.
    #[error("denomination {0} is outside -8..6")]
    BadDenomination(i8),
    /// A key-token denomination outside 7..11.
    #[error("denomination {0} is not a key-token denomination (7..11)")]
    BadTokenDenomination(i8),
    /// Serial number beyond the page range.
    #[error("serial number {0} is out of range (must be below 1024000)")]
    SnOutOfRange(u32),
    /// The page file holding a serial number does not exist.
    #[error("page file {path} is missing (serial number {sn} is not in this data directory)")]
    MissingPage { path: PathBuf, sn: u32 },
    /// A page file that is not exactly 1024 × 17 bytes.
    #[error("page file {path} is corrupt: {len} bytes, expected 17408")]
    BadPageSize { path: PathBuf, len: u64 },
    /// An identity coin file that does not exist.
    #[error("identity coin file {0} is missing")]
    MissingCoinFile(PathBuf),
    /// An identity coin file that does not load (size, header, coin id).
    #[error("identity coin file {path} does not load: {reason}")]
    BadCoinFile { path: PathBuf, reason: String },
    /// An identity coin file that already exists.
    #[error("identity coin file {0} already exists; refusing to overwrite it")]
    CoinFileExists(PathBuf),
    /// A secrets/lockers/tokens file whose size or content is wrong.
    #[error("corrupt file {path}: {reason}")]
    CorruptFile { path: PathBuf, reason: String },
    /// A second locker with the same 5-byte prefix.
    #[error("a locker with prefix {0} already exists")]
    DuplicateLocker(String),
    /// A RAIDA id above 24.
    #[error("RAIDA id {0} is above 24")]
    BadRaidaId(u8),
    /// An argument that makes no sense (init options, sizes...).
    #[error("{0}")]
    Invalid(String),
    /// A journal write or fsync failed earlier; the store refuses further updates.
    #[error("the store refuses updates after a journal failure: {0}")]
    JournalFailed(String),
    /// The operating system's random source failed.
    #[error("the OS random generator failed: {0}")]
    Random(String),
}

impl StoreError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        StoreError::Io { op, path: path.into(), source }
    }
}

/// Result alias of this crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
