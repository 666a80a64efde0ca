//! Base64 that carries text: applications send encoded payloads in JSON fields and decode them
//! before use, so an attack encoded this way is scanned as the text it decodes to.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;

/// Shorter strings are words or ids more often than encoded text (`<script>` encodes to 12).
pub const MIN_ENCODED_LEN: usize = 12;

const INDIFFERENT: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const STANDARD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, INDIFFERENT);
const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, INDIFFERENT);

/// Byte classes of the base64 alphabets, OR-ed over a string in one pass.
mod class {
    pub const HEX: u8 = 1;
    /// Letters past `f`: a string of hex digits alone is an id, not encoded text.
    pub const LETTER: u8 = 2;
    pub const STANDARD: u8 = 4;
    pub const URL_SAFE: u8 = 8;
    pub const OTHER: u8 = 16;
}

const CLASSES: [u8; 256] = {
    let mut table = [class::OTHER; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = match c {
            b'0'..=b'9' | b'A'..=b'F' | b'a'..=b'f' => class::HEX,
            b'G'..=b'Z' | b'g'..=b'z' => class::LETTER,
            b'+' | b'/' => class::STANDARD,
            b'-' | b'_' => class::URL_SAFE,
            _ => class::OTHER,
        };
        b += 1;
    }
    table
};

/// The text `s` encodes, if `s` is nothing but base64 (standard or URL-safe alphabet, padded
/// or not, not just hex digits) and decodes to UTF-8 without control characters other than
/// tab and line breaks. Random identifiers decode to bytes that are not such text, and are left
/// alone.
pub fn decode_text(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    if bytes.len() < MIN_ENCODED_LEN {
        return None;
    }
    let padding = bytes
        .iter()
        .rev()
        .take(3)
        .take_while(|&&b| b == b'=')
        .count();
    if padding > 2 {
        return None;
    }
    let classes = bytes[..bytes.len() - padding]
        .iter()
        .fold(0, |seen, &b| seen | CLASSES[b as usize]);
    let engine = match classes {
        c if c & class::OTHER != 0 || c & class::LETTER == 0 => return None,
        c if c & class::URL_SAFE == 0 => &STANDARD,
        c if c & class::STANDARD == 0 => &URL_SAFE,
        _ => return None,
    };
    let decoded = engine.decode(s).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let printable = text
        .chars()
        .all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r'));
    printable.then_some(text)
}

#[cfg(test)]
mod tests {
    use super::decode_text;

    #[test]
    fn encoded_text_is_decoded() {
        assert_eq!(
            decode_text("PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==").as_deref(),
            Some("<script>alert(1)</script>")
        );
        // Unpadded, and the URL-safe alphabet.
        assert_eq!(
            decode_text("PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg").as_deref(),
            Some("<script>alert(1)</script>")
        );
        assert_eq!(decode_text("Pz8_Pz8_Pz8_").as_deref(), Some("?????????"));
        assert_eq!(
            decode_text("Y2F0IC9ldGMvcGFzc3dk").as_deref(),
            Some("cat /etc/passwd")
        );
    }

    #[test]
    fn words_ids_and_binary_are_left_alone() {
        for s in [
            "administrator",
            "HelloWorld1234",
            "userAuthenticationToken",
            "0123456789abcdef0123",
            "PHNjcmlw",
            "see you at nine",
            "a+b/c-d_e+f/g-h_",
            "AAECAwQFBgcICQoLDA0ODw==",
            "PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg===",
        ] {
            assert_eq!(decode_text(s), None, "{s}");
        }
    }
}
