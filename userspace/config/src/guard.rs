//! Bounds on what the KDL parser is given. The `kdl` parser recurses once per `{` block and once
//! per token inside a `/* */` comment, so a file nested or commented deeply enough overflows any
//! fixed stack (an abort, not an error); and it backtracks exponentially over nested slashdashed
//! children blocks (`/- { ... }`). The counts here are taken over the raw text, ignoring strings
//! and comments, so they hold however the parser's error recovery reads a malformed file.

/// Configurations are a few KiB; this bounds the parser's memory (about 2 KiB per node).
pub(crate) const MAX_SOURCE_BYTES: usize = 1 << 20;

/// Each one can double the parse time; real configurations use none.
const MAX_SLASHDASHED_CHILDREN: usize = 8;

/// Stack per `{` and per `*` or `/`: measured on a debug build of kdl 6.7 (33 KiB and 7 KiB;
/// release builds need a fifth of that), with a margin. The stack is only reserved, not touched.
const STACK_PER_BLOCK: usize = 48 << 10;
const STACK_PER_COMMENT_CHAR: usize = 10 << 10;
const STACK_BASE: usize = 2 << 20;
const MAX_STACK: usize = 1 << 30;

/// How far past a `/-` whitespace and comments are followed to see whether a `{` comes next;
/// beyond it the `/-` is counted as opening a block, which errs on the safe side.
const SLASHDASH_LOOKAHEAD: usize = 4096;

pub(crate) fn check_size(len: usize) -> Result<(), String> {
    if len > MAX_SOURCE_BYTES {
        return Err(format!(
            "the configuration is larger than {} MiB",
            MAX_SOURCE_BYTES >> 20
        ));
    }
    Ok(())
}

/// The stack the parser needs for `source`, or why `source` is refused (byte offset, message).
pub(crate) fn parser_stack_size(source: &str) -> Result<usize, (usize, String)> {
    check_size(source.len()).map_err(|message| (0, message))?;
    if let Some(offset) = slashdashed_children(source).nth(MAX_SLASHDASHED_CHILDREN) {
        return Err((
            offset,
            format!(
                "more than {MAX_SLASHDASHED_CHILDREN} slashdashed children blocks (`/- {{`): the KDL parser \
                 slows down exponentially on them; delete unused blocks instead"
            ),
        ));
    }
    let blocks = source.bytes().filter(|&b| b == b'{').count();
    let comment_chars = source.bytes().filter(|&b| b == b'*' || b == b'/').count();
    let stack = STACK_BASE
        .saturating_add(blocks.saturating_mul(STACK_PER_BLOCK))
        .saturating_add(comment_chars.saturating_mul(STACK_PER_COMMENT_CHAR));
    if stack > MAX_STACK {
        return Err((
            0,
            "the configuration has too many `{`, `*` and `/` characters to be parsed safely"
                .to_owned(),
        ));
    }
    Ok(stack)
}

/// Offsets of the `/-` that may comment out a children block: followed, after whitespace,
/// line continuations and comments, by `{`.
fn slashdashed_children(source: &str) -> impl Iterator<Item = usize> + '_ {
    source
        .match_indices("/-")
        .map(|(offset, _)| offset)
        .filter(move |&offset| opens_block(&source.as_bytes()[offset + 2..]))
}

fn opens_block(after: &[u8]) -> bool {
    let window = &after[..after.len().min(SLASHDASH_LOOKAHEAD)];
    let truncated = window.len() < after.len();
    let mut at = 0;
    while at < window.len() {
        let rest = &window[at..];
        if rest[0] == b'{' {
            return true;
        }
        at += if rest.starts_with(b"//") {
            rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len())
        } else if rest.starts_with(b"/*") {
            match block_comment_len(rest) {
                Some(len) => len,
                // The parser's recovery from an unclosed comment is unknown: assume a block.
                None => return true,
            }
        } else if rest[0] == b'\\' {
            1
        } else {
            match leading_space_len(rest) {
                0 => return false,
                len => len,
            }
        };
    }
    truncated
}

