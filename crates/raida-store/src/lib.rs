//! The RAIDA data directory (PROTOCOL.md section 7).
//!
//! * [`Store`]: coin records in page files behind an on-demand page cache with a memory
//!   bound, one lock per page; updates are durable through a group-commit write-ahead journal
//!   and pages are checkpointed with temp file + fsync + rename (never torn).
//! * identity coins, lockers, key-token secrets and RAIDA pre-shared secrets.
//! * the coin file format (`<DN 2 hex>.<SN>.bin`, 440 bytes: [`layout`]) and [`wallet`], a
//!   user's coin in that format: one code for a server's identity coin and a user's wallet.
//! * the files of `Keys/` ([`keys_dir`]: pending key parts) and `Inbox/` ([`inbox`]:
//!   assembled keys); the server keeps their in-memory indexes and bounds.
//! * [`Config`] (`config.toml`), [`init_data_dir`], and [`durable`] file helpers.

pub mod config;
pub mod durable;
mod error;
pub mod inbox;
mod init;
mod journal;
pub mod keys_dir;
pub mod layout;
mod page_cache;
mod store;
mod tables;
pub mod wallet;

pub use config::{Config, IdentityConfig, KeyServer, CONFIG_FILE, ENV_PREFIX};
pub use error::{Result, StoreError};
pub use init::{init_data_dir, InitOptions};
pub use journal::{FaultInjector, BATCH_SIZE_BUCKETS};
pub use layout::{
    coin_file_name, decode_identity_coin, encode_identity_coin, identity_coin_rel_path, mfs_for_unix_time, mfs_now,
    page_path_for_sn, page_rel_path, parse_coin_file_name, IDENTITY_COIN_BYTES, MAX_SN, PAGE_BYTES, RECORDS_PER_PAGE,
    RECORD_BYTES, TOTAL_PAGES,
};
pub use store::{CoinRecord, CoinUpdate, Store, StoreOptions, StoreStats, JOURNAL_DIR, LOCK_FILE};
