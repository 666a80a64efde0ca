//! URL percent-decoding (`%XX`, IIS-style `%uXXXX`, `+` as space).

use super::{replace_escapes, text_of, Spelled};

/// Decodes `input`; returns `None` when it contains nothing to decode.
///
/// Bytes that do not form valid UTF-8 after decoding are read as Latin-1, except overlong forms
/// of ASCII (`%C0%BC`, `%E0%80%BC` = `<`), which are folded to the ASCII byte they spell
/// because some decoders accept them and attackers use them to hide markup.
pub fn decode(input: &str) -> Option<String> {
    let bytes = input.as_bytes();
    let mut decoded = replace_escapes(bytes, memchr::memchr2_iter(b'%', b'+', bytes), escape_at)?;
    fold_overlong_ascii(&mut decoded);
    Some(text_of(decoded))
}

/// The `+` or `%` escape at the start of `at`: what it spells and its length.
fn escape_at(at: &[u8]) -> Option<(Spelled, usize)> {
    if at[0] == b'+' {
        return Some((Spelled::byte(b' '), 1));
    }
    if let Some(byte) = hex_pair(at, 1) {
        return Some((Spelled::byte(byte), 3));
    }
    if !matches!(at.get(1), Some(b'u' | b'U')) {
        return None;
    }
    let code = hex_run::<4>(at, 2)?;
    let ch = char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER);
    Some((Spelled::char(ch), 6))
}

fn hex_pair(bytes: &[u8], at: usize) -> Option<u8> {
    let hi = hex_value(*bytes.get(at)?)?;
    let lo = hex_value(*bytes.get(at + 1)?)?;
    Some(hi << 4 | lo)
}

fn hex_run<const N: usize>(bytes: &[u8], at: usize) -> Option<u32> {
    let digits = bytes.get(at..at + N)?;
    digits
        .iter()
        .try_fold(0u32, |acc, &d| Some(acc << 4 | u32::from(hex_value(d)?)))
}

pub(crate) fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Rewrites overlong encodings of ASCII in place: two-byte `C0/C1 xx`, three-byte
/// `E0 80/81 xx` and four-byte `F0 80 80/81 xx`.
fn fold_overlong_ascii(bytes: &mut Vec<u8>) {
    let continuation = |b: &u8| b & 0xC0 == 0x80;
    let mut read = 0;
    let mut write = 0;
    while read < bytes.len() {
        let rest = &bytes[read..];
        let prefix = match rest {
            [0xC0 | 0xC1, ..] => 1,
            [0xE0, 0x80 | 0x81, ..] => 2,
            [0xF0, 0x80, 0x80 | 0x81, ..] => 3,
            _ => 0,
        };
        match rest.get(prefix) {
            Some(last) if prefix > 0 && continuation(last) => {
                bytes[write] = ((rest[prefix - 1] & 0x01) << 6) | (last & 0x3F);
                read += prefix + 1;
            }
            _ => {
                bytes[write] = rest[0];
                read += 1;
            }
        }
        write += 1;
    }
    bytes.truncate(write);
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn decodes_hex_escapes_and_plus() {
        assert_eq!(decode("%3Cscript%3E").as_deref(), Some("<script>"));
        assert_eq!(decode("1+union+select").as_deref(), Some("1 union select"));
        assert_eq!(decode("%u003cb%u003E").as_deref(), Some("<b>"));
    }

    #[test]
    fn double_encoding_needs_two_passes() {
        let once = decode("%253Cscript%253E").unwrap();
        assert_eq!(once, "%3Cscript%3E");
        assert_eq!(decode(&once).as_deref(), Some("<script>"));
    }

    #[test]
    fn overlong_ascii_is_folded_and_invalid_bytes_replaced() {
        assert_eq!(decode("%C0%BCscript%C0%BE").as_deref(), Some("<script>"));
        assert_eq!(decode("%E0%80%BCimg%F0%80%80%BE").as_deref(), Some("<img>"));
        assert_eq!(decode("a%FFb").as_deref(), Some("a\u{FF}b"));
        assert_eq!(decode("1%A0UNION").as_deref(), Some("1\u{A0}UNION"));
    }

    #[test]
    fn leaves_plain_or_malformed_input_alone() {
        assert_eq!(decode("100% sure"), None);
        assert_eq!(decode("%zz%4"), None);
        assert_eq!(decode("no escapes"), None);
    }
}
