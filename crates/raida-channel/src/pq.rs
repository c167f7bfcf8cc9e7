//! ML-KEM-768 (FIPS 203, RustCrypto `ml-kem`) for the optional post-quantum hybrid.

use ml_kem::kem::{Decapsulate, Encapsulate};
use ml_kem::{EncodedSizeUser, KemCore, MlKem768};
use rand_core::OsRng;
use zeroize::{Zeroize, Zeroizing};

use crate::error::ChannelError;

/// Encoded ML-KEM-768 encapsulation key length.
pub const EK_LEN: usize = 1184;
/// ML-KEM-768 ciphertext length.
pub const CT_LEN: usize = 1088;

type Dk = <MlKem768 as KemCore>::DecapsulationKey;
type Ek = <MlKem768 as KemCore>::EncapsulationKey;

/// A fresh ML-KEM-768 key pair (the decapsulation key zeroizes itself on drop).
pub struct KemKeyPair {
    dk: Dk,
    ek: Vec<u8>,
}

impl KemKeyPair {
    /// Generates a key pair from the OS CSPRNG.
    pub fn generate() -> Self {
        let (dk, ek) = MlKem768::generate(&mut OsRng);
        KemKeyPair { dk, ek: ek.as_bytes().to_vec() }
    }

    /// The encoded encapsulation key (1184 bytes).
    pub fn encapsulation_key(&self) -> &[u8] {
        &self.ek
    }

    /// Decapsulates a ciphertext (implicit rejection: a bad ciphertext yields an unrelated
    /// secret, so the channel's key confirmation fails).
    pub fn decapsulate(&self, ct: &[u8]) -> Result<Zeroizing<[u8; 32]>, ChannelError> {
        let ct =
            ml_kem::array::Array::try_from(ct).map_err(|_| ChannelError::BadHandshake("ML-KEM ciphertext length"))?;
        let mut ss = self.dk.decapsulate(&ct).map_err(|_| ChannelError::BadHandshake("ML-KEM decapsulation"))?;
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(ss.as_slice());
        ss.as_mut_slice().zeroize();
        Ok(out)
    }
}

/// Encapsulates to an encoded encapsulation key: `(ciphertext, shared secret)`.
pub fn encapsulate(ek: &[u8]) -> Result<(Vec<u8>, Zeroizing<[u8; 32]>), ChannelError> {
    let enc = ml_kem::array::Array::try_from(ek)
        .map_err(|_| ChannelError::BadHandshake("ML-KEM encapsulation key length"))?;
    let ek = Ek::from_bytes(&enc);
    let (ct, mut ss) = ek.encapsulate(&mut OsRng).map_err(|_| ChannelError::BadHandshake("ML-KEM encapsulation"))?;
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(ss.as_slice());
    ss.as_mut_slice().zeroize();
    Ok((ct.to_vec(), out))
}
