//! Canonical forms ("views") of a decoded string that the rules match against.
//!
//! Every view folds lookalike characters to ASCII (fullwidth forms, typographic quotes), drops
//! invisible and control characters, and collapses whitespace runs to one space, so patterns
//! only need ` ?` where an attacker may put any amount of whitespace. No view ever contains
//! `\n` except [`Layout::Lines`], which keeps line breaks on purpose: the scan buffer uses `\n`
//! between segments and built-in patterns never match it.

use super::base64::{in_alphabet, MIN_ENCODED_LEN};
use super::shell::{shell_step, Assignments};

/// How a view treats comments, line breaks and shell quoting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `/* .. */` becomes a space (it separates tokens in SQL, CSS and HTML attribute soup).
    Main,
    /// SQL comments vanish (`UN/**/ION` = `UNION`); `--` / `#` comments up to a line break become
    /// a space.
    SqlJoined,
    /// Like `Main`, but whitespace runs containing a line break become `\n`, so that a line
    /// start works as a shell command separator.
    Lines,
    /// Like `Main`, plus shell de-obfuscation (see [`super::shell`]): quotes and backslashes
    /// inside words vanish, expansions become what a shell would make of them.
    Shell,
}

/// Cheap facts about a string that decide which extra views are worth building.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traits {
    pub sql_comment: bool,
    pub line_break: bool,
    pub shell_meta: bool,
}

/// A byte lookup table holding `members`.
const fn byte_set(members: &[u8]) -> [bool; 256] {
    let mut table = [false; 256];
    let mut i = 0;
    while i < members.len() {
        table[members[i] as usize] = true;
        i += 1;
    }
    table
}

/// The bits of `flags` that any byte of `bytes` sets. Written as a branch-free fold so that it
/// compiles to SIMD compares.
fn any_bytes(bytes: &[u8], flags: impl Fn(u8) -> u8) -> u8 {
    bytes.iter().fold(0, |seen, &b| seen | flags(b))
}

/// The byte classes that decide how much work a string needs, as bits.
pub(crate) mod class {
    pub const LINE_BREAK: u16 = 1;
    pub const SHELL_META: u16 = 2;
    pub const HASH: u16 = 4;
    pub const DASH: u16 = 8;
    pub const SLASH: u16 = 16;
    /// Starts an escape for one of the decoders: `%`, `+`, `&`, `\`.
    pub const ESCAPE: u16 = 32;
    /// Makes the `Main` view differ from the string: not printable ASCII, or comment syntax.
    pub const NOT_PLAIN_MAIN: u16 = 64;
    /// Outside both base64 alphabets and their padding.
    pub const NOT_BASE64: u16 = 128;
    /// A letter past `f`: a base64 string without one is hex digits (an id), not encoded text.
    pub const BEYOND_HEX: u16 = 256;
}

const fn is_base64_byte(b: u8) -> bool {
    in_alphabet(b) || b == b'='
}

const fn is_beyond_hex(b: u8) -> bool {
    matches!(b, b'g'..=b'z' | b'G'..=b'Z')
}

const fn byte_class(b: u8) -> u16 {
    const fn bit(hit: bool, bit: u16) -> u16 {
        if hit {
            bit
        } else {
            0
        }
    }
    bit(matches!(b, b'\n' | b'\r'), class::LINE_BREAK)
        | bit(
            matches!(
                b,
                b'\'' | b'"' | b'\\' | b'`' | b'$' | b'^' | b'{' | b'<' | b'('
            ),
            class::SHELL_META,
        )
        | bit(b == b'#', class::HASH)
        | bit(b == b'-', class::DASH)
        | bit(b == b'/', class::SLASH)
        | bit(matches!(b, b'%' | b'+' | b'&' | b'\\'), class::ESCAPE)
        | bit(
            !matches!(b, b' '..=b'~') || b == MAIN_SYNTAX[0] || b == MAIN_SYNTAX[1],
            class::NOT_PLAIN_MAIN,
        )
        | bit(!is_base64_byte(b), class::NOT_BASE64)
        | bit(is_beyond_hex(b), class::BEYOND_HEX)
}

