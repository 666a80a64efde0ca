//! What the decoder produces: validated control frames and complete data messages.

use bytes::Bytes;

use crate::frame::MAX_HEADER_LEN;
use crate::{CloseCode, OpCode};

/// A validated control frame or a complete data message.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Control(Control),
    Message(Message),
}

impl Event {
    /// The most bytes re-encoding this event can take (with its fragmentation and masked), so
    /// that a batch's output buffer is sized once.
    pub fn encoded_len_bound(&self) -> usize {
        match self {
            Event::Control(control) => MAX_HEADER_LEN + control.payload.len(),
            Event::Message(message) => {
                MAX_HEADER_LEN * message.fragments.len().max(1) + message.payload.len()
            }
        }
    }
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

/// Payload lengths of a message's frames; one is held inline, since most messages are one frame.
pub type FrameLengths = smallvec::SmallVec<[usize; 1]>;

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
    pub fragments: FrameLengths,
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
