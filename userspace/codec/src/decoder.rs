//! Incremental frame decoder: validation, unmasking and message reassembly.

use bytes::{Buf, BytesMut};

use crate::frame::FrameHeader;
use crate::mask::apply_mask;
use crate::utf8::Utf8Validator;
use crate::{CloseCode, Control, Event, FrameLengths, Message, OpCode, ProtocolError, RSV1};

/// Which side of the connection we decode for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Decoding frames a client sent: they must be masked.
    Server,
    /// Decoding frames a server sent: they must be unmasked.
    Client,
}

#[derive(Clone, Copy, Debug)]
pub struct DecoderConfig {
    pub role: Role,
    /// RSV bits an extension negotiated, e.g. [`RSV1`] for permessage-deflate.
    pub allowed_rsv: u8,
    /// Limit for a whole message after reassembly, and for any single data frame.
    pub max_message_size: usize,
}

/// A fragmented message may have at least this many frames, whatever the size limit.
const MIN_FRAGMENT_LIMIT: usize = 64;

/// Decodes one direction of a connection.
///
/// After an error, every later `decode` returns the same error: the connection must be closed with
/// its code, and the buffer (possibly partly unmasked) discarded.
#[derive(Debug)]
pub struct Decoder {
    config: DecoderConfig,
    fragmented: Option<PartialMessage>,
    failure: Option<ProtocolError>,
}

/// The frames of a fragmented message received so far.
#[derive(Debug)]
struct PartialMessage {
    opcode: OpCode,
    rsv: u8,
    payload: Vec<u8>,
    fragments: FrameLengths,
    /// None for binary and for compressed text (checked after inflating, by the inspection layer).
    utf8: Option<Utf8Validator>,
}

impl Decoder {
    pub fn new(config: DecoderConfig) -> Decoder {
        Decoder {
            config,
            fragmented: None,
            failure: None,
        }
    }