static BYTE_CLASSES: [u16; 256] = {
    let mut table = [0; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = byte_class(b as u8);
        b += 1;
    }
    table
};

/// Up to this length a string is classified through [`BYTE_CLASSES`] in one loop. Most strings
/// of a message (JSON keys, ids, short values) are this short, and their lengths vary, so the
/// exit of each of the vectorized folds below would be mispredicted.
const TABLE_CLASSIFIED_LEN: usize = 64;

/// Which of the `wanted` [`class`] bits the bytes of `bytes` have.
pub(crate) fn byte_classes(bytes: &[u8], wanted: u16) -> u16 {
    if bytes.len() <= TABLE_CLASSIFIED_LEN {
        return wanted
            & bytes
                .iter()
                .fold(0, |seen, &b| seen | BYTE_CLASSES[b as usize]);
    }
    // Long strings: one fold per class, each of at most four compares, which LLVM vectorizes.
    let any = |bit: u16, flags: fn(u8) -> u8| {
        if wanted & bit != 0 && any_bytes(bytes, flags) != 0 {
            bit
        } else {
            0
        }
    };
    any(class::LINE_BREAK, |b| {
        (b == b'\n') as u8 | (b == b'\r') as u8
    }) | any(class::SHELL_META, |b| {
        (b == b'\'') as u8 | (b == b'"') as u8 | (b == b'\\') as u8 | (b == b'`') as u8
    }) | any(class::SHELL_META, |b| {
        (b == b'$') as u8 | (b == b'^') as u8 | (b == b'{') as u8 | (b == b'<') as u8
    }) | any(class::SHELL_META, |b| (b == b'(') as u8)
        | any(class::HASH, |b| (b == b'#') as u8)
        | any(class::DASH, |b| (b == b'-') as u8)
        | any(class::SLASH, |b| (b == b'/') as u8)
        | any(class::ESCAPE, |b| {
            (b == b'%') as u8 | (b == b'+') as u8 | (b == b'&') as u8 | (b == b'\\') as u8
        })
        | any(class::NOT_PLAIN_MAIN, |b| {
            let [slash, star] = MAIN_SYNTAX;
            !(b' '..=b'~').contains(&b) as u8 | (b == slash) as u8 | (b == star) as u8
        })
        | any(class::NOT_BASE64, |b| !is_base64_byte(b) as u8)
        | any(class::BEYOND_HEX, |b| is_beyond_hex(b) as u8)
}

pub fn traits(src: &str) -> Traits {
    let bytes = src.as_bytes();
    let seen = byte_classes(
        bytes,
        class::LINE_BREAK | class::SHELL_META | class::HASH | class::DASH | class::SLASH,
    );
    // memmem sets up a searcher per call: ask it only when the pair's first byte occurs.
    let has_pair = |pair: &[u8]| {
        seen & byte_class(pair[0]) != 0 && memchr::memmem::find(bytes, pair).is_some()
    };
    let line_break = seen & class::LINE_BREAK != 0;
    // A line comment only hides something when a line break ends it.
    let line_comment = line_break && (seen & class::HASH != 0 || has_pair(b"--"));
    Traits {
        sql_comment: has_pair(b"/*") || line_comment,
        line_break,
        shell_meta: seen & class::SHELL_META != 0,
    }
}

pub(super) enum Folded {
    Char(char),
    Space,
    LineBreak,
    Drop,
}

