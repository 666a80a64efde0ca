//! Properties of whole streams: random frames encoded, cut into random chunks and decoded.

use bytes::{Bytes, BytesMut};
use frameguard_codec::{
    close_payload, encode_control, encode_frame, encode_message, CloseCode, Control, Decoder,
    DecoderConfig, Event, Message, OpCode, ProtocolError, Role, RSV1,
};
use proptest::prelude::*;

/// A message as sent, with an optional control frame after each fragment but the last.
#[derive(Clone, Debug)]
struct SentMessage {
    message: Message,
    interleaved: Vec<Option<Control>>,
}

#[derive(Clone, Debug)]
enum Sent {
    Control(Control),
    Message(SentMessage),
}

fn control() -> impl Strategy<Value = Control> {
    let close_code = prop_oneof![1000u16..=1003, 1007u16..=1014, 3000u16..=4999];
    prop_oneof![
        (
            prop::sample::select(vec![OpCode::Ping, OpCode::Pong]),
            prop::collection::vec(any::<u8>(), 0..=125)
        )
            .prop_map(|(opcode, payload)| Control {
                opcode,
                payload: payload.into()
            }),
        (close_code, "\\PC{0,40}").prop_map(|(code, reason)| Control {
            opcode: OpCode::Close,
            payload: close_payload(CloseCode(code), &reason),
        }),
        Just(Control {
            opcode: OpCode::Close,
            payload: Bytes::new()
        }),
    ]
}

/// Mostly short payloads, sometimes long enough for 16-bit and 64-bit lengths.
fn payload_len() -> impl Strategy<Value = usize> {
    prop_oneof![8 => 0usize..200, 2 => 200usize..1000, 1 => 65_536usize..70_000]
}

fn message() -> impl Strategy<Value = SentMessage> {
    let text = payload_len().prop_flat_map(|len| {
        prop::collection::vec(any::<char>(), len / 3).prop_map(|chars| {
            (
                OpCode::Text,
                0,
                chars.into_iter().collect::<String>().into_bytes(),
            )
        })
    });
    let opaque = (
        prop::sample::select(vec![
            (OpCode::Binary, 0),
            (OpCode::Binary, RSV1),
            (OpCode::Text, RSV1),
        ]),
        payload_len().prop_flat_map(|len| prop::collection::vec(any::<u8>(), len)),
    )
        .prop_map(|((opcode, rsv), payload)| (opcode, rsv, payload));
    let cuts = prop::collection::vec(any::<prop::sample::Index>(), 0..5);
    let interleaved = prop::collection::vec(prop::option::weighted(0.3, control()), 5);
    (prop_oneof![text, opaque], cuts, interleaved).prop_map(
        |((opcode, rsv, payload), cuts, mut interleaved)| {
            // Cuts at arbitrary byte positions, so characters straddle fragments.
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(payload.len() + 1)).collect();
            cuts.sort_unstable();
            let mut fragments = Vec::new();
            let mut start = 0;
            for cut in cuts.into_iter().chain([payload.len()]) {
                fragments.push(cut - start);
                start = cut;
            }
            interleaved.truncate(fragments.len() - 1);
            SentMessage {
                message: Message {
                    opcode,
                    rsv,
                    payload: payload.into(),
                    fragments: fragments.into(),
                },
                interleaved,
            }
        },
    )
}

fn sent_items() -> impl Strategy<Value = Vec<Sent>> {
    prop::collection::vec(
        prop_oneof![1 => control().prop_map(Sent::Control), 3 => message().prop_map(Sent::Message)],
        0..8,
    )
}

/// Mask keys for client frames, none for server frames.
fn key_source(role: Role, seed: u32) -> impl FnMut() -> Option<[u8; 4]> {
    let mut state = seed;
    move || {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (role == Role::Server).then_some(state.to_be_bytes())
    }
}

/// The wire bytes of `items` and the events decoding them must give.
fn encode(items: &[Sent], role: Role, seed: u32) -> (Vec<u8>, Vec<Event>) {
    let mut next_key = key_source(role, seed);
    let mut wire = BytesMut::new();
    let mut events = Vec::new();
    for item in items {
        match item {
            Sent::Control(control) => {
                encode_control(&mut wire, control, next_key());
                events.push(Event::Control(control.clone()));
            }
            Sent::Message(sent) if sent.interleaved.iter().all(Option::is_none) => {
                let before = wire.len();
                encode_message(&mut wire, &sent.message, &mut next_key);
                let event = Event::Message(sent.message.clone());
                assert!(wire.len() - before <= event.encoded_len_bound());
                events.push(event);
            }
            Sent::Message(sent) => {
                let message = &sent.message;
                let mut start = 0;
                for (index, &len) in message.fragments.iter().enumerate() {
                    let (opcode, rsv) = if index == 0 {
                        (message.opcode, message.rsv)
                    } else {
                        (OpCode::Continuation, 0)
                    };
                    let fin = index + 1 == message.fragments.len();
                    let chunk = &message.payload[start..start + len];
                    encode_frame(&mut wire, fin, rsv, opcode, next_key(), chunk);
                    start += len;
                    if let Some(Some(control)) = sent.interleaved.get(index) {
                        encode_control(&mut wire, control, next_key());
                        events.push(Event::Control(control.clone()));
                    }
                }
                events.push(Event::Message(message.clone()));
            }
        }
    }
    (wire.to_vec(), events)
}

fn config(role: Role, allowed_rsv: u8, max_message_size: usize) -> DecoderConfig {
    DecoderConfig {
        role,
        allowed_rsv,
        max_message_size,
    }
}

