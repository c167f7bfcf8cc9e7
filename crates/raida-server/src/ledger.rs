//! What the command handlers need from the data directory, as a trait: the coin store
//! in production ([`StoreLedger`]), an in-memory map in tests ([`MemoryLedger`]).

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;
use raida_proto::consts::{is_coin_dn, MAX_SN};
use raida_proto::keys::KeyLookup;

/// One coin record to write: (DN, SN, AN, MFS).
pub type CoinUpdate = (i8, u32, [u8; 16], u8);

/// The data directory as the server sees it.
pub trait Ledger: Send + Sync + 'static {
    /// AN of a present coin (DN -8..6, SN < 1,024,000, MFS != 0).
    fn coin_an(&self, dn: i8, sn: u32) -> Option<[u8; 16]>;
    fn locker_an(&self, prefix: &[u8; 5]) -> Option<[u8; 16]>;
    fn token_secret(&self, dn: i8, sn: u32) -> Option<[u8; 32]>;
    fn raida_secret(&self, sender: u8, key_id: u32) -> Option<[u8; 32]>;
    /// The 25 ANs of this server's identity coin `coins/<dn>.<sn>.bin`, if the file
    /// loads (440 bytes, zero bytes where zero is required, the configured coin id).
    fn identity_coin(&self, dn: i8, sn: u32) -> Option<[[u8; 16]; 25]>;
    /// Write coin records durably (returns once they survive a crash).
    fn write_coins(&self, updates: &[CoinUpdate]) -> Result<(), String>;
    /// (cached pages, dirty pages).
    fn page_stats(&self) -> (u64, u64);
    /// Write every dirty page (clean shutdown).
    fn flush(&self) -> Result<(), String>;
}

/// Adapts a [`Ledger`] to the protocol core's [`KeyLookup`].
pub struct LedgerKeys<'a>(pub &'a dyn Ledger);

impl KeyLookup for LedgerKeys<'_> {
    fn coin_an(&self, dn: i8, sn: u32) -> Option<[u8; 16]> {
        self.0.coin_an(dn, sn)
    }
    fn locker_an(&self, prefix: &[u8; 5]) -> Option<[u8; 16]> {
        self.0.locker_an(prefix)
    }
    fn token_secret(&self, dn: i8, sn: u32) -> Option<[u8; 32]> {
        self.0.token_secret(dn, sn)
    }
    fn raida_secret(&self, sender: u8, key_id: u32) -> Option<[u8; 32]> {
        self.0.raida_secret(sender, key_id)
    }
}

/// The production ledger: a `raida_store::Store`.
pub struct StoreLedger {
    pub store: Arc<raida_store::Store>,
    pub coin_id: u16,
}

impl Ledger for StoreLedger {
    fn coin_an(&self, dn: i8, sn: u32) -> Option<[u8; 16]> {
        self.store.present_an(dn, sn)
    }
    fn locker_an(&self, prefix: &[u8; 5]) -> Option<[u8; 16]> {
        self.store.locker_by_prefix(prefix)
    }
    fn token_secret(&self, dn: i8, sn: u32) -> Option<[u8; 32]> {
        self.store.token_secret(dn, sn)
    }
    fn raida_secret(&self, sender: u8, key_id: u32) -> Option<[u8; 32]> {
        self.store.raida_secret(sender, key_id)
    }
    fn identity_coin(&self, dn: i8, sn: u32) -> Option<[[u8; 16]; 25]> {
        self.store.identity_coin(dn, sn, self.coin_id).ok()
    }
    fn write_coins(&self, updates: &[CoinUpdate]) -> Result<(), String> {
        self.store.set_many(updates).map_err(|e| e.to_string())
    }
    fn page_stats(&self) -> (u64, u64) {
        let s = self.store.stats();
        (s.cached_pages as u64, s.dirty_pages as u64)
    }
    fn flush(&self) -> Result<(), String> {
        self.store.flush().map_err(|e| e.to_string())
    }
}

/// Coin records by (DN, SN): (AN, MFS).
pub type CoinMap = HashMap<(i8, u32), ([u8; 16], u8)>;
/// Identity coins by (DN, SN): the 25 ANs.
pub type IdentityMap = HashMap<(i8, u32), [[u8; 16]; 25]>;

/// An in-memory ledger for tests and vectors.
#[derive(Default)]
pub struct MemoryLedger {
    pub coins: RwLock<CoinMap>,
    pub lockers: RwLock<Vec<[u8; 16]>>,
    pub tokens: RwLock<HashMap<(i8, u32), [u8; 32]>>,
    pub secrets: RwLock<HashMap<(u8, u32), [u8; 32]>>,
    pub identities: RwLock<IdentityMap>,
}

impl MemoryLedger {
    pub fn with_coins(coins: impl IntoIterator<Item = ((i8, u32), ([u8; 16], u8))>) -> Self {
        let l = MemoryLedger::default();
        l.coins.write().extend(coins);
        l
    }
    /// A record regardless of presence.
    pub fn record(&self, dn: i8, sn: u32) -> Option<([u8; 16], u8)> {
        self.coins.read().get(&(dn, sn)).copied()
    }
}

impl Ledger for MemoryLedger {
    fn coin_an(&self, dn: i8, sn: u32) -> Option<[u8; 16]> {
        if !is_coin_dn(dn) || sn >= MAX_SN {
            return None;
        }
        self.coins.read().get(&(dn, sn)).filter(|(_, mfs)| *mfs != 0).map(|(an, _)| *an)
    }
    fn locker_an(&self, prefix: &[u8; 5]) -> Option<[u8; 16]> {
        self.lockers.read().iter().find(|a| a[..5] == prefix[..]).copied()
    }
    fn token_secret(&self, dn: i8, sn: u32) -> Option<[u8; 32]> {
        self.tokens.read().get(&(dn, sn)).copied()
    }
    fn raida_secret(&self, sender: u8, key_id: u32) -> Option<[u8; 32]> {
        self.secrets.read().get(&(sender, key_id)).copied()
    }
    fn identity_coin(&self, dn: i8, sn: u32) -> Option<[[u8; 16]; 25]> {
        self.identities.read().get(&(dn, sn)).copied()
    }
    fn write_coins(&self, updates: &[CoinUpdate]) -> Result<(), String> {
        let mut coins = self.coins.write();
        for &(dn, sn, an, mfs) in updates {
            coins.insert((dn, sn), (an, mfs));
        }
        Ok(())
    }
    fn page_stats(&self) -> (u64, u64) {
        (0, 0)
    }
    fn flush(&self) -> Result<(), String> {
        Ok(())
    }
}
