//! What the decoder produces: validated control frames and complete data messages.

use bytes::Bytes;

use crate::{CloseCode, OpCode};

/// A validated control frame or a complete data message.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Control(Control),
    Message(Message),
}

/// A Close, Ping or Pong frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Control {
    /// Close, Ping or Pong.
    pub opcode: OpCode,
    /// Unmasked, at most 125 bytes.
    pub payload: Bytes,
}

impl Control {
    /// For a Close frame with a status: its code and reason. None for any other frame, for a Close
    /// without a status (empty payload), and for a payload that is not a code plus UTF-8 reason
    /// (the decoder never produces one).
    pub fn close_code_reason(&self) -> Option<(CloseCode, &str)> {
        if self.opcode != OpCode::Close {
            return None;
        }
        let [high, low, reason @ ..] = &self.payload[..] else {
            return None;
        };
        let reason = std::str::from_utf8(reason).ok()?;
        Some((CloseCode(u16::from_be_bytes([*high, *low])), reason))
    }
}

/// A complete Text or Binary message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Text or Binary.
    pub opcode: OpCode,
    /// RSV bits of the first frame (RSV1 = compressed under permessage-deflate).
    pub rsv: u8,
    /// The whole unmasked payload. For a single-frame message it shares the input buffer.
    pub payload: Bytes,
    /// Payload length of each frame, in order (one entry if unfragmented); sums to `payload.len()`.
    pub fragments: Vec<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn control(opcode: OpCode, payload: &'static [u8]) -> Control {
        Control {
            opcode,
            payload: Bytes::from_static(payload),
        }
    }

    #[test]
    fn close_code_and_reason() {
        assert_eq!(
            control(OpCode::Close, b"\x03\xe8done").close_code_reason(),
            Some((CloseCode::NORMAL, "done"))
        );
        assert_eq!(
            control(OpCode::Close, b"\x0f\xa0").close_code_reason(),
            Some((CloseCode(4000), ""))
        );
    }

    #[test]
    fn no_code_for_empty_close_or_other_frames() {
        assert_eq!(control(OpCode::Close, b"").close_code_reason(), None);
        assert_eq!(control(OpCode::Close, b"\x03").close_code_reason(), None);
        assert_eq!(
            control(OpCode::Close, b"\x03\xe8\xff").close_code_reason(),
            None
        );
        assert_eq!(control(OpCode::Ping, b"\x03\xe8").close_code_reason(), None);
    }
}
