//! The raw-frame test client: a handshake with any headers, then arbitrary bytes and frames
//! with chosen chunking, and strict reading of the server's frames (which must be unmasked).

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::panic::Location;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use tokio::net::{TcpSocket, TcpStream};

use super::frame::{self, parse_frame, Frame, FrameSpec, Parsed};
use super::http::{Conn, Headers, Response};
use super::{accept_key, IO_TIMEOUT};

/// Largest frame payload the client reads.
const MAX_FRAME: usize = 32 << 20;

/// An opening handshake to send; `headers` replace the defaults of the same name and a value
/// of None removes a default.
pub struct HandshakeRequest {
    pub method: &'static str,
    pub path: String,
    pub headers: Vec<(String, Option<String>)>,
    /// Bytes sent in the same write right after the request, before any answer.
    pub early_data: Vec<u8>,
}

impl HandshakeRequest {
    pub fn new(path: &str) -> HandshakeRequest {
        HandshakeRequest {
            method: "GET",
            path: path.to_owned(),
            headers: Vec::new(),
            early_data: Vec::new(),
        }
    }

    pub fn method(mut self, method: &'static str) -> HandshakeRequest {
        self.method = method;
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> HandshakeRequest {
        self.headers.push((name.to_owned(), Some(value.to_owned())));
        self
    }

    pub fn early_data(mut self, bytes: Vec<u8>) -> HandshakeRequest {
        self.early_data = bytes;
        self
    }

    pub fn without(mut self, name: &str) -> HandshakeRequest {
        self.headers.push((name.to_owned(), None));
        self
    }

    /// The request bytes and the key they carry.
    pub fn encode(&self, host: SocketAddr) -> (Vec<u8>, String) {
        let key = BASE64.encode(rand::random::<[u8; 16]>());
        let defaults = [
            ("Host", host.to_string()),
            ("Upgrade", "websocket".to_owned()),
            ("Connection", "Upgrade".to_owned()),
            ("Sec-WebSocket-Version", "13".to_owned()),
            ("Sec-WebSocket-Key", key.clone()),
        ];
        let mut headers: Vec<(String, String)> = defaults
            .into_iter()
            .map(|(n, v)| (n.to_owned(), v))
            .collect();
        for (name, value) in &self.headers {
            headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
            if let Some(value) = value {
                headers.push((name.clone(), value.clone()));
            }
        }
        let key = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("sec-websocket-key"))
            .map_or(key, |(_, v)| v.clone());
        let mut out = format!("{} {} HTTP/1.1\r\n", self.method, self.path);
        for (name, value) in headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.early_data);
        (bytes, key)
    }
}

/// What a failed read of a server frame ran into.
#[derive(Debug)]
pub enum ReadError {
    Timeout,
    /// The connection ended (EOF or reset) before a whole frame arrived.
    Closed,
    TooLarge(u64),
}

pub struct RawClient {
    conn: Conn,
    /// The headers of the 101 the client was given.
    pub headers: Headers,
}

impl RawClient {
    /// Connect and complete a default handshake on `path`, panicking on anything but a valid 101.
    #[track_caller]
    pub fn connect(addr: SocketAddr, path: &str) -> impl Future<Output = RawClient> {
        let caller = Location::caller();
        let path = path.to_owned();
        async move {
            match RawClient::handshake(addr, &HandshakeRequest::new(&path)).await {
                Ok(client) => client,
                Err(resp) => panic!(
                    "{caller}: handshake on {path} got {} {:?} {:?}",
                    resp.status,
                    resp.headers,
                    resp.body_text()
                ),
            }
        }
    }

    /// Send `request`; a 101 (whose Sec-WebSocket-Accept must match) yields a client, any other
    /// answer is returned whole.
    pub async fn handshake(
        addr: SocketAddr,
        request: &HandshakeRequest,
    ) -> Result<RawClient, Response> {
        RawClient::handshake_on(tcp_connect(addr).await, addr, request).await
    }

