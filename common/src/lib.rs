//! Types shared with the eBPF side. Everything here is `#[repr(C)]`, `Copy`, and free of
//! pointers (and of implicit padding) so that the same bytes mean the same thing in a BPF map
//! and in userspace.
//!
//! [`FrameCursor`] is the one piece of logic both sides run: the sockmap verdict program walks
//! the WebSocket frame headers of every skb it redirects with it, and userspace continues the
//! same walk over the bytes it forwards itself, so either side always knows how many bytes
//! complete the current frame.
#![no_std]

/// Sockhash and hash-map key of one socket: its socket cookie (`SO_COOKIE`).
pub type SocketKey = u64;

/// Longest header the cursor gathers: 2 bytes, 8 of extended length, 4 of mask.
pub const MAX_HEADER_LEN: usize = 14;

/// The cursor saw a Close frame; [`FrameCursor::close_code`] holds its code (0: none).
pub const CURSOR_CLOSE_SEEN: u8 = 1;
/// A frame announced a length the cursor cannot represent (more than 2^63 - 1): the stream
/// is not WebSocket any more and its frame boundaries are unknown.
pub const CURSOR_LOST: u8 = 2;

const OPCODE_CLOSE: u8 = 0x8;

/// Where a byte stream of WebSocket frames stands: at a frame boundary, inside a header, or
/// inside a payload.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameCursor {
    /// Payload bytes of the current frame still to come.
    pub payload_left: u64,
    /// The header gathered so far, when it is split across chunks.
    pub header: [u8; 16],
    /// How many bytes of `header` are valid (0 when not inside a header).
    pub header_len: u8,
    /// `CURSOR_*` bits.
    pub flags: u8,
    /// Code of the Close frame that passed, when `CURSOR_CLOSE_SEEN` is set.
    pub close_code: u16,
    pub _reserved: u32,
}

/// Where the bytes a [`FrameCursor::step`] looks at come from.
pub trait ByteSource {
    /// Copy the [`MAX_HEADER_LEN`] bytes at `offset`; callers guarantee they exist.
    fn load_header(&self, offset: u32, dst: &mut [u8; MAX_HEADER_LEN]) -> bool;
    /// The byte at `offset`.
    fn load_byte(&self, offset: u32) -> Option<u8>;
}

/// Header bytes a frame whose first two bytes are `b0`, `b1` needs, counting the two bytes of
/// a Close frame's status code as part of the header so that the cursor can report the code.
pub fn header_len(b0: u8, b1: u8) -> usize {
    let len7 = b1 & 0x7f;
    let extended = match len7 {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask = if b1 & 0x80 != 0 { 4 } else { 0 };
    let close_code = if b0 & 0x0f == OPCODE_CLOSE && (2..126).contains(&len7) {
        2
    } else {
        0
    };
    2 + extended + mask + close_code
}

/// Results of parsing a complete header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Payload bytes after the header (a Close code counted in the header is not included).
    pub payload_left: u64,
    /// The status code when this is a Close frame (0 when it carries none).
    pub close_code: Option<u16>,
}

/// Parse a complete header of `len` bytes (`len == header_len(h[0], h[1])`); `None` when the
/// payload length does not fit in 63 bits, which RFC 6455 forbids.
pub fn parse_header(h: &[u8; 16], len: usize) -> Option<Header> {
    let len7 = h[1] & 0x7f;
    let masked = h[1] & 0x80 != 0;
    let mut payload = len7 as u64;
    let mut at = 2;
    if len7 == 126 {
        payload = u16::from_be_bytes([h[2], h[3]]) as u64;
        at = 4;
    } else if len7 == 127 {
        payload = u64::from_be_bytes([h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9]]);
        if payload >> 63 != 0 {
            return None;
        }
        at = 10;
    }
    if h[0] & 0x0f != OPCODE_CLOSE {
        return Some(Header {
            payload_left: payload,
            close_code: None,
        });
    }
    if len < at + 2 + if masked { 4 } else { 0 } {
        return Some(Header {
            payload_left: payload,
            close_code: Some(0),
        });
    }
    // Close frames have at most 125 payload bytes, so `at` is 2 here and the code follows the
    // (optional) mask.
    let (mut c0, mut c1) = (h[2], h[3]);
    if masked {
        c0 = h[6] ^ h[2];
        c1 = h[7] ^ h[3];
    }
    Some(Header {
        payload_left: payload - 2,
        close_code: Some(u16::from_be_bytes([c0, c1])),
    })
}

impl FrameCursor {
    /// True between frames (nothing of a header or payload is pending).
    pub fn at_boundary(&self) -> bool {
        self.payload_left == 0 && self.header_len == 0
    }