    /// Parses the next event from the front of `buf`. Consumes the bytes of complete frames only:
    /// a partial frame stays in `buf`, wherever it was cut. Ok(None) = need more bytes.
    ///
    /// Payloads are unmasked in place. A single-frame message or control frame is split off `buf`
    /// without copying; fragments are copied into a reassembly buffer bounded by
    /// `max_message_size`. Data frames of an unfinished message are consumed and held; control
    /// frames between fragments are returned at once, in order.
    ///
    /// Nothing is reserved in `buf` on the strength of a declared length: how much to read ahead is
    /// the caller's choice.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Event>, ProtocolError> {
        if let Some(failure) = self.failure {
            return Err(failure);
        }
        let decoded = self.decode_frames(buf);
        if let Err(failure) = decoded {
            self.failure = Some(failure);
        }
        decoded
    }

    /// True while a fragmented message is partly received.
    pub fn in_message(&self) -> bool {
        self.fragmented.is_some()
    }

    fn decode_frames(&mut self, buf: &mut BytesMut) -> Result<Option<Event>, ProtocolError> {
        loop {
            let Some((header, header_len)) = FrameHeader::parse(buf)? else {
                return Ok(None);
            };
            self.check_header(&header)?;
            // check_header bounded data frames by max_message_size and parse bounded control
            // frames by 125, so the length fits in usize.
            let payload_len = header.payload_len as usize;
            if buf.len() - header_len < payload_len {
                return Ok(None);
            }
            // Only now that the whole payload is here: the next call starts over at this frame's
            // header, so unmasking earlier would unmask some bytes twice.
            let payload = &mut buf[header_len..header_len + payload_len];
            if let Some(key) = header.mask {
                apply_mask(payload, key, 0);
            }
            // Validate before consuming, so that a rejected frame never leaves `buf` as an event.
            if header.opcode.is_control() {
                if header.opcode == OpCode::Close {
                    check_close_payload(payload)?;
                }
                buf.advance(header_len);
                let payload = buf.split_to(payload_len).freeze();
                let control = Control {
                    opcode: header.opcode,
                    payload,
                };
                return Ok(Some(Event::Control(control)));
            }
            match self.take_data_frame(&header, payload)? {
                DataFrame::Held => buf.advance(header_len + payload_len),
                DataFrame::Whole { opcode, rsv } => {
                    buf.advance(header_len);
                    let message = Message {
                        opcode,
                        rsv,
                        payload: buf.split_to(payload_len).freeze(),
                        fragments: smallvec::smallvec![payload_len],
                    };
                    return Ok(Some(Event::Message(message)));
                }
                DataFrame::Last(partial) => {
                    buf.advance(header_len + payload_len);
                    let message = Message {
                        opcode: partial.opcode,
                        rsv: partial.rsv,
                        payload: partial.payload.into(),
                        fragments: partial.fragments,
                    };
                    return Ok(Some(Event::Message(message)));
                }
            }
        }
    }

    /// Checks what depends on the role, the negotiated extensions and the message in progress.
    fn check_header(&self, header: &FrameHeader) -> Result<(), ProtocolError> {
        let config = &self.config;
        if header.rsv & !config.allowed_rsv != 0 {
            return Err(ProtocolError::protocol(
                "reserved bits set without an extension",
            ));
        }
        match (config.role, header.mask) {
            (Role::Server, None) => return Err(ProtocolError::protocol("unmasked client frame")),
            (Role::Client, Some(_)) => return Err(ProtocolError::protocol("masked server frame")),
            _ => {}
        }
        let max_size = config.max_message_size as u64;
        match header.opcode {
            OpCode::Close | OpCode::Ping | OpCode::Pong => {
                if header.rsv & RSV1 != 0 {
                    return Err(ProtocolError::protocol("RSV1 on a control frame"));
                }
            }
            OpCode::Continuation => {
                let Some(partial) = &self.fragmented else {
                    return Err(ProtocolError::protocol("continuation without a message"));
                };
                if header.rsv & RSV1 != 0 {
                    return Err(ProtocolError::protocol("RSV1 on a continuation frame"));
                }
                let total = (partial.payload.len() as u64).saturating_add(header.payload_len);
                if total > max_size {
                    return Err(ProtocolError::too_big("message exceeds the size limit"));
                }
                if partial.fragments.len() >= self.fragment_limit() {
                    return Err(ProtocolError::too_big("message has too many fragments"));
                }
            }
            OpCode::Text | OpCode::Binary => {
                if self.fragmented.is_some() {
                    return Err(ProtocolError::protocol(
                        "new message inside a fragmented one",
                    ));
                }
                if header.payload_len > max_size {
                    return Err(ProtocolError::too_big(
                        "frame exceeds the message size limit",
                    ));
                }
            }
        }
        Ok(())
    }

    /// Each fragment costs one `usize` of bookkeeping even when empty; capping their number keeps
    /// that bookkeeping within the size limit, however many empty frames a peer sends.
    fn fragment_limit(&self) -> usize {
        (self.config.max_message_size / std::mem::size_of::<usize>()).max(MIN_FRAGMENT_LIMIT)
    }

    /// Takes a checked, unmasked data frame: validates its text and holds it if it is a fragment.
    fn take_data_frame(
        &mut self,
        header: &FrameHeader,
        payload: &[u8],
    ) -> Result<DataFrame, ProtocolError> {
        if header.opcode != OpCode::Continuation {
            let check_utf8 = header.opcode == OpCode::Text && header.rsv & RSV1 == 0;
            if header.fin {
                if check_utf8 && std::str::from_utf8(payload).is_err() {
                    return Err(invalid_text());
                }
                return Ok(DataFrame::Whole {
                    opcode: header.opcode,
                    rsv: header.rsv,
                });
            }
            self.fragmented = Some(PartialMessage {
                opcode: header.opcode,
                rsv: header.rsv,
                payload: Vec::new(),
                fragments: FrameLengths::new(),
                utf8: check_utf8.then(Utf8Validator::new),
            });
        }
        let Some(mut partial) = self.fragmented.take() else {
            // check_header already rejected this; kept as an error rather than a panic.
            return Err(ProtocolError::protocol("continuation without a message"));
        };
        if let Some(validator) = partial.utf8.as_mut() {
            validator.feed(payload).map_err(|_| invalid_text())?;
            if header.fin {
                validator.finish().map_err(|_| invalid_text())?;
            }
        }
        partial.append(payload, self.config.max_message_size);
        if header.fin {
            return Ok(DataFrame::Last(partial));
        }
        self.fragmented = Some(partial);
        Ok(DataFrame::Held)
    }
}

