//! Frame header layout (RFC 6455 5.2): opcodes, reserved bits, lengths and the masking key.

use bytes::{BufMut, BytesMut};

use crate::ProtocolError;

/// Reserved bit 1: set on the first frame of a compressed message under permessage-deflate.
pub const RSV1: u8 = 0b100;
/// Reserved bit 2: no registered extension uses it.
pub const RSV2: u8 = 0b010;
/// Reserved bit 3: no registered extension uses it.
pub const RSV3: u8 = 0b001;

/// Largest payload of a control frame (RFC 6455 5.5).
pub(crate) const MAX_CONTROL_PAYLOAD: usize = 125;

/// The opcodes RFC 6455 defines; every other value is reserved and rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum OpCode {
    Continuation = 0,
    Text = 1,
    Binary = 2,
    Close = 8,
    Ping = 9,
    Pong = 10,
}

impl OpCode {
    /// Close, Ping and Pong: never fragmented, at most 125 bytes, allowed between fragments.
    pub fn is_control(self) -> bool {
        (self as u8) & 0x8 != 0
    }

    pub fn from_u8(v: u8) -> Option<OpCode> {
        match v {
            0 => Some(OpCode::Continuation),
            1 => Some(OpCode::Text),
            2 => Some(OpCode::Binary),
            8 => Some(OpCode::Close),
            9 => Some(OpCode::Ping),
            10 => Some(OpCode::Pong),
            _ => None,
        }
    }
}

/// One frame header as it is on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub fin: bool,
    /// RSV1..RSV3 as the low 3 bits ([`RSV1`], [`RSV2`], [`RSV3`]).
    pub rsv: u8,
    pub opcode: OpCode,
    pub mask: Option<[u8; 4]>,
    /// At most `i64::MAX`: the protocol reserves the top bit.
    pub payload_len: u64,
}

/// The longest frame header: 2 bytes, an 8-byte length and a masking key.
pub const MAX_HEADER_LEN: usize = 14;

impl FrameHeader {
    /// Size of the encoded header: 2 to [`MAX_HEADER_LEN`] bytes.
    pub fn encoded_len(&self) -> usize {
        let extended_len = match self.payload_len {
            0..=125 => 0,
            126..=0xFFFF => 2,
            _ => 8,
        };
        let key_len = if self.mask.is_some() { 4 } else { 0 };
        2 + extended_len + key_len
    }

    /// Appends the header with the shortest length encoding, as RFC 6455 5.2 requires. Only the low
    /// 3 bits of `rsv` are used.
    pub fn encode(&self, dst: &mut BytesMut) {
        dst.reserve(self.encoded_len());
        dst.put_u8((u8::from(self.fin) << 7) | ((self.rsv & 0b111) << 4) | self.opcode as u8);
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        match self.payload_len {
            len @ 0..=125 => dst.put_u8(mask_bit | len as u8),
            len @ 126..=0xFFFF => {
                dst.put_u8(mask_bit | 126);
                dst.put_u16(len as u16);
            }
            len => {
                dst.put_u8(mask_bit | 127);
                dst.put_u64(len);
            }
        }
        if let Some(key) = self.mask {
            dst.put_slice(&key);
        }
    }

