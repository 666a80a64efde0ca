//! Frame-level behaviour through the proxy, driven by the raw client: fragmentation and TCP
//! chunking, every RFC 6455 violation the proxy must refuse (with the right close code and
//! without delivering the offending message), and the closing handshake in both directions.

mod support;

use std::time::Duration;

use support::client::RawClient;
use support::frame::{self, FrameSpec, Length, RSV1};
use support::proxy::Proxy;
use support::upstream::{Behavior, Event, Upstream};

async fn session(path: &str) -> (Upstream, Proxy, RawClient) {
    let upstream = Upstream::echo().await;
    let proxy = Proxy::start(upstream.addr).await;
    let client = RawClient::connect(proxy.addr, path).await;
    (upstream, proxy, client)
}

/// `message` as text fragments cut at the byte offsets `cuts` (which may split characters).
fn fragments(message: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut bounds = vec![0];
    bounds.extend_from_slice(cuts);
    bounds.push(message.len());
    let pieces: Vec<&[u8]> = bounds.windows(2).map(|w| &message[w[0]..w[1]]).collect();
    frame::text_fragments(&pieces, 0, 0)
}

/// Characters of 1, 2, 3 and 4 UTF-8 bytes, so cuts land inside each kind.
const MIXED_TEXT: &str = "añ€𝄞 fragmented ✓";

#[tokio::test]
async fn text_cut_into_two_fragments_at_every_byte_arrives_whole() {
    let (upstream, _proxy, mut client) = session("/ws").await;
    let message = MIXED_TEXT.as_bytes();
    for cut in 1..message.len() {
        client
            .send_raw(&fragments(message, &[cut]))
            .await
            .expect("send");
        let (opcode, payload) = client.read_message().await;
        assert_eq!(
            (opcode, payload.as_slice()),
            (frame::TEXT, message),
            "cut at byte {cut}"
        );
    }
    let at_upstream = upstream.messages();
    assert_eq!(at_upstream.len(), message.len() - 1);
    assert!(
        at_upstream
            .iter()
            .all(|(op, p)| *op == frame::TEXT && p == message),
        "{at_upstream:?}"
    );
}

#[tokio::test]
async fn text_in_two_to_n_fragments_including_empty_ones_arrives_whole() {
    let (upstream, _proxy, mut client) = session("/ws").await;
    let message = MIXED_TEXT.as_bytes();
    let mut sent = 0;
    for count in 2..=message.len() {
        let cuts: Vec<usize> = (1..count).map(|i| i * message.len() / count).collect();
        client
            .send_raw(&fragments(message, &cuts))
            .await
            .expect("send");
        assert_eq!(
            client.read_message().await,
            (frame::TEXT, message.to_vec()),
            "{count} fragments"
        );
        sent += 1;
    }
    // Empty fragments first, in the middle and last are legal.
    client
        .send_raw(&fragments(message, &[0, 3, 3, message.len()]))
        .await
        .expect("send");
    assert_eq!(
        client.read_message().await,
        (frame::TEXT, message.to_vec()),
        "with empty fragments"
    );
    sent += 1;
    assert_eq!(upstream.messages().len(), sent);
}

#[tokio::test]
async fn pings_between_fragments_are_answered_in_order() {
    let (upstream, _proxy, mut client) = session("/ws").await;
    client.send(&FrameSpec::text("Hel").fin(false)).await;
    client.send(&FrameSpec::ping("p1")).await;
    client
        .send(&FrameSpec::continuation("lo ").fin(false))
        .await;
    client.send(&FrameSpec::ping("p2")).await;
    client.send(&FrameSpec::continuation("world")).await;
    for expected in ["p1", "p2"] {
        let pong = client.read_frame().await;
        assert_eq!(
            (pong.opcode, pong.payload.as_slice()),
            (frame::PONG, expected.as_bytes())
        );
    }
    assert_eq!(
        client.read_message().await,
        (frame::TEXT, b"Hello world".to_vec())
    );

    let events = upstream.events();
    let position = |wanted: &dyn Fn(&Event) -> bool| events.iter().position(|(_, e)| wanted(e));
    let ping = |payload: &'static [u8]| move |e: &Event| matches!(e, Event::Frame(f) if f.opcode == frame::PING && f.payload == payload);
    let p1 = position(&ping(b"p1")).expect("ping p1 forwarded");
    let p2 = position(&ping(b"p2")).expect("ping p2 forwarded");
    let message =
        position(&|e| matches!(e, Event::Message { payload, .. } if payload == b"Hello world"))
            .expect("message forwarded");
    assert!(p1 < p2 && p2 < message, "upstream order: {events:#?}");
}