/// What a data frame did to the message in progress.
enum DataFrame {
    /// A fragment, now held in the reassembly buffer.
    Held,
    /// A whole message in one frame; its payload is still in the input buffer.
    Whole { opcode: OpCode, rsv: u8 },
    /// The final fragment: the message is complete.
    Last(PartialMessage),
}

fn invalid_text() -> ProtocolError {
    ProtocolError::invalid_payload("text message is not UTF-8")
}

/// A Close payload is empty, or a code valid on the wire followed by a UTF-8 reason.
fn check_close_payload(payload: &[u8]) -> Result<(), ProtocolError> {
    match payload {
        [] => Ok(()),
        [_] => Err(ProtocolError::protocol("close payload of one byte")),
        [high, low, reason @ ..] => {
            if !CloseCode(u16::from_be_bytes([*high, *low])).is_valid_on_wire() {
                return Err(ProtocolError::protocol(
                    "close code not allowed on the wire",
                ));
            }
            std::str::from_utf8(reason)
                .map(|_| ())
                .map_err(|_| ProtocolError::invalid_payload("close reason is not UTF-8"))
        }
    }
}

impl PartialMessage {
    /// Appends a fragment whose size `check_header` already admitted. Capacity grows by doubling
    /// but never past the limit, so a message at the limit does not reserve twice its size.
    fn append(&mut self, fragment: &[u8], max_size: usize) {
        let needed = self.payload.len() + fragment.len();
        if needed > self.payload.capacity() {
            let target = (self.payload.capacity() * 2).clamp(needed, max_size.max(needed));
            self.payload.reserve_exact(target - self.payload.len());
        }
        self.payload.extend_from_slice(fragment);
        self.fragments.push(fragment.len());
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::{encode_frame, RSV2, RSV3};

    const KEY: [u8; 4] = [0x11, 0x22, 0x33, 0x44];
    const MIB: usize = 1 << 20;

    fn decoder(role: Role, allowed_rsv: u8, max_message_size: usize) -> Decoder {
        Decoder::new(DecoderConfig {
            role,
            allowed_rsv,
            max_message_size,
        })
    }

    /// Decodes frames from clients, permessage-deflate negotiated, 1 MiB limit.
    fn server() -> Decoder {
        decoder(Role::Server, RSV1, MIB)
    }

    /// A masked client frame.
    fn frame(fin: bool, rsv: u8, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
        let mut dst = BytesMut::new();
        encode_frame(&mut dst, fin, rsv, opcode, Some(KEY), payload);
        dst.to_vec()
    }

    /// A masked client frame whose first byte (FIN, RSV, opcode) is given raw.
    fn frame_with_first_byte(first: u8, payload: &[u8]) -> Vec<u8> {
        let mut bytes = frame(true, 0, OpCode::Binary, payload);
        bytes[0] = first;
        bytes
    }

    /// Decodes until more bytes are needed or an error, returning the events and that error.
    fn decode_all(decoder: &mut Decoder, bytes: &[u8]) -> (Vec<Event>, Option<ProtocolError>) {
        decode_buffer(decoder, &mut BytesMut::from(bytes))
    }

    fn decode_buffer(
        decoder: &mut Decoder,
        buf: &mut BytesMut,
    ) -> (Vec<Event>, Option<ProtocolError>) {
        let mut events = Vec::new();
        loop {
            match decoder.decode(buf) {
                Ok(Some(event)) => events.push(event),
                Ok(None) => return (events, None),
                Err(error) => return (events, Some(error)),
            }
        }
    }

    /// Asserts that `bytes` yields no event at all and fails with `code`.
    fn assert_rejected(decoder: &mut Decoder, bytes: &[u8], code: CloseCode) {
        let (events, error) = decode_all(decoder, bytes);
        assert_eq!(
            events,
            [],
            "the offending frame must not surface as an event"
        );
        assert_eq!(error.map(|e| e.code), Some(code), "{error:?}");
    }

    fn message(opcode: OpCode, payload: &[u8], fragments: &[usize]) -> Event {
        Event::Message(Message {
            opcode,
            rsv: 0,
            payload: Bytes::copy_from_slice(payload),
            fragments: fragments.into(),
        })
    }

    fn control(opcode: OpCode, payload: &[u8]) -> Event {
        Event::Control(Control {
            opcode,
            payload: Bytes::copy_from_slice(payload),
        })
    }

    #[test]
    fn lengths_of_every_encoding_decode() {
        for len in [0, 1, 125, 126, 127, 0xFFFF, 0x1_0000, 300_000] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let (events, error) =
                decode_all(&mut server(), &frame(true, 0, OpCode::Binary, &payload));
            assert_eq!(error, None);
            assert_eq!(
                events,
                [message(OpCode::Binary, &payload, &[len])],
                "length {len}"
            );
        }
    }

