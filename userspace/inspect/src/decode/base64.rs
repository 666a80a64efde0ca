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

/// The text `s` encodes, if `s` is base64 (standard or URL-safe alphabet, padded or not) that
/// decodes to UTF-8 without control characters other than tab and line breaks, or to gzip or
/// zlib data. Random
/// identifiers decode to bytes that are not such text, and are left alone. The scan asks only
/// for strings whose [`super::normalize::Shape::may_be_base64`] says they can be.
pub fn decode_text(s: &str) -> Option<Encoded> {
    if s.len() < MIN_ENCODED_LEN {
        return None;
    }
    let bytes = decode(s)?;
    if crate::inflate::starts_compressed(&bytes) {
        return Some(Encoded::Compressed(bytes));
    }
    let text = String::from_utf8(bytes).ok()?;
    let printable = text
        .chars()
        .all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r'));
    printable.then_some(Encoded::Text(text))
}

/// What base64 carries that the scan reads.
#[derive(Debug, PartialEq, Eq)]
pub enum Encoded {
    Text(String),
    /// gzip or zlib data (of text, as the scan finds out).
    Compressed(Vec<u8>),
}

/// The bytes `s` encodes in base64, standard or URL-safe alphabet, padded or not. The decoder
/// refuses other bytes, a mix of the alphabets, `=` inside and over-long padding.
pub fn decode(s: &str) -> Option<Vec<u8>> {
    let url_safe = s.bytes().any(|b| b == b'-' || b == b'_');
    let engine = if url_safe { &URL_SAFE } else { &STANDARD };
    engine.decode(s).ok()
}

#[cfg(test)]
mod tests {
    use super::{decode_text, Encoded};

    fn text(s: &str) -> Option<String> {
        match decode_text(s)? {
            Encoded::Text(text) => Some(text),
            Encoded::Compressed(_) => None,
        }
    }

    #[test]
    fn encoded_text_is_decoded() {
        assert_eq!(
            text("PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==").as_deref(),
            Some("<script>alert(1)</script>")
        );
        // Unpadded, and the URL-safe alphabet.
        assert_eq!(
            text("PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg").as_deref(),
            Some("<script>alert(1)</script>")
        );
        assert_eq!(text("Pz8_Pz8_Pz8_").as_deref(), Some("?????????"));
        assert_eq!(
            text("Y2F0IC9ldGMvcGFzc3dk").as_deref(),
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
