//! 44 Encrypt Key and 45 Decrypt RAIDA Key under their older common name: the codecs are
//! in `encrypt_key.rs` and `decrypt_raida_key.rs`.

pub use super::decrypt_raida_key::*;
pub use super::encrypt_key::*;
