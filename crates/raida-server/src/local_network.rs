//! A whole RAIDA network on one machine, for trying the key exchange (PROTOCOL.md
//! section 9) without 25 hosts: [`init_network`] makes the folder, [`add_user`] registers
//! a wallet on every RAIDA, [`LocalNetwork::start`] runs every RAIDA, and the network's
//! relay, in this process.
//!
//! Folder layout (`raida network init DIR`):
//!
//! | path | content |
//! |---|---|
//! | `DIR/network.toml` | coin id and the RAIDAs (`raida_net::network`), `127.0.0.1:<base + id>`, and one relay (section 10) at `127.0.0.1:<base + 25>` |
//! | `DIR/raida-NN/` | RAIDA NN's data directory (`raida init`), listening on `127.0.0.1:<base + NN>`; its identity coin `1:<1023 - NN>` is `[identity]`, every other RAIDA is a `[[key_servers]]` entry |
//! | `DIR/wallets/<user>/01.<SN>.bin` | a user's coin (section 9 file), registered on every RAIDA |
//!
//! [`LocalNetwork::start_with`] puts every RAIDA behind a simulated link ([`raida_netsim`]):
//! loss, delay, a bandwidth cap, and faults (down, refusing, slow, overloaded, dishonest).
//!
//! Every coin is denomination 1: users get SN 1, 2, 3, ... and the RAIDAs' identity coins
//! SN 1023 - id, so one page per denomination (`--pages 1`) holds them all.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use raida_net::network::{Network, RaidaEntry, RelayEntry, NETWORK_FILE};
use raida_netsim::{Dishonesty, Fault, LinkConfig, Proxy, Simulation};
use raida_proto::{CoinId, IdentityCoin};
use raida_store::parse_coin_file_name;
use raida_store::wallet::Wallet;

use crate::server::{RunningServer, ServerBuilder, ServerLimits};

/// Denomination of every coin of a local network.
pub const COIN_DN: i8 = 1;
/// SN of RAIDA `id`'s identity coin is this minus `id`.
const IDENTITY_SN_TOP: u32 = 1023;
/// The relay listens on `host:(base_port + RELAY_PORT_OFFSET)`, after the 25 RAIDA ports.
pub const RELAY_PORT_OFFSET: u16 = 25;
/// The folder holding the users' wallets.
pub const WALLETS_DIR: &str = "wallets";

/// Why a local network cannot be made or started; one line, with what to do.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LocalNetworkError(pub String);

fn err(e: impl std::fmt::Display) -> LocalNetworkError {
    LocalNetworkError(e.to_string())
}

/// Options of [`init_network`].
#[derive(Clone, Debug)]
pub struct NetworkInit {
    /// RAIDAs, 1..=25 (ids 0..raidas-1).
    pub raidas: u8,
    /// Users to create (wallets registered on every RAIDA).
    pub users: Vec<String>,
    /// RAIDA id N listens on `host:(base_port + N)`.
    pub base_port: u16,
    /// Pages per denomination in each data directory, 1..=1000.
    pub pages: u32,
    /// Listen address of every RAIDA (an IP address).
    pub host: String,
    pub coin_id: u16,
    /// Denominations of the page files (default all; the network's coins are all DN 1).
    pub denominations: Vec<i8>,
}

impl Default for NetworkInit {
    fn default() -> Self {
        NetworkInit {
            raidas: 25,
            users: vec!["alice".into(), "bob".into()],
            base_port: 50_000,
            pages: 1,
            host: "127.0.0.1".into(),
            coin_id: 6,
            denominations: raida_store::layout::all_denominations(),
        }
    }
}

/// `DIR/raida-NN`.
pub fn raida_dir(dir: &Path, id: u8) -> PathBuf {
    dir.join(format!("raida-{id:02}"))
}

/// The wallet file of `user`, if there is one.
pub fn user_wallet(dir: &Path, user: &str) -> Option<PathBuf> {
    let d = dir.join(WALLETS_DIR).join(user);
    std::fs::read_dir(d)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().and_then(|n| n.to_str()).and_then(parse_coin_file_name).is_some())
}

fn check_user_name(name: &str) -> Result<(), LocalNetworkError> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(err(format!("user name {name:?}: use 1 to 32 letters, digits, '-' or '_'")))
    }
}