    #[test]
    fn non_minimal_lengths_are_rejected() {
        let mut sixteen_bit_for_5 = vec![0x82, 0x80 | 126, 0, 5];
        sixteen_bit_for_5.extend_from_slice(&KEY);
        sixteen_bit_for_5.extend_from_slice(b"hello");
        assert_rejected(&mut server(), &sixteen_bit_for_5, CloseCode::PROTOCOL_ERROR);

        let mut sixty_four_bit_for_65535 = vec![0x82, 0x80 | 127, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF];
        sixty_four_bit_for_65535.extend_from_slice(&KEY);
        sixty_four_bit_for_65535.extend(std::iter::repeat_n(0, 0xFFFF));
        assert_rejected(
            &mut server(),
            &sixty_four_bit_for_65535,
            CloseCode::PROTOCOL_ERROR,
        );

        let mut sixty_four_bit_for_200 = vec![0x82, 0x80 | 127, 0, 0, 0, 0, 0, 0, 0, 200];
        sixty_four_bit_for_200.extend_from_slice(&KEY);
        assert_rejected(
            &mut server(),
            &sixty_four_bit_for_200,
            CloseCode::PROTOCOL_ERROR,
        );
    }

    #[test]
    fn top_bit_of_64_bit_length_is_rejected() {
        let mut bytes = vec![0x82, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 1];
        bytes.extend_from_slice(&KEY);
        // Even with a limit that would admit anything.
        assert_rejected(
            &mut decoder(Role::Server, 0, usize::MAX),
            &bytes,
            CloseCode::PROTOCOL_ERROR,
        );
    }

    #[test]
    fn oversized_frame_fails_on_its_header_alone() {
        let full = frame(true, 0, OpCode::Binary, &[7; 101]);
        // Only the header (2 + 4 key bytes) has arrived.
        assert_rejected(
            &mut decoder(Role::Server, 0, 100),
            &full[..6],
            CloseCode::TOO_BIG,
        );

        let mut huge = vec![0x82, 0x80 | 127, 0, 0, 0x10, 0, 0, 0, 0, 0];
        huge.extend_from_slice(&KEY);
        assert_rejected(&mut server(), &huge, CloseCode::TOO_BIG);

        let at_limit = frame(true, 0, OpCode::Binary, &[7; 100]);
        let (events, error) = decode_all(&mut decoder(Role::Server, 0, 100), &at_limit);
        assert_eq!((events.len(), error), (1, None));
    }

