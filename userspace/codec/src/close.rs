//! Close codes (RFC 6455 7.4 and the IANA registry) and close frame payloads.

use bytes::{BufMut, Bytes, BytesMut};

use crate::frame::MAX_CONTROL_PAYLOAD;

/// Status code of a Close frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CloseCode(pub u16);

impl CloseCode {
    pub const NORMAL: CloseCode = CloseCode(1000);
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    pub const UNSUPPORTED: CloseCode = CloseCode(1003);
    /// Reported locally when a Close frame carried no code; never sent.
    pub const NO_STATUS: CloseCode = CloseCode(1005);
    /// Reported locally when the connection dropped without a Close frame; never sent.
    pub const ABNORMAL: CloseCode = CloseCode(1006);
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    pub const POLICY: CloseCode = CloseCode(1008);
    pub const TOO_BIG: CloseCode = CloseCode(1009);
    pub const MANDATORY_EXT: CloseCode = CloseCode(1010);
    pub const INTERNAL: CloseCode = CloseCode(1011);
    pub const SERVICE_RESTART: CloseCode = CloseCode(1012);
    pub const TRY_AGAIN: CloseCode = CloseCode(1013);
    pub const BAD_GATEWAY: CloseCode = CloseCode(1014);

    /// Whether a Close frame may carry this code: the assigned codes 1000-1003 and 1007-1014, and
    /// the ranges for libraries (3000-3999) and applications (4000-4999). 1004 is reserved,
    /// 1005/1006/1015 are local-only, everything else is unassigned.
    pub fn is_valid_on_wire(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

/// Room for a reason after the 2-byte code in a control frame.
const MAX_CLOSE_REASON: usize = MAX_CONTROL_PAYLOAD - 2;

/// Close payload: the 2-byte code, then `reason` cut on a character boundary so that the payload
/// fits a control frame (at most 125 bytes).
pub fn close_payload(code: CloseCode, reason: &str) -> Bytes {
    let mut end = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = BytesMut::with_capacity(2 + end);
    payload.put_u16(code.0);
    payload.put_slice(&reason.as_bytes()[..end]);
    payload.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_validity_follows_rfc_and_iana() {
        let valid = [
            1000, 1001, 1002, 1003, 1007, 1010, 1014, 3000, 3999, 4000, 4999,
        ];
        let invalid = [
            0,
            999,
            1004,
            1005,
            1006,
            1015,
            1016,
            2000,
            2999,
            5000,
            u16::MAX,
        ];
        for code in valid {
            assert!(CloseCode(code).is_valid_on_wire(), "{code}");
        }
        for code in invalid {
            assert!(!CloseCode(code).is_valid_on_wire(), "{code}");
        }
        assert!(!CloseCode::NO_STATUS.is_valid_on_wire());
        assert!(!CloseCode::ABNORMAL.is_valid_on_wire());
    }

    #[test]
    fn payload_is_code_then_reason() {
        assert_eq!(
            &close_payload(CloseCode::GOING_AWAY, "bye")[..],
            b"\x03\xe9bye"
        );
        assert_eq!(&close_payload(CloseCode::NORMAL, "")[..], b"\x03\xe8");
    }

    #[test]
    fn long_reason_is_cut_on_a_char_boundary() {
        // 62 two-byte characters = 124 bytes: only 61 of them (122 bytes) fit after the code.
        let reason = "é".repeat(62);
        let payload = close_payload(CloseCode::POLICY, &reason);
        assert_eq!(payload.len(), 2 + 122);
        assert!(std::str::from_utf8(&payload[2..]).is_ok());

        let ascii = "x".repeat(200);
        assert_eq!(close_payload(CloseCode::POLICY, &ascii).len(), 125);
    }
}
