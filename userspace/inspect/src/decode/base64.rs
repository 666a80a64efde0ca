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

/// Shortest base64 run looked for inside a longer string.
pub const MIN_EMBEDDED_LEN: usize = 16;

/// What `s` carries in base64: all of it, when it `may_be_whole` base64
/// ([`super::normalize::Shape::may_be_base64`]), or base64 inside it ([`visit_embedded`]).
pub fn visit_decoded(s: &str, may_be_whole: bool, visit: &mut dyn FnMut(Encoded)) {
    match may_be_whole.then(|| decode_text(s)).flatten() {
        Some(encoded) => visit(encoded),
        None => visit_embedded(s, visit),
    }
}

/// Base64 inside `s` that is not all of it: base64 wrapped into lines or groups of one width
/// (MIME, `PGlt ZyBz ...`), and runs of [`MIN_EMBEDDED_LEN`] or more base64 characters after a
/// prefix or before a suffix (`data=...`, `Basic ...`, a stray character either side). Calls
/// `visit` with what each carries.
fn visit_embedded(s: &str, visit: &mut dyn FnMut(Encoded)) {
    let bytes = s.as_bytes();
    if bytes.len() <= MIN_EMBEDDED_LEN {
        return;
    }
    // One pass tells whether there is anything to decode (nearly every string is chat): a run
    // long enough, or nothing but base64 groups between whitespace.
    let (mut run, mut longest, mut grouped) = (0, 0, true);
    for &b in bytes {
        let class = BYTE_CLASS[b as usize];
        run = if class == ALPHABET { run + 1 } else { 0 };
        longest = longest.max(run);
        grouped &= class != OTHER;
    }
    if grouped {
        if let Some(encoded) = unwrapped(s).and_then(|joined| decode_text(&joined)) {
            visit(encoded);
            return;
        }
    }
    if longest < MIN_EMBEDDED_LEN {
        return;
    }
    let mut i = 0;
    while i < bytes.len() {
        if !in_alphabet(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && in_alphabet(bytes[i]) {
            i += 1;
        }
        let mut end = i;
        while end < bytes.len() && end - i < 2 && bytes[end] == b'=' {
            end += 1;
        }
        let run = &s[start..end];
        let hex_only = run.bytes().all(|b| b.is_ascii_hexdigit());
        if run.len() >= MIN_EMBEDDED_LEN && !hex_only {
            // A stray character before or after the run shifts it off base64's grid (the
            // caller tried the whole string as it is).
            let decoded = (run.len() < s.len())
                .then(|| decode_text(run))
                .flatten()
                .or_else(|| decode_text(&run[1..]))
                .or_else(|| decode_text(&s[start..i - 1]));
            if let Some(encoded) = decoded {
                visit(encoded);
            }
        }
        i = end.max(i + 1);
    }
}

/// `s` without the whitespace between its groups, when it is three or more groups of base64
/// characters of one width (four or more; the last may be shorter).
fn unwrapped(s: &str) -> Option<String> {
    // Checked without collecting: nearly every string with a space is chat.
    let width = s.split_ascii_whitespace().next()?.len();
    let mut groups = 0;
    let mut last = 0;
    for group in s.split_ascii_whitespace() {
        let fits = (groups == 0 || last == width) && group.len() <= width;
        if !fits || !group.bytes().all(|b| in_alphabet(b) || b == b'=') {
            return None;
        }
        groups += 1;
        last = group.len();
    }
    (groups >= 3 && width >= 4).then(|| s.split_ascii_whitespace().collect())
}

/// A character of either base64 alphabet (standard or URL-safe), padding aside.
pub const fn in_alphabet(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_')
}

const OTHER: u8 = 0;
const ALPHABET: u8 = 1;
/// Padding or whitespace, which may stand between base64 groups.
const BETWEEN: u8 = 2;

static BYTE_CLASS: [u8; 256] = {
    let mut table = [OTHER; 256];
    let mut b = 0;
    while b < 256 {
        let byte = b as u8;
        table[b] = if in_alphabet(byte) {
            ALPHABET
        } else if byte == b'=' || byte.is_ascii_whitespace() {
            BETWEEN
        } else {
            OTHER
        };
        b += 1;
    }
    table
};

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

    fn embedded(s: &str) -> Vec<String> {
        let mut out = Vec::new();
        super::visit_decoded(s, true, &mut |encoded| {
            if let Encoded::Text(text) = encoded {
                out.push(text);
            }
        });
        out
    }

    #[test]
    fn base64_inside_a_longer_string_is_decoded() {
        let xss = "PGltZyBzcmM9eCBvbmVycm9yPWFsZXJ0KDEpPg==";
        let text = "<img src=x onerror=alert(1)>";
        for s in [
            format!("data={xss}"),
            format!("Basic {xss}"),
            format!("{xss}x"),
            format!("x{xss}"),
            format!("{}!!", xss.trim_end_matches('=')),
            "PGltZyBz\ncmM9eCBv\nbmVycm9y\nPWFsZXJ0\nKDEpPg==".to_owned(),
            "PGlt ZyBz cmM9 eCBv bmVy cm9y PWFs ZXJ0 KDEp Pg==".to_owned(),
        ] {
            assert_eq!(embedded(&s), [text], "{s}");
        }
        for s in [
            "see you at nine, the meeting is at the usual place",
            "this that what when",
            "https://example.com/static/images/banner_large.png",
            "sha256 3f2a9c0d4e5b6a7f8e9d0c1b2a3f4e5d6c7b8a9f",
            "token=dGhpc2lzYXJhbmRvbXRva2Vu",
        ] {
            let decoded = embedded(s);
            assert!(
                decoded.is_empty() || s.starts_with("token"),
                "{s}: {decoded:?}"
            );
        }
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
