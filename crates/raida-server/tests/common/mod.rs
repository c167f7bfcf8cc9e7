//! Shared helpers of the server tests: an in-memory server state with a settable clock,
//! and a server on a loopback socket around it.

#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use raida_proto::header::{Encryption, KeyIdentity, RequestHeader, ServerIdentity};
use raida_proto::CoinId;
use raida_server::ledger::MemoryLedger;
use raida_server::Clock;
use raida_server::{Call, RunningServer, ServerLimits, ServerState, ServerStateBuilder};
use raida_vectors::{arr, i64_, u64_, Value};

pub(crate) struct TestState {
    pub state: Arc<ServerState>,
    pub ledger: Arc<MemoryLedger>,
    pub time: Arc<AtomicU64>,
    pub dir: tempfile::TempDir,
}

impl TestState {
    pub(crate) fn new(raida_id: u8, coin_id: u16, ledger: MemoryLedger, now: u64) -> TestState {
        Self::build(raida_id, coin_id, ledger, now, |_| {})
    }

    pub(crate) fn build(
        raida_id: u8,
        coin_id: u16,
        ledger: MemoryLedger,
        now: u64,
        tweak: impl FnOnce(&mut ServerStateBuilder),
    ) -> TestState {
        let dir = tempfile::tempdir().expect("tempdir");
        let ledger = Arc::new(ledger);
        let time = Arc::new(AtomicU64::new(now));
        let t = time.clone();
        let clock: Clock = Arc::new(move || t.load(Ordering::Relaxed));
        let mut builder =
            ServerState::builder(ServerIdentity::new(raida_id, coin_id), ledger.clone(), dir.path(), clock);
        tweak(&mut builder);
        let state = builder.build().expect("state");
        TestState { state: Arc::new(state), ledger, time, dir }
    }

    pub(crate) fn now(&self) -> u64 {
        self.time.load(Ordering::Relaxed)
    }

    pub(crate) fn set_now(&self, t: u64) {
        self.time.store(t, Ordering::Relaxed)
    }
}

/// A server on 127.0.0.1 (ephemeral port) around a [`TestState`] on the system clock.
pub(crate) struct Harness {
    pub t: TestState,
    pub state: Arc<ServerState>,
    pub server: Option<RunningServer>,
    pub addr: std::net::SocketAddr,
}

impl Harness {
    pub(crate) async fn launch(
        raida_id: u8,
        coin_id: u16,
        ledger: MemoryLedger,
        tweak: impl FnOnce(&mut ServerStateBuilder),
        limits: ServerLimits,
    ) -> Harness {
        let t = TestState::build(raida_id, coin_id, ledger, raida_client::unix_now(), |s| {
            s.clock = raida_server::system_clock();
            tweak(s)
        });
        let state = t.state.clone();
        let server = RunningServer::start(state.clone(), "127.0.0.1:0".parse().unwrap(), limits).await.unwrap();
        let addr = server.local_addr();
        Harness { t, state, server: Some(server), addr }
    }

    pub(crate) fn running(&self) -> &RunningServer {
        self.server.as_ref().unwrap()
    }

    pub(crate) async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await.unwrap();
        }
    }
}

/// A coin store from a vector's `[{dn, sn, an, mfs}]`.
pub(crate) fn ledger_from(store: &Value) -> MemoryLedger {
    MemoryLedger::with_coins(
        store
            .as_array()
            .expect("store list")
            .iter()
            .map(|c| ((i64_(&c["dn"]) as i8, u64_(&c["sn"]) as u32), (arr(&c["an"]), u64_(&c["mfs"]) as u8))),
    )
}

/// A header with the given encryption and key identity (other fields irrelevant to handlers).
pub(crate) fn header(encryption: Encryption, key_identity: KeyIdentity, group: u8, command: u8) -> RequestHeader {
    RequestHeader {
        raida_id: 0,
        shard_id: 0,
        command_group: group,
        command,
        coin_id: 6,
        encryption,
        key_identity,
        body_length: 0,
        echo: [0, 0],
        legacy_nonce: [0; 8],
        nonce: [0; 12],
        request_time: 0,
    }
}

pub(crate) fn call(header: RequestHeader, payload: Vec<u8>, now: u64) -> Call {
    Call { header, payload, peer: IpAddr::V4(Ipv4Addr::LOCALHOST), now, transport: raida_server::Transport::Udp }
}

/// The header of a request with encryption type `en` made with `coins` (header order),
/// or by a locker prefix / RAIDA for EN 2 / EN 7.
pub(crate) fn identity_for(en: u64, coins: &[(i8, u32)], poster: &Value) -> (Encryption, KeyIdentity) {
    match en {
        0 => (Encryption::None, KeyIdentity::None),
        1 => (Encryption::Coin, KeyIdentity::Coin { coin: CoinId { dn: coins[0].0, sn: coins[0].1 } }),
        2 => {
            let p: [u8; 5] = arr(&poster[1]);
            (Encryption::Locker, KeyIdentity::Locker { prefix: p })
        }
        4 => (Encryption::Token, KeyIdentity::Token { coin: CoinId { dn: coins[0].0, sn: coins[0].1 } }),
        5 => (Encryption::TokenPair, KeyIdentity::TokenPair { first: coins[0].into(), second: coins[1].into() }),
        7 => {
            (Encryption::Raida, KeyIdentity::Raida { sender: u64_(&poster[1]) as u8, key_id: u64_(&poster[2]) as u32 })
        }
        other => panic!("EN {other}"),
    }
}

pub(crate) fn coins_of(v: &Value) -> Vec<(i8, u32)> {
    v.as_array().map(|a| a.iter().map(|c| (i64_(&c[0]) as i8, u64_(&c[1]) as u32)).collect()).unwrap_or_default()
}
