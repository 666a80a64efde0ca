//! Streaming UTF-8 validation for text messages that arrive in fragments.
//!
//! Each chunk is checked by `std::str::from_utf8` (the standard library's fast validator). A multibyte
//! character cut at a chunk end is kept as up to 3 carry bytes and completed by the next chunk, so
//! memory stays constant however the stream is split.

use std::fmt;

/// Validates a byte stream fed in arbitrary pieces.
///
/// After an error the validator's state is unspecified: the stream is invalid and should be dropped.
#[derive(Clone, Debug, Default)]
pub struct Utf8Validator {
    /// Start of a character that the previous chunk cut off (a valid prefix of one character).
    carry: [u8; 3],
    carry_len: u8,
    /// Bytes of the stream proven valid, excluding the carry.
    validated: u64,
}

/// The stream is not UTF-8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Utf8Error {
    valid_up_to: u64,
    incomplete: bool,
}

impl Utf8Error {
    /// Number of bytes from the start of the stream that are valid UTF-8 before the offending
    /// sequence (the same value `std::str::from_utf8` reports for the whole stream).
    pub fn valid_up_to(&self) -> u64 {
        self.valid_up_to
    }

    /// True when the stream ended inside a multibyte character (reported by
    /// [`Utf8Validator::finish`]); false for an invalid byte sequence.
    pub fn is_incomplete(&self) -> bool {
        self.incomplete
    }
}

impl fmt::Display for Utf8Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.incomplete {
            write!(
                f,
                "UTF-8 stream ends inside a character at byte {}",
                self.valid_up_to
            )
        } else {
            write!(f, "invalid UTF-8 sequence at byte {}", self.valid_up_to)
        }
    }
}

impl std::error::Error for Utf8Error {}

impl Utf8Validator {
    pub fn new() -> Utf8Validator {
        Utf8Validator::default()
    }

