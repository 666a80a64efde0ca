//! RFC 6455 frames for the test peers, written independently of frameguard-codec so that the
//! tests check the proxy's codec instead of sharing its bugs. Encoding can produce invalid
//! frames on purpose; decoding is lenient (any opcode, masked or not, any RSV bits).

pub const CONTINUATION: u8 = 0x0;
pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xA;

pub const RSV1: u8 = 0x40;

/// How the payload length is written on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Length {
    /// The shortest encoding, as RFC 6455 requires.
    Minimal,
    /// Always the 16-bit extended form (non-minimal below 126).
    Extended16,
    /// This exact 64-bit length field, whatever the payload (e.g. with the top bit set).
    Declared64(u64),
}

/// A frame to put on the wire, valid or not.
#[derive(Clone, Debug)]
pub struct FrameSpec {
    pub fin: bool,
    /// RSV bits as they appear in the first byte (0x40, 0x20, 0x10).
    pub rsv: u8,
    pub opcode: u8,
    pub mask: Option<[u8; 4]>,
    pub payload: Vec<u8>,
    pub length: Length,
}

impl FrameSpec {
    /// A final, masked frame (what a client sends).
    pub fn new(opcode: u8, payload: impl Into<Vec<u8>>) -> FrameSpec {
        FrameSpec {
            fin: true,
            rsv: 0,
            opcode,
            mask: Some(rand::random()),
            payload: payload.into(),
            length: Length::Minimal,
        }
    }

    pub fn text(text: &str) -> FrameSpec {
        FrameSpec::new(TEXT, text.as_bytes())
    }

    pub fn binary(data: impl Into<Vec<u8>>) -> FrameSpec {
        FrameSpec::new(BINARY, data)
    }

    pub fn continuation(data: impl Into<Vec<u8>>) -> FrameSpec {
        FrameSpec::new(CONTINUATION, data)
    }

    pub fn ping(data: impl Into<Vec<u8>>) -> FrameSpec {
        FrameSpec::new(PING, data)
    }

    pub fn close(code: u16, reason: &str) -> FrameSpec {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(reason.as_bytes());
        FrameSpec::new(CLOSE, payload)
    }

    pub fn fin(mut self, fin: bool) -> FrameSpec {
        self.fin = fin;
        self
    }

    pub fn rsv(mut self, rsv: u8) -> FrameSpec {
        self.rsv = rsv;
        self
    }

    pub fn unmasked(mut self) -> FrameSpec {
        self.mask = None;
        self
    }

    pub fn length(mut self, length: Length) -> FrameSpec {
        self.length = length;
        self
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.payload.len() + 14);
        out.push(u8::from(self.fin) << 7 | (self.rsv & 0x70) | (self.opcode & 0x0F));
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let len = self.payload.len();
        match self.length {
            Length::Minimal if len < 126 => out.push(mask_bit | len as u8),
            Length::Minimal if len <= usize::from(u16::MAX) => {
                out.push(mask_bit | 126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            Length::Minimal => {
                out.push(mask_bit | 127);
                out.extend_from_slice(&(len as u64).to_be_bytes());
            }
            Length::Extended16 => {
                out.push(mask_bit | 126);
                let len = u16::try_from(len).expect("Extended16 payload fits 16 bits");
                out.extend_from_slice(&len.to_be_bytes());
            }
            Length::Declared64(declared) => {
                out.push(mask_bit | 127);
                out.extend_from_slice(&declared.to_be_bytes());
            }
        }
        match self.mask {
            Some(mask) => {
                out.extend_from_slice(&mask);
                out.extend(
                    self.payload
                        .iter()
                        .enumerate()
                        .map(|(i, b)| b ^ mask[i % 4]),
                );
            }
            None => out.extend_from_slice(&self.payload),
        }
        out
    }
}

/// A frame as it arrived, payload unmasked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub rsv: u8,
    pub opcode: u8,
    pub masked: bool,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The status code of a Close frame (None when its payload is shorter than 2 bytes).
    pub fn close_code(&self) -> Option<u16> {
        match self.payload.as_slice() {
            [hi, lo, ..] if self.opcode == CLOSE => Some(u16::from_be_bytes([*hi, *lo])),
            _ => None,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// More bytes are needed.
    Incomplete,
    /// A frame and the number of bytes it used.
    Frame(Frame, usize),
    /// The declared payload is larger than the reader accepts.
    TooLarge(u64),
}

/// Decode one frame from the start of `buf`, accepting anything up to `max_payload` bytes.
pub fn parse_frame(buf: &[u8], max_payload: usize) -> Parsed {
    let [b0, b1, ..] = *buf else {
        return Parsed::Incomplete;
    };
    let masked = b1 & 0x80 != 0;
    let (declared, mut pos) = match b1 & 0x7F {
        126 => match buf.get(2..4) {
            Some(len) => (u64::from(u16::from_be_bytes([len[0], len[1]])), 4),
            None => return Parsed::Incomplete,
        },
        127 => match buf.get(2..10) {
            Some(len) => (u64::from_be_bytes(len.try_into().expect("8 bytes")), 10),
            None => return Parsed::Incomplete,
        },
        short => (u64::from(short), 2),
    };
    let Some(len) = usize::try_from(declared)
        .ok()
        .filter(|&len| len <= max_payload)
    else {
        return Parsed::TooLarge(declared);
    };
    let mask = if masked {
        let Some(key) = buf.get(pos..pos + 4) else {
            return Parsed::Incomplete;
        };
        pos += 4;
        Some([key[0], key[1], key[2], key[3]])
    } else {
        None
    };
    let Some(payload) = buf.get(pos..pos + len) else {
        return Parsed::Incomplete;
    };
    let payload = match mask {
        Some(key) => payload
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ key[i % 4])
            .collect(),
        None => payload.to_vec(),
    };
    let frame = Frame {
        fin: b0 & 0x80 != 0,
        rsv: b0 & 0x70,
        opcode: b0 & 0x0F,
        masked,
        payload,
    };
    Parsed::Frame(frame, pos + len)
}

/// A text message sent as one frame per piece (pieces may split characters): the first a Text
/// frame with `first_rsv`, the rest Continuation frames with `continuation_rsv`, FIN on the last.
pub fn text_fragments<P: AsRef<[u8]>>(
    pieces: &[P],
    first_rsv: u8,
    continuation_rsv: u8,
) -> Vec<u8> {
    let last = pieces.len() - 1;
    pieces
        .iter()
        .enumerate()
        .flat_map(|(i, piece)| {
            let (opcode, rsv) = match i {
                0 => (TEXT, first_rsv),
                _ => (CONTINUATION, continuation_rsv),
            };
            FrameSpec::new(opcode, piece.as_ref().to_vec())
                .rsv(rsv)
                .fin(i == last)
                .encode()
        })
        .collect()
}