#[tokio::test]
async fn a_two_frame_stream_split_at_every_byte_still_echoes() {
    let (_upstream, _proxy, mut client) = session("/ws").await;
    let stream = [
        FrameSpec::text("split-at-every").fin(false).encode(),
        FrameSpec::continuation("-byte-position").encode(),
    ]
    .concat();
    assert_eq!(stream.len(), 40);
    for split in 1..stream.len() {
        client.send_raw(&stream[..split]).await.expect("first part");
        tokio::time::sleep(Duration::from_millis(5)).await;
        client
            .send_raw(&stream[split..])
            .await
            .expect("second part");
        let echoed = client.read_message().await;
        assert_eq!(
            echoed,
            (frame::TEXT, b"split-at-every-byte-position".to_vec()),
            "split at {split}"
        );
    }
}

#[tokio::test]
async fn one_byte_per_write_still_echoes() {
    let (_upstream, _proxy, mut client) = session("/ws").await;
    // A 16-bit length frame, then a fragmented message with a ping inside.
    let binary: Vec<u8> = (0..300u16).map(|i| (i % 256) as u8).collect();
    client
        .send_chunked(
            &FrameSpec::binary(binary.clone()).encode(),
            1,
            Duration::ZERO,
        )
        .await
        .expect("send");
    assert_eq!(client.read_message().await, (frame::BINARY, binary));
    let stream = [
        FrameSpec::text("one ").fin(false).encode(),
        FrameSpec::ping("mid").encode(),
        FrameSpec::continuation("byte").encode(),
    ]
    .concat();
    client
        .send_chunked(&stream, 1, Duration::ZERO)
        .await
        .expect("send");
    let pong = client.read_frame().await;
    assert_eq!(
        (pong.opcode, pong.payload.as_slice()),
        (frame::PONG, &b"mid"[..])
    );
    assert_eq!(
        client.read_message().await,
        (frame::TEXT, b"one byte".to_vec())
    );
}

/// After a valid warm-up message has been echoed (so the connection demonstrably works), send
/// `offending`: the proxy must close the client with `code`, and the upstream must receive
/// nothing but the warm-up and, at most, Close frames other than the offending ones.
async fn assert_refused(path: &str, warm_up: FrameSpec, offending: &[FrameSpec], code: u16) {
    let (upstream, proxy, mut client) = session(path).await;
    client.send(&warm_up).await;
    assert_eq!(
        client.read_message().await,
        (warm_up.opcode, warm_up.payload.clone()),
        "warm-up echo"
    );
    let bytes: Vec<u8> = offending.iter().flat_map(FrameSpec::encode).collect();
    client.send_offending(&bytes).await;
    client.expect_close(code).await;
    upstream.wait_for_close_or_eof().await;

    let frames = upstream.frames();
    assert_eq!(
        frames.first().map(|f| &f.payload),
        Some(&warm_up.payload),
        "warm-up at upstream"
    );
    for delivered in &frames[1..] {
        let is_offending = offending
            .iter()
            .any(|o| o.opcode == delivered.opcode && o.payload == delivered.payload);
        assert!(
            delivered.opcode == frame::CLOSE && !is_offending,
            "the upstream received {delivered:?} after the warm-up (offending frames: {offending:?})"
        );
    }
    assert_eq!(
        upstream.messages().len(),
        1,
        "only the warm-up is a message at the upstream"
    );
    drop(proxy);
}

#[tokio::test]
async fn a_valid_message_sharing_a_write_with_a_violation_is_delivered_alone() {
    let (upstream, _proxy, mut client) = session("/ws").await;
    let bytes = [
        FrameSpec::text("valid, same write").encode(),
        FrameSpec::new(3, "reserved").encode(),
    ];
    client.send_offending(&bytes.concat()).await;
    // The echo of the valid message may lose the race with the Close; only the code matters.
    assert_eq!(client.read_until_close().await.1, Some(PROTOCOL_ERROR));
    upstream.wait_for_close_or_eof().await;
    assert_eq!(
        upstream.messages(),
        [(frame::TEXT, b"valid, same write".to_vec())]
    );
    assert!(
        upstream.frames().iter().all(|f| f.opcode != 3),
        "{:?}",
        upstream.frames()
    );
}

