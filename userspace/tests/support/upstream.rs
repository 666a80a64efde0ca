//! The recording upstream: a WebSocket/HTTP server of the tests' own on 127.0.0.1:0 that
//! records everything the proxy delivers to it, frame by frame, even malformed frames, so a
//! test can prove that an offending frame never arrived.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use super::frame::{self, parse_frame, Frame, FrameSpec, Parsed};
use super::http::{has_token, header, Conn, RequestHead};
use super::{accept_key, IO_TIMEOUT};

/// Largest frame payload the upstream reads; larger frames end the connection (recorded).
const MAX_FRAME: usize = 32 << 20;
/// How long a connection may stay silent before the upstream gives up on it.
const IDLE_LIMIT: Duration = Duration::from_secs(60);

/// How the upstream answers an upgrade request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Handshake {
    /// A correct 101.
    #[default]
    Accept,
    /// A 101 whose Sec-WebSocket-Accept does not match the key.
    WrongAccept,
    /// 403 with a body, no upgrade.
    Reject403,
}

/// The body of the 403 answer in [`Handshake::Reject403`] mode.
pub const REJECT_BODY: &str = "forbidden by upstream\n";

#[derive(Clone, Debug, Default)]
pub struct Behavior {
    pub handshake: Handshake,
    /// Bytes written right after the 101 (frames, or anything else).
    pub after_101: Vec<u8>,
    /// End the TCP connection (without a Close) once `after_101` is written.
    pub hang_up_after_101: bool,
    /// Accept the first `permessage-deflate` offer, agreeing to its valued parameters (window
    /// bits, no-context-takeover flags) and leaving out a bare `client_max_window_bits`.
    /// Compressed messages are echoed as they came, RSV1 included; with context takeover and
    /// equal window sizes both ways (what clients offer by default) the echo's compression
    /// history equals the client's, so the client's inflater can follow.
    pub accept_deflate: bool,
}