    #[test]
    fn reassembled_message_over_the_limit_is_rejected() {
        let mut decoder = decoder(Role::Server, 0, 100);
        let mut stream = frame(false, 0, OpCode::Binary, &[1; 60]);
        // Header of the second fragment only: 60 + 41 > 100.
        stream.extend_from_slice(&frame(true, 0, OpCode::Continuation, &[2; 41])[..6]);
        assert_rejected(&mut decoder, &stream, CloseCode::TOO_BIG);

        let mut exactly_at_limit = frame(false, 0, OpCode::Binary, &[1; 60]);
        exactly_at_limit.extend_from_slice(&frame(true, 0, OpCode::Continuation, &[2; 40]));
        let (events, error) = decode_all(&mut Decoder::new(decoder.config), &exactly_at_limit);
        assert_eq!(error, None);
        assert_eq!(events.len(), 1);
    }

    #[test]
    fn too_many_fragments_are_rejected() {
        // Limit 800 bytes allows max(64, 800 / 8) = 100 fragments, however small.
        let mut decoder = decoder(Role::Server, 0, 800);
        let mut stream = frame(false, 0, OpCode::Binary, b"");
        for _ in 0..98 {
            stream.extend_from_slice(&frame(false, 0, OpCode::Continuation, b""));
        }
        let mut allowed = stream.clone();
        allowed.extend_from_slice(&frame(true, 0, OpCode::Continuation, b""));
        let (events, error) = decode_all(&mut Decoder::new(decoder.config), &allowed);
        assert_eq!(error, None);
        assert_eq!(events, [message(OpCode::Binary, b"", &[0; 100])]);

        stream.extend_from_slice(&frame(false, 0, OpCode::Continuation, b""));
        stream.extend_from_slice(&frame(true, 0, OpCode::Continuation, b""));
        assert_rejected(&mut decoder, &stream, CloseCode::TOO_BIG);
    }

    #[test]
    fn masking_must_match_the_role() {
        let mut unmasked = BytesMut::new();
        encode_frame(&mut unmasked, true, 0, OpCode::Text, None, b"hi");
        assert_rejected(&mut server(), &unmasked, CloseCode::PROTOCOL_ERROR);

        let masked = frame(true, 0, OpCode::Text, b"hi");
        let mut client = decoder(Role::Client, 0, MIB);
        assert_rejected(&mut client, &masked, CloseCode::PROTOCOL_ERROR);

        let (events, error) = decode_all(&mut decoder(Role::Client, 0, MIB), &unmasked);
        assert_eq!(
            (events, error),
            (vec![message(OpCode::Text, b"hi", &[2])], None)
        );
    }

    #[test]
    fn rsv_bits_need_an_extension() {
        let compressed = frame(true, RSV1, OpCode::Binary, b"x");
        assert_rejected(
            &mut decoder(Role::Server, 0, MIB),
            &compressed,
            CloseCode::PROTOCOL_ERROR,
        );
        for rsv in [RSV2, RSV3] {
            let bytes = frame(true, rsv, OpCode::Binary, b"x");
            assert_rejected(&mut server(), &bytes, CloseCode::PROTOCOL_ERROR);
        }
        let mut allowed = decoder(Role::Server, RSV2, MIB);
        let (events, error) = decode_all(&mut allowed, &frame(true, RSV2, OpCode::Binary, b"x"));
        assert_eq!(error, None);
        assert!(matches!(&events[..], [Event::Message(m)] if m.rsv == RSV2));
    }

    #[test]
    fn rsv1_is_allowed_on_the_first_data_frame_only() {
        let mut stream = frame(false, RSV1, OpCode::Text, b"\xFF");
        stream.extend_from_slice(&frame(true, 0, OpCode::Continuation, b"\xFE"));
        let (events, error) = decode_all(&mut server(), &stream);
        assert_eq!(error, None);
        let Event::Message(compressed) = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(
            (compressed.rsv, &compressed.payload[..]),
            (RSV1, &b"\xFF\xFE"[..])
        );

        let mut on_continuation = frame(false, RSV1, OpCode::Binary, b"a");
        on_continuation.extend_from_slice(&frame(true, RSV1, OpCode::Continuation, b"b"));
        assert_rejected(&mut server(), &on_continuation, CloseCode::PROTOCOL_ERROR);

        for opcode in [OpCode::Ping, OpCode::Pong, OpCode::Close] {
            let bytes = frame(true, RSV1, opcode, b"");
            assert_rejected(&mut server(), &bytes, CloseCode::PROTOCOL_ERROR);
        }
    }

