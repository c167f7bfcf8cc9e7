//! Transports: byte streams with length-prefixed frames, and the seed's HTTP mode.

pub mod frame;
pub mod http;
pub mod stream;
