//! A small SQL lexer in the spirit of libinjection: it classifies the text around a candidate
//! match into SQL token kinds, so confirmers can tell `' OR '1'='1` from "this or that".

use std::sync::LazyLock;

use super::words::WordSet;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Quoted literal; `'`, `"` or `` ` ``. An unterminated one runs to the end of the text.
    Str,
    Num,
    Word,
    /// `@name` / `@@name`.
    Var,
    Op,
    LParen,
    RParen,
    Comma,
    Semi,
    Comment,
    Other,
}

#[derive(Clone, Copy, Debug)]
pub struct Token<'a> {
    pub kind: Kind,
    pub text: &'a str,
    pub start: usize,
}

impl Token<'_> {
    pub fn is_word(&self, word: &str) -> bool {
        self.kind == Kind::Word && self.text.eq_ignore_ascii_case(word)
    }

    pub fn is_op(&self, op: &str) -> bool {
        self.kind == Kind::Op && self.text == op
    }

    pub fn is_literal(&self) -> bool {
        matches!(self.kind, Kind::Str | Kind::Num)
    }
}

/// Tokenizes `text`, keeping at most `limit` tokens (confirmers only look nearby).
pub fn tokenize(text: &str, limit: usize) -> Vec<Token<'_>> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() && tokens.len() < limit {
        let b = bytes[i];
        let start = i;
        let kind = match b {
            b' ' | b'\n' => {
                i += 1;
                continue;
            }
            b'\'' | b'"' | b'`' => {
                i = string_end(bytes, i);
                Kind::Str
            }
            b'0'..=b'9' => {
                i = number_end(bytes, i);
                Kind::Num
            }
            b'.' if bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                i = number_end(bytes, i + 1);
                Kind::Num
            }
            b'@' => {
                i += 1;
                while i < bytes.len() && (bytes[i] == b'@' || is_word_byte(bytes[i])) {
                    i += 1;
                }
                Kind::Var
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = bytes.len();
                Kind::Comment
            }
            b'#' => {
                i = bytes.len();
                Kind::Comment
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i = memchr::memmem::find(&bytes[i + 2..], b"*/").map_or(bytes.len(), |p| i + 4 + p);
                Kind::Comment
            }
            b'(' => {
                i += 1;
                Kind::LParen
            }
            b')' => {
                i += 1;
                Kind::RParen
            }
            b',' => {
                i += 1;
                Kind::Comma
            }
            b';' => {
                i += 1;
                Kind::Semi
            }
            b'=' | b'<' | b'>' | b'!' | b'|' | b'&' | b'+' | b'-' | b'*' | b'/' | b'%' | b'^'
            | b'~' | b':' => {
                i += 1;
                while i < bytes.len()
                    && i - start < 3
                    && matches!(bytes[i], b'=' | b'<' | b'>' | b'|' | b'&')
                {
                    i += 1;
                }
                Kind::Op
            }
            b if is_word_byte(b) || b >= 0x80 => {
                while i < bytes.len()
                    && (is_word_byte(bytes[i]) || bytes[i] == b'.' || bytes[i] >= 0x80)
                {
                    i += 1;
                }
                if bytes.get(i) == Some(&b'\'') && literal_prefix(&text[start..i]) {
                    i = string_end(bytes, i);
                    Kind::Str
                } else {
                    Kind::Word
                }
            }
            _ => {
                i += 1;
                Kind::Other
            }
        };
        tokens.push(Token {
            kind,
            text: &text[start..i],
            start,
        });
    }
    tokens
}

/// Prefixes glued to a string literal that keep it one: national (`N'a'`), escape (`E'\x31'`,
/// PostgreSQL), bit and hex (`B'1'`, `X'31'`), and MySQL's character set introducers
/// (`_latin1'a'`).
fn literal_prefix(word: &str) -> bool {
    matches!(word, "n" | "N" | "e" | "E" | "b" | "B" | "x" | "X")
        || (word.len() > 1 && word.starts_with('_'))
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$'
}

fn string_end(bytes: &[u8], open: usize) -> usize {
    let quote = bytes[open];
    let mut i = open + 1;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            i += 2;
            continue;
        }
        if bytes[i] == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    bytes.len()
}

