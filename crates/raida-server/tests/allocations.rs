//! Heap allocations per request on the inline path (issue 14: "no allocation on the Echo
//! path"), counted by a global allocator that counts the calling thread's allocations.
//! Requests are built before counting starts; the same output buffer is reused, as the
//! UDP worker does. Only Rust's allocator is counted (AWS-LC's own mallocs for an AES-GCM
//! key are not).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;

use common::TestState;
use raida_proto::client::{build_request, ClientKey, Routing};
use raida_proto::keys::{Key16, Key32};
use raida_proto::CoinId;
use raida_server::ledger::MemoryLedger;
use raida_server::{Outcome, Transport};
use rand_core::OsRng;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

const RAIDA: u8 = 5;
const COIN_ID: u16 = 6;
const AN: [u8; 16] = [0xA1; 16];
const REQUESTS: u64 = 2_000;

/// Allocations per Echo request (EN `key`) over [`REQUESTS`] requests, after a warm-up.
fn allocations_per_echo(key: ClientKey) -> f64 {
    let coin = CoinId { dn: 1, sn: 100 };
    let t = TestState::new(RAIDA, COIN_ID, MemoryLedger::with_coins([(coin, (AN, 40))]), raida_client::unix_now());
    let now = t.now();
    let routing = Routing::new(RAIDA, COIN_ID, 0, 0);
    let mut packets: Vec<Vec<u8>> =
        (0..REQUESTS + 100).map(|_| build_request(&routing, &key, &[], now, &mut OsRng).0).collect();
    let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let mut out = Vec::with_capacity(2048);
    let serve = |packet: &mut Vec<u8>, out: &mut Vec<u8>| {
        out.clear();
        let outcome = t.state.handle_from(Transport::Udp, packet, peer, out);
        assert!(matches!(outcome, Outcome::Reply), "echo answered inline");
        assert_eq!(out[2], 250, "echo succeeded");
    };
    let (warm_up, counted) = packets.split_at_mut(100);
    for p in warm_up {
        serve(p, &mut out);
    }
    let before = allocations();
    for p in counted {
        serve(p, &mut out);
    }
    (allocations() - before) as f64 / REQUESTS as f64
}

#[test]
fn echo_allocates_nothing_per_request_en0() {
    assert_eq!(allocations_per_echo(ClientKey::None), 0.0);
}

#[test]
fn echo_allocates_nothing_per_request_en1() {
    let key = ClientKey::Coin { coin: CoinId { dn: 1, sn: 100 }, an: Key16::new(AN) };
    assert_eq!(allocations_per_echo(key), 0.0);
}

/// EN 4 remembers each request's nonce against replays (section 3.4): the replay memory's
/// tables grow by doubling until they reach their capacity, about 2 × log2(n) allocations
/// in n requests (10 in these 2,000), none per request.
#[test]
fn echo_allocates_only_the_replay_memorys_growth_en4() {
    let key = ClientKey::Token { coin: CoinId { dn: 1, sn: 100 }, key: Key32::sha256_of_an(&Key16::new(AN)) };
    let per_request = allocations_per_echo(key);
    assert!(per_request < 0.01, "{per_request} allocations per EN 4 echo");
}
