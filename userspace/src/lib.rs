//! Frameguard: a WebSocket security proxy.
//!
//! The data path, in module order: `listener` (per-core workers, SO_REUSEPORT) -> `server`
//! (HTTP/1.1, routing, upgrade) -> `handshake` (RFC 6455 checks on both sides) -> `relay`
//! (frames both ways) -> `verdict` (what happens to each message).

pub mod app;
pub mod handshake;
pub mod kernel;
pub mod limits;
pub mod listener;
pub mod metrics;
pub mod relay;
pub mod server;
pub mod splice;
pub mod tls;
pub mod upstream;
pub mod verdict;
