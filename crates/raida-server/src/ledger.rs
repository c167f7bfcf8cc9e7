//! What the command handlers need from the data directory, as a trait: the coin store
//! in production ([`StoreLedger`]), an in-memory map in tests ([`MemoryLedger`]).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;
use raida_proto::consts::{is_coin_dn, AnsPerRaida, MAX_SN};
use raida_proto::keys::{FallibleKeyLookup, LookupFault};
use raida_proto::{CoinId, IdentityCoin, Key16};

/// One coin record to write: the coin, its new AN and MFS (the store's type).
pub use raida_store::CoinUpdate;

/// A read of the data directory failed (an I/O error such as EMFILE, a page file of the
/// wrong size): the thing looked up may well exist. Handlers answer 194 (197 for an
/// identity coin), never "not present" (34/25/40/0x00).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault(pub String);

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A durable write or the flush of the data directory failed (the text is the store's).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    #[error(transparent)]
    Store(#[from] raida_store::StoreError),
}

/// The data directory as the server sees it. Every read says found (`Ok(Some)`), absent
/// (`Ok(None)`) or could not tell (`Err(Fault)`).
pub trait Ledger: Send + Sync + 'static {
    /// AN of a present coin (DN -8..6, SN < 1,024,000, MFS != 0).
    fn coin_an(&self, coin: CoinId) -> Result<Option<Key16>, Fault>;
    fn locker_an(&self, prefix: &[u8; 5]) -> Result<Option<[u8; 16]>, Fault>;
    fn token_secret(&self, token: CoinId) -> Result<Option<[u8; 32]>, Fault>;
    fn raida_secret(&self, sender: u8, key_id: u32) -> Result<Option<[u8; 32]>, Fault>;
    /// The 25 ANs of this server's identity coin `coins/<dn>.<sn>.bin` if the file loads
    /// (440 bytes, zero bytes where zero is required, the configured coin id); `Ok(None)`
    /// when there is no such file or it does not load, `Err` when it could not be read.
    fn identity_coin(&self, coin: IdentityCoin) -> Result<Option<AnsPerRaida>, Fault>;
    /// Write coin records durably (returns once they survive a crash).
    fn write_coins(&self, updates: &[CoinUpdate]) -> Result<(), LedgerError>;
    /// (cached pages, dirty pages).
    fn page_stats(&self) -> (u64, u64);
    /// The page cache's and journal's counters, when the ledger is a data directory
    /// (`/metrics`); `None` for in-memory ledgers.
    fn store_stats(&self) -> Option<raida_store::StoreStats> {
        None
    }
    /// Write every dirty page (clean shutdown).
    fn flush(&self) -> Result<(), LedgerError>;
}

/// Adapts a [`Ledger`] to the protocol core's [`FallibleKeyLookup`]: a fault becomes
/// [`LookupFault`], which request validation answers with 194.
pub struct LedgerKeys<'a>(pub &'a dyn Ledger);

impl FallibleKeyLookup for LedgerKeys<'_> {
    fn try_coin_an(&self, coin: CoinId) -> Result<Option<[u8; 16]>, LookupFault> {
        Ok(self.0.coin_an(coin).map_err(|_| LookupFault)?.map(|an| *an.as_bytes()))
    }
    fn try_locker_an(&self, prefix: &[u8; 5]) -> Result<Option<[u8; 16]>, LookupFault> {
        self.0.locker_an(prefix).map_err(|_| LookupFault)
    }
    fn try_token_secret(&self, token: CoinId) -> Result<Option<[u8; 32]>, LookupFault> {
        self.0.token_secret(token).map_err(|_| LookupFault)
    }
    fn try_raida_secret(&self, sender: u8, key_id: u32) -> Result<Option<[u8; 32]>, LookupFault> {
        self.0.raida_secret(sender, key_id).map_err(|_| LookupFault)
    }
}

/// Logs a store fault and turns it into a [`Fault`]. At most one line a second: a peer
/// can repeat the request that hits a broken page as fast as it likes.
fn store_fault(e: raida_store::StoreError) -> Fault {
    static LAST_LOG_SEC: AtomicU64 = AtomicU64::new(0);
    static SUPPRESSED: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let last = LAST_LOG_SEC.load(Ordering::Relaxed);
    if now != last && LAST_LOG_SEC.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
        let suppressed = SUPPRESSED.swap(0, Ordering::Relaxed);
        tracing::error!(error = %e, suppressed, "data directory read failed (answered 194/197)");
    } else {
        SUPPRESSED.fetch_add(1, Ordering::Relaxed);
    }
    Fault(e.to_string())
}

/// The production ledger: a `raida_store::Store`.
pub struct StoreLedger {
    pub store: Arc<raida_store::Store>,
    pub coin_id: u16,
}

