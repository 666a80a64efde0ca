//! Benchmark messages: small JSON chat objects of an exact size,
//! `{"id":"<seq>","t":"<sent>","text":"<words>"}`, with the sequence number and the send time
//! (nanoseconds since the run's start) as 16 hex digits each. The echo brings the stamp back, so
//! latency needs no side table and lost, reordered or altered echoes are noticed. The text is
//! plain words, the kind of traffic an inspector scans and lets through.

const PREFIX: &[u8] = br#"{"id":""#;
const TIME_KEY: &[u8] = br#"","t":""#;
const TEXT_KEY: &[u8] = br#"","text":""#;
const SUFFIX: &[u8] = br#""}"#;
const HEX_DIGITS: usize = 16;
const SEQ_AT: usize = PREFIX.len();
const TIME_AT: usize = SEQ_AT + HEX_DIGITS + TIME_KEY.len();
const TEXT_AT: usize = TIME_AT + HEX_DIGITS + TEXT_KEY.len();

/// The smallest message that holds a stamp.
pub const MIN_SIZE: usize = TEXT_AT + SUFFIX.len();

const WORDS: &[u8] = b"see you at the station at nine and bring the blue folder with the notes \
    from the meeting so we can go over the plan once more before lunch ";

/// A reply of `size` bytes (at least [`MIN_SIZE`]) to a stamped `message`: the same stamp with
/// as many words as fit. Anything else comes back unchanged, for the generator to report.
pub fn resized(message: &[u8], size: usize) -> Vec<u8> {
    if read_stamp(message).is_none() || size < MIN_SIZE {
        return message.to_vec();
    }
    let mut reply = Vec::with_capacity(size);
    reply.extend_from_slice(&message[..TEXT_AT]);
    reply.extend(WORDS.iter().cycle().take(size - MIN_SIZE));
    reply.extend_from_slice(SUFFIX);
    reply
}

/// What a received message said about itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub seq: u64,
    pub sent_ns: u64,
}

/// One connection's outgoing message of a fixed size; stamping rewrites only the two numbers.
pub struct Template {
    bytes: Vec<u8>,
}

impl Template {
    /// `size` must be at least [`MIN_SIZE`].
    pub fn new(size: usize) -> Template {
        assert!(size >= MIN_SIZE, "message size {size} < {MIN_SIZE}");
        let mut bytes = Vec::with_capacity(size);
        bytes.extend_from_slice(PREFIX);
        bytes.resize(SEQ_AT + HEX_DIGITS, b'0');
        bytes.extend_from_slice(TIME_KEY);
        bytes.resize(TIME_AT + HEX_DIGITS, b'0');
        bytes.extend_from_slice(TEXT_KEY);
        let text_len = size - MIN_SIZE;
        bytes.extend(WORDS.iter().cycle().take(text_len));
        bytes.extend_from_slice(SUFFIX);
        Template { bytes }
    }

    /// The message carrying `stamp`.
    pub fn stamped(&mut self, stamp: Stamp) -> &[u8] {
        write_hex(&mut self.bytes[SEQ_AT..SEQ_AT + HEX_DIGITS], stamp.seq);
        write_hex(
            &mut self.bytes[TIME_AT..TIME_AT + HEX_DIGITS],
            stamp.sent_ns,
        );
        &self.bytes
    }
}

/// The stamp of a received message, or None if it is not one of ours.
pub fn read_stamp(message: &[u8]) -> Option<Stamp> {
    if message.len() < MIN_SIZE
        || !message.starts_with(PREFIX)
        || &message[SEQ_AT + HEX_DIGITS..TIME_AT] != TIME_KEY
        || &message[TIME_AT + HEX_DIGITS..TEXT_AT] != TEXT_KEY
        || !message.ends_with(SUFFIX)
    {
        return None;
    }
    Some(Stamp {
        seq: read_hex(&message[SEQ_AT..SEQ_AT + HEX_DIGITS])?,
        sent_ns: read_hex(&message[TIME_AT..TIME_AT + HEX_DIGITS])?,
    })
}

fn write_hex(dst: &mut [u8], value: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, byte) in dst.iter_mut().rev().enumerate() {
        *byte = DIGITS[((value >> (4 * i)) & 0xf) as usize];
    }
}

fn read_hex(src: &[u8]) -> Option<u64> {
    src.iter().try_fold(0u64, |value, &digit| {
        let nibble = (digit as char).to_digit(16)?;
        Some(value << 4 | u64::from(nibble))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resized_replies_keep_the_stamp() {
        let stamp = Stamp {
            seq: 7,
            sent_ns: 99,
        };
        let message = Template::new(200).stamped(stamp).to_vec();
        for size in [MIN_SIZE, 64, 4096] {
            let reply = resized(&message, size);
            assert_eq!(reply.len(), size);
            assert_eq!(read_stamp(&reply), Some(stamp));
        }
        assert_eq!(resized(b"not ours", 4096), b"not ours");
    }

    #[test]
    fn messages_have_the_exact_size_and_are_json() {
        for size in [MIN_SIZE, 64, 4096] {
            let mut template = Template::new(size);
            let message = template.stamped(Stamp { seq: 7, sent_ns: 9 });
            assert_eq!(message.len(), size);
            let json: serde_json::Value = serde_json::from_slice(message).unwrap();
            assert_eq!(json["id"], "0000000000000007");
        }
    }

    #[test]
    fn stamp_round_trips() {
        let mut template = Template::new(64);
        for stamp in [
            Stamp { seq: 0, sent_ns: 0 },
            Stamp {
                seq: u64::MAX,
                sent_ns: 0x0123_4567_89ab_cdef,
            },
        ] {
            assert_eq!(read_stamp(template.stamped(stamp)), Some(stamp));
        }
    }

    #[test]
    fn altered_or_foreign_messages_have_no_stamp() {
        let mut template = Template::new(64);
        let good = template.stamped(Stamp { seq: 1, sent_ns: 2 }).to_vec();
        assert!(read_stamp(&good[..good.len() - 1]).is_none());
        let mut bad_digit = good.clone();
        bad_digit[SEQ_AT] = b'x';
        assert!(read_stamp(&bad_digit).is_none());
        assert!(read_stamp(b"hello").is_none());
        assert!(read_stamp(&[b'a'; 64]).is_none());
    }
}
