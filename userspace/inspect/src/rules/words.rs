//! Case-insensitive word lists for the confirmers.

use std::collections::HashSet;

use foldhash::fast::FixedState;

/// A word list for case-insensitive lookups: the confirmers ask about every token they read,
/// so the hash is a fast one (the keys are fixed lists, nothing an attacker can insert).
pub struct WordSet {
    words: HashSet<&'static [u8], FixedState>,
    longest: usize,
}

impl WordSet {
    /// Longest word a set may hold (the lowercased lookup key lives on the stack).
    const MAX_WORD: usize = 64;

    pub fn new(list: &[&'static str]) -> WordSet {
        debug_assert!(list
            .iter()
            .all(|w| !w.bytes().any(|b| b.is_ascii_uppercase())));
        let longest = list.iter().map(|w| w.len()).max().unwrap_or(0);
        assert!(longest <= Self::MAX_WORD);
        WordSet {
            words: list.iter().map(|w| w.as_bytes()).collect(),
            longest,
        }
    }

    pub fn contains(&self, word: &str) -> bool {
        if word.len() > self.longest {
            return false;
        }
        let mut lower = [0u8; Self::MAX_WORD];
        let lower = &mut lower[..word.len()];
        lower.copy_from_slice(word.as_bytes());
        lower.make_ascii_lowercase();
        self.words.contains(&*lower)
    }
}