pub(super) fn fold(c: char) -> Folded {
    match c {
        '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}' => Folded::LineBreak,
        '\u{FF01}'..='\u{FF5E}' => Folded::Char(char::from_u32(c as u32 - 0xFEE0).unwrap_or(c)),
        '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}' | '\u{2032}' | '\u{02B9}'
        | '\u{02BC}' | '\u{02C8}' => Folded::Char('\''),
        '\u{201C}' | '\u{201D}' | '\u{201E}' | '\u{201F}' | '\u{2033}' => Folded::Char('"'),
        '\u{FE64}' => Folded::Char('<'),
        // Case-folding lookalikes: `<ſvg>` and `<ıframe>` are `<svg>` / `<iframe>` to
        // case-insensitive matchers (including some HTML parsers' tag name handling).
        '\u{017F}' => Folded::Char('s'),
        '\u{0131}' => Folded::Char('i'),
        '\u{212A}' => Folded::Char('k'),
        '\u{FE65}' => Folded::Char('>'),
        '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}'
        | '\u{FEFF}'
        | '\u{00AD}'
        | '\u{034F}'
        | '\u{180E}' => Folded::Drop,
        c if c.is_whitespace() => Folded::Space,
        c if c.is_control() => Folded::Drop,
        c => Folded::Char(c),
    }
}

pub(super) struct Writer<'a> {
    out: &'a mut String,
    start: usize,
    pending_space: bool,
    pending_break: bool,
}

impl Writer<'_> {
    pub(super) fn space(&mut self) {
        self.pending_space = true;
    }

    fn line_break(&mut self) {
        self.pending_break = true;
    }

    pub(super) fn push(&mut self, c: char) {
        self.flush_gap();
        self.out.push(c);
    }

    pub(super) fn push_str(&mut self, s: &str) {
        self.flush_gap();
        self.out.push_str(s);
    }

    /// The output so far ends in a word character with no gap pending.
    pub(super) fn follows_word(&self) -> bool {
        !self.pending_space
            && !self.pending_break
            && self.out.len() > self.start
            && self
                .out
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
    }

    /// The output so far ends in a command separator (`;`, `|`, `&`), with or without a gap.
    pub(super) fn follows_separator(&self) -> bool {
        self.out.len() > self.start && self.out.ends_with([';', '|', '&'])
    }

    fn flush_gap(&mut self) {
        if self.out.len() > self.start {
            if self.pending_break {
                self.out.push('\n');
            } else if self.pending_space {
                self.out.push(' ');
            }
        } else if self.pending_break {
            // A leading line break separates commands too (`host="\nid"` after `ping`).
            self.out.push('\n');
        }
        self.pending_space = false;
        self.pending_break = false;
    }
}

/// The printable ASCII bytes that `normalize` looks at in `Main` and `Lines` (comment syntax).
const MAIN_SYNTAX: [u8; 2] = *b"/*";

/// Bytes that every step of `normalize` copies unchanged in `layout`: printable ASCII other
/// than the comment, shell and escape syntax the loop looks at.
const fn plain_bytes(layout: Layout) -> [bool; 256] {
    let syntax = byte_set(match layout {
        Layout::Main | Layout::Lines => &MAIN_SYNTAX,
        Layout::SqlJoined => b"/*#-",
        Layout::Shell => b"/*'\"\\^`<${(",
    });
    let mut table = [false; 256];
    let mut b = 0x21;
    while b < 0x7f {
        table[b] = !syntax[b];
        b += 1;
    }
    table
}

fn plain_table(layout: Layout) -> &'static [bool; 256] {
    const MAIN: [bool; 256] = plain_bytes(Layout::Main);
    const SQL_JOINED: [bool; 256] = plain_bytes(Layout::SqlJoined);
    const SHELL: [bool; 256] = plain_bytes(Layout::Shell);
    match layout {
        Layout::Main | Layout::Lines => &MAIN,
        Layout::SqlJoined => &SQL_JOINED,
        Layout::Shell => &SHELL,
    }
}

/// True when the `Main` (and `Lines`) view of `bytes` is `bytes` itself: printable ASCII without
/// comment syntax, and single spaces between words (the plain-run rule, checked by
/// [`byte_classes`] and one fold instead of the run loop).
fn is_plain_main(bytes: &[u8]) -> bool {
    byte_classes(bytes, class::NOT_PLAIN_MAIN) == 0 && single_spaced(bytes)
}

