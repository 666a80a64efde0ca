//! Decoders that undo transport and markup encodings before matching, and the canonical
//! views the rules see.

pub mod entity;
pub mod jsescape;
pub mod normalize;
pub mod percent;

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

/// `input` with each escape that `escape_at` reads after an `introducer` byte replaced by the
/// character it spells; `None` when there is none. `escape_at` gets the bytes after the
/// introducer and returns the character and how many of them it consumed.
fn replace_escapes(
    input: &str,
    introducer: u8,
    escape_at: impl Fn(&[u8]) -> Option<(char, usize)>,
) -> Option<String> {
    let bytes = input.as_bytes();
    let mut out: Option<String> = None;
    let mut copied_to = 0;
    for i in memchr::memchr_iter(introducer, bytes) {
        // An introducer inside the escape just replaced was consumed with it (`\\`).
        if i < copied_to {
            continue;
        }
        if let Some((ch, len)) = escape_at(&bytes[i + 1..]) {
            let out = out.get_or_insert_with(|| String::with_capacity(input.len()));
            out.push_str(&input[copied_to..i]);
            out.push(ch);
            copied_to = i + 1 + len;
        }
    }
    let mut out = out?;
    out.push_str(&input[copied_to..]);
    Some(out)
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
