//! Inspection policy: the options of an inspector agent (named as in the WebSocket Inspector
//! agent docs), attached to routes with `agents "name"`. Plain data; the inspection engine
//! (`frameguard-inspect`) compiles it.

use std::path::PathBuf;

/// Which message directions a policy inspects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Client -> upstream only.
    Inbound,
    /// Upstream -> client only.
    Outbound,
    Both,
}

impl Direction {
    pub fn inspects_inbound(self) -> bool {
        matches!(self, Direction::Inbound | Direction::Both)
    }

    pub fn inspects_outbound(self) -> bool {
        matches!(self, Direction::Outbound | Direction::Both)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InspectionPolicy {
    pub xss_detection: bool,
    pub sqli_detection: bool,
    pub command_injection: bool,
    /// Extra Hyperscan expressions (PCRE syntax), compiled into the same database.
    pub custom_patterns: Vec<String>,
    /// Draft-07 JSON Schema file validated against every JSON text message.
    pub json_schema: Option<PathBuf>,
    /// Binary frames must decode as MessagePack.
    pub msgpack_validation: bool,
    /// 0 = unlimited.
    pub max_messages_per_sec: u64,
    /// 0 = unlimited.
    pub max_bytes_per_sec: u64,
    /// Token-bucket capacity on top of the steady rate, in messages (and, scaled, bytes).
    pub rate_limit_burst: u64,
    /// 0 = unlimited.
    pub max_text_frame_size: u64,
    /// 0 = unlimited.
    pub max_binary_frame_size: u64,
    /// 0 = the route's websocket max-message-size only.
    pub max_message_size: u64,
    /// false = detect-only: log and count, then forward.
    pub block_mode: bool,
    /// An engine error allows the message (and is counted) instead of closing.
    pub fail_open: bool,
    pub log_frames: bool,
    pub inspect_binary: bool,
    pub direction: Direction,
}

impl Default for InspectionPolicy {
    /// The defaults of the inspector agent docs.
    fn default() -> Self {
        InspectionPolicy {
            xss_detection: true,
            sqli_detection: true,
            command_injection: true,
            custom_patterns: Vec::new(),
            json_schema: None,
            msgpack_validation: false,
            max_messages_per_sec: 0,
            max_bytes_per_sec: 0,
            rate_limit_burst: 10,
            max_text_frame_size: 0,
            max_binary_frame_size: 0,
            max_message_size: 0,
            block_mode: true,
            fail_open: false,
            log_frames: false,
            inspect_binary: false,
            direction: Direction::Inbound,
        }
    }
}