    /// True when the cursor lost track of the frame boundaries.
    pub fn lost(&self) -> bool {
        self.flags & CURSOR_LOST != 0
    }

    /// The code of the Close frame that passed, if one did (0: a Close without a code).
    pub fn close_seen(&self) -> Option<u16> {
        (self.flags & CURSOR_CLOSE_SEEN != 0).then_some(self.close_code)
    }

    /// Bytes that complete the current frame as far as they are known: the rest of the payload
    /// when inside one, or the rest of a header whose first two bytes are known. Inside a
    /// header that has only one byte so far it is 1 (the next byte tells more).
    pub fn bytes_to_boundary(&self) -> u64 {
        match self.header_len {
            0 => self.payload_left,
            1 => 1,
            n => (header_len(self.header[0], self.header[1]) - n as usize) as u64,
        }
    }

    fn finish_header(&mut self, header: &[u8; 16], len: usize) {
        match parse_header(header, len) {
            Some(parsed) => {
                self.payload_left = parsed.payload_left;
                if let Some(code) = parsed.close_code {
                    self.flags |= CURSOR_CLOSE_SEEN;
                    self.close_code = code;
                }
            }
            None => self.flags |= CURSOR_LOST,
        }
        self.header_len = 0;
    }

    /// Advance over the chunk bytes from `offset` up to `len` by one step: a whole header, a
    /// run of payload, or one byte of a header split across chunks. Returns the new offset
    /// (always more than `offset` while `offset < len`), or `None` when the source failed or
    /// the cursor is lost. Call it until it returns `len`.
    pub fn step(&mut self, offset: u32, len: u32, src: &impl ByteSource) -> Option<u32> {
        if offset >= len || self.lost() {
            return None;
        }
        let available = len - offset;
        if self.payload_left > 0 {
            let take = if self.payload_left < available as u64 {
                self.payload_left as u32
            } else {
                available
            };
            self.payload_left -= take as u64;
            return Some(offset + take);
        }
        if self.header_len == 0 && available as usize >= MAX_HEADER_LEN {
            let mut loaded = [0u8; MAX_HEADER_LEN];
            if !src.load_header(offset, &mut loaded) {
                return None;
            }
            let mut header = [0u8; 16];
            header[..MAX_HEADER_LEN].copy_from_slice(&loaded);
            let need = header_len(header[0], header[1]);
            self.finish_header(&header, need);
            return Some(offset + need as u32);
        }
        let byte = src.load_byte(offset)?;
        let have = (self.header_len & 15) as usize;
        self.header[have] = byte;
        self.header_len = have as u8 + 1;
        if self.header_len >= 2 {
            let need = header_len(self.header[0], self.header[1]);
            if self.header_len as usize >= need {
                let header = self.header;
                self.finish_header(&header, need);
            }
        }
        Some(offset + 1)
    }

    /// Walk a whole in-memory chunk (userspace's use of the cursor).
    pub fn advance(&mut self, chunk: &[u8]) {
        let len = chunk.len().min(u32::MAX as usize) as u32;
        let mut offset = 0;
        while let Some(next) = self.step(offset, len, &chunk) {
            offset = next;
        }
    }
}

impl ByteSource for &[u8] {
    fn load_header(&self, offset: u32, dst: &mut [u8; MAX_HEADER_LEN]) -> bool {
        let start = offset as usize;
        match self.get(start..start + MAX_HEADER_LEN) {
            Some(bytes) => {
                dst.copy_from_slice(bytes);
                true
            }
            None => false,
        }
    }

    fn load_byte(&self, offset: u32) -> Option<u8> {
        self.get(offset as usize).copied()
    }
}

/// Per-connection state of one spliced direction, written by the verdict program (keyed by
/// the upstream socket's [`SocketKey`]). Userspace creates it before inserting the sockets.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpliceStats {
    /// Bytes the verdict program redirected to the peer socket.
    pub redirected_bytes: u64,
    /// skbs redirected (one per verdict call that returned a redirect).
    pub redirected_skbs: u64,
    /// Redirects that the kernel refused (peer missing from the map, for example).
    pub redirect_failures: u64,
    /// When `redirected_bytes` reaches this, the verdict posts a [`Checkpoint`] and moves it on
    /// by `checkpoint_interval`.
    pub next_checkpoint: u64,
    pub checkpoint_interval: u64,
    /// Frame position of the redirected stream after the last redirected byte.
    pub cursor: FrameCursor,
}