#[tokio::test]
async fn frames_after_the_clients_close_are_not_forwarded() {
    let (upstream, _proxy, mut client) = session("/ws").await;
    let bytes = [
        FrameSpec::close(1000, "done").encode(),
        FrameSpec::text("after close").encode(),
    ];
    client.send_offending(&bytes.concat()).await;
    assert_eq!(client.read_close().await, Some(1000));
    // The upstream reads on after the Close until the proxy ends the TCP connection.
    upstream
        .wait_for("EOF", |events| events.iter().any(|(_, e)| *e == Event::Eof))
        .await;
    let frames = upstream.frames();
    assert!(
        frames.iter().all(|f| f.payload != b"after close"),
        "forwarded after the Close: {frames:?}"
    );
    assert_eq!(upstream.close_codes(), [Some(1000)]);
}

fn warm_up() -> FrameSpec {
    FrameSpec::text("warm-up")
}

const PROTOCOL_ERROR: u16 = 1002;
const INVALID_PAYLOAD: u16 = 1007;
const MESSAGE_TOO_BIG: u16 = 1009;

#[tokio::test]
async fn unmasked_client_frame_is_refused_with_1002() {
    assert_refused(
        "/ws",
        warm_up(),
        &[FrameSpec::text("unmasked").unmasked()],
        PROTOCOL_ERROR,
    )
    .await;
}

#[tokio::test]
async fn rsv1_without_a_negotiated_extension_is_refused_with_1002() {
    assert_refused(
        "/ws",
        warm_up(),
        &[FrameSpec::text("rsv1").rsv(RSV1)],
        PROTOCOL_ERROR,
    )
    .await;
}

#[tokio::test]
async fn reserved_opcode_3_is_refused_with_1002() {
    assert_refused(
        "/ws",
        warm_up(),
        &[FrameSpec::new(3, "reserved")],
        PROTOCOL_ERROR,
    )
    .await;
}

#[tokio::test]
async fn fragmented_ping_is_refused_with_1002() {
    assert_refused(
        "/ws",
        warm_up(),
        &[FrameSpec::ping("fragmented").fin(false)],
        PROTOCOL_ERROR,
    )
    .await;
}

#[tokio::test]
async fn ping_with_126_byte_payload_is_refused_with_1002() {
    assert_refused(
        "/ws",
        warm_up(),
        &[FrameSpec::ping(vec![b'p'; 126])],
        PROTOCOL_ERROR,
    )
    .await;
}

#[tokio::test]
async fn continuation_without_a_start_is_refused_with_1002() {
    assert_refused(
        "/ws",
        warm_up(),
        &[FrameSpec::continuation("orphan")],
        PROTOCOL_ERROR,
    )
    .await;
}

#[tokio::test]
async fn new_text_inside_a_fragmented_message_is_refused_with_1002() {
    let offending = [
        FrameSpec::text("first").fin(false),
        FrameSpec::text("second"),
    ];
    assert_refused("/ws", warm_up(), &offending, PROTOCOL_ERROR).await;
}

#[tokio::test]
async fn non_minimal_16_bit_length_is_refused_with_1002() {
    let offending = FrameSpec::text("short").length(Length::Extended16);
    assert_refused("/ws", warm_up(), &[offending], PROTOCOL_ERROR).await;
}

#[tokio::test]
async fn length_with_the_64_bit_top_bit_set_is_refused_with_1002() {
    let offending = FrameSpec::binary(vec![]).length(Length::Declared64(1 << 63 | 5));
    assert_refused("/ws", warm_up(), &[offending], PROTOCOL_ERROR).await;
}

#[tokio::test]
async fn invalid_utf8_text_is_refused_with_1007() {
    let offending = FrameSpec::new(frame::TEXT, b"bad \xC3\x28 text".to_vec());
    assert_refused("/ws", warm_up(), &[offending], INVALID_PAYLOAD).await;
}

#[tokio::test]
async fn text_ending_inside_a_character_is_refused_with_1007() {
    // "€" is E2 82 AC: the message ends after two of its three bytes.
    let offending = FrameSpec::new(frame::TEXT, b"price 5\xE2\x82".to_vec());
    assert_refused("/ws", warm_up(), &[offending], INVALID_PAYLOAD).await;
}

#[tokio::test]
async fn invalid_utf8_in_a_later_fragment_is_refused_with_1007_and_the_valid_first_is_not_delivered(
) {
    let offending = [
        FrameSpec::text("a valid first fragment ").fin(false),
        FrameSpec::continuation(b"then \xFF\xFE".to_vec()),
    ];
    assert_refused("/ws", warm_up(), &offending, INVALID_PAYLOAD).await;
}