/// What arrived at the upstream, per connection (numbered from 0 in accept order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Request {
        head: RequestSummary,
        body: Vec<u8>,
    },
    Frame(Frame),
    /// A complete data message (opcode of its first frame), reassembled from its frames.
    Message {
        opcode: u8,
        payload: Vec<u8>,
    },
    /// A frame announced more than the upstream reads; the connection was dropped.
    Oversized(u64),
    /// The connection ended.
    Eof,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestSummary {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl RequestSummary {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

type Log = Arc<Mutex<Vec<(usize, Event)>>>;

pub struct Upstream {
    pub addr: SocketAddr,
    log: Log,
    accept_loop: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        // Dropping the accept loop drops its JoinSet, which aborts every connection task.
        self.accept_loop.abort();
    }
}

impl Upstream {
    pub async fn start(behavior: Behavior) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().expect("upstream address");
        let log = Log::default();
        let accept_loop = tokio::spawn(accept_loop(listener, behavior, log.clone()));
        Upstream {
            addr,
            log,
            accept_loop,
        }
    }

    pub async fn echo() -> Upstream {
        Upstream::start(Behavior::default()).await
    }

    /// Everything recorded so far, in arrival order.
    pub fn events(&self) -> Vec<(usize, Event)> {
        self.log.lock().expect("upstream log").clone()
    }

    pub fn frames(&self) -> Vec<Frame> {
        self.events()
            .into_iter()
            .filter_map(|(_, e)| match e {
                Event::Frame(f) => Some(f),
                _ => None,
            })
            .collect()
    }

    pub fn messages(&self) -> Vec<(u8, Vec<u8>)> {
        self.events()
            .into_iter()
            .filter_map(|(_, e)| match e {
                Event::Message { opcode, payload } => Some((opcode, payload)),
                _ => None,
            })
            .collect()
    }

    pub fn requests(&self) -> Vec<(RequestSummary, Vec<u8>)> {
        self.events()
            .into_iter()
            .filter_map(|(_, e)| match e {
                Event::Request { head, body } => Some((head, body)),
                _ => None,
            })
            .collect()
    }

    /// The close codes of every Close frame received (None for an empty Close).
    pub fn close_codes(&self) -> Vec<Option<u16>> {
        self.frames()
            .iter()
            .filter(|f| f.opcode == frame::CLOSE)
            .map(Frame::close_code)
            .collect()
    }

    /// Wait (bounded by `IO_TIMEOUT`) until `done` holds for the recorded events.
    pub async fn wait_for(&self, what: &str, done: impl Fn(&[(usize, Event)]) -> bool) {
        let deadline = tokio::time::Instant::now() + IO_TIMEOUT;
        while !done(&self.log.lock().expect("upstream log")) {
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "the upstream never saw {what}; it recorded {:#?}",
                    self.events()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Wait until some connection has ended with a Close frame or EOF: everything the proxy
    /// forwarded before it has then been recorded.
    pub async fn wait_for_close_or_eof(&self) {
        self.wait_for("a Close frame or EOF", |events| {
            events.iter().any(|(_, e)| match e {
                Event::Frame(f) => f.opcode == frame::CLOSE,
                Event::Eof | Event::Oversized(_) => true,
                _ => false,
            })
        })
        .await
    }
}

async fn accept_loop(listener: TcpListener, behavior: Behavior, log: Log) {
    let mut connections = JoinSet::new();
    for conn_id in 0.. {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let recorder = Recorder {
            conn_id,
            log: log.clone(),
        };
        let mut conn = Conn::new(stream);
        // Patient like a real server, so a proxy that forwards a stalled head cannot pass the
        // slowloris test on the upstream's impatience.
        conn.read_timeout = IDLE_LIMIT;
        connections.spawn(serve(conn, behavior.clone(), recorder));
        // Reap finished connections so the set stays as small as the live ones.
        while connections.try_join_next().is_some() {}
    }
}

struct Recorder {
    conn_id: usize,
    log: Log,
}

impl Recorder {
    fn record(&self, event: Event) {
        self.log
            .lock()
            .expect("upstream log")
            .push((self.conn_id, event));
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.record(Event::Eof);
    }
}

async fn serve(mut conn: Conn, behavior: Behavior, recorder: Recorder) {
    loop {
        let Ok(Some(head)) = conn.read_request_head().await else {
            return;
        };
        let summary = RequestSummary {
            method: head.method.clone(),
            path: head.path.clone(),
            headers: head.headers.clone(),
        };
        if has_token(&head.headers, "upgrade", "websocket") {
            recorder.record(Event::Request {
                head: summary,
                body: Vec::new(),
            });
            if upgrade(&mut conn, &head, &behavior).await.is_ok() && !behavior.hang_up_after_101 {
                relay_frames(conn, &recorder, has_close(&behavior.after_101)).await;
            }
            return;
        }
        let Ok(body) = conn.read_body(&head.headers, false).await else {
            return;
        };
        recorder.record(Event::Request {
            head: summary,
            body: body.clone(),
        });
        if answer_plain(&mut conn, &head, &body).await.is_err() {
            return;
        }
    }
}

/// Answer a plain request with a chunked body naming what was asked, keeping the connection.
async fn answer_plain(conn: &mut Conn, head: &RequestHead, body: &[u8]) -> std::io::Result<()> {
    let first = format!("{} {}", head.method, head.path);
    let second = format!(" body={}", String::from_utf8_lossy(body));
    let mut out =
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec();
    for chunk in [first, second] {
        out.extend_from_slice(format!("{:x}\r\n{chunk}\r\n", chunk.len()).as_bytes());
    }
    out.extend_from_slice(b"0\r\n\r\n");
    conn.write_all(&out).await
}

async fn upgrade(conn: &mut Conn, head: &RequestHead, behavior: &Behavior) -> std::io::Result<()> {
    let key = header(&head.headers, "sec-websocket-key").unwrap_or_default();
    let accept = match behavior.handshake {
        Handshake::Accept => accept_key(key),
        Handshake::WrongAccept => accept_key("not the key the proxy sent"),
        Handshake::Reject403 => {
            let answer = format!(
                "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{REJECT_BODY}",
                REJECT_BODY.len()
            );
            conn.write_all(answer.as_bytes()).await?;
            return Err(std::io::Error::other("upgrade refused on purpose"));
        }
    };
    let extensions = match deflate_offer(&head.headers) {
        Some(offer) if behavior.accept_deflate => {
            let agreed: Vec<&str> = offer
                .split(';')
                .map(str::trim)
                .filter(|param| *param != "client_max_window_bits")
                .collect();
            format!("Sec-WebSocket-Extensions: {}\r\n", agreed.join("; "))
        }
        _ => String::new(),
    };
    let mut answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n{extensions}\r\n"
    )
    .into_bytes();
    answer.extend_from_slice(&behavior.after_101);
    conn.write_all(&answer).await
}

/// The client's first `permessage-deflate` offer (name and parameters), if any.
fn deflate_offer(headers: &[(String, String)]) -> Option<&str> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("sec-websocket-extensions"))
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .find(|offer| offer.split(';').next().unwrap_or("").trim() == "permessage-deflate")
}

