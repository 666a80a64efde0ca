//! The shell view's de-obfuscation: what a shell makes of quoting and expansion tricks that
//! split or hide a command name (`w'h'o'am'i`, `cat${IFS}/etc/passwd`, `$'\x69\x64'`,
//! `a=who;b=ami;$a$b`). A variable the string does not assign expands to nothing, as an unset
//! one does in a shell, where that splits a word (`w${x}hoami`).

use super::jsescape::escape_at;
use super::normalize::{fold, Folded, Writer};

/// Longest variable name followed.
const LONGEST_NAME: usize = 32;
/// Longest assigned or default value substituted.
const LONGEST_VALUE: usize = 64;
/// Assignments remembered per string.
const MAX_ASSIGNMENTS: usize = 8;
/// Bytes searched for the quote that closes `$'...'`.
const ANSI_C_REACH: usize = 256;

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Variables the string assigns at a command position (`a=who;`), so `$a` later reads `who`.
#[derive(Default)]
pub(super) struct Assignments<'a> {
    /// (offset of the `=`, name, value), in string order.
    found: Vec<(usize, &'a str, String)>,
}

impl<'a> Assignments<'a> {
    pub(super) fn scan(src: &'a str) -> Assignments<'a> {
        let bytes = src.as_bytes();
        let mut found = Vec::new();
        if memchr::memchr(b'$', bytes).is_none() {
            return Assignments { found };
        }
        for eq in memchr::memchr_iter(b'=', bytes).take(4 * MAX_ASSIGNMENTS) {
            let name_start = bytes[..eq]
                .iter()
                .rposition(|&b| !is_word_byte(b))
                .map_or(0, |p| p + 1);
            let at_command = name_start == 0
                || matches!(
                    bytes[name_start - 1],
                    b';' | b'&' | b'|' | b'(' | b'`' | b'\n' | b' '
                );
            let name = &src[name_start..eq];
            if !at_command
                || name.is_empty()
                || name.len() > LONGEST_NAME
                || bytes[name_start].is_ascii_digit()
            {
                continue;
            }
            if let Some(value) = assigned_value(&src[eq + 1..]) {
                found.push((eq, name, value));
                if found.len() == MAX_ASSIGNMENTS {
                    break;
                }
            }
        }
        Assignments { found }
    }

    /// The value of `name` last assigned before offset `at`.
    fn value(&self, name: &str, at: usize) -> Option<&str> {
        self.found
            .iter()
            .rev()
            .find(|(eq, n, _)| *eq < at && *n == name)
            .map(|(_, _, value)| value.as_str())
    }
}

/// The word an assignment's `=` is followed by, up to an unquoted shell metacharacter, with
/// its quotes removed (`'i'd` is `id`).
fn assigned_value(rest: &str) -> Option<String> {
    let mut value = String::new();
    let mut quote = None;
    for c in rest.chars() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, c)
                if c.is_whitespace()
                    || matches!(c, ';' | '&' | '|' | '<' | '>' | '(' | ')' | '\\') =>
            {
                break
            }
            (_, '$' | '`') => return None,
            (_, c) => value.push(c),
        }
        if value.len() > LONGEST_VALUE {
            return None;
        }
    }
    (!value.is_empty() && quote.is_none()).then_some(value)
}