/// Below the 64KB limit of /ws-small whether KB means 1000 or 1024 bytes.
fn near_limit_warm_up() -> FrameSpec {
    FrameSpec::binary(vec![b'w'; 60_000])
}

#[tokio::test]
async fn single_frame_above_max_message_size_is_refused_with_1009() {
    let offending = FrameSpec::binary(vec![b'x'; 100_000]);
    assert_refused(
        "/ws-small",
        near_limit_warm_up(),
        &[offending],
        MESSAGE_TOO_BIG,
    )
    .await;
}

#[tokio::test]
async fn fragments_adding_up_above_max_message_size_are_refused_with_1009() {
    let offending = [
        FrameSpec::binary(vec![b'1'; 25_000]).fin(false),
        FrameSpec::continuation(vec![b'2'; 25_000]).fin(false),
        FrameSpec::continuation(vec![b'3'; 25_000]).fin(false),
        FrameSpec::continuation(vec![b'4'; 25_000]),
    ];
    assert_refused(
        "/ws-small",
        near_limit_warm_up(),
        &offending,
        MESSAGE_TOO_BIG,
    )
    .await;
}

#[tokio::test]
async fn message_of_exactly_max_message_size_passes_and_one_byte_more_is_refused_with_1009() {
    // 64KB is 65536 bytes (the config documents 1KB = 1024 bytes).
    let at_limit = FrameSpec::binary(vec![b'a'; 65536]);
    let over = FrameSpec::binary(vec![b'b'; 65537]);
    assert_refused("/ws-small", at_limit, &[over], MESSAGE_TOO_BIG).await;
}

#[tokio::test]
async fn message_of_too_many_empty_fragments_is_refused_with_1009() {
    // Empty fragments never reach the byte limit; their count must be bounded too.
    let mut offending = vec![FrameSpec::text("").fin(false)];
    offending.extend((0..20_000).map(|_| FrameSpec::continuation("").fin(false)));
    assert_refused("/ws-small", warm_up(), &offending, MESSAGE_TOO_BIG).await;
}

#[tokio::test]
async fn close_with_a_reason_that_is_not_utf8_is_refused_with_1007() {
    let mut payload = 1000u16.to_be_bytes().to_vec();
    payload.extend_from_slice(b"bye \xC0\xAF");
    let offending = FrameSpec::new(frame::CLOSE, payload);
    assert_refused("/ws", warm_up(), &[offending], INVALID_PAYLOAD).await;
}

#[tokio::test]
async fn close_longer_than_125_bytes_is_refused_with_1002() {
    let offending = FrameSpec::close(1000, &"r".repeat(124));
    assert_refused("/ws", warm_up(), &[offending], PROTOCOL_ERROR).await;
}

#[tokio::test]
async fn close_with_a_one_byte_payload_is_refused_with_1002() {
    assert_refused(
        "/ws",
        warm_up(),
        &[FrameSpec::new(frame::CLOSE, vec![0x03])],
        PROTOCOL_ERROR,
    )
    .await;
}

#[tokio::test]
async fn close_with_code_1005_is_refused_with_1002() {
    assert_refused(
        "/ws",
        warm_up(),
        &[FrameSpec::close(1005, "")],
        PROTOCOL_ERROR,
    )
    .await;
}

#[tokio::test]
async fn close_with_code_999_is_refused_with_1002() {
    assert_refused(
        "/ws",
        warm_up(),
        &[FrameSpec::close(999, "")],
        PROTOCOL_ERROR,
    )
    .await;
}

#[tokio::test]
async fn client_close_reaches_the_upstream_and_its_reply_the_client() {
    let (upstream, _proxy, mut client) = session("/ws").await;
    client.send(&FrameSpec::text("before closing")).await;
    client.read_message().await;
    client.send(&FrameSpec::close(1000, "bye")).await;
    assert_eq!(client.read_close().await, Some(1000), "close reply");
    upstream
        .wait_for("the client's Close 1000", |events| {
            events
                .iter()
                .any(|(_, e)| matches!(e, Event::Frame(f) if f.close_code() == Some(1000)))
        })
        .await;
    // The server side ends the TCP connection after the closing handshake.
    client
        .read_until_eof(Duration::from_secs(5))
        .await
        .expect("proxy closes TCP after the handshake");
}

