//! The test peers checked against RFC 6455 examples and a well-kept client, without the proxy:
//! when an end-to-end test fails, the fault is then the proxy's, not the peers'.

mod support;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use support::client::{tcp_connect, RawClient};
use support::frame::{self, parse_frame, FrameSpec, Length, Parsed};
use support::upstream::{Event, Upstream};
use support::{accept_key, IO_TIMEOUT};

#[test]
fn accept_key_matches_the_rfc_example() {
    assert_eq!(
        accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
}

#[test]
fn rfc_example_frames_decode_and_encode() {
    // RFC 6455 5.7: single-frame "Hello", unmasked and masked with 37 fa 21 3d.
    let unmasked = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
    let masked = [
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    for bytes in [&unmasked[..], &masked[..]] {
        let Parsed::Frame(frame, used) = parse_frame(bytes, 125) else {
            panic!("{bytes:x?}")
        };
        assert_eq!(
            (frame.opcode, frame.payload.as_slice(), used),
            (frame::TEXT, &b"Hello"[..], bytes.len())
        );
    }
    assert_eq!(FrameSpec::text("Hello").unmasked().encode(), unmasked);
    let mut with_mask = FrameSpec::text("Hello");
    with_mask.mask = Some([0x37, 0xfa, 0x21, 0x3d]);
    assert_eq!(with_mask.encode(), masked);
}

#[test]
fn every_length_form_round_trips_and_needs_its_last_byte() {
    let forms = [
        (0, Length::Minimal),
        (125, Length::Minimal),
        (126, Length::Minimal),
        (65535, Length::Minimal),
        (65536, Length::Minimal),
        (5, Length::Extended16),
    ];
    let header_lens = [6, 6, 8, 8, 14, 8];
    for ((len, length), header_len) in forms.into_iter().zip(header_lens) {
        let spec = FrameSpec::binary(vec![7u8; len]).length(length);
        let bytes = spec.encode();
        assert_eq!(bytes.len(), header_len + len, "{len} bytes as {length:?}");
        let Parsed::Frame(frame, used) = parse_frame(&bytes, 1 << 20) else {
            panic!("{len}")
        };
        assert_eq!((used, frame.payload), (bytes.len(), spec.payload));
        assert_eq!(
            parse_frame(&bytes[..bytes.len() - 1], 1 << 20),
            Parsed::Incomplete
        );
    }
    let huge = FrameSpec::binary(vec![])
        .length(Length::Declared64(1 << 63))
        .encode();
    assert_eq!(parse_frame(&huge, 1 << 20), Parsed::TooLarge(1 << 63));
}

#[tokio::test]
async fn recording_upstream_echoes_for_tungstenite() {
    let upstream = Upstream::echo().await;
    let url = format!("ws://{}/ws", upstream.addr);
    let (mut client, _) = tokio::time::timeout(IO_TIMEOUT, connect_async(url))
        .await
        .unwrap()
        .expect("connect");
    client.send(Message::text("hi")).await.unwrap();
    assert_eq!(client.next().await.unwrap().unwrap(), Message::text("hi"));
    client
        .send(Message::binary(vec![0u8; 70_000]))
        .await
        .unwrap();
    assert_eq!(
        client.next().await.unwrap().unwrap(),
        Message::binary(vec![0u8; 70_000])
    );
    client.send(Message::Ping("p".into())).await.unwrap();
    assert_eq!(
        client.next().await.unwrap().unwrap(),
        Message::Pong("p".into())
    );
    let close = CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    };
    client
        .send(Message::Close(Some(close.clone())))
        .await
        .unwrap();
    assert_eq!(
        client.next().await.unwrap().unwrap(),
        Message::Close(Some(close))
    );
    drop(client);
    upstream
        .wait_for("EOF", |events| events.iter().any(|(_, e)| *e == Event::Eof))
        .await;
    assert_eq!(
        upstream.messages(),
        [
            (frame::TEXT, b"hi".to_vec()),
            (frame::BINARY, vec![0u8; 70_000])
        ]
    );
    assert_eq!(upstream.close_codes(), [Some(1000)]);
}

#[tokio::test]
async fn raw_client_and_upstream_agree_on_fragments_and_records_keep_malformed_frames() {
    let upstream = Upstream::echo().await;
    let mut client = RawClient::connect(upstream.addr, "/ws").await;
    client.send(&FrameSpec::text("frag").fin(false)).await;
    client.send(&FrameSpec::continuation("mented")).await;
    assert_eq!(
        client.read_message().await,
        (frame::TEXT, b"fragmented".to_vec())
    );
    // Malformed on purpose: the upstream records it instead of judging it.
    client
        .send(&FrameSpec::new(3, "odd").unmasked().rsv(0x40))
        .await;
    client.send(&FrameSpec::close(1000, "")).await;
    client.expect_close(1000).await;
    let frames = upstream.frames();
    assert_eq!(frames.len(), 4, "{frames:?}");
    assert_eq!(
        (frames[2].opcode, frames[2].rsv, frames[2].masked),
        (3, 0x40, false)
    );
}

#[tokio::test]
async fn upstream_answers_plain_requests_with_chunked_keep_alive_bodies() {
    let upstream = Upstream::echo().await;
    let mut conn = tcp_connect(upstream.addr).await;
    for path in ["/a", "/b"] {
        let req = format!("POST {path} HTTP/1.1\r\nHost: u\r\nContent-Length: 3\r\n\r\nabc");
        conn.write_all(req.as_bytes()).await.unwrap();
        let resp = conn.read_response().await.expect("response");
        assert_eq!(resp.header("transfer-encoding"), Some("chunked"));
        assert_eq!(resp.body_text(), format!("POST {path} body=abc"));
    }
    assert_eq!(upstream.requests().len(), 2);
}