    /// [`RawClient::handshake`] from the local address `source` (any of 127.0.0.0/8), to look
    /// like another client.
    pub async fn handshake_from(
        source: IpAddr,
        addr: SocketAddr,
        request: &HandshakeRequest,
    ) -> Result<RawClient, Response> {
        RawClient::handshake_on(tcp_connect_from(source, addr).await, addr, request).await
    }

    async fn handshake_on(
        mut conn: Conn,
        addr: SocketAddr,
        request: &HandshakeRequest,
    ) -> Result<RawClient, Response> {
        let (bytes, key) = request.encode(addr);
        conn.write_all(&bytes).await.expect("send handshake");
        let (status, headers) = conn.read_response_head().await.expect("handshake answer");
        if status != 101 {
            let body = conn
                .read_body(&headers, true)
                .await
                .expect("body of the refusal");
            return Err(Response {
                status,
                headers,
                body,
            });
        }
        let accept = super::http::header(&headers, "sec-websocket-accept");
        assert_eq!(
            accept,
            Some(accept_key(&key).as_str()),
            "Sec-WebSocket-Accept of {headers:?}"
        );
        assert!(
            super::http::has_token(&headers, "upgrade", "websocket"),
            "{headers:?}"
        );
        assert!(
            super::http::has_token(&headers, "connection", "upgrade"),
            "{headers:?}"
        );
        Ok(RawClient { conn, headers })
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.conn.write_all(bytes).await
    }

    /// Write `bytes` in pieces of `chunk` bytes, each flushed (TCP_NODELAY is on), pausing
    /// `pause` between them.
    pub async fn send_chunked(
        &mut self,
        bytes: &[u8],
        chunk: usize,
        pause: Duration,
    ) -> std::io::Result<()> {
        for piece in bytes.chunks(chunk) {
            self.conn.write_all(piece).await?;
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
        }
        Ok(())
    }

    pub async fn send(&mut self, frame: &FrameSpec) {
        self.send_raw(&frame.encode()).await.expect("send frame");
    }

    /// Send a frame the proxy is expected to refuse: it may hang up while the frame is still
    /// being written, so a failed write is not an error here; the Close that follows is checked.
    pub async fn send_offending(&mut self, bytes: &[u8]) {
        let _ = self.send_raw(bytes).await;
    }