/// Whether `bytes` hold a Close frame among whole frames.
fn has_close(mut bytes: &[u8]) -> bool {
    while let Parsed::Frame(frame, used) = parse_frame(bytes, MAX_FRAME) {
        if frame.opcode == frame::CLOSE {
            return true;
        }
        bytes = &bytes[used..];
    }
    false
}

/// Record every frame; echo data messages (one unmasked frame, with the RSV bits of the
/// message's first frame), answer Ping and Close. After
/// the closing handshake the write side is shut (a server ends TCP first) but reading and
/// recording go on until EOF, so anything a proxy forwards after a Close is still seen.
async fn relay_frames(mut conn: Conn, recorder: &Recorder, mut close_sent: bool) {
    // Opcode, RSV bits and payload of the message being reassembled.
    let mut partial: Option<(u8, u8, Vec<u8>)> = None;
    let mut shut = false;
    loop {
        let frame = match parse_frame(&conn.buf, MAX_FRAME) {
            Parsed::Frame(frame, used) => {
                conn.buf.drain(..used);
                frame
            }
            Parsed::TooLarge(declared) => return recorder.record(Event::Oversized(declared)),
            Parsed::Incomplete => match conn.fill_within(conn.read_timeout).await {
                Ok(n) if n > 0 => continue,
                _ => return,
            },
        };
        recorder.record(Event::Frame(frame.clone()));
        let complete = match frame.opcode {
            frame::TEXT | frame::BINARY if frame.fin => {
                Some((frame.opcode, frame.rsv, frame.payload.clone()))
            }
            frame::TEXT | frame::BINARY => {
                partial = Some((frame.opcode, frame.rsv, frame.payload.clone()));
                None
            }
            frame::CONTINUATION => {
                if let Some((_, _, payload)) = partial.as_mut() {
                    payload.extend_from_slice(&frame.payload);
                }
                partial.take_if(|_| frame.fin)
            }
            _ => None,
        };
        let reply = match (frame.opcode, complete) {
            (_, Some((opcode, rsv, payload))) => {
                recorder.record(Event::Message {
                    opcode,
                    payload: payload.clone(),
                });
                Some(FrameSpec::new(opcode, payload).rsv(rsv))
            }
            (frame::PING, None) => Some(FrameSpec::new(frame::PONG, frame.payload)),
            (frame::CLOSE, None) if !close_sent => {
                close_sent = true;
                Some(FrameSpec::new(frame::CLOSE, frame.payload))
            }
            _ => None,
        };
        if shut {
            continue;
        }
        if let Some(reply) = reply {
            if conn.write_all(&reply.unmasked().encode()).await.is_err() {
                return;
            }
        }
        if frame.opcode == frame::CLOSE {
            let _ = conn.stream.shutdown().await;
            shut = true;
        }
    }
}
