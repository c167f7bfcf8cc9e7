//! How the command line reports an error: one line, each cause once, and a hint where
//! one helps.
//!
//! Many error types print their source in their own message (`"{addr}: {source}"`) and
//! also return it from `source()`, so printing the whole chain (`{:#}`) repeated it:
//! `Connection refused (os error 111): Connection refused (os error 111)`. Here a cause
//! whose text is already in the line is left out.

use raida_client::rke::RkeError;
use raida_client::transfer::TransferError;
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

/// The command the user ran, so that a hint names that command and its flags (a `raida
/// send` user is told about `raida receive`, never about `raida key receive`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ran {
    Send,
    KeySend,
    Receive,
    KeyReceive,
    Serve,
    NetworkUp,
    Stats,
    Other,
}

/// The key exchange's error in the chain: itself, or inside a transfer's error (which
/// forwards its source, so the exchange's error is not a link of the chain by itself).
fn rke_error(e: &anyhow::Error) -> Option<&RkeError> {
    e.chain().find_map(|c| {
        c.downcast_ref::<RkeError>().or_else(|| match c.downcast_ref::<TransferError>() {
            Some(TransferError::Key(k)) => Some(k),
            _ => None,
        })
    })
}

/// What to do about it, when the error says enough to tell, in the words of the command
/// that was run.
pub(crate) fn hint(e: &anyhow::Error, ran: Ran) -> Option<String> {
    if let Some(RkeError::Alert { address, reason }) = rke_error(e) {
        let receiver = match ran {
            Ran::Send => Some("raida receive"),
            Ran::KeySend => Some("raida key receive"),
            _ => None,
        };
        if let (Some(cmd), true) =
            (receiver, reason.contains("does not answer Echo") || reason.contains("the receiver"))
        {
            return Some(format!(
                "start `{cmd} --network FILE --wallet FILE --listen {address}` on the receiver's machine first \
                 (it must listen on that address, or on 0.0.0.0 with that port)"
            ));
        }
    }
    for cause in e.chain() {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::AddrInUse {
                return Some(
                    match ran {
                        Ran::Serve => {
                            "another process uses that port: choose a free one with --listen HOST:PORT \
                                       (or `listen` in config.toml)"
                        }
                        Ran::NetworkUp => {
                            "another process uses one of the network's ports: is `raida network up` \
                                           already running? (or make the network with another --base-port)"
                        }
                        Ran::Receive | Ran::KeyReceive => {
                            "another process uses that port: choose a free one with --listen HOST:PORT"
                        }
                        _ => "another process uses that port",
                    }
                    .into(),
                );
            }
        }
        if let Some(ResponseError::Status { status, .. }) = cause.downcast_ref::<ResponseError>() {
            if ran == Ran::Stats {
                if let Some(h) = stats_hint(*status) {
                    return Some(h);
                }
            }
            if let Some(h) = status_hint(*status) {
                return Some(h.into());
            }
        }
    }
    None
}

/// Where an admin key lives: what `raida stats` users need to know.
pub(crate) const ADMIN_KEY_WHERE: &str = "each RAIDA's admin key is `admin_key` in its own config.toml (`raida \
     network init` wrote one per RAIDA: DIR/raida-NN/config.toml, NN the RAIDA id in two digits, e.g. \
     raida-network/raida-07/config.toml for --raida-id 7)";

fn stats_hint(status: Status) -> Option<String> {
    match status {
        Status::AdminAuth => Some(format!("38: the admin key is not this RAIDA's: {ADMIN_KEY_WHERE}")),
        Status::InvalidEncryption => Some(
            "34: the server refused the request's encryption: without --wallet only a loopback address is \
             asked; with --wallet, the coin must be registered on that RAIDA with those ANs"
                .into(),
        ),
        Status::InvalidRaidaId => {
            Some(format!("3: that server is another RAIDA: give its id with --raida-id (and {ADMIN_KEY_WHERE})"))
        }
        _ => None,
    }
}

/// The per-RAIDA lines behind a one-line summary, for `-v` (empty: nothing more to say).
pub(crate) fn details(e: &anyhow::Error) -> Vec<String> {
    match rke_error(e) {
        Some(RkeError::NotEnoughServers { failures, .. }) => failures.iter().map(|f| f.to_string()).collect(),
        _ => Vec::new(),
    }
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
            "218: the sender bound this key part to the receiver's address (PROTOCOL.md 6/43, `--bind-address`): \
             fetch it from that address, or have the sender send again without --bind-address"
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
        assert!(hint(&busy, Ran::Receive).unwrap().contains("--listen"));
        assert!(!hint(&busy, Ran::Receive).unwrap().contains("config.toml"), "a receiver has no config.toml");
        assert!(hint(&busy, Ran::Serve).unwrap().contains("config.toml"));
        for (status, word) in [
            (Status::InvalidEncryption, "registered"),
            (Status::ReceiverAuth, "receiver coin"),
            (Status::ReceiverAddress, "address"),
        ] {
            let e = anyhow::Error::new(ResponseError::Status { status, authenticated: true });
            assert!(hint(&e, Ran::Other).unwrap().contains(word), "{status}");
        }
        assert!(hint(&anyhow::anyhow!("plain"), Ran::Other).is_none());
        let admin = anyhow::Error::new(ResponseError::Status { status: Status::AdminAuth, authenticated: true });
        assert!(hint(&admin, Ran::Stats).unwrap().contains("raida-network/raida-07/config.toml"));
    }

    #[test]
    fn a_dead_receiver_is_named_with_the_command_that_was_run() {
        let dead = || RkeError::Alert {
            address: "127.0.0.1:7100".into(),
            reason: "does not answer Echo (timeout): start the receiver there first".into(),
        };
        let send = anyhow::Error::new(TransferError::Key(dead()));
        let h = hint(&send, Ran::Send).unwrap();
        assert!(h.contains("`raida receive --network") && !h.contains("key receive"), "{h}");
        let key = anyhow::Error::new(dead());
        assert!(hint(&key, Ran::KeySend).unwrap().contains("`raida key receive --network"));
    }
}
