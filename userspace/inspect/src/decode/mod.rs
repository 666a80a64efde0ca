//! Decoders that undo transport and markup encodings before matching, and the canonical
//! views the rules see.

pub mod base64;
pub mod entity;
pub mod jsescape;
pub mod normalize;
pub mod percent;
mod shell;

/// Rounds of decoding applied at most; each round peels one layer of percent, entity and JS
/// escape encoding (in that order), so `%253C`, `&amp;lt;` and `%26lt%3B` all reach `<`.
pub const MAX_DECODE_ROUNDS: usize = 4;

/// Decodes `input` until nothing changes (or [`MAX_DECODE_ROUNDS`]); `None` if it was plain.
///
/// Every decoder only shrinks its input, so the result is never longer than `input`.
pub fn decode_layers(input: &str) -> Option<String> {
    // The bytes that start an escape for one of the decoders; most text has none.
    if normalize::byte_classes(input.as_bytes(), normalize::class::ESCAPE) == 0 {
        return None;
    }
    let mut current: Option<String> = None;
    for _ in 0..MAX_DECODE_ROUNDS {
        let text = current.as_deref().unwrap_or(input);
        let mut round: Option<String> = None;
        for decoder in [percent::decode, entity::decode, jsescape::decode] {
            if let Some(next) = decoder(round.as_deref().unwrap_or(text)) {
                round = Some(next);
            }
        }
        match round {
            Some(next) => current = Some(next),
            None => break,
        }
    }
    current.filter(|decoded| decoded != input)
}

/// What one escape spells: a byte, or a character's UTF-8 bytes.
struct Spelled {
    bytes: [u8; 4],
    len: usize,
}

impl Spelled {
    fn byte(byte: u8) -> Spelled {
        Spelled {
            bytes: [byte, 0, 0, 0],
            len: 1,
        }
    }

    fn char(ch: char) -> Spelled {
        let mut bytes = [0; 4];
        let len = ch.encode_utf8(&mut bytes).len();
        Spelled { bytes, len }
    }
}

/// `bytes` with each escape replaced by what it spells; `None` when there is none. Escapes
/// may start only at the `starts` positions (ascending); `escape_at` gets the bytes from there
/// and returns what the escape spells and how many bytes it takes.
fn replace_escapes(
    bytes: &[u8],
    starts: impl Iterator<Item = usize>,
    escape_at: impl Fn(&[u8]) -> Option<(Spelled, usize)>,
) -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    let mut copied_to = 0;
    for i in starts {
        // A start inside the escape just replaced was consumed with it (`\\`).
        if i < copied_to {
            continue;
        }
        if let Some((spelled, len)) = escape_at(&bytes[i..]) {
            let out = out.get_or_insert_with(|| Vec::with_capacity(bytes.len()));
            out.extend_from_slice(&bytes[copied_to..i]);
            out.extend_from_slice(&spelled.bytes[..spelled.len]);
            copied_to = i + len;
        }
    }
    let mut out = out?;
    out.extend_from_slice(&bytes[copied_to..]);
    Some(out)
}

/// [`replace_escapes`] for escapes that spell characters after an `introducer` byte;
/// `escape_at` gets the bytes after the introducer.
fn replace_char_escapes(
    input: &str,
    introducer: u8,
    escape_at: impl Fn(&[u8]) -> Option<(char, usize)>,
) -> Option<String> {
    let bytes = input.as_bytes();
    let decoded = replace_escapes(bytes, memchr::memchr_iter(introducer, bytes), |at| {
        escape_at(&at[1..]).map(|(ch, len)| (Spelled::char(ch), 1 + len))
    })?;
    Some(text_of(decoded))
}

/// Decoded bytes as text: valid UTF-8 stays; each invalid byte is read as Latin-1 (`%A0` is a
/// no-break space to the many servers that decode that way).
fn text_of(bytes: Vec<u8>) -> String {
    match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(err) => {
            let bytes = err.as_bytes();
            let mut text = String::with_capacity(bytes.len());
            for chunk in bytes.utf8_chunks() {
                text.push_str(chunk.valid());
                text.extend(chunk.invalid().iter().map(|&b| char::from(b)));
            }
            text
        }
    }
}

#[cfg(test)]
mod tests {
    use super::decode_layers;

    #[test]
    fn peels_nested_layers() {
        assert_eq!(
            decode_layers("%253Cscript%253E").as_deref(),
            Some("<script>")
        );
        assert_eq!(
            decode_layers("%26lt%3Bsvg%26gt%3B").as_deref(),
            Some("<svg>")
        );
        assert_eq!(decode_layers("&amp;#x3c;img").as_deref(), Some("<img"));
        assert_eq!(decode_layers(r"%5Cx3cb%5Cx3e").as_deref(), Some("<b>"));
        assert_eq!(decode_layers("\\u0026lt;p").as_deref(), Some("<p"));
    }

    #[test]
    fn plain_text_is_not_copied() {
        assert_eq!(decode_layers("hello there"), None);
        assert_eq!(decode_layers("50% & more"), None);
    }

    #[test]
    fn output_never_grows() {
        for input in [
            "&#x10FFFF;",
            "%F0%9F%98%80",
            r"\u{10FFFF}",
            "&nbsp;",
            r"\xff",
        ] {
            let decoded = decode_layers(input).unwrap();
            assert!(decoded.len() <= input.len(), "{input:?} -> {decoded:?}");
        }
    }
}