/// Create the folder: one data directory per RAIDA, identity coins, key servers,
/// network.toml, and a wallet per user. Refuses an existing non-empty folder.
pub fn init_network(dir: &Path, opts: &NetworkInit) -> Result<Network, LocalNetworkError> {
    if opts.raidas == 0 || opts.raidas > 25 {
        return Err(err(format!("--raidas must be 1..25, not {}", opts.raidas)));
    }
    if opts.base_port == 0 || opts.base_port as u32 + opts.raidas as u32 - 1 > u16::MAX as u32 {
        return Err(err(format!(
            "--base-port {}: the ports base..base+{} must fit in 1..65535",
            opts.base_port,
            opts.raidas - 1
        )));
    }
    if opts.base_port as u32 + RELAY_PORT_OFFSET as u32 > u16::MAX as u32 {
        return Err(err(format!(
            "--base-port {}: the relay's port base+{RELAY_PORT_OFFSET} must fit in 1..65535",
            opts.base_port
        )));
    }
    let ip: std::net::IpAddr =
        opts.host.parse().map_err(|_| err(format!("{:?} is not an IP address to listen on", opts.host)))?;
    for u in &opts.users {
        check_user_name(u)?;
    }
    if let Ok(mut rd) = std::fs::read_dir(dir) {
        if rd.next().is_some() {
            return Err(err(format!("{} exists and is not empty: choose a new folder", dir.display())));
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| err(format!("{}: {e}", dir.display())))?;
    let addr = |id: u8| std::net::SocketAddr::new(ip, opts.base_port + id as u16);
    let ids: Vec<u8> = (0..opts.raidas).collect();
    let identities: Vec<Wallet> = ids
        .iter()
        .map(|&id| Wallet::generate(CoinId { dn: COIN_DN, sn: IDENTITY_SN_TOP - id as u32 }, opts.coin_id).map_err(err))
        .collect::<Result<_, _>>()?;
    for &id in &ids {
        let d = raida_dir(dir, id);
        let mut init = raida_store::InitOptions::new(id);
        init.coin_id = opts.coin_id;
        init.listen = Some(addr(id).to_string());
        init.pages = opts.pages;
        init.denominations = opts.denominations.clone();
        if !init.denominations.contains(&COIN_DN) {
            init.denominations.push(COIN_DN);
        }
        raida_store::init_data_dir(&d, init).map_err(|e| err(format!("{}: {e}", d.display())))?;
        let store = raida_store::Store::open(&d).map_err(|e| err(format!("{}: {e}", d.display())))?;
        let me = &identities[id as usize];
        let ans: [[u8; 16]; 25] = std::array::from_fn(|i| me.an(i as u8).map(|k| *k.as_bytes()).unwrap_or_default());
        store.write_identity_coin(me.identity(), opts.coin_id, &ans).map_err(err)?;
        // every RAIDA knows every RAIDA's identity coin (Key Alert fetches with EN 4 under it)
        let mfs = raida_store::mfs_now();
        for w in &identities {
            let an = w.an(id).ok_or_else(|| err("identity AN"))?;
            store.set(w.identity().0, *an.as_bytes(), mfs).map_err(err)?;
        }
        store.flush().map_err(err)?;
        let mut config = store.config().clone();
        config.identity = Some(raida_store::IdentityConfig { dn: me.dn(), sn: me.sn() });
        config.key_servers = ids
            .iter()
            .filter(|&&o| o != id)
            .map(|&o| raida_store::KeyServer {
                raida_id: o,
                address: ip.to_string(),
                port: addr(o).port(),
                legacy: false,
            })
            .collect();
        config.save(&d).map_err(err)?;
    }
    let network = Network {
        coin_id: opts.coin_id,
        raidas: ids.iter().map(|&id| RaidaEntry { id, address: addr(id).to_string(), legacy: false }).collect(),
        relays: vec![RelayEntry {
            address: std::net::SocketAddr::new(ip, opts.base_port + RELAY_PORT_OFFSET).to_string(),
        }],
    };
    write_network_file(dir, &network)?;
    for u in &opts.users {
        add_user(dir, u)?;
    }
    Ok(network)
}

fn write_network_file(dir: &Path, network: &Network) -> Result<(), LocalNetworkError> {
    let path = dir.join(NETWORK_FILE);
    raida_store::durable::write_file_atomic(&path, network.to_toml().as_bytes(), 0o644)
        .map_err(|e| err(format!("{}: {e}", path.display())))
}

/// Make a wallet for `name` and register it on every RAIDA of the folder (the network must
/// not be running: each data directory is locked while its server runs). Returns the
/// wallet's path.
pub fn add_user(dir: &Path, name: &str) -> Result<PathBuf, LocalNetworkError> {
    check_user_name(name)?;
    let network = Network::load(&dir.join(NETWORK_FILE)).map_err(err)?;
    let user_dir = dir.join(WALLETS_DIR).join(name);
    if user_dir.exists() {
        return Err(err(format!("user {name} exists already ({})", user_dir.display())));
    }
    // the smallest SN no wallet of the folder uses
    let mut used = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir.join(WALLETS_DIR)) {
        for u in rd.flatten() {
            for f in std::fs::read_dir(u.path()).into_iter().flatten().flatten() {
                if let Some(IdentityCoin(CoinId { sn, .. })) = f.file_name().to_str().and_then(parse_coin_file_name) {
                    used.push(sn);
                }
            }
        }
    }
    let sn = (1..IDENTITY_SN_TOP - 24).find(|s| !used.contains(s)).ok_or_else(|| err("no free serial number"))?;
    let wallet = Wallet::generate(CoinId { dn: COIN_DN, sn }, network.coin_id).map_err(err)?;
    let mfs = raida_store::mfs_now();
    for r in &network.raidas {
        let d = raida_dir(dir, r.id);
        let store = raida_store::Store::open(&d).map_err(|e| match e {
            raida_store::StoreError::Locked(_) => err(format!(
                "{}: the network is running; stop `raida network up` first, then add the user",
                d.display()
            )),
            e => err(format!("{}: {e}", d.display())),
        })?;
        let an = wallet.an(r.id).ok_or_else(|| err("AN"))?;
        store.set(wallet.identity().0, *an.as_bytes(), mfs).map_err(|e| err(format!("{}: {e}", d.display())))?;
        store.flush().map_err(err)?;
    }
    wallet.save(&user_dir).map_err(err)
}

