//! Confirmation of XSS candidates: is the hit inside an HTML tag, an attribute the input broke
//! into, or a script context, and does it carry script?

/// The match sits inside an open tag: `<name ...` with no `>` since, except inside quoted
/// attribute values (`<x a=">" onclick=...`).
fn inside_tag(text: &str, start: usize) -> bool {
    let before = &text.as_bytes()[..start];
    let mut search_end = before.len();
    while let Some(open) = memchr::memrchr(b'<', &before[..search_end]) {
        let opens_tag = before
            .get(open + 1)
            .is_some_and(|&c| c.is_ascii_alphabetic() || matches!(c, b'/' | b'!' | b'?'));
        if opens_tag && !closed_outside_quotes(&before[open..]) {
            return true;
        }
        search_end = open;
    }
    false
}

/// Whether a `>` outside quotes ends the tag that `tag` starts.
fn closed_outside_quotes(tag: &[u8]) -> bool {
    let mut quote = None;
    for &b in tag {
        match (quote, b) {
            (None, b'"' | b'\'' | b'`') => quote = Some(b),
            (Some(q), _) if b == q => quote = None,
            (None, b'>') => return true,
            _ => {}
        }
    }
    false
}

/// `value` starts like script: a call, a tagged template, member access or a script URI.
fn looks_like_script(value: &str) -> bool {
    let value = value.trim_start_matches([' ', '"', '\'', '`']);
    let window = &value.as_bytes()[..value.len().min(96)];
    if window.len() >= 11 && window[..11].eq_ignore_ascii_case(b"javascript:") {
        return true;
    }
    let ident = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'$');
    let leading_name = window.iter().take_while(|&&b| ident(b)).count();
    // `location=name`: the value assigns, where attribute values are plain text.
    let assigns = leading_name > 0
        && window.get(leading_name) == Some(&b'=')
        && window.get(leading_name + 1) != Some(&b'=');
    let throws =
        window.len() > 5 && window[..5].eq_ignore_ascii_case(b"throw") && !ident(window[5]);
    assigns
        || throws
        || window.windows(2).any(|pair| {
            (ident(pair[0]) || matches!(pair[0], b']' | b')')) && matches!(pair[1], b'(' | b'`')
        })
        || window.windows(3).any(|w| {
            (w[0].is_ascii_alphanumeric() && w[1] == b'.' && w[2].is_ascii_alphabetic())
                || w == b"?.("
        })
        || window.windows(2).any(|w| w == b"=>")
}

/// Start of `on<event>` (`on` and 3 to 40 more letters at a word start) right before the
/// `=` that ends at `end`, one space allowed in between.
fn handler_start(text: &str, end: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut name_end = end - 1;
    if name_end > 0 && bytes[name_end - 1] == b' ' {
        name_end -= 1;
    }
    let mut start = name_end;
    while start > 0 && bytes[start - 1].is_ascii_alphabetic() {
        start -= 1;
    }
    let boundary =
        start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
    let name = &bytes[start..name_end];
    (boundary && (5..=42).contains(&name.len()) && name[..2].eq_ignore_ascii_case(b"on"))
        .then_some(start)
}

/// `on<event>=`: confirmed inside a tag, or when it follows a quote/space/slash (attribute
/// injection such as `" onmouseover="alert(1)`) and its value is script.
pub fn event_handler(text: &str, _start: usize, end: usize) -> bool {
    let Some(start) = handler_start(text, end) else {
        return false;
    };
    if inside_tag(text, start) {
        return true;
    }
    let before = text[..start].chars().next_back();
    let attribute_position =
        before.is_none_or(|c| matches!(c, ' ' | '"' | '\'' | '`' | '/' | ';' | ','));
    // A quote shortly before means the input closed an attribute value and added its own.
    let window = &text.as_bytes()[start.saturating_sub(64)..start];
    let broke_out = window.iter().any(|&b| matches!(b, b'"' | b'\'' | b'`'));
    attribute_position && (broke_out || looks_like_script(&text[end..]))
}

/// Script URI schemes, read backwards from the colon with spaces between letters allowed
/// (`java script:` is what `java&#x09;script:` normalizes to).
const SCRIPT_SCHEMES: &[&str] = &["javascript", "vbscript", "livescript", "mocha"];

/// Start of the scheme that ends at the colon before `end`, if it is a script scheme.
fn script_scheme_start(text: &str, end: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut i = end - 1; // the colon
    let mut letters = Vec::with_capacity(12);
    let mut first = None;
    while i > 0 && letters.len() < 10 {
        let b = bytes[i - 1];
        if b.is_ascii_alphabetic() {
            letters.push(b.to_ascii_lowercase());
            first = Some(i - 1);
        } else if b != b' '
            || bytes
                .get(i.wrapping_sub(2))
                .is_none_or(|c| !c.is_ascii_alphabetic())
        {
            break;
        }
        i -= 1;
        if let Some(start) = first {
            let spelled: Vec<u8> = letters.iter().rev().copied().collect();
            let boundary = start == 0 || !bytes[start - 1].is_ascii_alphanumeric();
            if boundary
                && SCRIPT_SCHEMES
                    .iter()
                    .any(|s| s.as_bytes() == spelled.as_slice())
            {
                return Some(start);
            }
        }
    }
    None
}

/// `javascript:` / `vbscript:` URIs; "I like javascript: it is fun" passes.
pub fn script_uri(text: &str, _start: usize, end: usize) -> bool {
    let Some(start) = script_scheme_start(text, end) else {
        return false;
    };
    let after = &text[end..];
    if after.chars().next().is_some_and(|c| c != ' ') {
        return true;
    }
    let before = text[..start].trim_end_matches(' ');
    let in_attribute = before
        .chars()
        .next_back()
        .is_some_and(|c| matches!(c, '=' | '(' | '"' | '\'' | '`' | '>'));
    in_attribute || looks_like_script(after)
}