    /// Parses the header at the front of `src` and checks the rules that need no connection state:
    /// known opcode, unfragmented and short control frames, minimal length encoding, top length bit
    /// clear. Returns the header and its encoded size, or None while `src` holds only part of it.
    /// Public only for the benchmarks: callers go through [`Decoder`](crate::Decoder).
    #[doc(hidden)]
    pub fn parse(src: &[u8]) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
        let [first, second, ..] = *src else {
            return Ok(None);
        };
        let opcode =
            OpCode::from_u8(first & 0x0F).ok_or(ProtocolError::protocol("reserved opcode"))?;
        let fin = first & 0x80 != 0;
        let rsv = (first >> 4) & 0b111;
        let masked = second & 0x80 != 0;
        let short_len = second & 0x7F;
        if opcode.is_control() {
            if !fin {
                return Err(ProtocolError::protocol("fragmented control frame"));
            }
            if usize::from(short_len) > MAX_CONTROL_PAYLOAD {
                return Err(ProtocolError::protocol(
                    "control frame longer than 125 bytes",
                ));
            }
        }
        let extended_len = match short_len {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let key_at = 2 + extended_len;
        let header_len = key_at + if masked { 4 } else { 0 };
        if src.len() < header_len {
            return Ok(None);
        }
        let payload_len = match short_len {
            126 => {
                let len = u64::from(u16::from_be_bytes([src[2], src[3]]));
                if len < 126 {
                    return Err(ProtocolError::protocol(
                        "16-bit length used for a short payload",
                    ));
                }
                len
            }
            127 => {
                let mut be = [0u8; 8];
                be.copy_from_slice(&src[2..10]);
                let len = u64::from_be_bytes(be);
                if len >> 63 != 0 {
                    return Err(ProtocolError::protocol(
                        "64-bit length with the top bit set",
                    ));
                }
                if len <= 0xFFFF {
                    return Err(ProtocolError::protocol(
                        "64-bit length used for a short payload",
                    ));
                }
                len
            }
            len => u64::from(len),
        };
        let mask = masked.then(|| {
            [
                src[key_at],
                src[key_at + 1],
                src[key_at + 2],
                src[key_at + 3],
            ]
        });
        let header = FrameHeader {
            fin,
            rsv,
            opcode,
            mask,
            payload_len,
        };
        Ok(Some((header, header_len)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const OPCODES: [OpCode; 6] = [
        OpCode::Continuation,
        OpCode::Text,
        OpCode::Binary,
        OpCode::Close,
        OpCode::Ping,
        OpCode::Pong,
    ];

    #[test]
    fn opcode_values_round_trip_and_others_are_reserved() {
        for opcode in OPCODES {
            assert_eq!(OpCode::from_u8(opcode as u8), Some(opcode));
        }
        for reserved in (3..=7).chain(0xB..=0xFF) {
            assert_eq!(OpCode::from_u8(reserved), None, "{reserved}");
        }
    }

    #[test]
    fn control_opcodes() {
        let control: Vec<OpCode> = OPCODES.into_iter().filter(|op| op.is_control()).collect();
        assert_eq!(control, [OpCode::Close, OpCode::Ping, OpCode::Pong]);
    }

    fn encoded(header: &FrameHeader) -> Vec<u8> {
        let mut dst = BytesMut::new();
        header.encode(&mut dst);
        dst.to_vec()
    }

    fn header(payload_len: u64, mask: Option<[u8; 4]>) -> FrameHeader {
        FrameHeader {
            fin: true,
            rsv: 0,
            opcode: OpCode::Binary,
            mask,
            payload_len,
        }
    }

    #[test]
    fn lengths_use_the_shortest_encoding() {
        assert_eq!(encoded(&header(125, None)), [0x82, 125]);
        assert_eq!(encoded(&header(126, None)), [0x82, 126, 0, 126]);
        assert_eq!(encoded(&header(0xFFFF, None)), [0x82, 126, 0xFF, 0xFF]);
        assert_eq!(
            encoded(&header(0x1_0000, None)),
            [0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]
        );
        assert_eq!(
            encoded(&header(5, Some([1, 2, 3, 4]))),
            [0x82, 0x85, 1, 2, 3, 4]
        );
    }

    #[test]
    fn bits_of_the_first_byte() {
        let text_fragment = FrameHeader {
            fin: false,
            rsv: RSV1 | RSV3,
            opcode: OpCode::Text,
            mask: None,
            payload_len: 0,
        };
        assert_eq!(encoded(&text_fragment), [0b0101_0001, 0]);
    }

    #[test]
    fn encoded_len_spans_2_to_14() {
        assert_eq!(header(0, None).encoded_len(), 2);
        assert_eq!(
            header(u64::MAX >> 1, Some([0; 4])).encoded_len(),
            super::MAX_HEADER_LEN
        );
    }

    #[test]
    fn partial_headers_need_more_bytes() {
        let full = encoded(&header(70_000, Some([9, 9, 9, 9])));
        for cut in 0..full.len() {
            assert_eq!(FrameHeader::parse(&full[..cut]), Ok(None), "cut {cut}");
        }
        assert!(FrameHeader::parse(&full).unwrap().is_some());
    }

    fn parse_error(bytes: &[u8]) -> &'static str {
        FrameHeader::parse(bytes).unwrap_err().reason
    }

    #[test]
    fn framing_violations_are_protocol_errors() {
        for bytes in [
            &[0x83, 0][..],
            &[0x8F, 0],
            &[0x09, 0],
            &[0x89, 126],
            &[0x82, 126, 0, 125],
            &[0x82, 127, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF],
            &[0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0],
        ] {
            let error = FrameHeader::parse(bytes).unwrap_err();
            assert_eq!(error.code, crate::CloseCode::PROTOCOL_ERROR, "{bytes:?}");
        }
        assert_eq!(parse_error(&[0x83, 0]), "reserved opcode");
        assert_eq!(parse_error(&[0x08, 0]), "fragmented control frame");
        assert_eq!(
            parse_error(&[0x8A, 126]),
            "control frame longer than 125 bytes"
        );
    }

    proptest! {
        #[test]
        fn parse_inverts_encode(
            fin in any::<bool>(),
            rsv in 0u8..8,
            opcode in prop::sample::select(OPCODES.to_vec()),
            mask in any::<Option<[u8; 4]>>(),
            payload_len in prop_oneof![0u64..=125, 126u64..=0xFFFF, 0x1_0000u64..=u64::MAX >> 1],
        ) {
            // Control frames are short and final by definition.
            let (fin, payload_len) = if opcode.is_control() { (true, payload_len % 126) } else { (fin, payload_len) };
            let header = FrameHeader { fin, rsv, opcode, mask, payload_len };
            let bytes = encoded(&header);
            prop_assert_eq!(bytes.len(), header.encoded_len());
            prop_assert_eq!(FrameHeader::parse(&bytes), Ok(Some((header, bytes.len()))));
        }
    }
}
