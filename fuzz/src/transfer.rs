//! Harness over the transfer's wire messages (`raida_client::transfer::wire`), the
//! messages `raida send` and `raida receive` exchange inside the channel:
//!
//! * `transfer_wire`: the input, as one message, through every decoder (offer, start,
//!   done, answer, accept) and the receiver's file-name check. Checked: nothing panics; a
//!   decoded message re-encodes to exactly the input (so no two encodings mean the same
//!   thing); an offer's name, once decoded, is never longer than the path limit; a name
//!   that passes `check_name` is one plain component (no separator, not `.`/`..`, not
//!   empty); a path that passes `check_path` is relative and each of its components is
//!   such a plain one; a manifest decodes to entries that re-encode to the input.
//! * `transfer_names`: the input as a name (lossy UTF-8): a name `check_name` accepts has
//!   no forbidden character, no separator, no leading `.` or `-`; `escape` never lets a
//!   forbidden character through and is the identity on accepted names.

#![allow(dead_code)]

use raida_client::transfer::wire;
use raida_client::transfer::{check_name, check_path, escape, is_forbidden_char};

pub fn transfer_wire(data: &[u8]) {
    if let Ok(o) = wire::decode_offer(data) {
        assert!(o.name.len() <= wire::MAX_PATH);
        assert_eq!(wire::encode_offer(&o), data, "offer does not re-encode to its input");
        if check_name(&o.name).is_ok() {
            assert!(!o.name.is_empty() && o.name != "." && o.name != "..");
            assert!(!o.name.contains(['/', '\\']));
        }
        if check_path(&o.name).is_ok() {
            assert!(!o.name.starts_with('/') && !o.name.contains('\\'));
            for c in o.name.split('/') {
                assert!(!c.is_empty() && c != "." && c != ".." && c.len() <= wire::MAX_NAME);
            }
        }
    }
    if let Ok(items) = wire::decode_manifest(data) {
        assert_eq!(wire::encode_manifest(&items).as_deref(), Some(data), "manifest does not re-encode");
    }
    let _ = wire::decode_decision(data);
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

pub fn transfer_names(data: &[u8]) {
    let name = String::from_utf8_lossy(data);
    let escaped = escape(&name);
    assert!(!escaped.chars().any(is_forbidden_char), "escape let a forbidden character through");
    if check_name(&name).is_ok() {
        assert!(!name.is_empty() && name.len() <= wire::MAX_NAME);
        assert!(!name.starts_with('.') && !name.starts_with('-'));
        assert!(!name.contains(['/', '\\']));
        assert!(!name.chars().any(is_forbidden_char));
        if !name.contains('\\') {
            assert_eq!(escaped, name, "escape changed an accepted name");
        }
    }
}
