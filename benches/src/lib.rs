//! Inputs for the criterion benchmarks in benches/benches/: benign messages built from the
//! shared corpus at run time (never hard-coded), the built-in rules compiled as a loop of
//! `regex` patterns, the way per-pattern inspectors work, for comparison with Hyperscan, and
//! generated chat text, chat JSON and permessage-deflate messages for the codec and payload
//! stages (deterministic, so every run measures the same bytes).

use std::path::PathBuf;

use flate2::{Compress, Compression, FlushCompress};
use frameguard_inspect::rules::BUILTIN;
use regex::bytes::{Regex, RegexBuilder};

/// Message sizes of the per-message benchmarks: a short chat line, a typical message, a large one.
pub const MESSAGE_SIZES: [usize; 3] = [64, 1024, 16 * 1024];

/// `shared/corpus/<file>` next to the repository.
pub fn corpus_lines(file: &str) -> Vec<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/corpus")
        .join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines().map(str::to_owned).collect()
}

/// Benign chat lines joined with spaces until `size` bytes (cut on a char boundary).
pub fn benign_text(lines: &[String], size: usize) -> String {
    let mut text = String::with_capacity(size + 256);
    for line in lines.iter().cycle() {
        if text.len() >= size {
            break;
        }
        text.push_str(line);
        text.push(' ');
    }
    truncate_to_char_boundary(&mut text, size);
    text
}

/// Cuts `text` to at most `size` bytes, backing off to the start of a character it would split.
fn truncate_to_char_boundary(text: &mut String, size: usize) {
    let mut end = size.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
}

/// Which words [`chat_text`] uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Script {
    /// English chat: one byte per character.
    Ascii,
    /// Cyrillic, Greek, CJK and emoji: two to four bytes per character, ASCII spaces between.
    Multibyte,
}

impl Script {
    pub fn name(self) -> &'static str {
        match self {
            Script::Ascii => "ascii",
            Script::Multibyte => "multibyte",
        }
    }

    fn words(self) -> &'static [&'static str] {
        match self {
            Script::Ascii => &[
                "hello", "there", "how", "are", "you", "doing", "today", "the", "meeting", "is",
                "at", "noon", "see", "you", "later", "thanks", "ok", "sounds", "good", "lol",
            ],
            Script::Multibyte => &[
                "привет",
                "как",
                "дела",
                "γειά",
                "σου",
                "καλημέρα",
                "こんにちは",
                "ありがとう",
                "你好",
                "谢谢",
                "안녕하세요",
                "café",
                "naïve",
                "👍",
                "🎉",
                "😂",
                "שלום",
            ],
        }
    }
}

/// Chat-like text of exactly `size` bytes for [`Script::Ascii`], at most 3 short of it for
/// [`Script::Multibyte`] (the cut backs off to a character start). `seed` picks the words.
pub fn chat_text(script: Script, size: usize, seed: u64) -> String {
    let words = script.words();
    let mut rng = Rng::new(seed);
    let mut text = String::with_capacity(size + 16);
    while text.len() < size {
        text.push_str(words[rng.below(words.len())]);
        text.push(' ');
    }
    truncate_to_char_boundary(&mut text, size);
    text
}

const USERS: [&str; 4] = ["alice", "bob", "carol", "dave"];
const HISTORY_OPEN: &str = r#"{"type":"history","messages":["#;
const HISTORY_CLOSE: &str = "]}";

fn chat_message(id: usize, user: &str, text: &str) -> String {
    format!(r#"{{"id":{id},"user":"{user}","text":"{text}"}}"#)
}

/// Chat JSON of exactly `size` bytes (any size above an empty message's 33): one message object
/// up to about two messages' worth (418 bytes), above that a history page (an array of messages
/// with 16..160-byte texts), as chat servers send on join. `seed` varies the texts, so that
/// consecutive messages resemble each other the way a real conversation does without repeating.
pub fn chat_json(size: usize, seed: u64) -> String {
    let lone_overhead = chat_message(0, USERS[0], "").len();
    if size < HISTORY_OPEN.len() + HISTORY_CLOSE.len() + 2 * (lone_overhead + 160) {
        let text = chat_text(Script::Ascii, size.saturating_sub(lone_overhead), seed);
        return chat_message(0, USERS[0], &text);
    }
    let mut rng = Rng::new(seed);
    let mut doc = String::with_capacity(size);
    doc.push_str(HISTORY_OPEN);
    for id in 0.. {
        let user = USERS[rng.below(USERS.len())];
        let separator = usize::from(id > 0);
        let overhead = chat_message(id, user, "").len();
        let room = size - doc.len() - separator - HISTORY_CLOSE.len() - overhead;
        let wanted = 16 + rng.below(144);
        // The last message takes what is left when another one would not fit after this one.
        let last = room < wanted + 1 + overhead + 16;
        let text_len = if last { room } else { wanted };
        let text = chat_text(Script::Ascii, text_len, rng.next());
        if separator == 1 {
            doc.push(',');
        }
        doc.push_str(&chat_message(id, user, &text));
        if last {
            break;
        }
    }
    doc.push_str(HISTORY_CLOSE);
    doc
}

/// xorshift64*: small, seedable and the same on every platform, which is all the generators need.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        // xorshift never leaves zero; the constant keeps seed 0 usable.
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Below `bound`, from the high bits (the better ones of xorshift64*).
    fn below(&mut self, bound: usize) -> usize {
        (self.next() >> 32) as usize % bound
    }
}

