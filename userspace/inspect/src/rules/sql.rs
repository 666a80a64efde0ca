//! Confirmation of SQL-injection candidates with the token check of [`super::sqltok`].
//!
//! Each function gets the view text and the `[start, end)` of the Hyperscan match and decides
//! whether the surrounding tokens form SQL syntax (the user input breaking out of a literal
//! or appending clauses) rather than English that happens to contain SQL words.

use super::sqltok::{
    is_injection_function, is_keyword, is_unambiguous_function, tokenize, Kind, Token,
};

const LOOKAHEAD: usize = 48;

/// Where the run of `part` chars that ends `s` starts.
fn run_start(s: &str, part: impl Fn(char) -> bool) -> usize {
    s.char_indices()
        .rev()
        .find(|&(_, c)| !part(c))
        .map_or(0, |(i, c)| i + c.len_utf8())
}

fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// A function name: a word, possibly qualified (`dbms_lock.sleep`).
fn is_function_char(c: char) -> bool {
    is_name_char(c) || c == '.'
}

/// What the text right before a match says about injection context.
fn injection_context_before(text: &str, start: usize) -> bool {
    let before = text[..start].trim_end_matches(' ');
    let Some(last) = before.chars().next_back() else {
        return true;
    };
    if !last.is_alphabetic() {
        return true;
    }
    let word_start = run_start(before, is_name_char);
    let word = &before[word_start..];
    let variable = before[..word_start].ends_with('@');
    variable || is_keyword(word) || word.chars().any(|c| c.is_ascii_digit())
}

fn tokens_after(text: &str, end: usize) -> Vec<Token<'_>> {
    tokenize(&text[end..], LOOKAHEAD)
}

/// After `SELECT`: does a select list follow?
fn select_list_strength(after: &[Token<'_>]) -> Strength {
    let Some(first) = after.first() else {
        return Strength::Weak;
    };
    let next = after.get(1);
    match first.kind {
        Kind::Num | Kind::Str | Kind::Var | Kind::LParen | Kind::Comment => Strength::Strong,
        Kind::Op if first.text == "*" || first.text == "-" => Strength::Strong,
        Kind::Word => {
            if is_keyword(first.text) && !first.is_word("from") {
                return Strength::Strong;
            }
            match next {
                Some(t) if t.kind == Kind::LParen || t.is_word("from") => Strength::Strong,
                Some(t) if matches!(t.kind, Kind::Comma | Kind::Comment | Kind::Semi) => {
                    Strength::Strong
                }
                Some(t) if t.kind == Kind::Word => Strength::None,
                _ => Strength::Weak,
            }
        }
        _ => Strength::None,
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Strength {
    None,
    Weak,
    Strong,
}

/// Start of the last of `words` that begins within `within` bytes before `end`.
fn keyword_before(text: &str, end: usize, words: &[&str], within: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    (end.saturating_sub(within)..end).rev().find(|&i| {
        words.iter().any(|w| {
            bytes
                .get(i..i + w.len())
                .is_some_and(|b| b.eq_ignore_ascii_case(w.as_bytes()))
        })
    })
}

/// `UNION [ALL] SELECT`.
pub fn union_select(text: &str, _start: usize, end: usize) -> bool {
    let start = keyword_before(text, end, &["union"], 32).unwrap_or(0);
    match select_list_strength(&tokens_after(text, end)) {
        Strength::Strong => true,
        Strength::Weak => injection_context_before(text, start),
        Strength::None => false,
    }
}

/// One operand of a comparison: `1`, `'a'`, `x`, `@v`, `f(...)`, with leading parens/signs.
struct Operand<'a> {
    token: Token<'a>,
    call: bool,
}

fn operand<'a>(tokens: &[Token<'a>], pos: &mut usize) -> Option<Operand<'a>> {
    while tokens.get(*pos).is_some_and(|t| {
        t.kind == Kind::LParen || (t.kind == Kind::Op && matches!(t.text, "-" | "+" | "!" | "~"))
    }) {
        *pos += 1;
    }
    let token = *tokens.get(*pos)?;
    if !matches!(token.kind, Kind::Num | Kind::Str | Kind::Word | Kind::Var) {
        return None;
    }
    *pos += 1;
    let call = token.kind == Kind::Word && tokens.get(*pos).is_some_and(|t| t.kind == Kind::LParen);
    if call {
        // Skip the balanced argument list.
        let mut depth = 0usize;
        while let Some(t) = tokens.get(*pos) {
            *pos += 1;
            match t.kind {
                Kind::LParen => depth += 1,
                Kind::RParen => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                _ => {}
            }
        }
    }
    while tokens.get(*pos).is_some_and(|t| t.kind == Kind::RParen) {
        *pos += 1;
    }
    Some(Operand { token, call })
}

fn is_comparison(t: &Token<'_>) -> bool {
    (t.kind == Kind::Op
        && matches!(
            t.text,
            "=" | "<" | ">" | "<=" | ">=" | "<>" | "!=" | "<=>" | "==" | "!<" | "!>"
        ))
        || [
            "like", "rlike", "regexp", "is", "in", "between", "sounds", "div",
        ]
        .iter()
        .any(|w| t.is_word(w))
}