/// Shell de-obfuscation at byte `i`; returns the next position when it consumed something.
pub(super) fn shell_step(
    src: &str,
    i: usize,
    w: &mut Writer<'_>,
    assignments: &Assignments<'_>,
) -> Option<usize> {
    let bytes = src.as_bytes();
    let rest = &bytes[i..];
    let next = rest.get(1).copied();
    match rest[0] {
        b'\'' | b'"' => Some(i + 1),
        b'\\' if next.is_some_and(|c| c.is_ascii_alphanumeric() || c == b'/') => Some(i + 1),
        // A line continuation joins the lines around it.
        b'\\' if next == Some(b'\n') => Some(i + 2),
        b'\\' if next == Some(b'\r') && rest.get(2) == Some(&b'\n') => Some(i + 3),
        b'^' if next.is_some_and(|c| c.is_ascii_alphanumeric()) => Some(i + 1),
        b'`' if next == Some(b'`') => Some(i + 2),
        b'`' => glued_substitution(bytes, i, 1, b'`', w),
        // A subshell at a command position runs its command as the separator would (`;(id)`).
        b'(' if w.follows_separator() => {
            w.space();
            Some(i + 1)
        }
        b'<' => {
            w.space();
            Some(i + 1)
        }
        b'$' => {
            let ifs_len = ifs_at(&rest[1..]);
            if ifs_len > 0 {
                w.space();
                return Some(i + 1 + ifs_len);
            }
            match next {
                // `$0` is the shell's own name.
                Some(b'0')
                    if !w.follows_word() && !rest.get(2).is_some_and(|&b| is_word_byte(b)) =>
                {
                    w.push_str("sh");
                    Some(i + 2)
                }
                Some(b'@' | b'*' | b'0'..=b'9') => Some(i + 2),
                Some(b'(') if rest.get(2) == Some(&b')') => Some(i + 3),
                Some(b'(') => glued_substitution(bytes, i, 2, b')', w),
                Some(b'{') if rest.get(2) == Some(&b'}') => Some(i + 3),
                Some(b'\'') => ansi_c_quoted(src, i + 2, w),
                // `$"..."` is a string bash translates: the quotes are all that is left.
                Some(b'"') => Some(i + 1),
                _ => expansion(src, i, w, assignments),
            }
        }
        b'{' => {
            let close = rest.iter().take(256).position(|&c| c == b'}')?;
            let inner = &src[i + 1..i + close];
            if !inner.contains(',') || inner.contains(|c: char| c.is_whitespace()) {
                return None;
            }
            w.space();
            // The list's words get the folding every other character gets.
            for c in inner.chars() {
                match fold(c) {
                    Folded::Char(',') | Folded::Space | Folded::LineBreak => w.space(),
                    Folded::Char(c) => w.push(c),
                    Folded::Drop => {}
                }
            }
            w.space();
            Some(i + close + 1)
        }
        _ => None,
    }
}

/// A substitution of one plain word glued inside another (`` w`u`hoami ``, `w$(x)hoami`),
/// opened by the `open_len` bytes at `i` and ended by `close`: a word that is no command
/// substitutes nothing and joins the word's halves. A command substituted there is matched in
/// the views that keep it. Returns the position after it.
fn glued_substitution(
    bytes: &[u8],
    i: usize,
    open_len: usize,
    close: u8,
    w: &Writer<'_>,
) -> Option<usize> {
    if !w.follows_word() {
        return None;
    }
    let inner = bytes[i + open_len..]
        .iter()
        .take(LONGEST_NAME + 1)
        .take_while(|&&b| is_word_byte(b))
        .count();
    let after = i + open_len + inner + 1;
    let glued = inner > 0
        && inner <= LONGEST_NAME
        && bytes.get(after - 1) == Some(&close)
        && bytes.get(after).is_some_and(|&b| is_word_byte(b));
    glued.then_some(after)
}

/// Writes `text` as the view writes any other characters.
fn push_folded(w: &mut Writer<'_>, text: impl IntoIterator<Item = char>) {
    for c in text {
        match fold(c) {
            Folded::Char(c) => w.push(c),
            Folded::Space | Folded::LineBreak => w.space(),
            Folded::Drop => {}
        }
    }
}