    pub async fn try_read_frame(&mut self, limit: Duration) -> Result<Frame, ReadError> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match parse_frame(&self.conn.buf, MAX_FRAME) {
                Parsed::Frame(frame, used) => {
                    self.conn.buf.drain(..used);
                    return Ok(frame);
                }
                Parsed::TooLarge(declared) => return Err(ReadError::TooLarge(declared)),
                Parsed::Incomplete => {}
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.conn.fill_within(left).await {
                Ok(0) => return Err(ReadError::Closed),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    return Err(ReadError::Timeout)
                }
                Err(_) => return Err(ReadError::Closed),
            }
        }
    }

    /// The next server frame, which must arrive within `IO_TIMEOUT` and be unmasked.
    #[track_caller]
    pub fn read_frame(&mut self) -> impl Future<Output = Frame> + '_ {
        self.frame_for(Location::caller())
    }

    async fn frame_for(&mut self, caller: &'static Location<'static>) -> Frame {
        let frame = match self.try_read_frame(IO_TIMEOUT).await {
            Ok(frame) => frame,
            Err(e) => panic!("{caller}: no server frame: {e:?}"),
        };
        assert!(
            !frame.masked,
            "{caller}: the server sent a masked frame: {frame:?}"
        );
        frame
    }

    /// The next data message (reassembled if fragmented) as (opcode, payload); any other frame
    /// first is a failure.
    #[track_caller]
    pub fn read_message(&mut self) -> impl Future<Output = (u8, Vec<u8>)> + '_ {
        self.message_for(Location::caller())
    }

    async fn message_for(&mut self, caller: &'static Location<'static>) -> (u8, Vec<u8>) {
        let mut message: Option<(u8, Vec<u8>)> = None;
        loop {
            let frame = self.frame_for(caller).await;
            match (frame.opcode, message.as_mut()) {
                (frame::TEXT | frame::BINARY, None) => {
                    message = Some((frame.opcode, frame.payload))
                }
                (frame::CONTINUATION, Some((_, payload))) => {
                    payload.extend_from_slice(&frame.payload)
                }
                _ => panic!("{caller}: expected a data message, got {frame:?}"),
            }
            if frame.fin {
                return message.expect("set above");
            }
        }
    }

    /// Read frames until a Close: the frames before it and its code (None when it has no
    /// payload). Fails on a timeout or on EOF without a Close.
    #[track_caller]
    pub fn read_until_close(&mut self) -> impl Future<Output = (Vec<Frame>, Option<u16>)> + '_ {
        self.close_for(Location::caller())
    }

    async fn close_for(&mut self, caller: &'static Location<'static>) -> (Vec<Frame>, Option<u16>) {
        let (before, close) = self.close_frame_for(caller).await;
        (before, close.close_code())
    }

    /// Read frames until a Close: the frames before it and the Close frame itself.
    #[track_caller]
    pub fn read_until_close_frame(&mut self) -> impl Future<Output = (Vec<Frame>, Frame)> + '_ {
        self.close_frame_for(Location::caller())
    }

    async fn close_frame_for(&mut self, caller: &'static Location<'static>) -> (Vec<Frame>, Frame) {
        let mut before = Vec::new();
        loop {
            match self.try_read_frame(IO_TIMEOUT).await {
                Ok(frame) if frame.opcode == frame::CLOSE => {
                    assert!(!frame.masked, "{caller}: masked Close from the server");
                    return (before, frame);
                }
                Ok(frame) if before.len() < 10_000 => before.push(frame),
                Ok(frame) => panic!("{caller}: no Close after 10000 frames, last {frame:?}"),
                Err(e) => panic!("{caller}: expected a Close, got {e:?} after frames {before:?}"),
            }
        }
    }

    /// The code of the next Close (None when it has no payload), skipping other frames.
    #[track_caller]
    pub fn read_close(&mut self) -> impl Future<Output = Option<u16>> + '_ {
        let caller = Location::caller();
        async move { self.close_for(caller).await.1 }
    }

    /// Expect a Close (skipping other frames) with this code and UTF-8 reason.
    #[track_caller]
    pub fn expect_close_reason<'a>(
        &'a mut self,
        code: u16,
        reason: &'a str,
    ) -> impl Future<Output = ()> + 'a {
        let caller = Location::caller();
        async move {
            let (before, close) = self.close_frame_for(caller).await;
            let got_reason = close.payload.get(2..).map(String::from_utf8_lossy);
            assert_eq!(
                (close.close_code(), got_reason.as_deref()),
                (Some(code), Some(reason)),
                "{caller}: Close frame {close:?} after frames {before:?}"
            );
        }
    }

    #[track_caller]
    pub fn expect_close(&mut self, code: u16) -> impl Future<Output = ()> + '_ {
        let caller = Location::caller();
        async move {
            let (before, got) = self.close_for(caller).await;
            assert_eq!(
                got,
                Some(code),
                "{caller}: close code (after frames {before:?})"
            );
        }
    }

    /// Wait for the server to end the TCP connection; returns what it still sent.
    pub async fn read_until_eof(&mut self, limit: Duration) -> std::io::Result<Vec<u8>> {
        self.conn.read_until_eof(limit).await
    }
}

/// A TCP connection to `addr` with TCP_NODELAY.
pub async fn tcp_connect(addr: SocketAddr) -> Conn {
    let stream = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(addr))
        .await
        .expect("connect timed out")
        .expect("connect");
    stream.set_nodelay(true).expect("TCP_NODELAY");
    Conn::new(stream)
}

/// [`tcp_connect`] from the local address `source`.
pub async fn tcp_connect_from(source: IpAddr, addr: SocketAddr) -> Conn {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(source, 0))
        .unwrap_or_else(|e| panic!("bind {source}: {e}"));
    let stream = tokio::time::timeout(IO_TIMEOUT, socket.connect(addr))
        .await
        .expect("connect timed out")
        .expect("connect");
    stream.set_nodelay(true).expect("TCP_NODELAY");
    Conn::new(stream)
}