/// No space run longer than one, none at either end.
fn single_spaced(bytes: &[u8]) -> bool {
    let next = bytes.get(1..).unwrap_or_default();
    let double_space = bytes.iter().zip(next).fold(0, |seen, (&a, &b)| {
        seen | ((a == b' ') as u8 & (b == b' ') as u8)
    });
    double_space == 0 && !bytes.starts_with(b" ") && !bytes.ends_with(b" ")
}

/// What one pass over a string tells about the work it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// `src` is its own only view: no decoder changes it ([`class::ESCAPE`]), its [`traits`]
    /// ask for no extra view, and its `Main` view is itself. Most strings of a message (keys,
    /// ids, plain words) are, and need none of the work in between.
    pub verbatim: bool,
    /// Long enough, only base64 characters and not only hex digits: it may encode text
    /// ([`crate::decode::base64`] decides).
    pub may_be_base64: bool,
}

pub fn shape(src: &str) -> Shape {
    let bytes = src.as_bytes();
    let needs_work = class::ESCAPE | class::NOT_PLAIN_MAIN | class::LINE_BREAK | class::SHELL_META;
    let seen = byte_classes(bytes, needs_work | class::NOT_BASE64 | class::BEYOND_HEX);
    Shape {
        // Without a line break or `/` (which is NOT_PLAIN_MAIN) there is no SQL comment.
        verbatim: seen & needs_work == 0 && single_spaced(bytes),
        may_be_base64: bytes.len() >= MIN_ENCODED_LEN
            && seen & (class::NOT_BASE64 | class::BEYOND_HEX) == class::BEYOND_HEX,
    }
}

/// Bytes [`plain_run_end`] checks at a time between steps byte by byte.
const PLAIN_BLOCK: usize = 16;

/// End of the run of plain bytes (and single spaces between them) starting at `from`, which
/// holds a plain byte. Every position the run reaches follows a plain byte.
fn plain_run_end(bytes: &[u8], from: usize, plain: &[bool; 256]) -> usize {
    let plain_at = |i: usize| bytes.get(i).is_some_and(|&b| plain[b as usize]);
    let mut i = from;
    loop {
        // Whole blocks with no branch per byte: plain bytes or spaces, never two spaces in a
        // row, and a space at the end only before a plain byte.
        while let Some(block) = bytes.get(i..i + PLAIN_BLOCK) {
            let spaces = block
                .iter()
                .fold(0u32, |mask, &b| mask << 1 | (b == b' ') as u32);
            let plain_or_space = block
                .iter()
                .fold(true, |all, &b| all & (plain[b as usize] | (b == b' ')));
            let ends_well = block[PLAIN_BLOCK - 1] != b' ' || plain_at(i + PLAIN_BLOCK);
            if !(plain_or_space && ends_well && spaces & (spaces >> 1) == 0) {
                break;
            }
            i += PLAIN_BLOCK;
        }
        // Then up to a block byte by byte, and back to blocks if the run goes on.
        let stop = i + PLAIN_BLOCK;
        while i < stop {
            if plain_at(i) {
                i += 1;
            } else if bytes.get(i) == Some(&b' ') && plain_at(i + 1) {
                i += 2;
            } else {
                return i;
            }
        }
    }
}