/// JS punctuation that puts the following identifier in script context.
fn script_punctuation(c: char) -> bool {
    matches!(
        c,
        ';' | '\''
            | '"'
            | '`'
            | '('
            | '+'
            | '-'
            | '='
            | ':'
            | '{'
            | '}'
            | '>'
            | ','
            | '|'
            | '&'
            | '!'
            | '*'
            | '/'
            | '['
            | '?'
            | '\\'
    )
}

/// `alert(1)`, `prompt\`1\``, `eval(...)`, `'-confirm(document.domain)-'`. The match ends at
/// the `(` or backtick after the function name.
pub fn script_sink(text: &str, _start: usize, end: usize) -> bool {
    let name_end = text[..end - 1].trim_end_matches([' ', '?', '.']).len();
    let start = text.as_bytes()[..name_end]
        .iter()
        .rposition(|b| !b.is_ascii_alphabetic())
        .map_or(0, |p| p + 1);
    let matched = &text[start..end];
    let opener = matched.chars().next_back().unwrap_or(' ');
    let spaced = matched.contains(' ');
    let before = text[..start].trim_end_matches(' ').chars().next_back();
    let in_script_context = before.is_some_and(script_punctuation);
    if spaced && !in_script_context {
        return false;
    }
    if opener == '`' {
        return true;
    }
    let name = text[start..name_end].to_ascii_lowercase();
    if !matches!(name.as_str(), "alert" | "prompt" | "confirm" | "print") {
        return true;
    }
    // A dialog call: anything but a lone English word in the parens counts.
    let args = &text[end..];
    let close = args.find(')');
    let inner = close.map_or(args, |c| &args[..c]).trim();
    let lone_word = !inner.is_empty()
        && inner.chars().all(|c| c.is_ascii_alphabetic())
        && inner.chars().any(|c| c.is_ascii_lowercase());
    !lone_word || in_script_context
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(text: &str, needle: &str) -> (usize, usize) {
        let start = text.find(needle).unwrap();
        (start, start + needle.len())
    }

    #[test]
    fn event_handlers_in_tags_and_attributes() {
        let t = "<img src=x onerror=alert(1)>";
        let (s, e) = span(t, "onerror=");
        assert!(event_handler(t, s, e));
        let t = "\" onmouseover=\"alert(1)";
        let (s, e) = span(t, "onmouseover=");
        assert!(event_handler(t, s, e));
        let t = "turn on=off please";
        let (s, e) = span(t, "on=");
        assert!(!event_handler(t, s, e));
        let t = "set online= true";
        let (s, e) = span(t, "online=");
        assert!(!event_handler(t, s, e));
        let t = "<x 1=\">\" onxxx=1";
        let (s, e) = span(t, "onxxx=");
        assert!(event_handler(t, s, e), "a quoted > does not close the tag");
        let t = "<b>bold</b> turn onwards= no";
        let (s, e) = span(t, "onwards=");
        assert!(!event_handler(t, s, e));
        let t = "<svg onload =alert(1)>";
        let (s, e) = span(t, "onload =");
        assert!(event_handler(t, s, e), "one space before `=`");
        let t = "<x a_onclick=1 é1onclick=2>";
        let (s, e) = span(t, "a_onclick=");
        assert!(!event_handler(t, s, e), "not at a word start");
        let (s, e) = span(t, "1onclick=");
        assert!(!event_handler(t, s, e), "not at a word start");
        for t in [
            "x autofocus onfocus=location=name",
            "x onfocus=throw[onerror=alert]+1",
            "x onfocus=eval?.(name)",
        ] {
            let (s, e) = span(t, "onfocus=");
            assert!(event_handler(t, s, e), "{t}");
        }
        let t = "status online=yes, onwards==no";
        let (s, e) = span(t, "online=");
        assert!(!event_handler(t, s, e));
    }

    #[test]
    fn script_uris() {
        let t = "<a href=j a v a script:alert(1)>";
        let (s, e) = span(t, "j a v a script:");
        assert!(script_uri(t, s, e));
        let t = "my data: it is fine, not: that";
        assert!(!script_uri(t, 0, t.find(':').unwrap() + 1));
        let t = "xjavascript:alert(1)";
        assert!(!script_uri(t, 0, t.find(':').unwrap() + 1));
        let t = "<a href=javascript:alert(1)>";
        let (s, e) = span(t, "javascript:");
        assert!(script_uri(t, s, e));
        let t = "I like javascript: it is fun";
        let (s, e) = span(t, "javascript:");
        assert!(!script_uri(t, s, e));
        let t = "javascript: alert(document.cookie)";
        let (s, e) = span(t, "javascript:");
        assert!(script_uri(t, s, e));
    }

    #[test]
    fn sinks() {
        for (t, needle) in [
            ("alert(1)", "alert("),
            ("';alert(String.fromCharCode(88))//", "alert("),
            ("prompt`1`", "prompt`"),
            ("x=eval(name)", "eval("),
            ("';alert?.(1)//", "alert?.("),
        ] {
            let (s, e) = span(t, needle);
            assert!(script_sink(t, s, e), "{t}");
        }
        for (t, needle) in [
            ("I can confirm(ed)", "confirm("),
            ("please confirm (2 people)", "confirm ("),
        ] {
            let (s, e) = span(t, needle);
            assert!(!script_sink(t, s, e), "{t}");
        }
    }
}