/// Everything decoding gives: the events, then the error or the bytes left waiting for more.
#[derive(Debug, PartialEq)]
struct Outcome {
    events: Vec<Event>,
    error: Option<ProtocolError>,
    left_over: usize,
}

/// Feeds `stream` in pieces cut at `cuts` (sorted), decoding all it can after each piece.
fn decode_chunked(config: DecoderConfig, stream: &[u8], cuts: &[usize]) -> Outcome {
    let mut decoder = Decoder::new(config);
    let mut buf = BytesMut::new();
    let mut events = Vec::new();
    let mut start = 0;
    for end in cuts.iter().copied().chain([stream.len()]) {
        buf.extend_from_slice(&stream[start..end]);
        start = end;
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(event)) => events.push(event),
                Ok(None) => break,
                Err(error) => {
                    return Outcome {
                        events,
                        error: Some(error),
                        left_over: 0,
                    }
                }
            }
        }
    }
    Outcome {
        events,
        error: None,
        left_over: buf.len(),
    }
}

fn sorted_cuts(cuts: &[prop::sample::Index], len: usize) -> Vec<usize> {
    let mut cuts: Vec<usize> = cuts.iter().map(|cut| cut.index(len + 1)).collect();
    cuts.sort_unstable();
    cuts
}

fn any_role() -> impl Strategy<Value = Role> {
    prop::sample::select(vec![Role::Server, Role::Client])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn encoded_streams_decode_to_what_was_sent_however_they_are_cut(
        items in sent_items(),
        role in any_role(),
        seed in any::<u32>(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..24),
    ) {
        let (wire, expected) = encode(&items, role, seed);
        let config = config(role, RSV1, 1 << 20);
        let whole = decode_chunked(config, &wire, &[]);
        prop_assert_eq!(&whole, &Outcome { events: expected, error: None, left_over: 0 });
        let chunked = decode_chunked(config, &wire, &sorted_cuts(&cuts, wire.len()));
        prop_assert_eq!(chunked, whole);
    }

    #[test]
    fn decoded_messages_re_encode_to_the_same_bytes(
        items in sent_items(),
        role in any_role(),
        seed in any::<u32>(),
    ) {
        // Without interleaved control frames the wire order equals the event order.
        let items: Vec<Sent> = items
            .into_iter()
            .map(|item| match item {
                Sent::Message(sent) => Sent::Message(SentMessage { interleaved: Vec::new(), ..sent }),
                control => control,
            })
            .collect();
        let (wire, _) = encode(&items, role, seed);
        let outcome = decode_chunked(config(role, RSV1, 1 << 20), &wire, &[]);
        prop_assert_eq!(outcome.error, None);
        let mut next_key = key_source(role, seed);
        let mut re_encoded = BytesMut::new();
        for event in &outcome.events {
            match event {
                Event::Control(control) => encode_control(&mut re_encoded, control, next_key()),
                Event::Message(message) => encode_message(&mut re_encoded, message, &mut next_key),
            }
        }
        prop_assert_eq!(&re_encoded[..], &wire[..]);
    }

    /// Arbitrary and corrupted input never panics, and where it is cut changes nothing: the same
    /// events come out, then the same error.
    #[test]
    fn damaged_streams_fail_the_same_way_however_they_are_cut(
        items in sent_items(),
        role in any_role(),
        seed in any::<u32>(),
        damage in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        noise in prop::collection::vec(any::<u8>(), 0..64),
        allowed_rsv in 0u8..8,
        max_message_size in prop_oneof![0usize..300, Just(1usize << 20)],
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..24),
    ) {
        let (mut wire, _) = encode(&items, role, seed);
        if !wire.is_empty() {
            for (at, byte) in &damage {
                let at = at.index(wire.len());
                wire[at] = *byte;
            }
        }
        wire.extend_from_slice(&noise);
        let config = config(role, allowed_rsv, max_message_size);
        let whole = decode_chunked(config, &wire, &[]);
        let chunked = decode_chunked(config, &wire, &sorted_cuts(&cuts, wire.len()));
        prop_assert_eq!(chunked, whole);
    }
}

#[test]
fn every_split_point_of_a_mixed_stream() {
    let interleaved_ping = Control {
        opcode: OpCode::Ping,
        payload: Bytes::from_static(b"are you there"),
    };
    let items = [
        Sent::Message(SentMessage {
            message: Message {
                opcode: OpCode::Text,
                rsv: 0,
                payload: Bytes::from("größer € 😀".repeat(20)),
                fragments: vec![1, 7, 100, 0, 232].into(),
            },
            interleaved: vec![None, Some(interleaved_ping), None, None],
        }),
        Sent::Control(Control {
            opcode: OpCode::Pong,
            payload: Bytes::new(),
        }),
        Sent::Message(SentMessage {
            message: Message {
                opcode: OpCode::Binary,
                rsv: RSV1,
                payload: Bytes::from(vec![0xA5; 300]),
                fragments: vec![300].into(),
            },
            interleaved: Vec::new(),
        }),
        Sent::Control(Control {
            opcode: OpCode::Close,
            payload: close_payload(CloseCode::GOING_AWAY, "restart"),
        }),
    ];
    for role in [Role::Server, Role::Client] {
        let (wire, expected) = encode(&items, role, 7);
        let config = config(role, RSV1, 1 << 20);
        let expected = Outcome {
            events: expected,
            error: None,
            left_over: 0,
        };
        for split in 0..=wire.len() {
            assert_eq!(
                decode_chunked(config, &wire, &[split]),
                expected,
                "split at {split}"
            );
        }
    }
}
