//! JavaScript string escapes inside text: `\xHH`, `\uHHHH`, `\u{H..}`, legacy octal and the
//! single-character escapes. Attackers use them to spell markup (`\x3cscript\x3e`) or to hide
//! identifiers (`\u0061lert`).

use super::percent::hex_value;

/// Decodes `input`; returns `None` when it contains no escape.
pub fn decode(input: &str) -> Option<String> {
    super::replace_char_escapes(input, b'\\', escape_at)
}

/// The character the escape after a backslash spells, and the escape's length.
pub(super) fn escape_at(rest: &[u8]) -> Option<(char, usize)> {
    let first = *rest.first()?;
    let simple = match first {
        b'n' => Some('\n'),
        b'r' => Some('\r'),
        b't' => Some('\t'),
        b'v' => Some('\u{b}'),
        b'f' => Some('\u{c}'),
        b'\'' | b'"' | b'\\' | b'/' | b'`' => Some(char::from(first)),
        _ => None,
    };
    if let Some(ch) = simple {
        return Some((ch, 1));
    }
    match first {
        b'x' | b'X' => {
            let hi = hex_value(*rest.get(1)?)?;
            let lo = hex_value(*rest.get(2)?)?;
            Some((char::from(hi << 4 | lo), 3))
        }
        b'u' | b'U' if rest.get(1) == Some(&b'{') => {
            let digits = rest[2..]
                .iter()
                .take(8)
                .take_while(|b| b.is_ascii_hexdigit())
                .count();
            if digits == 0 || rest.get(2 + digits) != Some(&b'}') {
                return None;
            }
            let code = parse_hex(&rest[2..2 + digits])?;
            Some((to_char(code), 3 + digits))
        }
        b'u' | b'U' => {
            let code = parse_hex(rest.get(1..5)?)?;
            Some((to_char(code), 5))
        }
        b'0'..=b'7' => {
            let digits = rest
                .iter()
                .take(3)
                .take_while(|b| (b'0'..=b'7').contains(b))
                .count();
            let code = rest[..digits]
                .iter()
                .fold(0u32, |acc, &d| acc * 8 + u32::from(d - b'0'));
            Some((to_char(code), digits))
        }
        _ => None,
    }
}

fn parse_hex(digits: &[u8]) -> Option<u32> {
    digits
        .iter()
        .try_fold(0u32, |acc, &d| Some(acc << 4 | u32::from(hex_value(d)?)))
}

fn to_char(code: u32) -> char {
    char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER)
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn hex_unicode_and_braced_escapes() {
        assert_eq!(decode(r"\x3cscript\x3e").as_deref(), Some("<script>"));
        assert_eq!(decode(r"\u003cimg\u003E").as_deref(), Some("<img>"));
        assert_eq!(
            decode(r"\u{61}lert\u{0000028}1)").as_deref(),
            Some("alert(1)")
        );
        assert_eq!(decode(r"\74svg\076").as_deref(), Some("<svg>"));
    }

    #[test]
    fn simple_escapes_and_surrogates() {
        assert_eq!(
            decode(r#"a\'b\"c\\d\nid"#).as_deref(),
            Some("a'b\"c\\d\nid")
        );
        assert_eq!(decode(r"\ud800").as_deref(), Some("\u{FFFD}"));
    }

    #[test]
    fn incomplete_escapes_stay() {
        assert_eq!(decode(r"\x4"), None);
        assert_eq!(decode(r"\u12"), None);
        assert_eq!(decode(r"\u{}"), None);
        assert_eq!(decode(r"C:\Program Files"), None);
        assert_eq!(decode("plain"), None);
    }
}
