//! Every connection-steering strategy serves WebSocket traffic and graceful shutdown end to end:
//! per-worker SO_REUSEPORT sockets (hashed or steered by CPU) and the single acceptor that hands
//! connections to the workers.

mod support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;

use support::proxy::{standard_config, Proxy};
use support::upstream::Upstream;
use support::IO_TIMEOUT;

const CONNECTIONS: usize = 24;

async fn echo_through(steering: &str) {
    let upstream = Upstream::echo().await;
    let mut proxy = Proxy::start_with(|listen| {
        standard_config(listen, upstream.addr).replacen(
            "system {",
            &format!("system {{ connection-steering \"{steering}\";"),
            1,
        )
    })
    .await;
    let url = format!("ws://{}/ws", proxy.addr);
    // All open at once, so that each worker holds some of them.
    let mut clients = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        let (client, _) = tokio::time::timeout(IO_TIMEOUT, connect_async(&url))
            .await
            .expect("connect timed out")
            .expect("connect");
        clients.push(client);
    }
    for (index, client) in clients.iter_mut().enumerate() {
        let text = format!("message {index} via {steering}");
        client.send(Message::text(text.clone())).await.unwrap();
        let echoed = tokio::time::timeout(IO_TIMEOUT, client.next())
            .await
            .expect("no echo in time")
            .expect("connection ended")
            .expect("read error");
        assert_eq!(echoed, Message::text(text));
    }
    assert!(
        proxy
            .log()
            .contains(&format!("steering={}", debug_name(steering))),
        "{}",
        proxy.log_tail()
    );
    proxy.terminate();
    for client in &mut clients {
        let close = tokio::time::timeout(IO_TIMEOUT, client.next()).await;
        assert!(
            matches!(
                close,
                Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_)))
            ),
            "{close:?}"
        );
    }
    assert!(proxy.wait_exit(Duration::from_secs(10)).await.is_some());
}

fn debug_name(steering: &str) -> &'static str {
    match steering {
        "reuseport" => "Reuseport",
        "reuseport-cpu" => "ReuseportCpu",
        "acceptor" => "Acceptor",
        other => panic!("unknown steering {other}"),
    }
}

#[tokio::test]
async fn reuseport_hashing_serves_connections() {
    echo_through("reuseport").await;
}

#[tokio::test]
async fn reuseport_cpu_steering_serves_connections() {
    echo_through("reuseport-cpu").await;
}

#[tokio::test]
async fn the_acceptor_hands_connections_to_the_workers() {
    echo_through("acceptor").await;
}
