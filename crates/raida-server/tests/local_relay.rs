//! A local network (`raida network init` / `up`) lists one relay at base + 25 and runs it
//! in-process: two clients pair through it with the network file's relay list.

use std::time::Duration;

use raida_net::network::{Network, NETWORK_FILE};
use raida_net::relay::connect;
use raida_proto::relay::Side;
use raida_server::local_network::{init_network, LocalNetwork, NetworkInit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn the_local_network_runs_its_relay() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net");
    let opts = NetworkInit { raidas: 1, users: vec![], base_port: 41_000, ..NetworkInit::default() };
    init_network(&dir, &opts).unwrap();
    let file = Network::load(&dir.join(NETWORK_FILE)).unwrap();
    assert_eq!(file.relay_addresses(), vec!["127.0.0.1:41025".to_string()]);

    let net = LocalNetwork::start(&dir, &[], true).await.unwrap();
    let relay = net.relay_addr().expect("the relay runs");
    let relays = net.network().relay_addresses();
    assert_eq!(relays, vec![relay.to_string()]);
    let id = [5u8; 32];
    let wait = Duration::from_secs(20);
    let (a, b) = tokio::join!(connect(&relays, &id, Side::Sender, wait), connect(&relays, &id, Side::Receiver, wait));
    let ((mut a, via), (mut b, _)) = (a.unwrap(), b.unwrap());
    assert_eq!(via, relay.to_string());
    a.write_all(b"hi").await.unwrap();
    let mut buf = [0u8; 2];
    b.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"hi");
    net.shutdown().await;
}

#[test]
fn the_relay_port_must_fit() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = NetworkInit { raidas: 1, users: vec![], base_port: 65_520, ..NetworkInit::default() };
    let e = init_network(&tmp.path().join("n"), &opts).unwrap_err();
    assert!(e.to_string().contains("relay"), "{e}");
}