/// Appends the `layout` view of `src` to `out`.
pub fn normalize(src: &str, layout: Layout, out: &mut String) {
    let start = out.len();
    let mut w = Writer {
        out,
        start,
        pending_space: false,
        pending_break: false,
    };
    let bytes = src.as_bytes();
    if matches!(layout, Layout::Main | Layout::Lines) && is_plain_main(bytes) {
        out.push_str(src);
        return;
    }
    let plain = plain_table(layout);
    let assignments = match layout {
        Layout::Shell => Assignments::scan(src),
        _ => Assignments::default(),
    };
    let mut in_version_comment = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if plain[b as usize] {
            // Most text is words and single spaces: copy them in one go.
            let end = plain_run_end(bytes, i, plain);
            w.push_str(&src[i..end]);
            i = end;
            continue;
        }
        // Comment syntax is ASCII, so byte-level look-ahead stays on char boundaries.
        if b == b'/' && bytes.get(i + 1) == Some(&b'*') {
            if let Some(close) = find(bytes, i + 2, b"*/") {
                if bytes.get(i + 2) == Some(&b'!') {
                    // MySQL runs the body of `/*!50000 ... */`: keep it, drop the markers.
                    in_version_comment = true;
                    i += 3;
                    while i < bytes.len() && bytes[i].is_ascii_digit() {
                        i += 1;
                    }
                } else {
                    i = close + 2;
                }
                comment_gap(&mut w, layout);
                continue;
            }
        }
        if in_version_comment && b == b'*' && bytes.get(i + 1) == Some(&b'/') {
            in_version_comment = false;
            i += 2;
            comment_gap(&mut w, layout);
            continue;
        }
        if layout == Layout::SqlJoined
            && (b == b'#' || (b == b'-' && bytes.get(i + 1) == Some(&b'-')))
        {
            if let Some(eol) = bytes[i..].iter().position(|&c| c == b'\n' || c == b'\r') {
                i += eol;
                w.space();
                continue;
            }
        }
        if b == 0x1b && bytes.get(i + 1) == Some(&b'[') {
            // A terminal control sequence (ESC [ params final) hides the text before it.
            let params = bytes[i + 2..]
                .iter()
                .take_while(|c| matches!(c, b'0'..=b'9' | b';' | b'?'))
                .count();
            if bytes
                .get(i + 2 + params)
                .is_some_and(|c| (0x40..=0x7e).contains(c))
            {
                i += 3 + params;
                continue;
            }
        }
        if layout == Layout::Shell {
            if let Some(next) = shell_step(src, i, &mut w, &assignments) {
                i = next;
                continue;
            }
        }
        let c = src[i..].chars().next().unwrap_or('\u{FFFD}');
        i += c.len_utf8();
        match fold(c) {
            Folded::Char(c) => w.push(c),
            Folded::Space => w.space(),
            Folded::LineBreak if layout == Layout::Lines => w.line_break(),
            Folded::LineBreak => w.space(),
            Folded::Drop => {}
        }
    }
}

fn comment_gap(w: &mut Writer<'_>, layout: Layout) {
    if layout != Layout::SqlJoined {
        w.space();
    }
}

