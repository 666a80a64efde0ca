//! Opening many WebSocket connections with a bounded number of handshakes in flight.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use crate::handshake;
use crate::net::WsStream;
use crate::target::Target;

/// One connection attempt (TCP connect + upgrade) gives up after this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Default)]
pub struct Connected {
    pub streams: Vec<WsStream>,
    pub failures: u64,
    pub first_error: Option<String>,
}

/// Opens `count` connections to `target`, at most `concurrency` handshakes at a time. Every
/// attempt ends within [`CONNECT_TIMEOUT`], so this ends too.
pub async fn connect_many(target: &Arc<Target>, count: usize, concurrency: usize) -> Connected {
    let mut attempts = JoinSet::new();
    let mut started = 0;
    let mut connected = Connected::default();
    loop {
        while started < count && attempts.len() < concurrency.max(1) {
            let target = Arc::clone(target);
            attempts.spawn(async move {
                match tokio::time::timeout(CONNECT_TIMEOUT, handshake::connect(&target)).await {
                    Ok(Ok((stream, leftover))) => Ok(WsStream::new(stream, leftover)),
                    Ok(Err(e)) => Err(format!("{e:#}")),
                    Err(_) => Err(format!("no handshake within {CONNECT_TIMEOUT:?}")),
                }
            });
            started += 1;
        }
        let outcome = match attempts.join_next().await {
            None => return connected,
            Some(Ok(outcome)) => outcome,
            Some(Err(join_error)) => Err(join_error.to_string()),
        };
        match outcome {
            Ok(stream) => connected.streams.push(stream),
            Err(error) => {
                connected.failures += 1;
                connected.first_error.get_or_insert(error);
            }
        }
    }
}
