//! Structure-aware extraction of the strings a message carries: JSON keys and values,
//! socket.io event arguments, MessagePack strings, the text in binary payloads.

pub mod binary;
pub mod json;
pub mod msgpack;
pub mod socketio;
