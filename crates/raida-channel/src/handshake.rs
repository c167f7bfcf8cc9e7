//! The handshake: X25519 ephemeral keys, optionally mixed with a pre-shared key and, with
//! the post-quantum option, with an ML-KEM-768 shared secret.
//!
//! Messages (each one frame on a byte stream; see `docs/channel.md`):
//!
//! * hello (initiator): `"RCH1" | 0x01 | flags | X25519 public 32 | [ML-KEM-768 ek 1184]`
//! * reply (responder): `"RCH1" | 0x01 | flags | X25519 public 32 | [ML-KEM-768 ct 1088]`
//!
//! `flags`: bit 0 = a PSK is mixed in, bit 1 = post-quantum hybrid; the reply repeats the
//! hello's flags and both sides refuse a mismatch with their own configuration.
//!
//! Keys (classic, PROTOCOL.md section 8): `HKDF-SHA256(ikm = X25519 secret [|| PSK],
//! salt = initiator public || responder public, info = "raida-channel v1 " || direction)`.
//! Hybrid: `ikm = X25519 secret || ML-KEM secret [|| PSK]`, `salt = initiator public ||
//! responder public || ek || ct`, `info = "raida-channel v1 pq " || direction`.
//!
//! The peer's ML-KEM input is checked as FIPS 203 section 7 requires (see [`crate::pq`]): the
//! responder refuses an encapsulation key that fails the modulus check, the initiator a
//! ciphertext of the wrong length (`BadHandshake`, no reply, no session). A well-formed but
//! altered ciphertext decapsulates to an unrelated secret, so the key confirmation fails.

use std::fmt;

use rand_core::{CryptoRngCore, OsRng};
use sha2::{Digest, Sha256};
use tracing::warn;
use x25519_dalek::{EphemeralSecret, PublicKey};
use zeroize::Zeroizing;

use crate::chain::{hkdf32, SecretKey};
use crate::error::ChannelError;
use crate::pq::{self, KemKeyPair};
use crate::record::Direction;

/// First bytes of every handshake message.
pub const MAGIC: &[u8; 4] = b"RCH1";
/// Protocol version byte.
pub const VERSION: u8 = 1;
/// Flag: a pre-shared key is mixed in.
pub const FLAG_PSK: u8 = 0x01;
/// Flag: ML-KEM-768 hybrid.
pub const FLAG_PQ: u8 = 0x02;
/// HKDF info prefix (classic).
pub const INFO_PREFIX: &str = "raida-channel v1 ";
/// HKDF info prefix (post-quantum hybrid).
pub const INFO_PREFIX_PQ: &str = "raida-channel v1 pq ";
/// Prefix hashed with the transcript to form the session id.
pub const SESSION_ID_LABEL: &[u8] = b"raida-channel v1 session";
/// Minimum PSK length.
pub const MIN_PSK_LEN: usize = 16;

const HEAD_LEN: usize = 6;

/// Which end of the handshake this side is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Sends the hello ("alice"); sends alice-to-bob.
    Initiator,
    /// Answers the hello ("bob"); sends bob-to-alice.
    Responder,
}

impl Role {
    /// Direction of the records this side sends.
    pub fn send_direction(self) -> Direction {
        match self {
            Role::Initiator => Direction::AliceToBob,
            Role::Responder => Direction::BobToAlice,
        }
    }

    /// Direction of the records this side receives.
    pub fn recv_direction(self) -> Direction {
        match self {
            Role::Initiator => Direction::BobToAlice,
            Role::Responder => Direction::AliceToBob,
        }
    }
}

/// A pre-shared key (at least 16 bytes, used as is). Zeroized on drop, never printed.
#[derive(Clone)]
pub struct Psk(Zeroizing<Vec<u8>>);

impl Psk {
    /// Accepts a key of at least 16 bytes.
    pub fn new(bytes: Vec<u8>) -> Result<Psk, ChannelError> {
        let bytes = Zeroizing::new(bytes);
        if bytes.len() < MIN_PSK_LEN {
            warn!(len = bytes.len(), "pre-shared key refused: shorter than 16 bytes");
            return Err(ChannelError::PskTooShort(bytes.len()));
        }
        Ok(Psk(bytes))
    }

    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Psk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Psk(<{} bytes redacted>)", self.0.len())
    }
}

/// The two directional keys (K_1 of each chain).
pub struct SessionKeys {
    /// Initiator to responder.
    pub alice_to_bob: SecretKey,
    /// Responder to initiator.
    pub bob_to_alice: SecretKey,
}

impl fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKeys(<redacted>)")
    }
}

/// Derives both directional keys from the HKDF input keying material and salt.
pub fn derive_session_keys(ikm: &[u8], salt: &[u8], info_prefix: &str) -> SessionKeys {
    let info = |d: Direction| format!("{info_prefix}{}", d.as_str());
    SessionKeys {
        alice_to_bob: hkdf32(ikm, salt, info(Direction::AliceToBob).as_bytes()),
        bob_to_alice: hkdf32(ikm, salt, info(Direction::BobToAlice).as_bytes()),
    }
}