fn strong_operand(op: &Operand<'_>) -> bool {
    op.token.is_literal()
        || op.token.kind == Kind::Var
        || (op.call && is_injection_function(op.token.text))
        || op.token.is_word("null")
}

/// How many boolean operators before a comparison [`tautology`] tries.
const NEAREST_OPERATORS: usize = 4;

/// `OR 1=1`, `' OR 'a'='a`, `AND 8=3`, `OR x=x`, `AND ascii(substr(user(),1,1))>64`.
/// The match ends at the comparison; the boolean operator is found by reading back. A boolean
/// comparison that is no tautology still counts when the whole text reads as SQL.
pub fn tautology(text: &str, _start: usize, end: usize) -> bool {
    let window = floor_char_boundary(text, end.saturating_sub(160));
    let bytes = text.as_bytes();
    // Every candidate reads back over its whole window, so most bytes are ruled out by their
    // first letter before any word is compared. Operators start with an ASCII byte, always a
    // char boundary.
    let operator_at = |i: usize| {
        let rest = &bytes[i..end];
        let words: &[&str] = match bytes[i] | 0x20 {
            b'|' => return rest.starts_with(b"||"),
            b'&' => return rest.starts_with(b"&&"),
            b'o' => &["or"],
            b'a' => &["and"],
            b'x' => &["xor"],
            b'h' => &["having"],
            b'w' => &["where", "when"],
            b'n' => &["not"],
            _ => return false,
        };
        let word_start = i == 0 || !bytes[i - 1].is_ascii_alphanumeric() && bytes[i - 1] != b'_';
        word_start
            && words.iter().any(|w| {
                rest.len() > w.len()
                    && rest[..w.len()].eq_ignore_ascii_case(w.as_bytes())
                    && !rest[w.len()].is_ascii_alphanumeric()
            })
    };
    let mut boolean_comparison = false;
    // The operator that applies to this comparison is one of the nearest few before it; reading
    // every operator in the window would make `or=or=or=...` cost a parse per operator per
    // candidate.
    let operators = (window..end)
        .rev()
        .filter(|&i| operator_at(i))
        .take(NEAREST_OPERATORS);
    for i in operators {
        match tautology_at(text, i) {
            Some(true) => return true,
            Some(false) => boolean_comparison = true,
            None => {}
        }
    }
    boolean_comparison && sql_shape(text, 0, end)
}

/// Whether the boolean operator at `start` applies to a comparison (`None` if not), and if so
/// whether the comparison is tautology-shaped.
fn tautology_at(text: &str, start: usize) -> Option<bool> {
    let tokens = tokenize(&text[start..], LOOKAHEAD);
    let mut pos = 1;
    let lhs = operand(&tokens, &mut pos)?;
    let cmp = tokens.get(pos)?;
    if !is_comparison(cmp) {
        return None;
    }
    pos += 1;
    if tokens.get(pos).is_some_and(|t| t.is_word("not")) {
        pos += 1;
    }
    let Some(rhs) = operand(&tokens, &mut pos) else {
        // `' or 1=` at the end of the input: the application supplies the rest.
        return Some(lhs.token.is_literal() && quote_breakout_before(text, start));
    };
    let same_word = lhs.token.kind == Kind::Word
        && rhs.token.kind == Kind::Word
        && lhs.token.text.eq_ignore_ascii_case(rhs.token.text)
        && cmp.kind == Kind::Op;
    Some(
        (strong_operand(&lhs) && strong_operand(&rhs))
            || (lhs.call && is_unambiguous_function(lhs.token.text))
            || (rhs.call && is_unambiguous_function(rhs.token.text))
            || same_word
            || (quote_breakout_before(text, start)
                && (strong_operand(&lhs) || strong_operand(&rhs))),
    )
}

/// The boolean operator directly follows a quote, digit or paren: the input closed a literal.
fn quote_breakout_before(text: &str, start: usize) -> bool {
    let before = text[..start].trim_end_matches(' ');
    before
        .chars()
        .next_back()
        .is_some_and(|c| matches!(c, '\'' | '"' | '`' | ')') || c.is_ascii_digit())
}

/// `OR sleep(5)`, `AND extractvalue(1,...)`, `|| isnull(1/0)`: a boolean operator applied to an
/// injection function call. The match is the call; the operator is read back from its name.
pub fn boolean_function(text: &str, _start: usize, end: usize) -> bool {
    let head = text[..end - 1].trim_end_matches(' ');
    let before = head[..run_start(head, is_function_char)].trim_end_matches([' ', '(']);
    let operator = &before[run_start(before, is_name_char)..];
    before.ends_with("||")
        || before.ends_with("&&")
        || ["or", "and", "xor", "not", "having", "where"]
            .iter()
            .any(|w| operator.eq_ignore_ascii_case(w))
}

