//! Fuzz every command payload parser of raida-proto.
#![no_main]

use libfuzzer_sys::fuzz_target;
use raida_proto::commands::{get_ticket, key_alert, key_tickets, post_key, status_group, validate_ticket};

fuzz_target!(|p: &[u8]| {
    let _ = status_group::parse_empty(p);
    let _ = status_group::parse_show_stats(p);
    let _ = get_ticket::parse(p).map(|it| it.count());
    let _ = validate_ticket::parse(p);
    let _ = post_key::parse_post(p);
    let _ = post_key::parse_get(p);
    let _ = post_key::decode_get_answer(p);
    let _ = key_alert::parse(p).map(|e| e.iter().filter_map(|x| x.ip()).count());
    let _ = key_tickets::parse_encrypt(p);
    let _ = key_tickets::parse_decrypt(p);
});