fn find(haystack: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(haystack.get(from..)?, needle).map(|p| p + from)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::{
        byte_classes, normalize, plain_table, shape, traits, Layout, BYTE_CLASSES,
        TABLE_CLASSIFIED_LEN,
    };

    fn view(src: &str, layout: Layout) -> String {
        let mut out = String::new();
        normalize(src, layout, &mut out);
        out
    }

    #[test]
    fn folds_whitespace_controls_and_lookalikes() {
        assert_eq!(view("  a \t\r\n b\u{0}c  ", Layout::Main), "a bc");
        assert_eq!(view("\u{FF1C}script\u{FF1E}", Layout::Main), "<script>");
        assert_eq!(
            view("java\u{200B}script\u{2019}", Layout::Main),
            "javascript'"
        );
        assert_eq!(view("a\u{3000}b\u{a0}c", Layout::Main), "a b c");
    }

    #[test]
    fn comments_split_in_main_and_join_in_sql_view() {
        assert_eq!(
            view("UN/**/ION SEL/*x*/ECT", Layout::Main),
            "UN ION SEL ECT"
        );
        assert_eq!(
            view("UN/**/ION SEL/*x*/ECT", Layout::SqlJoined),
            "UNION SELECT"
        );
        assert_eq!(
            view("/*!50000union*/select", Layout::SqlJoined),
            "unionselect"
        );
        assert_eq!(view("/*!50000union*/ select", Layout::Main), "union select");
        assert_eq!(
            view("union-- x\nselect #y\r\n1", Layout::SqlJoined),
            "union select 1"
        );
        assert_eq!(view("admin'--", Layout::SqlJoined), "admin'--");
        assert_eq!(view("a /* open", Layout::Main), "a /* open");
    }

    #[test]
    fn lines_view_keeps_line_breaks() {
        assert_eq!(view("x\n\n  id\r\nls", Layout::Lines), "x\nid\nls");
        assert_eq!(view("x\n", Layout::Lines), "x");
        assert_eq!(view(" \r\n id", Layout::Lines), "\nid");
    }

    #[test]
    fn shell_view_removes_quoting_tricks() {
        assert_eq!(view("w'h'o'am'i", Layout::Shell), "whoami");
        assert_eq!(
            view("c\\at /e\"t\"c/passwd", Layout::Shell),
            "cat /etc/passwd"
        );
        assert_eq!(
            view("cat${IFS}/etc/passwd", Layout::Shell),
            "cat /etc/passwd"
        );
        assert_eq!(
            view("cat$IFS$9/etc/passwd", Layout::Shell),
            "cat /etc/passwd"
        );
        assert_eq!(
            view("who$@ami;{cat,/etc/passwd}", Layout::Shell),
            "whoami; cat /etc/passwd"
        );
        assert_eq!(view("w^h^o^a^m^i", Layout::Shell), "whoami");
        assert_eq!(view("x;(id)", Layout::Shell), "x; id)");
        assert_eq!(view("x && ((id))", Layout::Shell), "x && id))");
        assert_eq!(view("see (id)", Layout::Shell), "see (id)");
        assert_eq!(view("x;w`u`hoami", Layout::Shell), "x;whoami");
        assert_eq!(view("x;w$(u)hoami", Layout::Shell), "x;whoami");
        assert_eq!(view("a `b` c", Layout::Shell), "a `b` c");
        assert_eq!(view("a$(b c)d", Layout::Shell), "a$(b c)d");
        assert_eq!(view("cat</etc/passwd", Layout::Shell), "cat /etc/passwd");
        assert_eq!(view("{ a, b }", Layout::Shell), "{ a, b }");
        assert_eq!(view("x;w${x}hoami", Layout::Shell), "x;whoami");
        assert_eq!(view("x;${x}whoami", Layout::Shell), "x;whoami");
        assert_eq!(view("x;uname$u -a", Layout::Shell), "x;uname -a");
        assert_eq!(view("x;id${x}", Layout::Shell), "x;id");
        assert_eq!(view("hi ${name}!", Layout::Shell), "hi ${name}!");
        assert_eq!(view("pay $price", Layout::Shell), "pay $price");
        assert_eq!(view("who\\\nami", Layout::Shell), "whoami");
    }

    #[test]
    fn shell_view_expands_what_a_shell_would() {
        assert_eq!(view(r"x;$'\x69\x64'", Layout::Shell), "x;id");
        assert_eq!(view(r"x;$'\151\144' -a", Layout::Shell), "x;id -a");
        assert_eq!(view(r"$'it\'s'", Layout::Shell), "it's");
        assert_eq!(
            view("x;a=who;b=ami;$a$b", Layout::Shell),
            "x;a=who;b=ami;whoami"
        );
        assert_eq!(view("x;a='i'd;$a", Layout::Shell), "x;a=id;id");
        assert_eq!(view("x;a=id;${a}", Layout::Shell), "x;a=id;id");
        assert_eq!(view("echo $a;a=id", Layout::Shell), "echo $a;a=id");
        assert_eq!(view("x;${x:-id}", Layout::Shell), "x;id");
        assert_eq!(view("x;${x-who}ami", Layout::Shell), "x;whoami");
        assert_eq!(view("x;$0 -c id", Layout::Shell), "x;sh -c id");
        assert_eq!(view("x;$SHELL -c id", Layout::Shell), "x;sh -c id");
        assert_eq!(view("x;$\"id\"", Layout::Shell), "x;id");
        assert_eq!(view("x;$x'w'hoami", Layout::Shell), "x;whoami");
        assert_eq!(view("it's $'unclosed", Layout::Shell), "its $unclosed");
        assert_eq!(view("${a:-}", Layout::Shell), "${a:-}");
    }

    #[test]
    fn base64_candidates_are_base64_characters_beyond_hex() {
        assert!(shape("PHNjcmlwdD4=").may_be_base64);
        assert!(shape("Pz8_Pz8_Pz8_").may_be_base64);
        assert!(!shape("0123456789abcdef0123").may_be_base64);
        assert!(!shape("see you at nine").may_be_base64);
        let long = "QUJD".repeat(40);
        assert!(shape(&long).may_be_base64);
        assert!(!shape(&format!("{long}!")).may_be_base64);
    }

    /// Long strings are classified by folds, short ones by the table: they agree on every byte.
    #[test]
    fn folds_and_table_classify_alike() {
        let all = u16::MAX;
        for b in 0..=u8::MAX {
            let mut long = vec![b'a'; TABLE_CLASSIFIED_LEN];
            long.push(b);
            assert_eq!(
                byte_classes(&long, all),
                BYTE_CLASSES[b as usize] | BYTE_CLASSES[b'a' as usize],
                "byte {b:#04x}"
            );
            assert_eq!(byte_classes(&[b], all), BYTE_CLASSES[b as usize]);
        }
    }

    #[test]
    fn traits_pick_extra_views() {
        let t = traits("it's\nfine -- ok");
        assert!(t.line_break && t.shell_meta && t.sql_comment);
        assert_eq!(traits("plain words"), Default::default());
        for meta in ["'", "\"", "\\", "$", "^", "{", "<"] {
            assert!(traits(&format!("a{meta}b")).shell_meta, "{meta}");
        }
        assert!(traits("a/*b").sql_comment && traits("a#b\rc").sql_comment);
    }

    proptest! {
        /// A verbatim string gets no other view and no decoding: `add_string` copies it as is.
        #[test]
        fn verbatim_strings_are_their_only_view(
            src in "[a-z0-9 '\"/*#$^{<\\\\%&+\r\n.,;:!?`()\\[\\]=@-]{0,40}|\\PC{0,20}",
        ) {
            if shape(&src).verbatim {
                prop_assert_eq!(crate::decode::decode_layers(&src), None);
                prop_assert_eq!(traits(&src), super::Traits::default());
                prop_assert_eq!(view(&src, Layout::Main), src.clone());
            }
        }

        /// The table and the folds say what the plain definition says (short strings take the
        /// table, long ones the folds).
        #[test]
        fn traits_match_their_definition(
            src in "[a-z '\"/*#$^{<\\\r\n-]{0,40}|[a-z ]{50,80}[a-z'\"/*#$^{<\\\r\n-]{0,3}[a-z]{0,20}",
        ) {
            let line_break = src.contains(['\n', '\r']);
            let line_comment = src.contains('#') || src.contains("--");
            prop_assert_eq!(traits(&src), super::Traits {
                sql_comment: src.contains("/*") || (line_comment && line_break),
                line_break,
                shell_meta: src.contains(['\'', '"', '\\', '$', '^', '{', '<']),
            });
        }

        /// The run copy is only a shortcut: with a dropped zero-width space between every two
        /// plain bytes (so no run is longer than one byte) the view is the same. Long word runs
        /// with rare syntax take the block check.
        #[test]
        fn plain_runs_match_the_byte_at_a_time_view(
            src in "[a-z '\"/*#$\\{},;|<>\n\t-]{0,40}|\\PC{0,20}|([a-z]{1,9} {1,2}){2,12}[a-z '/*$\t-]{0,2}([a-z]{1,9} ?){0,12}",
            layout in prop::sample::select(vec![Layout::Main, Layout::SqlJoined, Layout::Lines, Layout::Shell]),
        ) {
            let plain = plain_table(layout);
            let mut split = String::new();
            let mut previous_plain = false;
            for c in src.chars() {
                let is_plain = c.is_ascii() && plain[c as usize];
                if previous_plain && is_plain {
                    split.push('\u{200B}');
                }
                split.push(c);
                previous_plain = is_plain;
            }
            prop_assert_eq!(view(&src, layout), view(&split, layout));
        }
    }
}