/// Every RAIDA of a folder, and its relay, running in this process.
pub struct LocalNetwork {
    servers: Vec<(u8, RunningServer)>,
    /// The simulated link in front of each RAIDA (simulated networks only).
    proxies: Vec<(u8, Proxy)>,
    network: Network,
    relay: Option<raida_relay::RunningRelay>,
    simulation: Option<Simulation>,
}

impl LocalNetwork {
    /// Start every RAIDA of `dir` except `skip`. With `ephemeral`, each binds a free port on
    /// 127.0.0.1 instead of its configured one ([`LocalNetwork::network`] has the real
    /// addresses; RAIDAs then cannot act as Key Alert receivers for each other, whose
    /// key server lists name the configured ports). Must be called in a tokio runtime.
    pub async fn start(dir: &Path, skip: &[u8], ephemeral: bool) -> Result<LocalNetwork, LocalNetworkError> {
        LocalNetwork::start_with(dir, skip, ephemeral, None).await
    }

    /// [`LocalNetwork::start`], with every RAIDA behind a simulated link when `simulation`
    /// is given: the server binds a free port of its host and a [`Proxy`] takes the RAIDA's
    /// public address (its configured one, or a free port of 127.0.0.1 with `ephemeral`),
    /// forwarding through the RAIDA's link and playing its fault. [`LocalNetwork::network`]
    /// names the proxies, so clients, and RAIDAs fetching parts from each other (Key Alert,
    /// at the configured addresses), all go through the links. A dishonest RAIDA is
    /// played by its server ([`LocalNetwork::set_dishonesty`]).
    pub async fn start_with(
        dir: &Path,
        skip: &[u8],
        ephemeral: bool,
        simulation: Option<&Simulation>,
    ) -> Result<LocalNetwork, LocalNetworkError> {
        if let Some(sim) = simulation {
            sim.check().map_err(|e| err(format!("simulation: {e}")))?;
        }
        let mut network = Network::load(&dir.join(NETWORK_FILE)).map_err(err)?;
        let limits = ServerLimits { udp_threads: 1, ..ServerLimits::default() };
        let mut running = LocalNetwork {
            servers: Vec::new(),
            proxies: Vec::new(),
            network: network.clone(),
            relay: None,
            simulation: simulation.cloned(),
        };
        let mut failed = None;
        for r in &network.raidas {
            if skip.contains(&r.id) {
                continue;
            }
            if let Err(e) = running.start_raida(dir, r.id, ephemeral, &limits).await {
                failed = Some(e);
                break;
            }
        }
        if failed.is_none() {
            match start_relay(&mut network, ephemeral).await {
                Ok(relay) => running.relay = relay,
                Err(e) => failed = Some(e),
            }
        }
        if let Some(e) = failed {
            running.shutdown().await;
            return Err(e);
        }
        for r in network.raidas.iter_mut() {
            if let Some(a) = running.public_addr(r.id) {
                r.address = a.to_string();
            }
        }
        running.network = network;
        Ok(running)
    }