/// `SELECT version()`, `select current_setting('port')`: a query of an injection function.
pub fn select_function(text: &str, _start: usize, end: usize) -> bool {
    let head = text[..end - 1].trim_end_matches(' ');
    is_injection_function(&head[run_start(head, is_function_char)..])
}

/// `admin'--`, `1') #`, `x"/*`: a quote that closes the application's literal, then a comment
/// that cuts the rest of its query. The quote is found by reading back from the marker.
pub fn quote_comment(text: &str, _start: usize, end: usize) -> bool {
    let bytes = text.as_bytes();
    let marker_len = if bytes[..end].ends_with(b"#") { 1 } else { 2 };
    let mut i = end - marker_len;
    let skip = |i: &mut usize, set: &[u8]| {
        while *i > 0 && set.contains(&bytes[*i - 1]) {
            *i -= 1;
        }
    };
    skip(&mut i, b" ;");
    skip(&mut i, b" )");
    if i == 0 || !matches!(bytes[i - 1], b'\'' | b'"' | b'`') {
        return false;
    }
    let quote = bytes[i - 1];
    let count = text.bytes().filter(|&b| b == quote).count();
    if count % 2 == 0 {
        return false;
    }
    let marker = &text[..end];
    let rest = text[end..].trim();
    if marker.ends_with('#') {
        return !rest.contains(|c: char| c.is_alphanumeric());
    }
    if marker.ends_with("--") {
        return rest
            .split(' ')
            .filter(|w| w.chars().any(char::is_alphabetic))
            .count()
            <= 1;
    }
    true
}

const STATEMENT_TARGETS: &[&str] = &[
    "table",
    "database",
    "schema",
    "view",
    "index",
    "procedure",
    "proc",
    "function",
    "user",
    "trigger",
    "column",
    "login",
    "role",
    "sequence",
    "event",
    "server",
    "tablespace",
    "synonym",
    "package",
];

/// `; DROP TABLE x`, `; EXEC xp_cmdshell`, `; DECLARE @s`, `; SELECT ...`: a second statement.
pub fn stacked_query(text: &str, _start: usize, end: usize) -> bool {
    // The match ends right after the statement keyword.
    let head = &text[..end];
    let keyword = head[run_start(head, is_name_char)..].to_ascii_lowercase();
    let after = tokens_after(text, end);
    statement_follows(&keyword, &after)
}