/// A variable at `i` (`$name`, `${name}`, `${name:-default}`): its assigned value, else its
/// default, else nothing where that glues two words together or ends one (`w${x}hoami`,
/// `uname$u -a`); a lone `$price` or `${name}` in prose stays as written. Returns the position
/// after it. Dropped characters inside it are skipped as everywhere else.
fn expansion(
    src: &str,
    i: usize,
    w: &mut Writer<'_>,
    assignments: &Assignments<'_>,
) -> Option<usize> {
    let mut chars = src[i + 1..]
        .char_indices()
        .map(|(at, c)| (i + 1 + at, c))
        .filter(|&(_, c)| !matches!(fold(c), Folded::Drop))
        .peekable();
    let braced = chars.next_if(|&(_, c)| c == '{').is_some();
    let mut name = String::new();
    while name.len() <= LONGEST_NAME {
        match chars.next_if(|&(_, c)| c.is_ascii_alphanumeric() || c == '_') {
            Some((_, c)) => name.push(c),
            None => break,
        }
    }
    if name.is_empty()
        || name.len() > LONGEST_NAME
        || name.starts_with(|c: char| c.is_ascii_digit())
    {
        return None;
    }
    let name_end = chars.peek().map_or(src.len(), |&(at, _)| at);
    let assigned = assignments.value(&name, i);
    if !braced {
        return match assigned {
            Some(value) => {
                push_folded(w, value.chars());
                Some(name_end)
            }
            // The user's shell, as `$0` names the running one.
            None if name == "SHELL" && !w.follows_word() => {
                w.push_str("sh");
                Some(name_end)
            }
            // A quote after it vanishes too, joining what follows (`$x'w'hoami`).
            None => {
                (w.follows_word() || src[name_end..].starts_with(['\'', '"'])).then_some(name_end)
            }
        };
    }
    let default = braced_default(&src[name_end..]);
    let close = name_end + default.map_or(0, |(_, len)| len);
    if src.as_bytes().get(close) != Some(&b'}') {
        return None;
    }
    let after = close + 1;
    match assigned.or(default.map(|(value, _)| value)) {
        Some(value) => {
            push_folded(w, value.chars());
            Some(after)
        }
        None => {
            let before_word = src.as_bytes().get(after).is_some_and(|&b| is_word_byte(b));
            (w.follows_word() || before_word).then_some(after)
        }
    }
}

/// `:-word` (or `-`, `:=`, `=`) inside `${name...}`: the default and the bytes it spans up to
/// the closing brace.
fn braced_default(rest: &str) -> Option<(&str, usize)> {
    let operator = [":-", ":=", "-", "="]
        .into_iter()
        .find(|op| rest.starts_with(op))?;
    let body = &rest[operator.len()..];
    let close = body
        .bytes()
        .take(LONGEST_VALUE + 1)
        .position(|b| b == b'}')?;
    let value = &body[..close];
    (!value.is_empty() && !value.contains(['$', '{', '`']))
        .then_some((value, operator.len() + close))
}

/// `$'...'` starting after its opening quote at `from`: the characters its C escapes spell
/// (`$'\x69\x64'` is `id`). Returns the position after the closing quote.
fn ansi_c_quoted(src: &str, from: usize, w: &mut Writer<'_>) -> Option<usize> {
    let bytes = src.as_bytes();
    let reach = bytes.len().min(from + ANSI_C_REACH);
    let mut close = from;
    while close < reach && bytes[close] != b'\'' {
        close += if bytes[close] == b'\\' { 2 } else { 1 };
    }
    if close >= reach || !src.is_char_boundary(close) {
        return None;
    }
    let mut rest = &src[from..close];
    while let Some(c) = rest.chars().next() {
        rest = &rest[c.len_utf8()..];
        if c != '\\' {
            push_folded(w, Some(c));
            continue;
        }
        // The escapes are JavaScript's (`\xHH`, `\uHHHH`, octal, `\n`); bash's bell, backspace
        // and escape spell controls, which the view drops.
        match escape_at(rest.as_bytes()) {
            Some((spelled, len)) => {
                push_folded(w, Some(spelled));
                rest = &rest[len..];
            }
            None if rest.starts_with(['a', 'b', 'e', 'E']) => rest = &rest[1..],
            None => {}
        }
    }
    Some(close + 1)
}

/// Length of an `IFS` spelling after `$`: `IFS`, `{IFS}`, optionally followed by `$9`-style
/// empty positional parameters.
fn ifs_at(rest: &[u8]) -> usize {
    let len = if rest.len() >= 5 && rest[..5].eq_ignore_ascii_case(b"{ifs}") {
        5
    } else if rest.len() >= 3
        && rest[..3].eq_ignore_ascii_case(b"ifs")
        && !rest.get(3).is_some_and(|&c| is_word_byte(c))
    {
        3
    } else {
        return 0;
    };
    if rest.get(len) == Some(&b'$') && rest.get(len + 1).is_some_and(u8::is_ascii_digit) {
        len + 2
    } else {
        len
    }
}