impl Ledger for StoreLedger {
    fn coin_an(&self, coin: CoinId) -> Result<Option<Key16>, Fault> {
        self.store.present_an(coin).map_err(store_fault)
    }
    // Lockers, key-token secrets and RAIDA secrets are tables read into memory at open:
    // looking one up cannot fail.
    fn locker_an(&self, prefix: &[u8; 5]) -> Result<Option<[u8; 16]>, Fault> {
        Ok(self.store.locker_by_prefix(prefix).map(|k| *k.as_bytes()))
    }
    fn token_secret(&self, token: CoinId) -> Result<Option<[u8; 32]>, Fault> {
        Ok(self.store.token_secret(token).map(|k| *k.as_bytes()))
    }
    fn raida_secret(&self, sender: u8, key_id: u32) -> Result<Option<[u8; 32]>, Fault> {
        Ok(self.store.raida_secret(sender, key_id).map(|k| *k.as_bytes()))
    }
    fn identity_coin(&self, coin: IdentityCoin) -> Result<Option<AnsPerRaida>, Fault> {
        match self.store.identity_coin(coin, self.coin_id) {
            Ok(ans) => Ok(Some(ans)),
            Err(e @ raida_store::StoreError::Io { .. }) => Err(store_fault(e)),
            Err(e) => {
                tracing::debug!(error = %e, "identity coin does not load");
                Ok(None)
            }
        }
    }
    fn write_coins(&self, updates: &[CoinUpdate]) -> Result<(), LedgerError> {
        Ok(self.store.set_many(updates)?)
    }
    fn store_stats(&self) -> Option<raida_store::StoreStats> {
        Some(self.store.stats())
    }
    fn page_stats(&self) -> (u64, u64) {
        let s = self.store.stats();
        (s.cached_pages as u64, s.dirty_pages as u64)
    }
    fn flush(&self) -> Result<(), LedgerError> {
        Ok(self.store.flush()?)
    }
}

/// Coin records: (AN, MFS).
pub type CoinMap = HashMap<CoinId, ([u8; 16], u8)>;
/// Identity coins: the 25 ANs.
pub type IdentityMap = HashMap<IdentityCoin, AnsPerRaida>;

/// A lookup of a [`MemoryLedger`] made to fail (tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultAt {
    Coin(CoinId),
    Locker([u8; 5]),
    Token(CoinId),
    RaidaSecret(u8, u32),
    Identity(IdentityCoin),
}

/// An in-memory ledger for tests and vectors.
#[derive(Default)]
pub struct MemoryLedger {
    pub coins: RwLock<CoinMap>,
    pub lockers: RwLock<Vec<[u8; 16]>>,
    pub tokens: RwLock<HashMap<CoinId, [u8; 32]>>,
    pub secrets: RwLock<HashMap<(u8, u32), [u8; 32]>>,
    pub identities: RwLock<IdentityMap>,
    /// Lookups that fail as an unreadable store would (see [`MemoryLedger::inject_fault`]).
    pub faults: RwLock<HashSet<FaultAt>>,
}

impl MemoryLedger {
    pub fn with_coins(coins: impl IntoIterator<Item = (impl Into<CoinId>, ([u8; 16], u8))>) -> Self {
        let l = MemoryLedger::default();
        l.coins.write().extend(coins.into_iter().map(|(coin, record)| (coin.into(), record)));
        l
    }
    /// A record regardless of presence.
    pub fn record(&self, coin: CoinId) -> Option<([u8; 16], u8)> {
        self.coins.read().get(&coin).copied()
    }
    /// From now on, looking up `at` fails with a [`Fault`] (whether or not it exists).
    pub fn inject_fault(&self, at: FaultAt) {
        self.faults.write().insert(at);
    }
    fn check(&self, at: FaultAt) -> Result<(), Fault> {
        if self.faults.read().contains(&at) {
            Err(Fault(format!("injected fault at {at:?}")))
        } else {
            Ok(())
        }
    }
}

impl Ledger for MemoryLedger {
    fn coin_an(&self, coin: CoinId) -> Result<Option<Key16>, Fault> {
        self.check(FaultAt::Coin(coin))?;
        if !is_coin_dn(coin.dn) || coin.sn >= MAX_SN {
            return Ok(None);
        }
        Ok(self.coins.read().get(&coin).filter(|(_, mfs)| *mfs != 0).map(|(an, _)| Key16::new(*an)))
    }
    fn locker_an(&self, prefix: &[u8; 5]) -> Result<Option<[u8; 16]>, Fault> {
        self.check(FaultAt::Locker(*prefix))?;
        Ok(self.lockers.read().iter().find(|a| a[..5] == prefix[..]).copied())
    }
    fn token_secret(&self, token: CoinId) -> Result<Option<[u8; 32]>, Fault> {
        self.check(FaultAt::Token(token))?;
        Ok(self.tokens.read().get(&token).copied())
    }
    fn raida_secret(&self, sender: u8, key_id: u32) -> Result<Option<[u8; 32]>, Fault> {
        self.check(FaultAt::RaidaSecret(sender, key_id))?;
        Ok(self.secrets.read().get(&(sender, key_id)).copied())
    }
    fn identity_coin(&self, coin: IdentityCoin) -> Result<Option<AnsPerRaida>, Fault> {
        self.check(FaultAt::Identity(coin))?;
        Ok(self.identities.read().get(&coin).copied())
    }
    fn write_coins(&self, updates: &[CoinUpdate]) -> Result<(), LedgerError> {
        let mut coins = self.coins.write();
        for u in updates {
            coins.insert(u.coin, (u.an, u.mfs));
        }
        Ok(())
    }
    fn page_stats(&self) -> (u64, u64) {
        (0, 0)
    }
    fn flush(&self) -> Result<(), LedgerError> {
        Ok(())
    }
}