fn statement_follows(keyword: &str, after: &[Token<'_>]) -> bool {
    let first = after.first();
    let second = after.get(1);
    let ends =
        |t: Option<&Token<'_>>| t.is_none_or(|t| matches!(t.kind, Kind::Semi | Kind::Comment));
    match keyword {
        "drop" | "create" | "alter" => {
            first.is_some_and(|t| STATEMENT_TARGETS.iter().any(|w| t.is_word(w)))
                || (first.is_some_and(|t| t.kind == Kind::Word)
                    && second.is_some_and(|t| matches!(t.kind, Kind::Comment | Kind::Semi)))
        }
        "desc" | "describe" | "show" => first.is_some_and(|t| t.kind == Kind::Word) && ends(second),
        "truncate" => {
            first.is_some_and(|t| t.is_word("table"))
                || (first.is_some_and(|t| t.kind == Kind::Word) && ends(second))
        }
        "insert" => first.is_some_and(|t| t.is_word("into")),
        "delete" => {
            first.is_some_and(|t| t.is_word("from"))
                || second.is_some_and(|t| t.is_word("from") || t.is_word("where"))
        }
        "update" => {
            first.is_some_and(|t| t.kind == Kind::Word) && second.is_some_and(|t| t.is_word("set"))
        }
        "select" => select_list_strength(after) >= Strength::Weak,
        "exec" | "execute" => first.is_some_and(|t| {
            let lower = t.text.to_ascii_lowercase();
            matches!(t.kind, Kind::LParen | Kind::Var | Kind::Str)
                || lower.starts_with("xp_")
                || lower.starts_with("sp_")
                || lower.starts_with("master.")
                || lower == "immediate"
        }),
        "declare" => first.is_some_and(|t| t.kind == Kind::Var),
        // `SET @x = 1`, `SET GLOBAL general_log = 'ON'`.
        "set" => {
            first.is_some_and(|t| t.kind == Kind::Var)
                || (first.is_some_and(|t| t.is_word("global") || t.is_word("session"))
                    && second.is_some_and(|t| t.kind == Kind::Word)
                    && after.get(2).is_some_and(|t| t.is_op("=")))
        }
        // `COPY users TO '/tmp/x'`, `COPY t FROM PROGRAM 'id'` (PostgreSQL).
        "copy" => {
            first.is_some_and(|t| matches!(t.kind, Kind::Word | Kind::LParen))
                && (second.is_some_and(|t| t.is_word("to") || t.is_word("from")))
                && after
                    .get(2)
                    .is_some_and(|t| t.kind == Kind::Str || t.is_word("program"))
        }
        // `LOCK TABLES users WRITE`, `LOCK TABLE t IN EXCLUSIVE MODE`.
        "lock" => {
            first.is_some_and(|t| t.is_word("tables") || t.is_word("table"))
                && second.is_some_and(|t| t.kind == Kind::Word)
                && after
                    .get(2)
                    .is_some_and(|t| t.is_word("read") || t.is_word("write") || t.is_word("in"))
        }
        "replace" => {
            first.is_some_and(|t| t.is_word("into"))
                && second.is_some_and(|t| t.kind == Kind::Word)
                && after.get(2).is_some_and(|t| {
                    t.kind == Kind::LParen
                        || t.is_word("values")
                        || t.is_word("select")
                        || t.is_word("set")
                })
        }
        "load" => {
            first.is_some_and(|t| t.is_word("data"))
                && second.is_some_and(|t| t.is_word("infile") || t.is_word("local"))
        }
        "prepare" => {
            first.is_some_and(|t| t.kind == Kind::Word)
                && second.is_some_and(|t| t.is_word("from"))
                && after
                    .get(2)
                    .is_some_and(|t| matches!(t.kind, Kind::Var | Kind::Str))
        }
        "pragma" => {
            first.is_some_and(|t| t.kind == Kind::Word)
                && (ends(second) || second.is_some_and(|t| t.is_op("=") || t.kind == Kind::LParen))
        }
        "kill" => {
            (first.is_some_and(|t| t.kind == Kind::Num) && ends(second))
                || (first.is_some_and(|t| t.is_word("query") || t.is_word("connection"))
                    && second.is_some_and(|t| t.kind == Kind::Num))
        }
        "backup" | "restore" => first.is_some_and(|t| t.is_word("database") || t.is_word("log")),
        "bulk" => first.is_some_and(|t| t.is_word("insert")),
        "shutdown" => ends(first) || first.is_some_and(|t| t.is_word("with")),
        "waitfor" => first.is_some_and(|t| t.is_word("delay") || t.is_word("time")),
        "grant" | "revoke" => first.is_some_and(|t| {
            [
                "all", "select", "insert", "update", "delete", "exec", "execute", "dba", "connect",
                "resource",
            ]
            .iter()
            .any(|w| t.is_word(w))
        }),
        "if" => first.is_some_and(|t| {
            matches!(t.kind, Kind::LParen | Kind::Var | Kind::Num)
                || t.is_word("exists")
                || t.is_word("not")
        }),
        "begin" => {
            ends(first)
                || first.is_some_and(|t| {
                    t.is_word("declare") || t.is_word("tran") || t.is_word("transaction")
                })
        }
        "union" => {
            select_list_strength(after.get(1..).unwrap_or(&[])) >= Strength::Weak
                && after
                    .first()
                    .is_some_and(|t| t.is_word("select") || t.is_word("all"))
        }
        _ => false,
    }
}

/// `DROP TABLE users`: the match is the keyword and the target.
pub fn statement(text: &str, _start: usize, end: usize) -> bool {
    let start =
        keyword_before(text, end, &["drop", "create", "alter", "truncate"], 24).unwrap_or(0);
    let tokens = tokenize(&text[start..], LOOKAHEAD);
    let Some(head) = tokens.first() else {
        return false;
    };
    let keyword = head.text.to_ascii_lowercase();
    let after = &tokens[1..];
    if !statement_follows(&keyword, after) {
        return false;
    }
    match keyword.as_str() {
        // `drop table <name>` then the end of the statement.
        "drop" | "create" | "alter" | "truncate" => {
            let rest = tokenize(&text[end..], 6);
            let named = rest
                .first()
                .is_some_and(|t| matches!(t.kind, Kind::Word | Kind::Str));
            named
                && rest.get(1).is_none_or(|t| {
                    matches!(
                        t.kind,
                        Kind::Semi | Kind::Comment | Kind::Comma | Kind::LParen
                    ) || ["if", "cascade", "purge", "as", "add", "set", "modify"]
                        .iter()
                        .any(|w| t.is_word(w))
                })
        }
        _ => true,
    }
}

/// Common English words that never name a table in an attack but follow "select ... from".
const ENGLISH_AFTER_FROM: &[&str] = &[
    "the", "a", "an", "here", "there", "them", "it", "this", "that", "these", "those", "my",
    "your", "our", "his", "her", "their", "which", "what", "me", "you", "us", "him", "home",
    "work", "school", "now", "then", "each", "every", "any", "all", "one", "two", "both",
];

/// `SELECT <list> FROM <table>` with a real select list and a table followed by a clause or
/// the end, not "select a seat from the menu".
pub fn select_from(text: &str, _start: usize, end: usize) -> bool {
    // The match is the `select` keyword.
    let start = end - "select".len();
    let tokens = tokenize(&text[start..], LOOKAHEAD * 2);
    let Some(from_at) = tokens.iter().position(|t| t.is_word("from")) else {
        return false;
    };
    let list = &tokens[1..from_at];
    if list.is_empty() || !select_list_is_sql(list) {
        return false;
    }
    let Some(table) = tokens.get(from_at + 1) else {
        return false;
    };
    match table.kind {
        Kind::Word => {}
        Kind::LParen | Kind::Str => return true,
        _ => return false,
    }
    if ENGLISH_AFTER_FROM.iter().any(|w| table.is_word(w)) {
        return false;
    }
    let clause_or_end = |t: Option<&Token<'_>>| {
        t.is_none_or(|t| {
            matches!(
                t.kind,
                Kind::Semi | Kind::Comment | Kind::Comma | Kind::RParen
            )
        })
    };
    match tokens.get(from_at + 2) {
        None => true,
        // `from users u,` / `from users t1)`: a table alias.
        Some(t)
            if t.kind == Kind::Word
                && clause_or_end(tokens.get(from_at + 3))
                && !ENGLISH_AFTER_FROM.iter().any(|w| t.is_word(w)) =>
        {
            true
        }
        Some(t) => {
            matches!(
                t.kind,
                Kind::Semi | Kind::Comment | Kind::Comma | Kind::RParen | Kind::Op | Kind::LParen
            ) || [
                "where",
                "limit",
                "order",
                "group",
                "union",
                "join",
                "having",
                "into",
                "procedure",
                "inner",
                "left",
                "right",
                "outer",
                "natural",
                "as",
                "offset",
                "for",
                "with",
                "and",
                "or",
            ]
            .iter()
            .any(|w| t.is_word(w))
        }
    }
}

