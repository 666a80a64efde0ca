//! Frame and message encoding.

use bytes::BytesMut;

use crate::frame::{FrameHeader, MAX_CONTROL_PAYLOAD};
use crate::mask::apply_mask;
use crate::{Control, Message, OpCode};

/// Appends one frame (header + payload, masked with `mask` if Some) to `dst`.
pub fn encode_frame(
    dst: &mut BytesMut,
    fin: bool,
    rsv: u8,
    opcode: OpCode,
    mask: Option<[u8; 4]>,
    payload: &[u8],
) {
    let header = FrameHeader {
        fin,
        rsv,
        opcode,
        mask,
        payload_len: payload.len() as u64,
    };
    dst.reserve(header.encoded_len() + payload.len());
    header.encode(dst);
    let payload_at = dst.len();
    dst.extend_from_slice(payload);
    if let Some(key) = mask {
        apply_mask(&mut dst[payload_at..], key, 0);
    }
}

/// Re-encodes `msg` with its original fragmentation: the first frame carries the opcode and RSV
/// bits, the rest are Continuation frames, the last has FIN. `next_mask` is called once per frame
/// (None for server-to-client, a fresh random key for client-to-server). If `fragments` does not
/// add up to the payload length, the message is sent as a single frame.
pub fn encode_message(
    dst: &mut BytesMut,
    msg: &Message,
    mut next_mask: impl FnMut() -> Option<[u8; 4]>,
) {
    let whole = [msg.payload.len()];
    let covers_payload = !msg.fragments.is_empty()
        && msg
            .fragments
            .iter()
            .try_fold(0usize, |sum, &len| sum.checked_add(len))
            == Some(msg.payload.len());
    let lengths: &[usize] = if covers_payload {
        &msg.fragments
    } else {
        &whole
    };
    let mut rest = &msg.payload[..];
    for (index, &len) in lengths.iter().enumerate() {
        let (chunk, after) = rest.split_at(len);
        rest = after;
        let (opcode, rsv) = if index == 0 {
            (msg.opcode, msg.rsv)
        } else {
            (OpCode::Continuation, 0)
        };
        encode_frame(
            dst,
            index + 1 == lengths.len(),
            rsv,
            opcode,
            next_mask(),
            chunk,
        );
    }
}

/// Appends a control frame. Its payload must be at most 125 bytes, as every decoded one is.
pub fn encode_control(dst: &mut BytesMut, ctrl: &Control, mask: Option<[u8; 4]>) {
    debug_assert!(
        ctrl.opcode.is_control(),
        "{:?} is not a control opcode",
        ctrl.opcode
    );
    debug_assert!(
        ctrl.payload.len() <= MAX_CONTROL_PAYLOAD,
        "control payload over 125 bytes"
    );
    encode_frame(dst, true, 0, ctrl.opcode, mask, &ctrl.payload);
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::RSV1;

    #[test]
    fn rfc_examples() {
        // RFC 6455 5.7: unmasked and masked single-frame "Hello".
        let mut dst = BytesMut::new();
        encode_frame(&mut dst, true, 0, OpCode::Text, None, b"Hello");
        assert_eq!(&dst[..], b"\x81\x05Hello");
        dst.clear();
        encode_frame(
            &mut dst,
            true,
            0,
            OpCode::Text,
            Some([0x37, 0xfa, 0x21, 0x3d]),
            b"Hello",
        );
        assert_eq!(&dst[..], b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58");
    }

    #[test]
    fn fragmented_message_keeps_its_frames() {
        // RFC 6455 5.7: "Hel" + "lo" in two frames.
        let msg = Message {
            opcode: OpCode::Text,
            rsv: 0,
            payload: Bytes::from_static(b"Hello"),
            fragments: vec![3, 2].into(),
        };
        let mut dst = BytesMut::new();
        encode_message(&mut dst, &msg, || None);
        assert_eq!(&dst[..], b"\x01\x03Hel\x80\x02lo");
    }

    #[test]
    fn rsv_goes_on_the_first_frame_only_and_each_frame_gets_a_fresh_mask() {
        let msg = Message {
            opcode: OpCode::Binary,
            rsv: RSV1,
            payload: Bytes::from_static(b"\x00\x00"),
            fragments: vec![1, 0, 1].into(),
        };
        let mut keys = [[1u8; 4], [2; 4], [3; 4]].into_iter();
        let mut dst = BytesMut::new();
        encode_message(&mut dst, &msg, || keys.next());
        assert_eq!(
            &dst[..],
            b"\x42\x81\x01\x01\x01\x01\x01\x00\x80\x02\x02\x02\x02\x80\x81\x03\x03\x03\x03\x03"
        );
    }

    #[test]
    fn inconsistent_fragments_fall_back_to_one_frame() {
        for fragments in [vec![], vec![1], vec![usize::MAX, 2]] {
            let msg = Message {
                opcode: OpCode::Binary,
                rsv: 0,
                payload: Bytes::from_static(b"abc"),
                fragments: fragments.into(),
            };
            let mut dst = BytesMut::new();
            encode_message(&mut dst, &msg, || None);
            assert_eq!(&dst[..], b"\x82\x03abc");
        }
    }

    #[test]
    fn empty_message_is_one_empty_frame() {
        let msg = Message {
            opcode: OpCode::Text,
            rsv: 0,
            payload: Bytes::new(),
            fragments: vec![0].into(),
        };
        let mut dst = BytesMut::new();
        encode_message(&mut dst, &msg, || None);
        assert_eq!(&dst[..], b"\x81\x00");
    }

    #[test]
    fn control_frame() {
        let ping = Control {
            opcode: OpCode::Ping,
            payload: Bytes::from_static(b"hi"),
        };
        let mut dst = BytesMut::new();
        encode_control(&mut dst, &ping, None);
        assert_eq!(&dst[..], b"\x89\x02hi");
    }
}