fn number_end(bytes: &[u8], start: usize) -> usize {
    let mut i = start;
    if bytes[i] == b'0' && matches!(bytes.get(i + 1), Some(b'x' | b'X' | b'b' | b'B')) {
        i += 2;
        while i < bytes.len() && bytes[i].is_ascii_hexdigit() {
            i += 1;
        }
        return i;
    }
    while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
        i += 1;
    }
    if i < bytes.len()
        && matches!(bytes[i], b'e' | b'E')
        && bytes.get(i + 1).is_some_and(u8::is_ascii_digit)
    {
        i += 1;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
    }
    i
}

macro_rules! array {
    ($($item:literal),* $(,)?) => {
        [$($item),*]
    };
}

/// See [`unambiguous_functions`].
pub const UNAMBIGUOUS_FUNCTIONS: &[&str] = &unambiguous_functions!(array);

/// Injection functions whose names are also everyday English words; their call alone proves
/// little.
pub const AMBIGUOUS_FUNCTIONS: &[&str] = &[
    "if", "case", "left", "right", "row", "count", "user", "lower", "upper", "char", "len",
    "length", "convert", "cast", "instr", "bin",
];

/// SQL functions that injections call to leak data, delay, or raise errors. A call to one of
/// these next to a boolean operator or comparison is evidence.
pub fn is_injection_function(name: &str) -> bool {
    is_unambiguous_function(name) || AMBIGUOUS_SET.contains(name)
}

pub fn is_unambiguous_function(name: &str) -> bool {
    UNAMBIGUOUS_SET.contains(name)
}

static UNAMBIGUOUS_SET: LazyLock<WordSet> = LazyLock::new(|| WordSet::new(UNAMBIGUOUS_FUNCTIONS));
static AMBIGUOUS_SET: LazyLock<WordSet> = LazyLock::new(|| WordSet::new(AMBIGUOUS_FUNCTIONS));
static KEYWORD_SET: LazyLock<WordSet> = LazyLock::new(|| WordSet::new(KEYWORDS));

/// Words that are SQL syntax rather than English when they touch other SQL tokens.
pub const KEYWORDS: &[&str] = &[
    "select",
    "union",
    "from",
    "where",
    "and",
    "or",
    "xor",
    "not",
    "null",
    "like",
    "rlike",
    "regexp",
    "is",
    "in",
    "between",
    "having",
    "group",
    "order",
    "by",
    "limit",
    "offset",
    "insert",
    "into",
    "values",
    "update",
    "set",
    "delete",
    "drop",
    "table",
    "exec",
    "execute",
    "declare",
    "waitfor",
    "delay",
    "case",
    "when",
    "then",
    "else",
    "end",
    "as",
    "distinct",
    "all",
    "top",
    "procedure",
    "div",
    "true",
    "false",
    "create",
    "alter",
    "truncate",
    "grant",
    "revoke",
    "shutdown",
    "begin",
    "sounds",
    "collate",
    "escape",
    "asc",
    "desc",
    "dual",
    "binary",
    "exists",
    "unknown",
    "current_date",
    "current_time",
    "current_timestamp",
    "localtime",
    "utc_date",
    "while",
    "do",
    "goto",
    "return",
    "low_priority",
    "ignore",
    "match",
    "against",
    "mode",
    "within",
    "using",
    "any",
    "some",
];

pub fn is_keyword(word: &str) -> bool {
    KEYWORD_SET.contains(word)
}

#[cfg(test)]
mod tests {
    use super::{tokenize, Kind};

    fn kinds(text: &str) -> Vec<Kind> {
        tokenize(text, 64).iter().map(|t| t.kind).collect()
    }

    #[test]
    fn classifies_injection_shapes() {
        use Kind::*;
        assert_eq!(kinds("or '1'='1"), [Word, Str, Op, Str]);
        assert_eq!(kinds("' or '"), [Str], "a quote opens a literal");
        assert_eq!(
            kinds("1 union select @@version,0x41--x"),
            [Num, Word, Word, Var, Comma, Num, Comment]
        );
        assert_eq!(
            kinds("sleep(5);#"),
            [Word, LParen, Num, RParen, Semi, Comment]
        );
        assert_eq!(kinds("a<>b /* c */ d"), [Word, Op, Word, Comment, Word]);
        assert_eq!(kinds("'it''s'"), [Str]);
        assert_eq!(
            kinds("N'a'=E'\\x61' or _latin1'a'=X'61'"),
            [Str, Op, Str, Word, Str, Op, Str]
        );
        assert_eq!(kinds("don't"), [Word, Str]);
    }

    #[test]
    fn limit_bounds_the_output() {
        assert_eq!(tokenize(&"a ".repeat(1000), 8).len(), 8);
    }
}