fn select_list_is_sql(list: &[Token<'_>]) -> bool {
    let mut items = list.split(|t| t.kind == Kind::Comma).peekable();
    let several = list.iter().any(|t| t.kind == Kind::Comma);
    items.all(|item| {
        let mut kept: Vec<&Token<'_>> = Vec::new();
        let mut skip_count = false;
        for t in item {
            if skip_count && t.kind == Kind::Num {
                skip_count = false;
                continue;
            }
            skip_count = t.is_word("top");
            if skip_count || t.is_word("distinct") || t.is_word("distinctrow") || t.is_word("all") {
                continue;
            }
            if matches!(t.kind, Kind::LParen | Kind::RParen) && kept.is_empty() {
                // Leading parens group the item: `(((1`.
                continue;
            }
            kept.push(t);
        }
        while kept.last().is_some_and(|t| t.kind == Kind::RParen) {
            kept.pop();
        }
        let item = kept;
        match item.as_slice() {
            [] => false,
            [t] => {
                matches!(t.kind, Kind::Num | Kind::Str | Kind::Var)
                    || t.text == "*"
                    || (t.kind == Kind::Word
                        && (several
                            || t.text.contains('.')
                            || t.text.contains('_')
                            || is_keyword(t.text)
                            || t.text.len() > 1))
            }
            [name, paren, ..] if name.kind == Kind::Word && paren.kind == Kind::LParen => true,
            [first, ..] if first.kind == Kind::LParen => true,
            [_, as_kw, _] if as_kw.is_word("as") => true,
            // `1 alias`, `'a' alias`
            [value, alias]
                if matches!(value.kind, Kind::Num | Kind::Str | Kind::Var)
                    && alias.kind == Kind::Word =>
            {
                true
            }
            // `count(*)`-style items were handled above; `a b` is an alias only next to commas.
            [a, b] if several && a.kind == Kind::Word && b.kind == Kind::Word => true,
            _ => item.iter().any(|t| matches!(t.kind, Kind::Op | Kind::Var)),
        }
    })
}

/// `ORDER BY 5--`, `' ORDER BY 3#`: column-count probing.
pub fn order_by(text: &str, _start: usize, end: usize) -> bool {
    let start = keyword_before(text, end, &["order", "group"], 32).unwrap_or(0);
    let after = tokens_after(text, end);
    match after.first() {
        Some(t) if t.kind == Kind::Comment || t.kind == Kind::Semi => true,
        Some(t) if t.kind == Kind::Comma => true,
        Some(t) if t.is_word("desc") || t.is_word("asc") => after
            .get(1)
            .is_none_or(|t| matches!(t.kind, Kind::Comment | Kind::Semi)),
        Some(_) => false,
        None => injection_context_before(text, start),
    }
}

/// Several SQL function calls, hex literals and SQL punctuation together: a weak single hit
/// (e.g. `concat(`) is confirmed by how much other SQL surrounds it.
pub fn sql_evidence(text: &str, start: usize, _end: usize) -> bool {
    let window_start = floor_char_boundary(text, start.saturating_sub(96));
    let tokens = tokenize(&text[window_start..], LOOKAHEAD * 3);
    let mut score = 0;
    for (i, t) in tokens.iter().enumerate() {
        let call = tokens.get(i + 1).is_some_and(|n| n.kind == Kind::LParen);
        score += match t.kind {
            Kind::Word if call && is_unambiguous_function(t.text) => 2,
            Kind::Word if call && is_injection_function(t.text) => 1,
            Kind::Word
                if ["select", "union", "from", "where", "and", "or"]
                    .iter()
                    .any(|w| t.is_word(w)) =>
            {
                1
            }
            Kind::Num if t.text.len() > 6 && t.text[..2].eq_ignore_ascii_case("0x") => 2,
            Kind::Var if t.text.starts_with("@@") => 2,
            Kind::Comment => 1,
            _ => 0,
        };
    }
    score >= 3
}

/// The libinjection idea in small: the whole string, read as SQL, either as typed or as the
/// continuation of a literal the application opened (`admin' OR ...`), is nothing but SQL
/// tokens with an injection anchor (a literal break-out, a trailing comment, a stacked
/// statement). English words disqualify it.
pub fn sql_shape(text: &str, _start: usize, end: usize) -> bool {
    // Short strings (form fields, chat lines) are read whole; in long ones, the text around
    // the hit.
    let window = if text.len() <= SHAPE_WINDOW {
        text
    } else {
        let from = floor_char_boundary(text, end.saturating_sub(SHAPE_WINDOW / 2));
        let to = floor_char_boundary(text, (end + SHAPE_WINDOW / 2).min(text.len()));
        &text[from..to]
    };
    if shape_is_sql(window, false) {
        return true;
    }
    // Inside-a-literal context: everything up to the first quote is one token at most, and
    // the quote is not an apostrophe inside a word ("I'm", "that's").
    let Some(quote_at) = window.find(['\'', '"', '`']) else {
        return false;
    };
    let prefix = &window[..quote_at];
    let single_token = !prefix.trim().contains(' ');
    let apostrophe = prefix.chars().next_back().is_some_and(char::is_alphabetic)
        && is_contraction(&window[quote_at + 1..]);
    single_token && !apostrophe && shape_is_sql(&window[quote_at + 1..], true)
}

/// `s`, `t`, `re`... after an apostrophe: English, not a literal break-out.
fn is_contraction(after_quote: &str) -> bool {
    let word: String = after_quote
        .chars()
        .take_while(|c| c.is_alphanumeric())
        .collect();
    ["s", "t", "m", "d", "ll", "re", "ve"]
        .iter()
        .any(|c| word.eq_ignore_ascii_case(c))
}

/// Bytes of text the shape check reads.
pub const SHAPE_WINDOW: usize = 512;

/// Literal or comment text that reads as prose (three or more words).
fn is_prose(text: &str) -> bool {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.len() >= 2 && w.chars().all(char::is_alphabetic))
        .count()
        >= 3
}

