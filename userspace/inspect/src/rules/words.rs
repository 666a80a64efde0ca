//! Case-insensitive word lists for the confirmers.

use std::collections::HashSet;

use foldhash::fast::FixedState;

/// A word list for case-insensitive lookups: the confirmers ask about every token they read,
/// and most tokens are not in the list. A table of the lengths each first two letters start
/// answers most of those without hashing; the hash is a fast one (the keys are fixed lists,
/// nothing an attacker can insert) and short words, nearly all of them, are looked up as one
/// integer rather than as a slice.
pub struct WordSet {
    /// Per [`prefix_slot`], bit `min(len, 15)` is set if a word of that length starts so.
    lengths_by_prefix: Box<[u16; PREFIX_SLOTS]>,
    short: HashSet<u128, FixedState>,
    long: HashSet<&'static [u8], FixedState>,
    longest: usize,
}

impl WordSet {
    /// Longest word a set may hold (the lowercased lookup key lives on the stack).
    const MAX_WORD: usize = 64;
    /// Longest word packed into a `u128`: its bytes, and its length in the top byte.
    const MAX_SHORT: usize = 15;

    pub fn new(list: &[&'static str]) -> WordSet {
        debug_assert!(list
            .iter()
            .all(|w| !w.bytes().any(|b| b.is_ascii_uppercase())));
        let longest = list.iter().map(|w| w.len()).max().unwrap_or(0);
        assert!(longest <= Self::MAX_WORD);
        let (short, long): (Vec<&str>, Vec<&str>) =
            list.iter().partition(|w| w.len() <= Self::MAX_SHORT);
        let mut lengths_by_prefix = Box::new([0u16; PREFIX_SLOTS]);
        for word in list {
            lengths_by_prefix[prefix_slot(word.as_bytes())] |= length_bit(word.len());
        }
        WordSet {
            lengths_by_prefix,
            short: short.iter().map(|w| Self::packed(w.as_bytes())).collect(),
            long: long.iter().map(|w| w.as_bytes()).collect(),
            longest,
        }
    }

    /// `word` (at most [`Self::MAX_SHORT`] bytes) lowercased, with its length, as one key.
    fn packed(word: &[u8]) -> u128 {
        let len = word.len();
        debug_assert!(len <= Self::MAX_SHORT);
        // Two overlapping loads cover any length without a byte loop; the overlap ORs a byte
        // with itself.
        let le = |at: usize, n: usize| {
            let mut bytes = [0u8; 8];
            bytes[..n].copy_from_slice(&word[at..at + n]);
            u128::from(u64::from_le_bytes(bytes)) << (8 * at)
        };
        let bytes = match len {
            0 => 0,
            1..=3 => le(0, 1) | le(len / 2, 1) | le(len - 1, 1),
            4..=7 => le(0, 4) | le(len - 4, 4),
            _ => le(0, 8) | le(len - 8, 8),
        };
        to_ascii_lowercase(bytes) | (len as u128) << 120
    }

    pub fn contains(&self, word: &str) -> bool {
        let word = word.as_bytes();
        if self.lengths_by_prefix[prefix_slot(word)] & length_bit(word.len()) == 0 {
            return false;
        }
        if word.len() <= Self::MAX_SHORT {
            return self.short.contains(&Self::packed(word));
        }
        if word.len() > self.longest {
            return false;
        }
        let mut lower = [0u8; Self::MAX_WORD];
        let lower = &mut lower[..word.len()];
        lower.copy_from_slice(word);
        lower.make_ascii_lowercase();
        self.long.contains(&*lower)
    }
}

/// Slots of the prefix table: 5 bits of each of the first two bytes.
const PREFIX_SLOTS: usize = 1 << 10;

/// The slot of `word`'s first two bytes, ASCII case ignored (all words a case-insensitive
/// lookup equates share it; other words may share it too, the table only rules words out).
fn prefix_slot(word: &[u8]) -> usize {
    let five_bits = |i: usize| usize::from(word.get(i).map_or(0, |b| b.to_ascii_lowercase() & 31));
    five_bits(0) << 5 | five_bits(1)
}

fn length_bit(len: usize) -> u16 {
    1 << len.min(15)
}

/// ASCII lowercase of 16 bytes at once. Per byte, with the top bit cleared, adding 0x3f sets
/// it from `A` up and adding 0x25 from past `Z`; no sum carries into the next byte.
fn to_ascii_lowercase(bytes: u128) -> u128 {
    const EACH: u128 = u128::MAX / 0xff;
    let low7 = bytes & (0x7f * EACH);
    let from_a = low7 + 0x3f * EACH;
    let past_z = low7 + 0x25 * EACH;
    let upper = from_a & !past_z & !bytes & (0x80 * EACH);
    bytes | upper >> 2
}

#[cfg(test)]
mod tests {
    use super::{to_ascii_lowercase, WordSet};

    #[test]
    fn lowercase_matches_std_for_every_byte() {
        for b in 0..=255u8 {
            let packed = u128::from_le_bytes([b; 16]);
            let expected = u128::from_le_bytes([b.to_ascii_lowercase(); 16]);
            assert_eq!(to_ascii_lowercase(packed), expected, "{b:#x}");
        }
    }

    #[test]
    fn lookups_ignore_case_and_respect_length() {
        let set = WordSet::new(&["id", "utl_inaddr.get_host_address", "fifteen_chars_x"]);
        assert!(set.contains("ID"));
        assert!(set.contains("Utl_Inaddr.Get_Host_Address"));
        assert!(set.contains("fifteen_chars_X"));
        assert!(!set.contains("i"));
        assert!(!set.contains("id\0"));
        assert!(!set.contains("idx"));
        assert!(!set.contains("utl_inaddr.get_host_addres"));
        assert!(!set.contains(""));
        assert!(!set.contains(&"x".repeat(100)));
        for len in 1..=15 {
            let word: String = ('a'..='z').take(len).collect();
            let set = WordSet::new(&[word.clone().leak()]);
            assert!(set.contains(&word.to_ascii_uppercase()), "{word}");
            assert!(!set.contains(&word[1..]), "{word}");
            assert!(!set.contains(&format!("{}X", &word[..len - 1])), "{word}");
        }
    }
}