    #[test]
    fn reserved_opcodes_are_rejected() {
        for opcode in (3..=7).chain(0xB..=0xF) {
            let bytes = frame_with_first_byte(0x80 | opcode, b"x");
            assert_rejected(&mut server(), &bytes, CloseCode::PROTOCOL_ERROR);
        }
    }

    #[test]
    fn control_frames_must_be_final_and_short() {
        for opcode in [OpCode::Ping, OpCode::Pong, OpCode::Close] {
            let unfinished = frame_with_first_byte(opcode as u8, b"");
            assert_rejected(&mut server(), &unfinished, CloseCode::PROTOCOL_ERROR);
            let long = frame(true, 0, opcode, &[b'a'; 126]);
            assert_rejected(&mut server(), &long, CloseCode::PROTOCOL_ERROR);
        }
        let (events, error) =
            decode_all(&mut server(), &frame(true, 0, OpCode::Ping, &[b'a'; 125]));
        assert_eq!(
            (events, error),
            (vec![control(OpCode::Ping, &[b'a'; 125])], None)
        );
    }

    #[test]
    fn continuation_needs_an_open_message() {
        let orphan = frame(true, 0, OpCode::Continuation, b"x");
        assert_rejected(&mut server(), &orphan, CloseCode::PROTOCOL_ERROR);

        let mut after_finished = frame(true, 0, OpCode::Binary, b"a");
        after_finished.extend_from_slice(&orphan);
        let (events, error) = decode_all(&mut server(), &after_finished);
        assert_eq!(events, [message(OpCode::Binary, b"a", &[1])]);
        assert_eq!(error.map(|e| e.code), Some(CloseCode::PROTOCOL_ERROR));
    }

    #[test]
    fn new_message_inside_a_fragmented_one_is_rejected() {
        for opcode in [OpCode::Text, OpCode::Binary] {
            let mut stream = frame(false, 0, OpCode::Binary, b"a");
            stream.extend_from_slice(&frame(true, 0, opcode, b"b"));
            assert_rejected(&mut server(), &stream, CloseCode::PROTOCOL_ERROR);
        }
    }

    #[test]
    fn multibyte_characters_may_straddle_fragments() {
        let text = "€uro😀".as_bytes();
        let mut stream = frame(false, 0, OpCode::Text, &text[..1]);
        stream.extend_from_slice(&frame(false, 0, OpCode::Continuation, &text[1..5]));
        stream.extend_from_slice(&frame(false, 0, OpCode::Continuation, b""));
        stream.extend_from_slice(&frame(true, 0, OpCode::Continuation, &text[5..]));
        let (events, error) = decode_all(&mut server(), &stream);
        assert_eq!(error, None);
        assert_eq!(
            events,
            [message(OpCode::Text, text, &[1, 4, 0, text.len() - 5])]
        );
    }

    #[test]
    fn invalid_text_is_rejected() {
        let single = frame(true, 0, OpCode::Text, b"ok\xC3\x28");
        assert_rejected(&mut server(), &single, CloseCode::INVALID_PAYLOAD);

        // Truncated character at the end of the final fragment.
        let mut truncated = frame(false, 0, OpCode::Text, b"ok");
        truncated.extend_from_slice(&frame(true, 0, OpCode::Continuation, b"\xE2\x82"));
        assert_rejected(&mut server(), &truncated, CloseCode::INVALID_PAYLOAD);
    }

