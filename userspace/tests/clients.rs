//! Real clients of other ecosystems through the proxy: python `websockets` and node `ws` echo
//! 100 text and binary messages (with and without permessage-deflate) and are closed with 1008
//! on an XSS message the upstream never sees; a socket.io chat (node server as the upstream,
//! socket.io-client over the WebSocket transport, and over HTTP long-polling) drops the
//! attacker as in the Wallarm article.
//! The scripts live in tests/js and tests/py; `.ci/run` installs node, npm and pip packages.

mod support;

use std::time::Duration;

use support::proxy::Proxy;
use support::script::{self, Background};
use support::upstream::{Behavior, Upstream};

const XSS_REASON: &str = "Policy violation: XSS detected";
/// Bound of one client script run (100 round trips take well under a second).
const SCRIPT_LIMIT: Duration = Duration::from_secs(60);

/// Run `client` against `/ws-chat` (the default policy: text inspected, binary not) in front
/// of an echo upstream that accepts permessage-deflate when `deflate`; the client must have
/// echoed its 100 messages and been closed with 1008 for the XSS one, which the upstream never
/// received.
async fn echo_then_xss(client: fn(&str) -> tokio::process::Command, deflate: bool) {
    let upstream = Upstream::start(Behavior {
        accept_deflate: deflate,
        ..Behavior::default()
    })
    .await;
    let proxy = Proxy::start_inspected(upstream.addr, None).await;
    let url = format!("ws://{}/ws-chat", proxy.addr);
    let output = script::run(client(&url), SCRIPT_LIMIT).await;
    let result = script::json_result(&output);
    assert_eq!(result["echoed"], 100, "{result}");
    assert_eq!(result["deflate"], deflate, "{result}");
    assert_eq!(result["close_code"], 1008, "{result}");
    assert_eq!(result["close_reason"], XSS_REASON, "{result}");
    upstream.wait_for_close_or_eof().await;
    assert_eq!(
        upstream.messages().len(),
        100,
        "only the echoed messages arrived"
    );
    assert_eq!(upstream.close_codes(), [Some(1001)]);
}

fn python_client(url: &str) -> tokio::process::Command {
    let mut command = script::python("websockets_client.py");
    command.arg(url);
    command
}

fn node_ws_client(url: &str) -> tokio::process::Command {
    let mut command = script::node("ws_client.js");
    command.arg(url);
    command
}

#[tokio::test]
async fn python_websockets_echoes_and_is_closed_1008_on_xss() {
    echo_then_xss(python_client, false).await;
}

#[tokio::test]
async fn python_websockets_with_permessage_deflate_echoes_and_is_closed_1008_on_xss() {
    echo_then_xss(python_client, true).await;
}

#[tokio::test]
async fn node_ws_echoes_and_is_closed_1008_on_xss() {
    echo_then_xss(node_ws_client, false).await;
}

#[tokio::test]
async fn node_ws_with_permessage_deflate_echoes_and_is_closed_1008_on_xss() {
    echo_then_xss(node_ws_client, true).await;
}

/// The Wallarm scenario over one socket.io transport: the chat echoes a benign message, then
/// an XSS one disconnects the client (`reason`, WebSocket close `close_code`) and the server,
/// which sees the disconnection, never receives it.
async fn socket_io_chat(transport: &str, reason: &str, close_code: serde_json::Value) {
    let mut server = Background::spawn(script::node("socketio_server.js"));
    let port = server
        .wait_for("its port", |line| line["port"].is_u64())
        .await["port"]
        .as_u64()
        .expect("a port");
    let upstream = std::net::SocketAddr::from(([127, 0, 0, 1], port as u16));
    let proxy = Proxy::start_inspected(upstream, None).await;

    let mut client = script::node("socketio_client.js");
    client.arg(format!("http://{}", proxy.addr)).arg(transport);
    let result = script::json_result(&script::run(client, SCRIPT_LIMIT).await);
    assert_eq!(result["echoed"], "hello everyone, how are you?", "{result}");
    assert_eq!(result["disconnect_reason"], reason, "{result}");
    assert_eq!(result["close_code"], close_code, "{result}");

    // Everything the server received came before it saw the client go.
    server
        .wait_for("the disconnection", |line| line["disconnected"].is_string())
        .await;
    let received: Vec<&serde_json::Value> = server
        .seen
        .iter()
        .filter_map(|line| line.get("received"))
        .collect();
    assert_eq!(
        received,
        ["hello everyone, how are you?"],
        "{:?}",
        server.seen
    );
}

#[tokio::test]
async fn socket_io_chat_over_websocket_drops_the_xss_sender_unseen() {
    socket_io_chat("websocket", "transport close", 1008.into()).await;
}

#[tokio::test]
async fn socket_io_chat_over_http_polling_drops_the_xss_sender_unseen() {
    // The refused POST (403) is a transport error to the client; no WebSocket, no close code.
    socket_io_chat("polling", "transport error", serde_json::Value::Null).await;
}