/// A token that reads as English: a literal of three or more words, or a comment of two or
/// more real words ("-- today only"; injected comments are empty or filler such as `-- -a`).
fn is_prose_token(kind: Kind, text: &str) -> bool {
    match kind {
        Kind::Comment => {
            is_prose(text)
                || text
                    .split(|c: char| !c.is_alphanumeric())
                    .filter(|w| w.len() >= 3 && w.chars().all(char::is_alphabetic))
                    .count()
                    >= 2
        }
        _ => is_prose(text),
    }
}

/// Tokens the shape check reads: one bit of a u64 each says whether it is a bare word.
const SHAPE_TOKENS: usize = u64::BITS as usize;

fn shape_is_sql(text: &str, broke_out: bool) -> bool {
    let tokens = tokenize(text, SHAPE_TOKENS);
    let call = |i: usize| tokens.get(i + 1).is_some_and(|n| n.kind == Kind::LParen);
    // A plain word: not SQL syntax, not a call, not identifier-like (`x`, `t1`, `a.b`, `a_b`).
    let bare_words: u64 = tokens
        .iter()
        .enumerate()
        .filter(|&(i, t)| {
            t.kind == Kind::Word
                && !call(i)
                && (t.text.len() > 1
                    || t.text.eq_ignore_ascii_case("a")
                    || t.text.eq_ignore_ascii_case("i"))
                && !t.text.contains(['_', '.'])
                && !t.text.chars().any(|c| c.is_ascii_digit())
                && !is_keyword(t.text)
                && !is_injection_function(t.text)
        })
        .fold(0, |mask, (i, _)| mask | 1 << i);
    let bare = |i: usize| i < SHAPE_TOKENS && bare_words >> i & 1 == 1;
    let prose = |i: usize| {
        tokens.get(i).is_some_and(|t| {
            matches!(t.kind, Kind::Str | Kind::Comment) && is_prose_token(t.kind, t.text)
        })
    };
    let connector = |i: usize| {
        tokens
            .get(i)
            .is_some_and(|t| CONNECTORS.iter().any(|w| t.is_word(w)))
    };
    // A plain word next to another, directly or across one English connector ("this is fine").
    let in_sentence = |i: usize| {
        (i > 0 && (bare(i - 1) || prose(i - 1)))
            || bare(i + 1)
            || prose(i + 1)
            || (connector(i + 1) && bare(i + 2))
            || (i > 1 && connector(i - 1) && bare(i - 2))
    };
    let (mut english, mut signals, mut sql_tokens, mut keywords, mut plain, mut structural) =
        (0, 0, 0, 0, 0, 0);
    for (i, t) in tokens.iter().enumerate() {
        if bare(i) {
            plain += 1;
        }
        if matches!(
            t.kind,
            Kind::Op
                | Kind::Num
                | Kind::Var
                | Kind::Comment
                | Kind::Semi
                | Kind::LParen
                | Kind::RParen
        ) {
            structural += 1;
        }
        match t.kind {
            Kind::Word if call(i) || is_keyword(t.text) => {
                sql_tokens += 1;
                if is_keyword(t.text) {
                    keywords += 1;
                    signals += 1;
                } else if is_injection_function(t.text) || t.text.len() <= 4 {
                    signals += 1;
                }
            }
            Kind::Word => {
                if bare(i) && in_sentence(i) {
                    english += 1;
                }
            }
            Kind::Var => {
                sql_tokens += 1;
                signals += 1;
            }
            Kind::Str | Kind::Comment if is_prose_token(t.kind, t.text) => english += 1,
            Kind::Op if broke_out && COMPARISON_OPS.contains(&t.text) => {
                sql_tokens += 1;
                signals += 1;
            }
            Kind::Other => {}
            _ => sql_tokens += 1,
        }
        // Either is enough to call the text English.
        if english > 0 || plain >= 3 {
            return false;
        }
    }
    if signals == 0 || sql_tokens < 2 {
        return false;
    }
    // `"not really"` read after its first quote is `not really "`: a keyword and a word, no SQL.
    if broke_out && plain > 0 && structural == 0 {
        return false;
    }
    let first = tokens[0];
    let trailing_comment = tokens.last().is_some_and(|t| t.kind == Kind::Comment);
    let stacked = tokens
        .windows(2)
        .any(|w| w[0].kind == Kind::Semi && w[1].kind == Kind::Word && is_keyword(w[1].text));
    let statement = [
        "select", "insert", "update", "delete", "drop", "create", "exec", "execute", "declare",
        "union", "alter", "truncate",
    ]
    .iter()
    .any(|k| first.is_word(k))
        && signals >= 2;
    broke_out
        || trailing_comment
        || stacked
        || first.kind == Kind::RParen
        || leading_boolean(&tokens)
        || statement
        || (sql_tokens >= 5 && keywords >= 2)
}

