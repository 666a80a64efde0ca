//! RFC 6455 frame codec for the Frameguard proxy: pure (no I/O), incremental and zero-copy over
//! [`bytes`].
//!
//! [`Decoder`] turns the bytes of one direction of a connection into [`Event`]s: validated control
//! frames and complete data messages. It accepts input cut at any point, unmasks payloads in place
//! with SIMD ([`mask`]), hands out single-frame payloads without copying and reassembles fragmented
//! messages into one contiguous buffer. The encoders ([`encode_frame`], [`encode_message`],
//! [`encode_control`]) write frames back, keeping a message's original fragmentation.
//!
//! # What the decoder enforces, and why
//!
//! A proxy that forwards what it cannot parse unambiguously lets a peer smuggle frames past the
//! inspection layer, so everything RFC 6455 forbids is an error carrying the close code to send:
//!
//! * 1002 (protocol error): reserved opcodes; RSV bits no extension negotiated, and RSV1 anywhere
//!   but the first frame of a data message (permessage-deflate's rule); client frames without a
//!   mask (when decoding as [`Role::Server`]) and server frames with one ([`Role::Client`]);
//!   non-minimal length encodings and 64-bit lengths with the top bit set, which different
//!   implementations read differently; fragmented or longer than 125 bytes control frames;
//!   Continuation frames without a message, new messages inside a fragmented one; Close payloads of
//!   one byte or with a code not allowed on the wire.
//! * 1007 (invalid payload): text that is not UTF-8, detected as soon as a fragment proves it (text
//!   whose first frame has RSV1 is compressed and is validated after inflating, by the inspection
//!   layer), and Close reasons that are not UTF-8.
//! * 1009 (too big): a data frame larger than `max_message_size`, reported as soon as its header
//!   arrives rather than after buffering it; a reassembled message growing past the limit; a
//!   message with more fragments than `max(64, max_message_size / size_of::<usize>())`, since
//!   every fragment, even an empty one, costs bookkeeping.
//!
//! A frame that breaks a rule is never returned as an event, and the decoder stays failed. Memory
//! is bounded by the limit: the decoder buffers at most one message (capacity capped at the limit)
//! and its fragment list, and never reserves input space on the strength of a declared length.

pub mod mask;
pub mod utf8;

mod close;
mod decoder;
mod encoder;
mod error;
mod frame;
mod message;

pub use close::{close_payload, CloseCode};
pub use decoder::{Decoder, DecoderConfig, Role};
pub use encoder::{encode_control, encode_frame, encode_message};
pub use error::ProtocolError;
pub use frame::{FrameHeader, OpCode, RSV1, RSV2, RSV3};
pub use message::{Control, Event, FrameLengths, Message};