/// Ring-buffer record: the connection whose redirected bytes crossed a checkpoint.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Checkpoint {
    pub upstream: SocketKey,
    pub redirected_bytes: u64,
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all three are #[repr(C)], Copy, made only of integers and byte arrays, with the
    // padding spelled out as fields, so every bit pattern is a valid value.
    unsafe impl aya::Pod for super::SpliceStats {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::FrameCursor {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Checkpoint {}
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;

    fn frame(opcode: u8, payload_len: usize, mask: bool) -> [u8; 14] {
        let mut h = [0u8; 14];
        h[0] = 0x80 | opcode;
        let m = if mask { 0x80 } else { 0 };
        if payload_len < 126 {
            h[1] = m | payload_len as u8;
        } else if payload_len <= 0xffff {
            h[1] = m | 126;
            h[2..4].copy_from_slice(&(payload_len as u16).to_be_bytes());
        } else {
            h[1] = m | 127;
            h[2..10].copy_from_slice(&(payload_len as u64).to_be_bytes());
        }
        h
    }

    fn encode(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> std::vec::Vec<u8> {
        let h = frame(opcode, payload.len(), mask.is_some());
        let base = 2 + match h[1] & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mut out = h[..base].to_vec();
        match mask {
            Some(key) => {
                out.extend_from_slice(&key);
                out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
            }
            None => out.extend_from_slice(payload),
        }
        out
    }

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(core::mem::size_of::<FrameCursor>(), 32);
        assert_eq!(core::mem::size_of::<SpliceStats>(), 40 + 32);
        assert_eq!(core::mem::align_of::<SpliceStats>(), 8);
        assert_eq!(core::mem::size_of::<Checkpoint>(), 16);
    }

    #[test]
    fn header_lengths_follow_rfc6455() {
        assert_eq!(header_len(0x82, 5), 2);
        assert_eq!(header_len(0x82, 126), 4);
        assert_eq!(header_len(0x82, 127), 10);
        assert_eq!(header_len(0x82, 0x80 | 127), 14);
        assert_eq!(header_len(0x88, 0), 2);
        assert_eq!(header_len(0x88, 2), 4);
        assert_eq!(header_len(0x88, 0x80 | 10), 8);
    }

    #[test]
    fn a_whole_stream_ends_at_a_boundary_in_any_chunking() {
        let mut stream = std::vec::Vec::new();
        stream.extend(encode(0x1, b"hello", None));
        stream.extend(encode(0x2, &[7u8; 300], None));
        stream.extend(encode(0x2, &[1u8; 70_000], None));
        stream.extend(encode(0x9, b"", None));
        stream.extend(encode(0x2, &[3u8; 20], Some([1, 2, 3, 4])));
        for chunk in [1, 2, 3, 13, 14, 15, 1000, stream.len()] {
            let mut cursor = FrameCursor::default();
            for piece in stream.chunks(chunk) {
                cursor.advance(piece);
            }
            assert!(cursor.at_boundary(), "chunk {chunk}: {cursor:?}");
            assert_eq!(cursor.close_seen(), None);
        }
    }

    #[test]
    fn bytes_to_boundary_counts_down_through_a_frame() {
        let bytes = encode(0x2, &[9u8; 200], None);
        let mut cursor = FrameCursor::default();
        cursor.advance(&bytes[..1]);
        assert_eq!(cursor.bytes_to_boundary(), 1);
        cursor.advance(&bytes[1..3]);
        assert_eq!(cursor.bytes_to_boundary(), 1, "one length byte missing");
        cursor.advance(&bytes[3..50]);
        assert_eq!(cursor.bytes_to_boundary(), (bytes.len() - 50) as u64);
        cursor.advance(&bytes[50..]);
        assert!(cursor.at_boundary());
    }

    #[test]
    fn close_codes_are_read_plain_masked_and_split() {
        let mut close = std::vec::Vec::from(1001u16.to_be_bytes());
        close.extend_from_slice(b"bye");
        for mask in [None, Some([9, 8, 7, 6])] {
            let bytes = encode(0x8, &close, mask);
            for chunk in [1, 3, bytes.len()] {
                let mut cursor = FrameCursor::default();
                for piece in bytes.chunks(chunk) {
                    cursor.advance(piece);
                }
                assert!(cursor.at_boundary());
                assert_eq!(cursor.close_seen(), Some(1001), "{mask:?} {chunk}");
            }
        }
        let mut cursor = FrameCursor::default();
        cursor.advance(&encode(0x8, b"", None));
        assert_eq!(cursor.close_seen(), Some(0));
    }

    #[test]
    fn a_64_bit_length_with_the_top_bit_set_loses_the_cursor() {
        let mut bytes = [0u8; 10];
        bytes[0] = 0x82;
        bytes[1] = 127;
        bytes[2] = 0x80;
        let mut cursor = FrameCursor::default();
        cursor.advance(&bytes);
        assert!(cursor.lost());
        assert_eq!(cursor.step(0, 10, &&bytes[..]), None);
    }
}
