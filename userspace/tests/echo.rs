//! Messages echoed through the proxy by a well-kept client (tokio-tungstenite): every length
//! encoding boundary, ordering on one connection, and many connections at once.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{connect_async, MaybeTlsStream, WebSocketStream};

use support::proxy::Proxy;
use support::upstream::Upstream;
use support::IO_TIMEOUT;

type Client = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// Payload lengths around each frame length encoding boundary (7-bit, 16-bit, 64-bit).
const SIZES: [usize; 7] = [0, 1, 125, 126, 65535, 65536, 1 << 20];

async fn connect(proxy: &Proxy, path: &str) -> Client {
    let url = format!("ws://{}{path}", proxy.addr);
    let (client, response) = tokio::time::timeout(IO_TIMEOUT, connect_async(url))
        .await
        .expect("WebSocket connect timed out")
        .expect("WebSocket connect");
    assert_eq!(response.status(), 101);
    client
}

/// The next data message, skipping control frames (tungstenite answers pings itself).
async fn next_data(client: &mut Client) -> Message {
    loop {
        let message = tokio::time::timeout(IO_TIMEOUT, client.next())
            .await
            .expect("no message within the timeout")
            .expect("connection ended")
            .expect("read error");
        if message.is_text() || message.is_binary() {
            return message;
        }
        assert!(
            message.is_ping() || message.is_pong(),
            "unexpected {message:?}"
        );
    }
}

async fn start() -> (Upstream, Proxy) {
    let upstream = Upstream::echo().await;
    let proxy = Proxy::start(upstream.addr).await;
    (upstream, proxy)
}

fn text_of_len(len: usize) -> String {
    // Varied ASCII so that a shifted or truncated echo cannot compare equal.
    (0..len)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect()
}

#[tokio::test]
async fn text_and_binary_of_every_length_class_echo_intact() {
    let (upstream, proxy) = start().await;
    let mut client = connect(&proxy, "/ws").await;
    for len in SIZES {
        let text = text_of_len(len);
        client
            .send(Message::text(text.clone()))
            .await
            .expect("send text");
        match next_data(&mut client).await {
            Message::Text(echoed) => {
                assert!(echoed.as_str() == text, "text of {len} bytes changed")
            }
            other => panic!("text of {len} bytes came back as {other:?}"),
        }
        let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        client
            .send(Message::binary(data.clone()))
            .await
            .expect("send binary");
        match next_data(&mut client).await {
            Message::Binary(echoed) => {
                assert!(echoed[..] == data[..], "binary of {len} bytes changed")
            }
            other => panic!("binary of {len} bytes came back as {other:?}"),
        }
    }
    let lengths: Vec<usize> = upstream.messages().iter().map(|(_, p)| p.len()).collect();
    let expected: Vec<usize> = SIZES.iter().flat_map(|&len| [len, len]).collect();
    assert_eq!(
        lengths, expected,
        "the upstream saw other messages than were sent"
    );
    client.close(None).await.expect("close");
}

#[tokio::test]
async fn a_thousand_pipelined_messages_keep_their_order() {
    let (upstream, proxy) = start().await;
    let client = connect(&proxy, "/ws").await;
    let (mut sink, mut stream) = client.split();
    const COUNT: usize = 1000;
    let send_all = async {
        for i in 0..COUNT {
            sink.feed(Message::text(format!("message {i}")))
                .await
                .expect("send");
        }
        sink.flush().await.expect("flush");
    };
    let receive_all = async {
        let mut received = Vec::with_capacity(COUNT);
        while received.len() < COUNT {
            let message = tokio::time::timeout(IO_TIMEOUT, stream.next())
                .await
                .unwrap_or_else(|_| panic!("stalled after {} echoes", received.len()))
                .expect("connection ended")
                .expect("read error");
            if let Message::Text(text) = message {
                received.push(text.as_str().to_owned());
            }
        }
        received
    };
    let ((), received) = tokio::join!(send_all, receive_all);
    let expected: Vec<String> = (0..COUNT).map(|i| format!("message {i}")).collect();
    assert_eq!(received, expected);
    let at_upstream: Vec<Vec<u8>> = upstream.messages().into_iter().map(|(_, p)| p).collect();
    let expected_bytes: Vec<Vec<u8>> = expected.into_iter().map(String::into_bytes).collect();
    assert_eq!(at_upstream, expected_bytes, "upstream order");
}

async fn echo_session(addr: SocketAddr, id: usize) -> Result<(), String> {
    let url = format!("ws://{addr}/ws");
    let (mut client, _) = tokio::time::timeout(IO_TIMEOUT, connect_async(url))
        .await
        .map_err(|_| format!("connection {id}: connect timed out"))?
        .map_err(|e| format!("connection {id}: {e}"))?;
    for n in 0..10 {
        let text = format!("connection {id} message {n}");
        client
            .send(Message::text(text.clone()))
            .await
            .map_err(|e| format!("{id}: send {e}"))?;
        match tokio::time::timeout(IO_TIMEOUT, client.next()).await {
            Ok(Some(Ok(Message::Text(echoed)))) if echoed.as_str() == text => {}
            other => return Err(format!("connection {id} message {n}: got {other:?}")),
        }
    }
    client
        .close(None)
        .await
        .map_err(|e| format!("{id}: close {e}"))
}

#[tokio::test]
async fn a_hundred_concurrent_connections_each_echo_their_own_messages() {
    let (upstream, proxy) = start().await;
    let mut sessions = tokio::task::JoinSet::new();
    for id in 0..100 {
        sessions.spawn(echo_session(proxy.addr, id));
    }
    let all = async {
        let mut failures = Vec::new();
        while let Some(done) = sessions.join_next().await {
            if let Err(failure) = done.expect("session task") {
                failures.push(failure);
            }
        }
        failures
    };
    let failures = tokio::time::timeout(Duration::from_secs(60), all)
        .await
        .expect("sessions stalled");
    assert!(
        failures.is_empty(),
        "{} sessions failed: {failures:#?}",
        failures.len()
    );
    assert_eq!(upstream.messages().len(), 100 * 10);
}
