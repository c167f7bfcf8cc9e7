//! ML-KEM-768 (FIPS 203, RustCrypto `ml-kem`) for the optional post-quantum hybrid.
//!
//! Input checks (FIPS 203 section 7): a peer's encapsulation key is type- and
//! modulus-checked (7.2: exactly 1184 bytes, every 12-bit coefficient below q = 3329) before
//! anything is encapsulated to it, and a peer's ciphertext is type-checked (7.3: exactly
//! 1088 bytes) before decapsulation. Both refusals are `BadHandshake` errors, so a malformed
//! hello or reply ends the handshake without a session. The decapsulation-key check of 7.3
//! (the hash of `ek` stored in an expanded `dk`) has nothing to check here: every `dk` is
//! generated in this process from a fresh seed and never imported.
//!
//! Randomness: `ml-kem`'s `getrandom` feature, i.e. the OS CSPRNG, for both key generation
//! and encapsulation, even where the rest of the handshake takes a caller's RNG: `ml-kem`'s
//! RNG parameters are `rand_core` 0.10 traits, the rest of the channel (and x25519-dalek)
//! uses 0.6, and we do not bridge the two by hand. So a seeded test RNG makes the classic
//! handshake deterministic, not the hybrid one.

use ml_kem::{
    Decapsulate, DecapsulationKey768, Encapsulate, EncapsulationKey768, Kem, KeyExport, MlKem768, TryKeyInit,
};
use zeroize::{Zeroize, Zeroizing};

use crate::error::ChannelError;

/// Encoded ML-KEM-768 encapsulation key length.
pub const EK_LEN: usize = 1184;
/// ML-KEM-768 ciphertext length.
pub const CT_LEN: usize = 1088;

/// A fresh ML-KEM-768 key pair (the decapsulation key zeroizes itself on drop).
pub struct KemKeyPair {
    dk: DecapsulationKey768,
    ek: Vec<u8>,
}

impl KemKeyPair {
    /// Generates a key pair from the OS CSPRNG.
    pub fn generate() -> Self {
        let (dk, ek) = MlKem768::generate_keypair();
        KemKeyPair { dk, ek: ek.to_bytes().to_vec() }
    }

    /// The encoded encapsulation key (1184 bytes).
    pub fn encapsulation_key(&self) -> &[u8] {
        &self.ek
    }

    /// Decapsulates a ciphertext after the FIPS 203 7.3 length check. Implicit rejection: a
    /// well-formed but altered ciphertext yields an unrelated secret, so the channel's key
    /// confirmation fails.
    pub fn decapsulate(&self, ct: &[u8]) -> Result<Zeroizing<[u8; 32]>, ChannelError> {
        let mut ss =
            self.dk.decapsulate_slice(ct).map_err(|_| ChannelError::BadHandshake("ML-KEM ciphertext length"))?;
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(ss.as_slice());
        ss.as_mut_slice().zeroize();
        Ok(out)
    }
}

/// Checks a peer's encoded encapsulation key (FIPS 203 7.2: length, then every coefficient
/// below q) and encapsulates to it: `(ciphertext, shared secret)`.
pub fn encapsulate(ek: &[u8]) -> Result<(Vec<u8>, Zeroizing<[u8; 32]>), ChannelError> {
    if ek.len() != EK_LEN {
        return Err(ChannelError::BadHandshake("ML-KEM encapsulation key length"));
    }
    let ek = EncapsulationKey768::new_from_slice(ek)
        .map_err(|_| ChannelError::BadHandshake("ML-KEM encapsulation key fails the modulus check"))?;
    let (ct, mut ss) = ek.encapsulate();
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(ss.as_slice());
    ss.as_mut_slice().zeroize();
    Ok((ct.to_vec(), out))
}
