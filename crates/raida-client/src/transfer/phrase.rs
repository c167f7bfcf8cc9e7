//! The verification phrase: a few words from the channel's transcript hash that two people
//! compare aloud. Both ends of one handshake get the same words; a man in the middle runs
//! two handshakes and, unless he wins a 1 in 2^55 match within the handshake's timeout,
//! shows each side different words.
//!
//! Derivation (stable, documented for other implementations): the transcript hash of
//! `raida_channel::Channel::transcript_hash` is read as a big-endian bit string; word i
//! (i = 0..5) is the 11-bit number at bits 11 i .. 11 i + 11, an index into the BIP-39
//! English word list (2048 words, `wordlist.txt` beside this file, SHA-256
//! 2f5eed53a4727b4bf8880d8f3f199efc90e58503646d9ff8eff3a2ed3b24dbda, from
//! github.com/bitcoin/bips bip-0039/english.txt). Words are joined by '-'.

/// Words in a phrase (55 bits).
pub const PHRASE_WORDS: usize = 5;

const WORDLIST: &str = include_str!("wordlist.txt");

/// The word with this 11-bit index.
fn word(index: usize) -> &'static str {
    WORDLIST.lines().nth(index).unwrap_or("?")
}

/// The phrase of a transcript hash, e.g. `"cabin-lunar-ozone-ticket-wrap"`.
pub fn verification_phrase(transcript: &[u8; 32]) -> String {
    let bits = u64::from_be_bytes([
        transcript[0],
        transcript[1],
        transcript[2],
        transcript[3],
        transcript[4],
        transcript[5],
        transcript[6],
        transcript[7],
    ]);
    (0..PHRASE_WORDS).map(|i| word(((bits >> (64 - 11 * (i + 1))) & 0x7FF) as usize)).collect::<Vec<_>>().join("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_word_list_is_bip39_english() {
        assert_eq!(WORDLIST.lines().count(), 2048);
        assert_eq!(word(0), "abandon");
        assert_eq!(word(2047), "zoo");
    }

    #[test]
    fn phrase_takes_11_bits_per_word() {
        assert_eq!(verification_phrase(&[0; 32]), "abandon-abandon-abandon-abandon-abandon");
        assert_eq!(verification_phrase(&[0xFF; 32]), "zoo-zoo-zoo-zoo-zoo");
        // bits 0..11 = 0b00000000001 -> word 1 "ability"; the rest zero
        let mut t = [0u8; 32];
        t[1] = 0b0010_0000;
        assert_eq!(verification_phrase(&t), "ability-abandon-abandon-abandon-abandon");
        let mut u = t;
        u[7] ^= 0x01; // bit 63 is beyond the 55 used bits
        assert_eq!(verification_phrase(&u), verification_phrase(&t));
        u[6] ^= 0x02; // bit 54: the last bit of word 4
        assert_eq!(verification_phrase(&u), "ability-abandon-abandon-abandon-ability");
    }
}
