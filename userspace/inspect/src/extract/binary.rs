//! The text a binary payload carries as an application may read it: UTF-8, UTF-16, Latin-1,
//! bytes that are mostly printable, or the printable runs between binary framing (a length prefix, a
//! signature, Latin-1 or GB18030 around ASCII). Random or compressed bytes carry no such text.

use crate::inflate;

/// Shortest printable run read from bytes that are otherwise binary: random bytes make runs of
/// a few printable bytes by chance, while attacks are longer (see [`reads_as_words`]). The runs
/// must also make up a third of the bytes or more.
pub const MIN_RUN: usize = 8;

/// Most bytes inflated from compressed data inside a message (a MessagePack `bin`, base64 in
/// a JSON field); past it the data is read as it is.
const NESTED_INFLATE_LIMIT: usize = 1 << 20;

/// Calls `visit` with the text `bytes` read as, once inflated if they are gzip or zlib data:
/// all of it, or each of its printable runs (a string of its own, so that no match spans the
/// binary bytes between two) when they make up a third of the bytes or more. Returns `false`
/// when there is none.
pub fn visit_text(bytes: &[u8], visit: &mut dyn FnMut(&str)) -> bool {
    let inflated = inflate::starts_compressed(bytes)
        .then(|| {
            inflate::inflate_binary(bytes, NESTED_INFLATE_LIMIT)
                .ok()
                .flatten()
        })
        .flatten();
    visit_uncompressed_text(inflated.as_deref().unwrap_or(bytes), visit)
}

fn visit_uncompressed_text(bytes: &[u8], visit: &mut dyn FnMut(&str)) -> bool {
    if memchr::memchr(0, bytes).is_some() {
        if let Some(text) = utf16_text(bytes) {
            visit(&text);
            return true;
        }
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        visit(text);
        return true;
    }
    if bytes.len() >= 4 * MIN_RUN && bytes.iter().all(|&b| !is_control_byte(b)) {
        // Latin-1 (or Windows-1252) text: letters above ASCII, no control bytes, which noise
        // of this length always has.
        visit(&bytes.iter().map(|&b| char::from(b)).collect::<String>());
        return true;
    }
    let lossy = String::from_utf8_lossy(bytes);
    if mostly_printable(bytes) {
        visit(&lossy);
        return true;
    }
    let runs: Vec<&str> = lossy
        .split(|c: char| c == char::REPLACEMENT_CHARACTER || is_binary_char(c))
        .filter(|run| reads_as_words(run))
        .collect();
    // Framing around text leaves most of the bytes text; noise makes a short run now and then,
    // and its punctuation would match a rule now and then.
    let covered: usize = runs.iter().map(|run| run.len()).sum();
    if runs.is_empty() || covered * 3 < bytes.len() {
        return false;
    }
    runs.into_iter().for_each(visit);
    true
}

/// A run long enough that noise makes it only by rare chance: [`MIN_RUN`] characters with a
/// space between words, or twice as many.
fn reads_as_words(run: &str) -> bool {
    let chars = run.chars().count();
    chars >= 2 * MIN_RUN || (chars >= MIN_RUN && run.trim().contains(' '))
}

/// At least three quarters printable ASCII, whitespace or NUL: text with a few stray bytes.
fn mostly_printable(bytes: &[u8]) -> bool {
    let texty = bytes
        .iter()
        .filter(|&&b| matches!(b, 0x20..=0x7e | b'\t' | b'\n' | b'\r' | 0))
        .count();
    texty * 4 >= bytes.len() * 3
}

fn is_control_byte(b: u8) -> bool {
    matches!(b, 0..=0x08 | 0x0b | 0x0c | 0x0e..=0x1f | 0x7f..=0x9f)
}

fn is_binary_char(c: char) -> bool {
    c.is_control() && !matches!(c, '\t' | '\n' | '\r')
}

