//! The error a peer's protocol violation produces.

use std::fmt;

use crate::CloseCode;

/// A violation that ends the connection: `code` is the close code to send back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProtocolError {
    pub code: CloseCode,
    pub reason: &'static str,
}

impl ProtocolError {
    /// 1002: the frames break RFC 6455 framing rules.
    pub(crate) const fn protocol(reason: &'static str) -> ProtocolError {
        ProtocolError {
            code: CloseCode::PROTOCOL_ERROR,
            reason,
        }
    }

    /// 1007: text or a close reason is not UTF-8.
    pub(crate) const fn invalid_payload(reason: &'static str) -> ProtocolError {
        ProtocolError {
            code: CloseCode::INVALID_PAYLOAD,
            reason,
        }
    }

    /// 1009: a frame or message exceeds the configured limit.
    pub(crate) const fn too_big(reason: &'static str) -> ProtocolError {
        ProtocolError {
            code: CloseCode::TOO_BIG,
            reason,
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (close code {})", self.reason, self.code.0)
    }
}

impl std::error::Error for ProtocolError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_reason_and_code() {
        let error = ProtocolError::too_big("frame exceeds the message size limit");
        assert_eq!(
            error.to_string(),
            "frame exceeds the message size limit (close code 1009)"
        );
    }
}
