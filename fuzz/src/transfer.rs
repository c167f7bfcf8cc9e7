//! Harness over the transfer's wire messages (`raida_client::transfer::wire`), the
//! messages `raida send` and `raida receive` exchange inside the channel:
//!
//! * `transfer_wire`: the input, as one message, through every decoder (offer, start,
//!   done, answer, accept) and the receiver's file-name check. Checked: nothing panics; a
//!   decoded message re-encodes to exactly the input (so no two encodings mean the same
//!   thing); an offer's name, once decoded, is never longer than the limit; a name that
//!   passes `check_name` is one plain component (no separator, not `.`/`..`, not empty).

#![allow(dead_code)]

use raida_client::transfer::check_name;
use raida_client::transfer::wire;

pub fn transfer_wire(data: &[u8]) {
    if let Ok(o) = wire::decode_offer(data) {
        assert!(o.name.len() <= wire::MAX_NAME);
        assert_eq!(wire::encode_offer(&o), data, "offer does not re-encode to its input");
        if check_name(&o.name).is_ok() {
            assert!(!o.name.is_empty() && o.name != "." && o.name != "..");
            assert!(!o.name.contains(['/', '\\']));
        }
    }
    if let Some(offset) = wire::decode_start(data) {
        assert_eq!(wire::encode_start(offset), data);
    }
    if let Some(h) = wire::decode_done(data) {
        assert_eq!(wire::encode_done(&h), data);
    }
    match wire::decode_answer(data) {
        Ok(rest) => {
            if let Some((have, prefix)) = wire::decode_accept(rest) {
                assert_eq!(wire::encode_accept(have, &prefix), data);
            }
        }
        Err(reason) => assert!(reason.len() <= 3 * 512, "refusal reason not bounded"),
    }
    // the bytes as a name (the CLI also checks names it is given)
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = check_name(s);
    }
}
