//! Every way the channel can refuse something. Each rejection is an error value; the code
//! that produces one also emits a `tracing` event (never with key material).

/// An error of the secure channel.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// A pre-shared key shorter than 16 bytes.
    #[error("pre-shared key too short: {0} bytes, at least 16 required")]
    PskTooShort(usize),
    /// A handshake message that does not parse.
    #[error("malformed handshake message: {0}")]
    BadHandshake(&'static str),
    /// The peers disagree on the handshake mode (PSK or post-quantum).
    #[error("handshake mode mismatch: {0}")]
    ModeMismatch(&'static str),
    /// The X25519 result is all zero (a low-order public key).
    #[error("peer public key is not contributory")]
    NonContributory,
    /// The peer's first record did not open or did not carry the session id.
    #[error("key confirmation failed (wrong pre-shared key, or a tampered handshake)")]
    KeyConfirmation,
    /// A record shorter than its 36-byte overhead.
    #[error("record truncated: {0} bytes, at least 36 required")]
    Truncated(usize),
    /// Sequence number 0 is never sent.
    #[error("record with sequence number 0")]
    ZeroSeq,
    /// A record whose sequence number was accepted before.
    #[error("record {seq} is a replay")]
    Replay {
        /// Its sequence number.
        seq: u64,
    },
    /// A record at or below (highest accepted - 3).
    #[error("record {seq} is too old (highest accepted {highest})")]
    TooOld {
        /// Its sequence number.
        seq: u64,
        /// The highest sequence number accepted so far.
        highest: u64,
    },
    /// A record too far ahead (more than 1,000 key-chain steps).
    #[error("record {seq} is too far ahead of the highest accepted {highest}")]
    Gap {
        /// Its sequence number.
        seq: u64,
        /// The highest sequence number accepted so far.
        highest: u64,
    },
    /// A record that does not authenticate (tampered, wrong key, wrong AAD).
    #[error("record {seq} failed authentication")]
    Auth {
        /// The sequence number it claims.
        seq: u64,
    },
    /// A message for another session.
    #[error("message for another session")]
    WrongSession,
    /// The send sequence number would reach 2^63; the session must rekey first.
    #[error("sequence number space exhausted; rekey required")]
    SeqExhausted,
    /// A decrypted message that does not parse.
    #[error("malformed message: {0}")]
    Malformed(&'static str),
    /// A valid message that is not allowed in the current state.
    #[error("unexpected message: {0}")]
    Unexpected(&'static str),
    /// A frame above the size bound.
    #[error("frame of {0} bytes exceeds the limit")]
    FrameTooLarge(usize),
    /// A payload above the size bound.
    #[error("payload of {0} bytes exceeds the limit")]
    PayloadTooLarge(usize),
    /// The peer was silent for longer than the idle timeout, or did not answer in time.
    #[error("peer timed out")]
    Timeout,
    /// The channel is closed.
    #[error("channel closed")]
    Closed,
    /// A rekey is in progress; application data waits until it completes.
    #[error("rekey in progress")]
    RekeyPending,
    /// The peer answered an HTTP request with a rejection.
    #[error("peer rejected the message: {0}")]
    PeerRejected(String),
    /// I/O error of the transport.
    #[error("I/O error: {0}")]
    Io(std::sync::Arc<std::io::Error>),
    /// HTTP error of the transport.
    #[error("HTTP error: {0}")]
    Http(String),
    /// AES-GCM refused to encrypt (cannot happen for valid sizes).
    #[error("encryption failed")]
    Seal,
}

impl ChannelError {
    /// A short stable name: `replay`, `too_old`, `gap`, `auth`, `truncated`, ... (used in
    /// logs and in the HTTP mode's JSON `error` field).
    pub fn reason(&self) -> &'static str {
        match self {
            ChannelError::PskTooShort(_) => "psk_too_short",
            ChannelError::BadHandshake(_) => "bad_handshake",
            ChannelError::ModeMismatch(_) => "mode_mismatch",
            ChannelError::NonContributory => "non_contributory",
            ChannelError::KeyConfirmation => "key_confirmation",
            ChannelError::Truncated(_) => "truncated",
            ChannelError::ZeroSeq => "zero_seq",
            ChannelError::Replay { .. } => "replay",
            ChannelError::TooOld { .. } => "too_old",
            ChannelError::Gap { .. } => "gap",
            ChannelError::Auth { .. } => "auth",
            ChannelError::WrongSession => "wrong_session",
            ChannelError::SeqExhausted => "seq_exhausted",
            ChannelError::Malformed(_) => "malformed",
            ChannelError::Unexpected(_) => "unexpected",
            ChannelError::FrameTooLarge(_) => "frame_too_large",
            ChannelError::PayloadTooLarge(_) => "payload_too_large",
            ChannelError::Timeout => "timeout",
            ChannelError::Closed => "closed",
            ChannelError::RekeyPending => "rekey_pending",
            ChannelError::PeerRejected(_) => "peer_rejected",
            ChannelError::Io(_) => "io",
            ChannelError::Http(_) => "http",
            ChannelError::Seal => "seal",
        }
    }

    /// Whether this error rejects one record but leaves the session usable.
    pub fn is_record_rejection(&self) -> bool {
        matches!(
            self,
            ChannelError::Truncated(_)
                | ChannelError::ZeroSeq
                | ChannelError::Replay { .. }
                | ChannelError::TooOld { .. }
                | ChannelError::Gap { .. }
                | ChannelError::Auth { .. }
                | ChannelError::WrongSession
        )
    }
}

impl From<std::io::Error> for ChannelError {
    fn from(e: std::io::Error) -> Self {
        ChannelError::Io(std::sync::Arc::new(e))
    }
}