    /// Start RAIDA `id`'s server, and its proxy when the network is simulated.
    async fn start_raida(
        &mut self,
        dir: &Path,
        id: u8,
        ephemeral: bool,
        limits: &ServerLimits,
    ) -> Result<(), LocalNetworkError> {
        let d = raida_dir(dir, id);
        let (state, listen) = ServerBuilder::open(&d, limits, None).map_err(|e| err(format!("RAIDA {id}: {e}")))?;
        let public = if ephemeral { std::net::SocketAddr::new([127, 0, 0, 1].into(), 0) } else { listen };
        // behind a proxy the server takes any free port of the same host
        let own = if self.simulation.is_some() { std::net::SocketAddr::new(public.ip(), 0) } else { public };
        let server = RunningServer::start(state, own, limits.clone())
            .await
            .map_err(|e| err(format!("RAIDA {id}: {e} (is another network running on these ports?)")))?;
        let upstream = server.local_addr();
        self.servers.push((id, server));
        let Some(sim) = &self.simulation else { return Ok(()) };
        let fault = sim.fault_of(id);
        let proxy = Proxy::start(public, upstream, sim.link_of(id), fault, sim.raida_seed(id)).await.map_err(|e| {
            err(format!("RAIDA {id}: simulated link on {public}: {e} (is another network running on these ports?)"))
        })?;
        self.proxies.push((id, proxy));
        if let Some(Fault::Dishonest(how)) = fault {
            self.set_dishonesty(id, Some(how));
        }
        Ok(())
    }

    /// Where clients reach RAIDA `id`: its proxy if simulated, else its server.
    fn public_addr(&self, id: u8) -> Option<std::net::SocketAddr> {
        match self.proxies.iter().find(|(i, _)| *i == id) {
            Some((_, p)) => Some(p.local_addr()),
            None => self.server_addr(id),
        }
    }

    /// The address RAIDA `id`'s server itself listens on: behind its link when the
    /// network is simulated (a test may talk to it directly, around the link).
    pub fn server_addr(&self, id: u8) -> Option<std::net::SocketAddr> {
        self.servers.iter().find(|(i, _)| *i == id).map(|(_, s)| s.local_addr())
    }

    /// The simulation the network runs under, if any.
    pub fn simulation(&self) -> Option<&Simulation> {
        self.simulation.as_ref()
    }

    /// The proxy in front of RAIDA `id` (simulated networks only).
    pub fn proxy(&self, id: u8) -> Option<&Proxy> {
        self.proxies.iter().find(|(i, _)| *i == id).map(|(_, p)| p)
    }

    /// Give RAIDA `id` `fault` (None: healthy) from now on: its proxy plays it, or for
    /// [`Fault::Dishonest`] its server (any other fault makes the server honest again).
    /// An error if the network is not simulated or the RAIDA is not running.
    pub async fn set_fault(&self, id: u8, fault: Option<Fault>) -> Result<(), LocalNetworkError> {
        let proxy = self.proxy(id).ok_or_else(|| err(format!("RAIDA {id} runs without a simulated link")))?;
        proxy.set_fault(fault).await.map_err(|e| err(format!("RAIDA {id}: {e}")))?;
        let how = match fault {
            Some(Fault::Dishonest(how)) => Some(how),
            _ => None,
        };
        self.set_dishonesty(id, how);
        Ok(())
    }

    /// Give RAIDA `id`'s link `link` from now on (its decisions start again from its seed).
    pub fn set_link(&self, id: u8, link: LinkConfig) -> Result<(), LocalNetworkError> {
        let proxy = self.proxy(id).ok_or_else(|| err(format!("RAIDA {id} runs without a simulated link")))?;
        proxy.set_link(link).map_err(|e| err(format!("RAIDA {id}: {e}")))
    }

