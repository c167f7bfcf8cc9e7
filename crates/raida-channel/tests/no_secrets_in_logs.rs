//! Every log line the channel emits, at TRACE level, through handshake, traffic,
//! rejections, rekey and shutdown, must be free of key material.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use raida_channel::chain::{next_key, SecretKey};
use raida_channel::handshake::{Established, HandshakeConfig, Role, SessionKeys};
use raida_channel::session::{Config, Mode};
use raida_channel::{Psk, Session};

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn est(role: Role, a2b: [u8; 32], b2a: [u8; 32]) -> Established {
    Established {
        keys: SessionKeys { alice_to_bob: SecretKey::new(a2b), bob_to_alice: SecretKey::new(b2a) },
        session_id: [0x11; 16],
        role,
        pq: false,
    }
}

#[test]
fn logs_never_contain_keys() {
    let buf = Buf::default();
    let writer = buf.clone();
    let sub = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let (a2b, b2a) = ([0xA1u8; 32], [0xB2u8; 32]);
    let psk_bytes = vec![0xC3u8; 32];
    tracing::subscriber::with_default(sub, || {
        let now = Instant::now();
        let cfg = Config {
            handshake: HandshakeConfig { psk: Some(Psk::new(psk_bytes.clone()).unwrap()), pq: false },
            ..Config::default()
        };
        let _ = Psk::new(vec![0xC3; 5]);
        let mut a = Session::new(est(Role::Initiator, a2b, b2a), Mode::Stream, cfg.clone(), now);
        let mut b = Session::new(est(Role::Responder, a2b, b2a), Mode::Stream, cfg, now);
        let r1 = a.seal_data(b"one", now).unwrap();
        b.handle_record(&r1, now).unwrap();
        assert!(b.handle_record(&r1, now).is_err()); // replay
        let mut t = a.seal_data(b"two", now).unwrap();
        t[25] ^= 1;
        assert!(b.handle_record(&t, now).is_err()); // auth
        assert!(b.handle_record(&t[..10], now).is_err()); // truncated
        assert!(b.check_session_id(&[0; 16]).is_err()); // wrong session
        let rk = a.start_rekey(now).unwrap();
        let out = b.handle_record(&rk, now).unwrap();
        a.handle_record(&out.replies[0], now).unwrap();
        let s = a.begin_shutdown(now).unwrap();
        let out = b.handle_record(&s, now).unwrap();
        a.handle_record(&out.replies[0], now).unwrap();
    });
    let logs = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap().to_lowercase();
    assert!(logs.contains("replay") && logs.contains("rekey"), "nothing logged?\n{logs}");
    let k2 = next_key(&a2b, 1);
    for secret in [&a2b[..], &b2a[..], &k2[..], &psk_bytes[..]] {
        let h = hex::encode(secret);
        assert!(!logs.contains(&h[..16]), "key material in the logs:\n{logs}");
        assert!(!logs.contains(&format!("{:?}", &secret[..4])), "key bytes in the logs:\n{logs}");
    }
}