    #[test]
    fn invalid_text_fails_on_the_fragment_that_proves_it() {
        let mut decoder = server();
        let mut buf = BytesMut::from(&frame(false, 0, OpCode::Text, b"fine")[..]);
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        assert!(decoder.in_message());
        // The message is still open, yet this fragment cannot start a valid character.
        buf.extend_from_slice(&frame(false, 0, OpCode::Continuation, b"\x80"));
        let error = decoder.decode(&mut buf).unwrap_err();
        assert_eq!(error.code, CloseCode::INVALID_PAYLOAD);
    }

    #[test]
    fn compressed_text_skips_utf8_validation() {
        let bytes = frame(true, RSV1, OpCode::Text, b"\xFF\x00");
        let (events, error) = decode_all(&mut server(), &bytes);
        assert_eq!(error, None);
        assert!(
            matches!(&events[..], [Event::Message(m)] if m.rsv == RSV1 && m.payload[..] == b"\xFF\x00"[..])
        );
    }

    #[test]
    fn binary_is_not_validated_as_text() {
        let (events, error) = decode_all(&mut server(), &frame(true, 0, OpCode::Binary, b"\xFF"));
        assert_eq!(
            (events, error),
            (vec![message(OpCode::Binary, b"\xFF", &[1])], None)
        );
    }

    #[test]
    fn close_payload_rules() {
        let one_byte = frame(true, 0, OpCode::Close, b"\x03");
        assert_rejected(&mut server(), &one_byte, CloseCode::PROTOCOL_ERROR);
        for code in [0u16, 999, 1004, 1005, 1006, 1015, 2000, 5000] {
            let bytes = frame(true, 0, OpCode::Close, &code.to_be_bytes());
            assert_rejected(&mut server(), &bytes, CloseCode::PROTOCOL_ERROR);
        }
        let bad_reason = frame(true, 0, OpCode::Close, b"\x03\xe8\xC0\xAF");
        assert_rejected(&mut server(), &bad_reason, CloseCode::INVALID_PAYLOAD);

        for payload in [&b""[..], b"\x03\xe8", b"\x0f\xa0going \xE2\x82\xAC"] {
            let (events, error) =
                decode_all(&mut server(), &frame(true, 0, OpCode::Close, payload));
            assert_eq!(
                (events, error),
                (vec![control(OpCode::Close, payload)], None)
            );
        }
    }

    #[test]
    fn empty_messages() {
        let mut stream = frame(true, 0, OpCode::Text, b"");
        stream.extend_from_slice(&frame(false, 0, OpCode::Binary, b""));
        stream.extend_from_slice(&frame(true, 0, OpCode::Continuation, b""));
        let (events, error) = decode_all(&mut server(), &stream);
        assert_eq!(error, None);
        assert_eq!(
            events,
            [
                message(OpCode::Text, b"", &[0]),
                message(OpCode::Binary, b"", &[0, 0])
            ]
        );
    }

    #[test]
    fn one_mebibyte_messages_single_and_fragmented() {
        let text = "ab€😀".repeat(MIB / 9);
        let payload = text.as_bytes();
        let (events, error) = decode_all(&mut server(), &frame(true, 0, OpCode::Text, payload));
        assert_eq!(error, None);
        assert_eq!(events, [message(OpCode::Text, payload, &[payload.len()])]);

        // 64 KiB fragments cut characters apart.
        let mut stream = Vec::new();
        let chunks: Vec<&[u8]> = payload.chunks(1 << 16).collect();
        for (index, chunk) in chunks.iter().enumerate() {
            let opcode = if index == 0 {
                OpCode::Text
            } else {
                OpCode::Continuation
            };
            stream.extend_from_slice(&frame(index + 1 == chunks.len(), 0, opcode, chunk));
        }
        let sizes: Vec<usize> = chunks.iter().map(|c| c.len()).collect();
        let (events, error) = decode_all(&mut server(), &stream);
        assert_eq!(error, None);
        assert_eq!(events, [message(OpCode::Text, payload, &sizes)]);
    }

