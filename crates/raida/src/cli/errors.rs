//! How the command line reports an error: one line, each cause once, and a hint where
//! one helps.
//!
//! Many error types print their source in their own message (`"{addr}: {source}"`) and
//! also return it from `source()`, so printing the whole chain (`{:#}`) repeated it:
//! `Connection refused (os error 111): Connection refused (os error 111)`. Here a cause
//! whose text is already in the line is left out.

use raida_proto::client::ResponseError;
use raida_proto::Status;

/// The error and its causes on one line, each text once.
pub(crate) fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string().split_whitespace().collect::<Vec<_>>().join(" ");
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// What to do about it, when the error says enough to tell.
pub(crate) fn hint(e: &anyhow::Error) -> Option<String> {
    for cause in e.chain() {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::AddrInUse {
                return Some(
                    "another process uses that port: choose a free one with --listen HOST:PORT \
                     (or `listen` in config.toml)"
                        .into(),
                );
            }
        }
        if let Some(ResponseError::Status { status, .. }) = cause.downcast_ref::<ResponseError>() {
            if let Some(h) = status_hint(*status) {
                return Some(h.into());
            }
        }
    }
    None
}

/// The statuses whose meaning is not obvious from their name.
pub(crate) fn status_hint(status: Status) -> Option<&'static str> {
    Some(match status {
        Status::InvalidEncryption => {
            "34: the RAIDA does not hold that coin with that AN: is the coin registered there \
             (`raida coin set` on that RAIDA), and is the AN the one for that RAIDA?"
        }
        Status::InvalidRaidaId => "3: that server is another RAIDA: give its id with --raida-id",
        Status::EncryptionCoinNotFound => "25: the coin is not present on that RAIDA: is the coin registered there?",
        Status::ReceiverAuth => {
            "217: the sender reserved this key part for another receiver coin (PROTOCOL.md 6/43): \
             fetch it with the coin the sender named"
        }
        Status::ReceiverAddress => {
            "218: the sender bound this key part to the receiver's address (PROTOCOL.md 6/43): \
             fetch it from that address, or have the sender post with --any-address"
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_cause_is_printed_once() {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        #[derive(Debug, thiserror::Error)]
        #[error("i/o error talking to 127.0.0.1:9: {source}")]
        struct Talk {
            source: std::io::Error,
        }
        let e = anyhow::Error::new(Talk { source: io }).context("echo");
        let line = one_line(&e);
        assert_eq!(line.matches("refused").count(), 1, "{line}");
        assert!(line.starts_with("echo: i/o error talking to 127.0.0.1:9: "), "{line}");
    }

    #[test]
    fn hints_for_a_busy_port_and_the_receiver_rules() {
        let busy = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::AddrInUse)).context("bind");
        assert!(hint(&busy).unwrap().contains("--listen"));
        for (status, word) in [
            (Status::InvalidEncryption, "registered"),
            (Status::ReceiverAuth, "receiver coin"),
            (Status::ReceiverAddress, "address"),
        ] {
            let e = anyhow::Error::new(ResponseError::Status { status, authenticated: true });
            assert!(hint(&e).unwrap().contains(word), "{status}");
        }
        assert!(hint(&anyhow::anyhow!("plain")).is_none());
    }
}