/// UTF-16 text, little- or big-endian: with a byte order mark, or with the zero high bytes of
/// its ASCII (spaces, digits, Latin letters) in one of every eight code units or more, in the
/// byte order that decodes to more ASCII. It must decode with few unpaired surrogates or control
/// characters, which arrays of small integers (zero bytes too) do not.
fn utf16_text(bytes: &[u8]) -> Option<String> {
    let Utf16 { text, bad, .. } = match bytes {
        [0xff, 0xfe, rest @ ..] => decode_utf16(rest, true),
        [0xfe, 0xff, rest @ ..] => decode_utf16(rest, false),
        _ => {
            let units = bytes.len() / 2;
            let zero_high = |high: usize| {
                bytes
                    .chunks_exact(2)
                    .filter(|unit| unit[high] == 0 && unit[1 - high] != 0)
                    .count()
            };
            if units < 4 || zero_high(0).max(zero_high(1)) * 8 < units {
                return None;
            }
            let little = decode_utf16(bytes, true);
            let big = decode_utf16(bytes, false);
            if big.ascii > little.ascii {
                big
            } else {
                little
            }
        }
    };
    let chars = text.chars().count();
    (chars > 0 && bad * 10 <= chars).then_some(text)
}

struct Utf16 {
    text: String,
    ascii: usize,
    /// Characters that are no text: unpaired surrogates, control characters.
    bad: usize,
}

fn decode_utf16(bytes: &[u8], little_endian: bool) -> Utf16 {
    let units = bytes.chunks_exact(2).map(|unit| {
        let pair = [unit[0], unit[1]];
        if little_endian {
            u16::from_le_bytes(pair)
        } else {
            u16::from_be_bytes(pair)
        }
    });
    let text: String = char::decode_utf16(units)
        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect();
    let bad = text
        .chars()
        .filter(|&c| c == char::REPLACEMENT_CHARACTER || is_binary_char(c))
        .count();
    let ascii = text.chars().filter(char::is_ascii).count();
    Utf16 { text, ascii, bad }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(bytes: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        visit_text(bytes, &mut |text| out.push(text.to_owned()));
        out
    }

    fn utf16(text: &str, little_endian: bool, bom: bool) -> Vec<u8> {
        let mut out = Vec::new();
        if bom {
            out.extend(if little_endian {
                [0xff, 0xfe]
            } else {
                [0xfe, 0xff]
            });
        }
        for unit in text.encode_utf16() {
            out.extend(if little_endian {
                unit.to_le_bytes()
            } else {
                unit.to_be_bytes()
            });
        }
        out
    }

    #[test]
    fn utf16_is_decoded_with_or_without_a_byte_order_mark() {
        for text in [
            "{\"m\":\"\\u003cimg src=x onerror=alert(1)\\u003e\"}",
            &("😀".repeat(40) + " <img src=x onerror=alert(1)>"),
            &("Привет ".repeat(30) + "<svg onload=alert(1)>"),
        ] {
            for (little_endian, bom) in [(true, false), (false, false), (true, true), (false, true)]
            {
                let bytes = utf16(text, little_endian, bom);
                assert_eq!(texts(&bytes), [text], "{little_endian} {bom}");
            }
        }
    }

    #[test]
    fn printable_runs_between_binary_bytes_are_read() {
        let mut framed = vec![0x00, 0x00, 0x01, 0x2c, 0xe0, 0xe1, 0xe2, 0xe3];
        framed.extend((0xe0..0xf0).collect::<Vec<u8>>());
        framed.extend(b"' UNION SELECT password FROM users--");
        framed.extend([0xff, 0x01, b'i', b'd', 0xfe]);
        assert_eq!(texts(&framed), ["' UNION SELECT password FROM users--"]);
        let latin1: Vec<u8> = "café <script>alert(1)</script> über"
            .chars()
            .map(|c| c as u8)
            .collect();
        assert_eq!(texts(&latin1), ["café <script>alert(1)</script> über"]);
    }

    #[test]
    fn random_and_numeric_bytes_read_as_no_text() {
        // A fixed xorshift stream: random-looking bytes, as compressed or encrypted data are.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let random: Vec<u8> = (0..4096)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect();
        assert_eq!(texts(&random), Vec::<String>::new());
        // Text after 64 random bytes is most of the message: read.
        let mut signed = random[..64].to_vec();
        signed.extend(b"' UNION SELECT username, password FROM users-- and more text");
        assert!(texts(&signed)
            .contains(&"' UNION SELECT username, password FROM users-- and more text".to_owned()));
        let counters: Vec<u8> = (1..=200u16).flat_map(u16::to_le_bytes).collect();
        assert_eq!(utf16_text(&counters), None);
    }
}