/// The classic derivation of PROTOCOL.md section 8 from an X25519 shared secret.
pub fn directional_keys(
    shared: &[u8; 32],
    psk: Option<&Psk>,
    initiator_public: &[u8; 32],
    responder_public: &[u8; 32],
) -> SessionKeys {
    let mut ikm = Zeroizing::new(Vec::with_capacity(32 + 64));
    ikm.extend_from_slice(shared);
    if let Some(p) = psk {
        ikm.extend_from_slice(p.as_bytes());
    }
    let mut salt = [0u8; 64];
    salt[..32].copy_from_slice(initiator_public);
    salt[32..].copy_from_slice(responder_public);
    derive_session_keys(&ikm, &salt, INFO_PREFIX)
}

/// Handshake options, the same on both sides.
#[derive(Clone, Debug, Default)]
pub struct HandshakeConfig {
    /// Pre-shared key to mix in.
    pub psk: Option<Psk>,
    /// Post-quantum hybrid (ML-KEM-768).
    pub pq: bool,
}

impl HandshakeConfig {
    fn flags(&self) -> u8 {
        (if self.psk.is_some() { FLAG_PSK } else { 0 }) | (if self.pq { FLAG_PQ } else { 0 })
    }
}

/// The result of a handshake.
#[derive(Debug)]
pub struct Established {
    /// Directional keys.
    pub keys: SessionKeys,
    /// Session id: the first 16 bytes of SHA-256(label || hello || reply). Not secret.
    pub session_id: [u8; 16],
    /// This side's role.
    pub role: Role,
    /// Whether the post-quantum hybrid was used.
    pub pq: bool,
}

struct Parsed<'a> {
    flags: u8,
    public: [u8; 32],
    extra: &'a [u8],
}

fn parse(msg: &[u8], extra_len_pq: usize) -> Result<Parsed<'_>, ChannelError> {
    if msg.len() < HEAD_LEN + 32 {
        return Err(ChannelError::BadHandshake("too short"));
    }
    if &msg[..4] != MAGIC {
        return Err(ChannelError::BadHandshake("bad magic"));
    }
    if msg[4] != VERSION {
        return Err(ChannelError::BadHandshake("unsupported version"));
    }
    let flags = msg[5];
    if flags & !(FLAG_PSK | FLAG_PQ) != 0 {
        return Err(ChannelError::BadHandshake("unknown flags"));
    }
    let extra_len = if flags & FLAG_PQ != 0 { extra_len_pq } else { 0 };
    if msg.len() != HEAD_LEN + 32 + extra_len {
        return Err(ChannelError::BadHandshake("wrong length"));
    }
    let mut public = [0u8; 32];
    public.copy_from_slice(&msg[HEAD_LEN..HEAD_LEN + 32]);
    Ok(Parsed { flags, public, extra: &msg[HEAD_LEN + 32..] })
}

fn logged<T>(r: Result<T, ChannelError>, what: &'static str) -> Result<T, ChannelError> {
    if let Err(e) = &r {
        warn!(reason = e.reason(), "handshake {what} rejected: {e}");
    }
    r
}

fn session_id(hello: &[u8], reply: &[u8]) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(SESSION_ID_LABEL);
    h.update(hello);
    h.update(reply);
    let d = h.finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&d[..16]);
    id
}

#[allow(clippy::too_many_arguments)]
fn finish_keys(
    shared: &[u8; 32],
    kem_ss: Option<&[u8; 32]>,
    psk: Option<&Psk>,
    init_pub: &[u8; 32],
    resp_pub: &[u8; 32],
    ek: &[u8],
    ct: &[u8],
) -> SessionKeys {
    match kem_ss {
        None => directional_keys(shared, psk, init_pub, resp_pub),
        Some(k) => {
            let mut ikm = Zeroizing::new(Vec::with_capacity(64 + 64));
            ikm.extend_from_slice(shared);
            ikm.extend_from_slice(k);
            if let Some(p) = psk {
                ikm.extend_from_slice(p.as_bytes());
            }
            let mut salt = Vec::with_capacity(64 + ek.len() + ct.len());
            salt.extend_from_slice(init_pub);
            salt.extend_from_slice(resp_pub);
            salt.extend_from_slice(ek);
            salt.extend_from_slice(ct);
            derive_session_keys(&ikm, &salt, INFO_PREFIX_PQ)
        }
    }
}

/// The initiator's half-finished handshake (its ephemeral secrets live here until
/// [`Initiator::finish`] consumes them).
pub struct Initiator {
    secret: EphemeralSecret,
    public: [u8; 32],
    kem: Option<KemKeyPair>,
    hello: Vec<u8>,
    cfg: HandshakeConfig,
}

impl Initiator {
    /// Fresh ephemeral keys from the OS CSPRNG and the hello message.
    pub fn new(cfg: &HandshakeConfig) -> Initiator {
        Initiator::with_rng(cfg, &mut OsRng)
    }

