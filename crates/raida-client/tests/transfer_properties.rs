//! Property tests of the transfer's wire messages (`raida_client::transfer::wire`): every
//! decoder takes arbitrary bytes without panicking, and encode/decode round-trips.

use proptest::prelude::*;
use raida_client::transfer::wire::{self, Kind, Offer};

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![Just(Kind::File), Just(Kind::Stream)]
}

proptest! {
    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = wire::decode_offer(&data);
        let _ = wire::decode_start(&data);
        let _ = wire::decode_done(&data);
        if let Ok(rest) = wire::decode_answer(&data) {
            let _ = wire::decode_accept(rest);
        }
    }

    #[test]
    fn decoders_never_panic_on_near_valid_offers(
        tag in 0u8..6, k in any::<u8>(), size in any::<u64>(), len in any::<u16>(),
        name in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        // a well-formed header with any declared length and any name bytes
        let mut m = vec![tag, k];
        m.extend_from_slice(&size.to_be_bytes());
        m.extend_from_slice(&len.to_be_bytes());
        m.extend_from_slice(&name);
        if let Ok(o) = wire::decode_offer(&m) {
            prop_assert!(o.name.len() <= wire::MAX_NAME);
            prop_assert_eq!(wire::encode_offer(&o), m);
        }
    }

    #[test]
    fn offer_round_trips(kind in kind(), size in any::<u64>(), name in "\\PC{0,60}") {
        prop_assume!(name.len() <= wire::MAX_NAME);
        let o = Offer { kind, size, name };
        let enc = wire::encode_offer(&o);
        prop_assert_eq!(wire::decode_offer(&enc), Ok(o));
        // any truncation or extension is refused
        for cut in 0..enc.len() {
            prop_assert!(wire::decode_offer(&enc[..cut]).is_err());
        }
        let mut longer = enc.clone();
        longer.push(0);
        prop_assert!(wire::decode_offer(&longer).is_err());
    }

    #[test]
    fn start_done_accept_round_trip(offset in any::<u64>(), hash in any::<[u8; 32]>()) {
        prop_assert_eq!(wire::decode_start(&wire::encode_start(offset)), Some(offset));
        prop_assert_eq!(wire::decode_done(&wire::encode_done(&hash)), Some(hash));
        let accept = wire::encode_accept(offset, &hash);
        let rest = wire::decode_answer(&accept);
        prop_assert!(rest.is_ok());
        prop_assert_eq!(rest.ok().and_then(wire::decode_accept), Some((offset, hash)));
    }

    #[test]
    fn refusal_round_trips(reason in "\\PC{0,100}") {
        let enc = wire::encode_refused(&reason);
        prop_assert_eq!(wire::decode_answer(&enc), Err(reason));
    }
}