/// Bytes of the Unicode whitespace character (KDL's spaces and newlines) at the start, or 0.
fn leading_space_len(bytes: &[u8]) -> usize {
    let head = &bytes[..bytes.len().min(4)];
    let text = match std::str::from_utf8(head) {
        Ok(text) => text,
        Err(err) => std::str::from_utf8(&head[..err.valid_up_to()]).unwrap_or_default(),
    };
    match text.chars().next() {
        Some(c) if c.is_whitespace() || c == '\u{FEFF}' => c.len_utf8(),
        _ => 0,
    }
}

/// Length of the nested `/* ... */` comment at the start, if it is closed.
fn block_comment_len(bytes: &[u8]) -> Option<usize> {
    let mut depth = 0usize;
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at..].starts_with(b"/*") {
            depth += 1;
            at += 2;
        } else if bytes[at..].starts_with(b"*/") {
            depth -= 1;
            at += 2;
            if depth == 0 {
                return Some(at);
            }
        } else {
            at += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slashdash_offsets(text: &str) -> Vec<usize> {
        slashdashed_children(text).collect()
    }

    #[test]
    fn slashdashed_children_are_found_through_spaces_and_comments() {
        assert_eq!(slashdash_offsets("a /-{ }"), [2]);
        assert_eq!(
            slashdash_offsets("a /- \\\n /* x { */ // y\n\u{3000}{ }"),
            [2]
        );
        assert_eq!(slashdash_offsets("a /-{ } /-{ }"), [2, 8]);
    }

    #[test]
    fn slashdashed_nodes_and_values_are_not_blocks() {
        assert_eq!(slashdash_offsets("/-route \"x\" { }"), Vec::<usize>::new());
        assert_eq!(slashdash_offsets("a /- 1 { }"), Vec::<usize>::new());
        assert_eq!(slashdash_offsets("a /-"), Vec::<usize>::new());
    }

    #[test]
    fn lookahead_past_the_window_counts_as_a_block() {
        let far = format!("a /-{}x", " ".repeat(SLASHDASH_LOOKAHEAD));
        assert_eq!(slashdash_offsets(&far), [2]);
        assert_eq!(slashdash_offsets("a /- /* unclosed"), [2]);
    }

    #[test]
    fn stack_grows_with_blocks_and_comment_characters() {
        assert_eq!(parser_stack_size("a 1"), Ok(STACK_BASE));
        assert_eq!(
            parser_stack_size("a { b; }"),
            Ok(STACK_BASE + STACK_PER_BLOCK)
        );
        assert_eq!(
            parser_stack_size("/* */"),
            Ok(STACK_BASE + 4 * STACK_PER_COMMENT_CHAR)
        );
        let too_many = "{".repeat(MAX_STACK / STACK_PER_BLOCK);
        assert_eq!(
            parser_stack_size(&too_many),
            Err((
                0,
                "the configuration has too many `{`, `*` and `/` characters to be parsed safely"
                    .to_owned()
            ))
        );
    }

    #[test]
    fn oversized_sources_and_slashdash_chains_are_refused() {
        let large = " ".repeat(MAX_SOURCE_BYTES + 1);
        assert_eq!(
            parser_stack_size(&large),
            Err((0, "the configuration is larger than 1 MiB".to_owned()))
        );
        let chain = "a /-{ ".repeat(MAX_SLASHDASHED_CHILDREN + 1);
        let (offset, message) = parser_stack_size(&chain).unwrap_err();
        assert_eq!(offset, 6 * MAX_SLASHDASHED_CHILDREN + 2);
        assert!(
            message.starts_with("more than 8 slashdashed children blocks"),
            "{message}"
        );
        assert!(parser_stack_size(&"a /-{ ".repeat(MAX_SLASHDASHED_CHILDREN)).is_ok());
    }
}
