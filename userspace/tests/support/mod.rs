//! Test peers shared by the end-to-end tests: the proxy process, a recording upstream, a raw
//! frame client, the HTTP and frame code they use, a metrics scraper and the runner of the
//! node and python clients. Each test binary uses a different part.
#![allow(dead_code)]

pub mod client;
pub mod frame;
pub mod http;
pub mod metrics;
pub mod proxy;
pub mod script;
pub mod upstream;

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use sha1::{Digest, Sha1};

/// Bound of every single network wait in the tests.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (RFC 6455 4.2.2).
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    BASE64.encode(sha.finalize())
}