/// The empty stored block a sync flush ends with; RFC 7692 7.2.1 has the sender strip it.
const SYNC_FLUSH_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// A permessage-deflate sender (RFC 7692), 15-bit window: raw deflate, one sync flush per message,
/// its tail stripped. With context takeover the window carries over to the next message; without,
/// each message is compressed from an empty window.
pub struct Deflater {
    compress: Compress,
    context_takeover: bool,
}

impl Deflater {
    pub fn new(context_takeover: bool) -> Deflater {
        Deflater {
            compress: Compress::new(Compression::default(), false),
            context_takeover,
        }
    }

    /// The message as sent on the wire.
    pub fn compress(&mut self, message: &[u8]) -> Vec<u8> {
        if !self.context_takeover {
            self.compress.reset();
        }
        let start = self.compress.total_in();
        let mut out = Vec::with_capacity(message.len() / 2 + 64);
        loop {
            let consumed = (self.compress.total_in() - start) as usize;
            self.compress
                .compress_vec(&message[consumed..], &mut out, FlushCompress::Sync)
                .expect("deflate");
            // The flush is complete once all input is in and it did not fill the output.
            let all_in = self.compress.total_in() - start == message.len() as u64;
            if all_in && out.len() < out.capacity() {
                break;
            }
            out.reserve(out.capacity());
        }
        assert!(out.ends_with(&SYNC_FLUSH_TAIL), "sync flush tail");
        out.truncate(out.len() - SYNC_FLUSH_TAIL.len());
        out
    }
}

/// The built-in rules as individual `regex` patterns with the same flags as the Hyperscan
/// database (ASCII case-insensitive, multi-line).
pub struct RegexLoop {
    patterns: Vec<Regex>,
}

impl RegexLoop {
    pub fn new() -> RegexLoop {
        let patterns = BUILTIN
            .iter()
            .map(|rule| {
                RegexBuilder::new(rule.expression)
                    .case_insensitive(true)
                    .multi_line(true)
                    .unicode(false)
                    .build()
                    .unwrap_or_else(|e| panic!("{}: {e}", rule.id))
            })
            .collect();
        RegexLoop { patterns }
    }

    /// How many rules match `data` (each pattern run on its own).
    pub fn matching_rules(&self, data: &[u8]) -> usize {
        self.patterns.iter().filter(|p| p.is_match(data)).count()
    }
}

impl Default for RegexLoop {
    fn default() -> Self {
        RegexLoop::new()
    }
}

#[cfg(test)]
mod tests {
    use frameguard_inspect::extract::json;
    use frameguard_inspect::inflate::Inflater;

    use super::*;

    #[test]
    fn benign_text_has_the_requested_size() {
        let lines = vec!["héllo".to_owned(), "world".to_owned()];
        for size in [1, 2, 64, 1000] {
            let text = benign_text(&lines, size);
            // Cut at most one byte short of `size` (é is two bytes).
            assert!(
                text.len() <= size && text.len() + 1 >= size,
                "{size}: {}",
                text.len()
            );
        }
    }

    #[test]
    fn chat_text_sizes_and_scripts() {
        for size in [0, 1, 64, 1000, 4096] {
            let ascii = chat_text(Script::Ascii, size, 7);
            assert_eq!(ascii.len(), size);
            assert!(ascii.is_ascii());
            let multibyte = chat_text(Script::Multibyte, size, 7);
            assert!(multibyte.len() <= size && multibyte.len() + 3 >= size);
        }
        let text = chat_text(Script::Multibyte, 4096, 7);
        assert!(text.chars().count() < text.len() / 2, "mostly multibyte");
        assert_eq!(text, chat_text(Script::Multibyte, 4096, 7), "deterministic");
    }

    #[test]
    fn chat_json_is_json_of_the_requested_size() {
        let mut buffers = simd_json::Buffers::default();
        for size in MESSAGE_SIZES.into_iter().chain([100, 300, 700, 5000]) {
            for seed in 0..4 {
                let doc = chat_json(size, seed);
                assert_eq!(doc.len(), size, "{size}/{seed}: {doc}");
                let mut buf = doc.into_bytes();
                let tape = json::parse(&mut buf, &mut buffers).expect("valid JSON");
                // Keys and values: id, user, alice, text, the text.
                assert!(json::strings(&tape).count() >= 5);
            }
        }
        assert_ne!(chat_json(1024, 0), chat_json(1024, 1));
    }

    #[test]
    fn deflater_output_inflates_back() {
        let messages: Vec<String> = (0..8).map(|seed| chat_json(1024, seed)).collect();
        for context_takeover in [true, false] {
            let mut deflater = Deflater::new(context_takeover);
            let mut inflater = Inflater::new(15, !context_takeover);
            let mut out = Vec::new();
            let mut wire_bytes = Vec::new();
            for message in &messages {
                let wire = deflater.compress(message.as_bytes());
                wire_bytes.push(wire.len());
                inflater.inflate(&wire, 1 << 20, &mut out).unwrap();
                assert_eq!(out, message.as_bytes());
            }
            // Later messages refer back to earlier ones only with context takeover.
            let later = wire_bytes[1..].iter().sum::<usize>();
            let first_repeated = wire_bytes[0] * (wire_bytes.len() - 1);
            assert_eq!(later < first_repeated * 3 / 4, context_takeover);
        }
    }

    #[test]
    fn regex_loop_agrees_with_the_rules() {
        let regexes = RegexLoop::new();
        assert_eq!(regexes.patterns.len(), BUILTIN.len());
        assert!(regexes.matching_rules(b"x <ScRiPt>alert(1)</script>") >= 2);
        assert_eq!(regexes.matching_rules(b"hello there, how are you"), 0);
    }
}
