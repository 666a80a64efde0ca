//! HTML character references: decimal, hex and the named references that matter for markup
//! and script, each with or without the closing `;` (browsers accept both for many of them).

/// Named references that spell markup, script or URL syntax, or whitespace that browsers strip
/// inside URLs. Matched case-insensitively; a name that is a prefix of another comes after it.
const NAMED: &[(&str, char)] = &[
    ("newline", '\n'),
    ("lowbar", '_'),
    ("percnt", '%'),
    ("period", '.'),
    ("commat", '@'),
    ("equals", '='),
    ("rsquo", '\''),
    ("lsquo", '\''),
    ("rsqb", ']'),
    ("lsqb", '['),
    ("lcub", '{'),
    ("rcub", '}'),
    ("colon", ':'),
    ("comma", ','),
    ("grave", '`'),
    ("lpar", '('),
    ("rpar", ')'),
    ("bsol", '\\'),
    ("excl", '!'),
    ("quot", '"'),
    ("apos", '\''),
    ("nbsp", '\u{a0}'),
    ("semi", ';'),
    ("plus", '+'),
    ("dollar", '$'),
    ("quest", '?'),
    ("verbar", '|'),
    ("vert", '|'),
    ("ast", '*'),
    ("num", '#'),
    ("sol", '/'),
    ("amp", '&'),
    ("tab", '\t'),
    ("lt", '<'),
    ("gt", '>'),
];

/// Longest code-point spelling accepted after `&#` / `&#x` (leading zeros excluded).
const MAX_DIGITS: usize = 8;

/// Decodes `input`; returns `None` when it contains no character reference.
pub fn decode(input: &str) -> Option<String> {
    super::replace_char_escapes(input, b'&', reference_at)
}

/// Parses the reference after an `&`; returns the character and the bytes consumed.
fn reference_at(rest: &[u8]) -> Option<(char, usize)> {
    if rest.first() == Some(&b'#') {
        let (radix, start) = match rest.get(1) {
            Some(b'x' | b'X') => (16, 2),
            _ => (10, 1),
        };
        let digits = rest[start..]
            .iter()
            .take_while(|b| {
                if radix == 16 {
                    b.is_ascii_hexdigit()
                } else {
                    b.is_ascii_digit()
                }
            })
            .count();
        if digits == 0 {
            return None;
        }
        let text = std::str::from_utf8(&rest[start..start + digits]).ok()?;
        let significant = text.trim_start_matches('0');
        let code = if significant.is_empty() {
            0
        } else if significant.len() > MAX_DIGITS {
            u32::MAX
        } else {
            u32::from_str_radix(significant, radix).ok()?
        };
        let ch = match code {
            0 => char::REPLACEMENT_CHARACTER,
            _ => char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER),
        };
        let mut len = start + digits;
        if rest.get(len) == Some(&b';') {
            len += 1;
        }
        return Some((ch, len));
    }
    NAMED.iter().find_map(|&(name, ch)| {
        let candidate = rest.get(..name.len())?;
        if !candidate.eq_ignore_ascii_case(name.as_bytes()) {
            return None;
        }
        let mut len = name.len();
        if rest.get(len) == Some(&b';') {
            len += 1;
        }
        Some((ch, len))
    })
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn named_decimal_and_hex_with_and_without_semicolon() {
        assert_eq!(decode("&lt;script&gt;").as_deref(), Some("<script>"));
        assert_eq!(decode("&lt script&gt").as_deref(), Some("< script>"));
        assert_eq!(decode("&#60;&#x3C;&#X3c").as_deref(), Some("<<<"));
        assert_eq!(decode("&#0000106&#0000097").as_deref(), Some("ja"));
        assert_eq!(
            decode("java&#x09;script&colon;").as_deref(),
            Some("java\tscript:")
        );
        assert_eq!(
            decode("&Tab;&NewLine;&lpar;&rpar;").as_deref(),
            Some("\t\n()")
        );
    }

    #[test]
    fn nested_entities_need_two_passes() {
        let once = decode("&amp;lt;b&amp;gt;").unwrap();
        assert_eq!(once, "&lt;b&gt;");
        assert_eq!(decode(&once).as_deref(), Some("<b>"));
    }

    #[test]
    fn out_of_range_and_plain_ampersands() {
        assert_eq!(decode("&#x110000;").as_deref(), Some("\u{FFFD}"));
        assert_eq!(
            decode("&#99999999999999999999;").as_deref(),
            Some("\u{FFFD}")
        );
        assert_eq!(decode("rock & roll"), None);
        assert_eq!(decode("AT&T"), None);
        assert_eq!(decode("&ltimg").as_deref(), Some("<img"));
        assert_eq!(decode("&#;"), None);
    }
}