    /// The address of the network's relay (the first `[[relays]]` entry, run in this
    /// process), if the network file lists one.
    pub fn relay_addr(&self) -> Option<std::net::SocketAddr> {
        self.relay.as_ref().map(|r| r.local_addr())
    }

    /// The network as it runs (skipped RAIDAs keep their configured address).
    pub fn network(&self) -> &Network {
        &self.network
    }

    /// Ids of the running RAIDAs.
    pub fn running(&self) -> Vec<u8> {
        self.servers.iter().map(|(id, _)| *id).collect()
    }

    /// The state of a running RAIDA (for tests: its pending keys, its inbox).
    pub fn state(&self, id: u8) -> Option<&Arc<crate::ServerState>> {
        self.servers.iter().find(|(i, _)| *i == id).map(|(_, s)| s.state())
    }

    /// Make running RAIDA `id` dishonest: from now on it answers Get Key for any key id it
    /// does not hold with 250, `sender` as the sender and `key` as the part (it knows every
    /// coin's AN on itself, so the answer is sealed properly for whoever asks). Key ids it
    /// holds are still handed out honestly. For tests of receivers (PROTOCOL.md section 9:
    /// posing as a sender must take a majority of RAIDAs). False if `id` is not running.
    pub fn make_dishonest(&self, id: u8, sender: CoinId, key: &[u8]) -> bool {
        let Some(state) = self.state(id) else { return false };
        let mut forged = state.forged_get_key.load_full().map(|f| (*f).clone()).unwrap_or_default();
        forged.unheld = Some((sender, key.to_vec()));
        state.forged_get_key.store(Some(Arc::new(forged)));
        true
    }

    /// Make running RAIDA `id` lie about the key parts it holds (None: honest again): Get
    /// Key answers 250 with the true sender and wrong key bytes, or with the true bytes and
    /// another sender ([`Dishonesty`]). Key ids it does not hold are answered as
    /// [`LocalNetwork::make_dishonest`] set. False if `id` is not running.
    pub fn set_dishonesty(&self, id: u8, how: Option<Dishonesty>) -> bool {
        let Some(state) = self.state(id) else { return false };
        let mut forged = state.forged_get_key.load_full().map(|f| (*f).clone()).unwrap_or_default();
        forged.held = how;
        state.forged_get_key.store(Some(Arc::new(forged)));
        true
    }

    /// Get Key requests answered by every running RAIDA so far (any status): what receivers
    /// fetched, for tests that count fetches.
    pub fn get_keys_seen(&self) -> u64 {
        use raida_proto::commands::ids::{GET_KEY, GROUP_KEY_EXCHANGE};
        self.servers.iter().map(|(_, s)| s.state().stats.requests_for(GROUP_KEY_EXCHANGE, GET_KEY)).sum()
    }

    /// Stop every RAIDA (in parallel) and flush their stores.
    pub async fn shutdown(self) {
        futures_util::future::join_all(self.proxies.into_iter().map(|(_, p)| p.stop())).await;
        let stops = self.servers.into_iter().map(|(id, s)| async move {
            if let Err(e) = s.shutdown().await {
                tracing::warn!(raida = id, error = %e, "shutdown");
            }
        });
        futures_util::future::join_all(stops).await;
        if let Some(r) = self.relay {
            r.shutdown().await;
        }
    }
}

/// Runs the network file's first relay here (a local network's relay is on this host):
/// on its address, or with `ephemeral` on a free port of 127.0.0.1; the network then names
/// the address it really has. A file without relays (made before relays existed) runs none.
async fn start_relay(
    network: &mut Network,
    ephemeral: bool,
) -> Result<Option<raida_relay::RunningRelay>, LocalNetworkError> {
    let Some(entry) = network.relays.first_mut() else { return Ok(None) };
    let listen: std::net::SocketAddr = if ephemeral {
        std::net::SocketAddr::new([127, 0, 0, 1].into(), 0)
    } else {
        entry.address.parse().map_err(|_| {
            err(format!("relay {:?}: a local network's relay must be an IP:PORT of this host", entry.address))
        })?
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| err(format!("relay {listen}: {e} (is another network running on these ports?)")))?;
    let relay = raida_relay::Relay::start(listener, raida_relay::RelayLimits::default())
        .map_err(|e| err(format!("relay {listen}: {e}")))?;
    entry.address = relay.local_addr().to_string();
    Ok(Some(relay))
}