    #[test]
    fn control_frames_between_fragments_come_out_first() {
        let mut stream = frame(false, 0, OpCode::Text, b"Hel");
        stream.extend_from_slice(&frame(true, 0, OpCode::Ping, b"p1"));
        stream.extend_from_slice(&frame(false, 0, OpCode::Continuation, b"l"));
        stream.extend_from_slice(&frame(true, 0, OpCode::Pong, b""));
        stream.extend_from_slice(&frame(true, 0, OpCode::Continuation, b"o"));
        let mut decoder = server();
        let mut buf = BytesMut::from(&stream[..]);
        assert_eq!(
            decoder.decode(&mut buf),
            Ok(Some(control(OpCode::Ping, b"p1")))
        );
        assert!(decoder.in_message());
        assert_eq!(
            decoder.decode(&mut buf),
            Ok(Some(control(OpCode::Pong, b"")))
        );
        assert_eq!(
            decoder.decode(&mut buf),
            Ok(Some(message(OpCode::Text, b"Hello", &[3, 1, 1])))
        );
        assert!(!decoder.in_message());
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        assert!(buf.is_empty());
    }

    #[test]
    fn single_frame_payload_shares_the_input_buffer() {
        let mut buf = BytesMut::from(&frame(true, 0, OpCode::Binary, &[5; 4096])[..]);
        let input = buf.as_ptr_range();
        let Ok(Some(Event::Message(message))) = server().decode(&mut buf) else {
            panic!("expected a message")
        };
        assert!(input.contains(&message.payload.as_ptr()));
        assert_eq!(message.payload, vec![5; 4096]);
    }

    #[test]
    fn partial_frames_stay_in_the_buffer() {
        let full = frame(true, 0, OpCode::Binary, &[9; 300]);
        for cut in 0..full.len() {
            let mut buf = BytesMut::from(&full[..cut]);
            assert_eq!(server().decode(&mut buf), Ok(None), "cut {cut}");
            assert_eq!(&buf[..], &full[..cut], "cut {cut}");
        }
    }

    #[test]
    fn errors_are_sticky() {
        let mut decoder = server();
        assert_rejected(
            &mut decoder,
            &frame_with_first_byte(0x83, b""),
            CloseCode::PROTOCOL_ERROR,
        );
        let mut valid = BytesMut::from(&frame(true, 0, OpCode::Binary, b"ok")[..]);
        let error = decoder.decode(&mut valid).unwrap_err();
        assert_eq!(error.reason, "reserved opcode");
        assert_eq!(valid.len(), 8, "nothing is consumed after a failure");
    }

    #[test]
    fn every_split_point_gives_the_same_events() {
        let frames = [
            frame(true, 0, OpCode::Text, "héllo".as_bytes()),
            frame(false, 0, OpCode::Binary, &[1; 200]),
            frame(true, 0, OpCode::Ping, b"ping"),
            frame(true, 0, OpCode::Continuation, &[2; 70_000]),
            frame(true, 0, OpCode::Close, b"\x03\xe8bye"),
        ];
        let stream = frames.concat();
        let (expected, error) = decode_all(&mut server(), &stream);
        assert_eq!((expected.len(), error), (4, None));
        // Every split point, except that deep inside the 70 000 byte payload only every 509th is
        // tried: all of them would make the test quadratic in that payload.
        let big_payload_at = frames[..3].iter().map(Vec::len).sum::<usize>() + 14;
        let deep_inside = big_payload_at + 16..big_payload_at + 70_000 - 16;
        let splits = (0..=stream.len()).filter(|at| !deep_inside.contains(at) || at % 509 == 0);
        for split in splits {
            let mut decoder = server();
            let mut buf = BytesMut::from(&stream[..split]);
            let (mut events, error) = decode_buffer(&mut decoder, &mut buf);
            assert_eq!(error, None);
            buf.extend_from_slice(&stream[split..]);
            let (rest, error) = decode_buffer(&mut decoder, &mut buf);
            assert_eq!(error, None);
            events.extend(rest);
            assert_eq!(events, expected, "split at {split}");
            assert!(buf.is_empty());
        }
    }
}