    /// Fresh ephemeral keys and the hello message, the X25519 key from `rng` (the OS CSPRNG
    /// in production, a seeded one in tests). The ML-KEM-768 key pair of the hybrid comes
    /// from the OS CSPRNG whatever `rng` is (see [`crate::pq`]).
    pub fn with_rng(cfg: &HandshakeConfig, rng: &mut (impl CryptoRngCore + ?Sized)) -> Initiator {
        let secret = EphemeralSecret::random_from_rng(rng);
        let public = PublicKey::from(&secret).to_bytes();
        let kem = cfg.pq.then(KemKeyPair::generate);
        let mut hello = Vec::with_capacity(HEAD_LEN + 32 + pq::EK_LEN);
        hello.extend_from_slice(MAGIC);
        hello.push(VERSION);
        hello.push(cfg.flags());
        hello.extend_from_slice(&public);
        if let Some(k) = &kem {
            hello.extend_from_slice(k.encapsulation_key());
        }
        Initiator { secret, public, kem, hello, cfg: cfg.clone() }
    }

    /// The hello message to send.
    pub fn hello(&self) -> &[u8] {
        &self.hello
    }

    /// Processes the responder's reply.
    pub fn finish(self, reply: &[u8]) -> Result<Established, ChannelError> {
        logged(self.finish_inner(reply), "reply")
    }

    fn finish_inner(self, reply: &[u8]) -> Result<Established, ChannelError> {
        let p = parse(reply, pq::CT_LEN)?;
        if p.flags != self.cfg.flags() {
            return Err(ChannelError::ModeMismatch("reply flags differ from the hello's"));
        }
        let shared = self.secret.diffie_hellman(&PublicKey::from(p.public));
        if !shared.was_contributory() {
            return Err(ChannelError::NonContributory);
        }
        let kem_ss = match &self.kem {
            Some(k) => Some(k.decapsulate(p.extra)?),
            None => None,
        };
        let ek = self.kem.as_ref().map(|k| k.encapsulation_key()).unwrap_or(&[]);
        let keys = finish_keys(
            shared.as_bytes(),
            kem_ss.as_deref(),
            self.cfg.psk.as_ref(),
            &self.public,
            &p.public,
            ek,
            p.extra,
        );
        Ok(Established { keys, session_id: session_id(&self.hello, reply), role: Role::Initiator, pq: self.cfg.pq })
    }
}

/// The responder's side: parses a hello, returns the reply to send and the session keys.
/// Ephemeral keys from the OS CSPRNG.
pub fn respond(hello: &[u8], cfg: &HandshakeConfig) -> Result<(Vec<u8>, Established), ChannelError> {
    respond_with_rng(hello, cfg, &mut OsRng)
}

/// [`respond`] with the X25519 key from `rng` (the OS CSPRNG in production, a seeded one in
/// tests); the ML-KEM-768 encapsulation of the hybrid uses the OS CSPRNG whatever `rng` is.
pub fn respond_with_rng(
    hello: &[u8],
    cfg: &HandshakeConfig,
    rng: &mut (impl CryptoRngCore + ?Sized),
) -> Result<(Vec<u8>, Established), ChannelError> {
    logged(respond_inner(hello, cfg, rng), "hello")
}

fn respond_inner(
    hello: &[u8],
    cfg: &HandshakeConfig,
    rng: &mut (impl CryptoRngCore + ?Sized),
) -> Result<(Vec<u8>, Established), ChannelError> {
    let p = parse(hello, pq::EK_LEN)?;
    if (p.flags & FLAG_PQ != 0) != cfg.pq {
        return Err(ChannelError::ModeMismatch("post-quantum option differs"));
    }
    if (p.flags & FLAG_PSK != 0) != cfg.psk.is_some() {
        return Err(ChannelError::ModeMismatch("pre-shared key option differs"));
    }
    let secret = EphemeralSecret::random_from_rng(rng);
    let public = PublicKey::from(&secret).to_bytes();
    let (ct, kem_ss) = if cfg.pq {
        let (ct, ss) = pq::encapsulate(p.extra)?;
        (ct, Some(ss))
    } else {
        (Vec::new(), None)
    };
    let shared = secret.diffie_hellman(&PublicKey::from(p.public));
    if !shared.was_contributory() {
        return Err(ChannelError::NonContributory);
    }
    let mut reply = Vec::with_capacity(HEAD_LEN + 32 + ct.len());
    reply.extend_from_slice(MAGIC);
    reply.push(VERSION);
    reply.push(p.flags);
    reply.extend_from_slice(&public);
    reply.extend_from_slice(&ct);
    let keys = finish_keys(shared.as_bytes(), kem_ss.as_deref(), cfg.psk.as_ref(), &p.public, &public, p.extra, &ct);
    let est = Established { keys, session_id: session_id(hello, &reply), role: Role::Responder, pq: cfg.pq };
    Ok((reply, est))
}
