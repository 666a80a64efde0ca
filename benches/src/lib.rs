//! Inputs for the criterion benchmarks in benches/benches/: benign messages built from the
//! shared corpus at run time (never hard-coded), and the built-in rules compiled as a loop of
//! `regex` patterns, the way per-pattern inspectors work, for comparison with Hyperscan.

use std::path::PathBuf;

use frameguard_inspect::rules::BUILTIN;
use regex::bytes::{Regex, RegexBuilder};

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
    let mut end = size.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text
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
    fn regex_loop_agrees_with_the_rules() {
        let regexes = RegexLoop::new();
        assert_eq!(regexes.patterns.len(), BUILTIN.len());
        assert!(regexes.matching_rules(b"x <ScRiPt>alert(1)</script>") >= 2);
        assert_eq!(regexes.matching_rules(b"hello there, how are you"), 0);
    }
}