#[tokio::test]
async fn upstream_close_is_forwarded_to_the_client() {
    let after_101 = [
        FrameSpec::text("about to close").unmasked().encode(),
        FrameSpec::close(4000, "upstream done").unmasked().encode(),
    ]
    .concat();
    let upstream = Upstream::start(Behavior {
        after_101,
        ..Behavior::default()
    })
    .await;
    let proxy = Proxy::start(upstream.addr).await;
    let mut client = RawClient::connect(proxy.addr, "/ws").await;
    assert_eq!(
        client.read_message().await,
        (frame::TEXT, b"about to close".to_vec())
    );
    client.expect_close(4000).await;
    client.send(&FrameSpec::close(4000, "")).await;
    upstream
        .wait_for("the client's Close reply", |events| {
            events
                .iter()
                .any(|(_, e)| matches!(e, Event::Frame(f) if f.close_code() == Some(4000)))
        })
        .await;
    client
        .read_until_eof(Duration::from_secs(5))
        .await
        .expect("proxy closes TCP after the handshake");
}

/// The upstream sends a valid message, then `bad`: the client must get the valid one, then a
/// Close 1014 (bad gateway), and never the bad frame's payload.
async fn assert_upstream_frame_refused(bad: FrameSpec) {
    let after_101 = [
        FrameSpec::text("valid first").unmasked().encode(),
        bad.encode(),
    ]
    .concat();
    let upstream = Upstream::start(Behavior {
        after_101,
        ..Behavior::default()
    })
    .await;
    let proxy = Proxy::start(upstream.addr).await;
    let mut client = RawClient::connect(proxy.addr, "/ws").await;
    assert_eq!(
        client.read_message().await,
        (frame::TEXT, b"valid first".to_vec())
    );
    let (before, code) = client.read_until_close().await;
    assert!(
        before.iter().all(|f| f.payload != bad.payload),
        "the bad frame reached the client: {before:?}"
    );
    assert_eq!(code, Some(1014), "close code for an upstream violation");
}

#[tokio::test]
async fn masked_frame_from_the_upstream_is_not_delivered() {
    assert_upstream_frame_refused(FrameSpec::text("masked by the server")).await;
}

#[tokio::test]
async fn invalid_utf8_from_the_upstream_is_not_delivered() {
    assert_upstream_frame_refused(FrameSpec::new(frame::TEXT, b"bad \xFF\xFE".to_vec()).unmasked())
        .await;
}

#[tokio::test]
async fn rsv1_from_the_upstream_without_an_extension_is_not_delivered() {
    assert_upstream_frame_refused(FrameSpec::text("compressed?").unmasked().rsv(RSV1)).await;
}

#[tokio::test]
async fn client_vanishing_without_a_close_ends_the_upstream_connection() {
    let (upstream, _proxy, mut client) = session("/ws").await;
    client.send(&FrameSpec::text("then gone")).await;
    client.read_message().await;
    drop(client);
    upstream
        .wait_for("the upstream connection end", |events| {
            events.iter().any(|(_, e)| *e == Event::Eof)
        })
        .await;
    let codes = upstream.close_codes();
    assert!(
        codes.iter().all(|&code| code == Some(1001)),
        "a Close for a vanished client is 1001: {codes:?}"
    );
}

/// A client whose upstream hangs up after one message, with that message already read.
async fn orphaned_client() -> (Upstream, Proxy, RawClient) {
    let after_101 = FrameSpec::text("then gone").unmasked().encode();
    let behavior = Behavior {
        after_101,
        hang_up_after_101: true,
        ..Behavior::default()
    };
    let upstream = Upstream::start(behavior).await;
    let proxy = Proxy::start(upstream.addr).await;
    let mut client = RawClient::connect(proxy.addr, "/ws").await;
    assert_eq!(
        client.read_message().await,
        (frame::TEXT, b"then gone".to_vec())
    );
    (upstream, proxy, client)
}

#[tokio::test]
async fn upstream_vanishing_without_a_close_closes_the_client() {
    let (_upstream, _proxy, mut client) = orphaned_client().await;
    let code = client.read_close().await;
    assert!(
        code.is_some_and(|code| code != 1000),
        "a lost upstream is not a normal close: {code:?}"
    );
    client.send(&FrameSpec::close(1000, "")).await;
    client
        .read_until_eof(Duration::from_secs(5))
        .await
        .expect("proxy closes TCP after the reply");
}

#[tokio::test]
async fn client_that_never_answers_the_close_is_dropped_after_a_bounded_wait() {
    let (_upstream, _proxy, mut client) = orphaned_client().await;
    client.read_close().await;
    let started = std::time::Instant::now();
    let end = client.read_until_eof(Duration::from_secs(20)).await;
    assert!(
        end.is_ok(),
        "the proxy kept a silent client open for {:?}",
        started.elapsed()
    );
}