/// SQL keywords that also glue English sentences together.
const CONNECTORS: &[&str] = &[
    "or", "and", "not", "is", "in", "like", "as", "to", "on", "by", "if", "do", "all", "any",
    "some", "then", "when", "end", "set",
];

const COMPARISON_OPS: &[&str] = &[
    "=", "<", ">", "!=", "<>", "<=", ">=", "||", "&&", "|", "^", "!", "==", "<=>",
];

/// Starts with a boolean operator applied to a literal or a comparison: ` OR x=y`, `AND 1`.
fn leading_boolean(tokens: &[Token<'_>]) -> bool {
    let mut rest = tokens;
    while rest.first().is_some_and(|t| t.kind == Kind::LParen) {
        rest = &rest[1..];
    }
    let Some(op) = rest.first() else {
        return false;
    };
    if !(["or", "and", "xor", "not"].iter().any(|w| op.is_word(w))
        || op.is_op("||")
        || op.is_op("&&"))
    {
        return false;
    }
    let operand = rest.get(1);
    let after = rest.get(2);
    let ends = after.is_none_or(|t| matches!(t.kind, Kind::Comment | Kind::Semi | Kind::RParen));
    let compares = after.is_some_and(is_comparison);
    match operand {
        Some(t) if t.is_literal() || ["true", "false", "null"].iter().any(|w| t.is_word(w)) => {
            ends || compares
        }
        Some(t) if t.kind == Kind::Var => compares,
        // `OR x=y`, `AND a.b LIKE 'c'`, not "and that = good".
        Some(t) if t.kind == Kind::Word => {
            let identifier = t.text.len() == 1
                || t.text.contains(['_', '.'])
                || t.text.chars().any(|c| c.is_ascii_digit());
            compares && (identifier || rest.get(3).is_some_and(Token::is_literal))
        }
        _ => false,
    }
}

pub(crate) fn floor_char_boundary(text: &str, mut at: usize) -> usize {
    while at > 0 && !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str, needle: &str) -> (usize, usize) {
        let start = text.to_ascii_lowercase().find(needle).unwrap();
        (start, start + needle.len())
    }

    #[test]
    fn union_select_needs_a_select_list() {
        for attack in [
            "1 union select 1,2,3",
            "x' union select password from users",
            "-1 UNION SELECT null",
            "'union select",
        ] {
            let (s, e) = at(attack, "select");
            let (u, _) = at(attack, "union");
            assert!(union_select(attack, u, e), "{attack}");
            assert!(s > u);
        }
        let benign = "join the union select a seat";
        let (u, _) = at(benign, "union");
        let (_, e) = at(benign, "select");
        assert!(!union_select(benign, u, e));
    }

    #[test]
    fn tautologies_and_english() {
        for attack in [
            "' or '1'='1",
            "x or 1=1",
            "' and 8=3",
            "or x=x",
            "and ascii(substr(user(),1,1))>64",
            "\" or \"\"=\"",
        ] {
            let start = attack.find(['o', 'a']).unwrap();
            assert!(tautology(attack, start, attack.len()), "{attack}");
        }
        for benign in ["or this is fine", "and that = good", "or me is"] {
            assert!(!tautology(benign, 0, benign.len()), "{benign}");
        }
    }

    #[test]
    fn the_operator_of_a_comparison_is_found_among_many() {
        // Only the nearest operators are read: the one that applies is among them however many
        // come before, and the operators inside a long operand do not hide it.
        let padded = format!("{}' or 'a'='a", "or=and=".repeat(40));
        assert!(tautology(&padded, 0, padded.len()));
        let nested = "x' or ascii(substr((select name from users where id=1),1,1))>64";
        assert!(tautology(nested, 0, nested.len()));
        let benign = "or=and=".repeat(40);
        assert!(!tautology(&benign, 0, benign.len()));
    }

    #[test]
    fn quote_comments_need_an_open_literal() {
        assert!(quote_comment("admin'--", 5, 8));
        assert!(quote_comment("1') #", 1, 5));
        assert!(quote_comment("1'); --", 1, 7));
        assert!(!quote_comment("he said \"no\"-- and left", 11, 14));
        assert!(!quote_comment("'great'#blessed", 6, 8));
    }

    #[test]
    fn stacked_queries_need_a_statement() {
        assert!(stacked_query("'; drop table users--", 1, 7));
        assert!(stacked_query("1; exec xp_cmdshell 'dir'", 1, 7));
        assert!(!stacked_query("a; drop me a line", 1, 7));
        assert!(!stacked_query("ok; set the table", 2, 7));
        // Statements that write files, run programs or change the server, beside chat that
        // uses their keywords.
        let keyword_end = |text: &str| {
            let semi = text.find(';').unwrap() + 1;
            semi + text[semi..].len() - text[semi..].trim_start().len()
                + text[semi..].trim_start().find(' ').unwrap()
        };
        for attack in [
            "1; SET GLOBAL general_log='ON'",
            "1; COPY users TO '/tmp/x'",
            "1; copy t from program 'id'",
            "x'; LOCK TABLES users WRITE;--",
            "1; REPLACE INTO users VALUES(1)",
            "1; LOAD DATA INFILE '/etc/passwd' INTO TABLE t",
            "1; PREPARE s FROM @q",
            "1; PRAGMA table_info(users)",
            "1; KILL 12",
            "1; BACKUP DATABASE master TO DISK='x'",
            "1; BULK INSERT t FROM 'x'",
        ] {
            assert!(stacked_query(attack, 1, keyword_end(attack)), "{attack}");
        }
        for chat in [
            "ok; set global goals for this year = ambitious",
            "sure; copy that to me",
            "lol; kill 2 birds with one stone",
            "ok; lock table 5 for us",
            "fine; replace into the other folder",
            "ok; load data later",
            "ready; prepare yourself from now on",
        ] {
            assert!(!stacked_query(chat, 1, keyword_end(chat)), "{chat}");
        }
    }

    #[test]
    fn select_from_is_not_menu_talk() {
        assert!(select_from("select * from users", 0, 6));
        assert!(select_from("select name,pass from users where id=1", 0, 6));
        assert!(!select_from("please select a seat from the menu", 7, 13));
        assert!(!select_from("select one from the list", 0, 6));
    }

    #[test]
    fn boolean_functions_need_the_operator_before_the_call() {
        for attack in [
            "1 or sleep(",
            "x' AND (extractvalue(",
            "1 || pi (",
            "having (ascii(",
        ] {
            assert!(boolean_function(attack, 0, attack.len()), "{attack}");
        }
        for benign in ["go to sleep(", "sleep(", "the floor ("] {
            assert!(!boolean_function(benign, 0, benign.len()), "{benign}");
        }
    }

    #[test]
    fn confirmers_read_back_over_any_char() {
        let union = "😀x union select a";
        assert!(!union_select(union, 0, union.len()));
        let call = "😀sleep(";
        assert!(!boolean_function(call, 0, call.len()));
    }

    #[test]
    fn sql_shapes() {
        for attack in [
            " ( BINARY ( 'b') )  --",
            "' NOT LIKE '",
            "1'-@a or'1",
            " ( COS ( 1 OR @a) )  --",
            "admin' or '",
            "'; while 1=1 shutdown-- -a",
        ] {
            assert!(sql_shape(attack, 0, attack.len()), "{attack}");
        }
        for benign in [
            "say 'yes' or 'no'",
            "'Hello' or 'hi'",
            "see you at 5 -- bye",
            "ok :) #blessed",
            "\"not really\"",
            "you're like 'whatever'",
            "That's true--I feel like teachers should be paid better",
            "Saints\", and \"we know other missionaries that can speak\"",
            "I'm not \"crazy\"; I'm curious.",
            "Wait, is it \"fantasy romance\" or fantasy & romance",
            "is it a pet #5",
            "price: $5 (or less) -- today only",
        ] {
            assert!(!sql_shape(benign, 0, benign.len()), "{benign}");
        }
    }

    #[test]
    fn order_by_probe() {
        assert!(order_by("1 order by 5--", 2, 12));
        assert!(!order_by("place your order by 5 pm", 11, 21));
    }
}