    /// Validates the next chunk. A character cut at the end of `chunk` is accepted until
    /// [`finish`](Self::finish); an invalid sequence fails immediately.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), Utf8Error> {
        let rest = match self.complete_carry(chunk)? {
            Some(rest) => rest,
            None => return Ok(()),
        };
        match std::str::from_utf8(rest) {
            Ok(_) => {
                self.validated += rest.len() as u64;
                Ok(())
            }
            Err(error) => {
                let valid = error.valid_up_to();
                if error.error_len().is_some() {
                    return Err(self.error_after(valid, false));
                }
                // `from_utf8` reports a cut-off character only for a valid prefix of 1 to 3 bytes.
                let tail = &rest[valid..];
                self.validated += valid as u64;
                self.carry[..tail.len()].copy_from_slice(tail);
                self.carry_len = tail.len() as u8;
                Ok(())
            }
        }
    }

    /// Ends the stream: fails if it stopped inside a multibyte character.
    pub fn finish(&self) -> Result<(), Utf8Error> {
        if self.carry_len == 0 {
            Ok(())
        } else {
            Err(self.error_after(0, true))
        }
    }

    /// Completes a carried character with the first bytes of `chunk`. Returns the part of `chunk`
    /// after that character, or None when `chunk` ended before the character did.
    fn complete_carry<'a>(&mut self, chunk: &'a [u8]) -> Result<Option<&'a [u8]>, Utf8Error> {
        let carried = usize::from(self.carry_len);
        if carried == 0 {
            return Ok(Some(chunk));
        }
        // A character has at most 4 bytes, so 4 joined bytes decide whether the carry completes.
        let taken = chunk.len().min(4 - carried);
        let mut joined = [0u8; 4];
        joined[..carried].copy_from_slice(&self.carry[..carried]);
        joined[carried..carried + taken].copy_from_slice(&chunk[..taken]);
        let joined = &joined[..carried + taken];
        let completed = match std::str::from_utf8(joined) {
            Ok(_) => joined.len(),
            Err(error) if error.valid_up_to() > 0 => error.valid_up_to(),
            Err(error) if error.error_len().is_some() => return Err(self.error_after(0, false)),
            Err(_) => {
                // Still cut off, so `joined` is at most 3 bytes.
                self.carry[..joined.len()].copy_from_slice(joined);
                self.carry_len = joined.len() as u8;
                return Ok(None);
            }
        };
        self.validated += completed as u64;
        self.carry_len = 0;
        // The carry alone holds no complete character, so `completed` exceeds `carried`.
        Ok(Some(&chunk[completed.saturating_sub(carried)..]))
    }

    fn error_after(&self, valid_in_chunk: usize, incomplete: bool) -> Utf8Error {
        Utf8Error {
            valid_up_to: self.validated + valid_in_chunk as u64,
            incomplete,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn validate_in_chunks(data: &[u8], cuts: &[usize]) -> Result<(), Utf8Error> {
        let mut validator = Utf8Validator::new();
        let mut start = 0;
        for &cut in cuts {
            let cut = cut.clamp(start, data.len());
            validator.feed(&data[start..cut])?;
            start = cut;
        }
        validator.feed(&data[start..])?;
        validator.finish()
    }

    #[test]
    fn every_split_of_a_multibyte_text_is_valid() {
        let text = "aé€😀ü".as_bytes();
        for first in 0..=text.len() {
            for second in first..=text.len() {
                assert_eq!(
                    validate_in_chunks(text, &[first, second]),
                    Ok(()),
                    "{first} {second}"
                );
            }
        }
    }

    #[test]
    fn byte_by_byte_feeding_works() {
        let mut validator = Utf8Validator::new();
        for byte in "😀€é".bytes() {
            validator.feed(&[byte]).unwrap();
        }
        validator.finish().unwrap();
    }

    #[test]
    fn truncated_character_fails_only_at_finish() {
        let mut validator = Utf8Validator::new();
        validator.feed(b"ab\xF0\x9F").unwrap();
        validator.feed(b"").unwrap();
        validator.feed(b"\x98").unwrap();
        let error = validator.finish().unwrap_err();
        assert!(error.is_incomplete());
        assert_eq!(error.valid_up_to(), 2);
    }

    #[test]
    fn invalid_continuation_after_a_carry_fails_fast() {
        let mut validator = Utf8Validator::new();
        validator.feed(b"xyz\xE2\x82").unwrap();
        let error = validator.feed(b"A").unwrap_err();
        assert!(!error.is_incomplete());
        assert_eq!(error.valid_up_to(), 3);
    }

    #[test]
    fn carry_followed_by_valid_and_invalid_bytes() {
        let mut validator = Utf8Validator::new();
        validator.feed(b"\xC3").unwrap();
        // Completes "é", then "ok", then a lone continuation byte.
        let error = validator.feed(b"\xA9ok\x80").unwrap_err();
        assert_eq!(error.valid_up_to(), 4);
    }

    #[test]
    fn rejects_surrogates_and_overlong_forms() {
        for bad in [
            &b"\xED\xA0\x80"[..],
            b"\xC0\xAF",
            b"\xF4\x90\x80\x80",
            b"\xFF",
        ] {
            for cut in 0..=bad.len() {
                assert!(
                    validate_in_chunks(bad, &[cut]).is_err(),
                    "{bad:?} cut at {cut}"
                );
            }
        }
    }

    /// Mostly UTF-8 text, with arbitrary bytes mixed in so that invalid streams are common too.
    fn mostly_text() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(
            prop_oneof![
                4 => any::<char>().prop_map(|c| c.to_string().into_bytes()),
                1 => prop::collection::vec(any::<u8>(), 1..3),
            ],
            0..40,
        )
        .prop_map(|parts| parts.concat())
    }

    proptest! {
        #[test]
        fn agrees_with_std_on_random_splits(
            data in mostly_text(),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let mut cuts: Vec<usize> = cuts.iter().map(|cut| cut.index(data.len() + 1)).collect();
            cuts.sort_unstable();
            let expected = std::str::from_utf8(&data).map(|_| ()).map_err(|e| e.valid_up_to() as u64);
            let actual = validate_in_chunks(&data, &cuts).map_err(|e| e.valid_up_to());
            prop_assert_eq!(actual, expected);
        }
    }
}
