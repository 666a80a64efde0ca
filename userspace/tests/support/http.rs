//! HTTP/1.1 over a raw TCP stream for the test peers: bounded head reading (httparse) and the
//! three body framings (Content-Length, chunked, until EOF). Both the test client and the
//! recording upstream use it, so every read is bounded in size and time.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::IO_TIMEOUT;

/// Largest head either peer reads; the proxy's own limit (16 KiB) is well below.
pub const MAX_HEAD: usize = 64 * 1024;
/// Largest HTTP body either peer reads.
pub const MAX_BODY: usize = 8 << 20;
const MAX_HEADERS: usize = 64;

pub type Headers = Vec<(String, String)>;

/// The first value of header `name` (case-insensitive).
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Whether any value of header `name` lists `token` (comma-separated, case-insensitive).
pub fn has_token(headers: &[(String, String)], name: &str, token: &str) -> bool {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .flat_map(|(_, v)| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

fn collect_headers(parsed: &[httparse::Header<'_>]) -> Headers {
    parsed
        .iter()
        .map(|h| {
            (
                h.name.to_owned(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect()
}

#[derive(Clone, Debug)]
pub struct RequestHead {
    pub method: String,
    pub path: String,
    pub headers: Headers,
}

#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Headers,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A TCP stream and the bytes read from it but not consumed yet.
pub struct Conn {
    pub stream: TcpStream,
    pub buf: Vec<u8>,
    /// How long one read of a head or body may wait.
    pub read_timeout: Duration,
}

impl Conn {
    pub fn new(stream: TcpStream) -> Conn {
        Conn {
            stream,
            buf: Vec::new(),
            read_timeout: IO_TIMEOUT,
        }
    }

    pub async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        tokio::time::timeout(IO_TIMEOUT, async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        })
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "write timed out"))?
    }

    /// Read more bytes into the buffer within `limit`; Ok(0) at EOF.
    pub async fn fill_within(&mut self, limit: Duration) -> io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        let n = tokio::time::timeout(limit, self.stream.read(&mut chunk))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "read timed out"))??;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    async fn fill(&mut self) -> io::Result<usize> {
        self.fill_within(self.read_timeout).await
    }

    async fn fill_or_eof_error(&mut self, what: &str) -> io::Result<()> {
        match self.fill().await? {
            0 => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("EOF in {what}"),
            )),
            _ => Ok(()),
        }
    }

    /// Wait until a whole head (up to the blank line) is buffered; returns its length, or None
    /// when the peer closed before sending anything.
    async fn buffer_head(&mut self) -> io::Result<Option<usize>> {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                return Ok(Some(end + 4));
            }
            if self.buf.len() > MAX_HEAD {
                return Err(invalid("head larger than 64 KiB"));
            }
            if self.fill().await? == 0 {
                return match self.buf.is_empty() {
                    true => Ok(None),
                    false => Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "EOF inside a head",
                    )),
                };
            }
        }
    }

    /// The next request head, or None at a clean EOF between requests.
    pub async fn read_request_head(&mut self) -> io::Result<Option<RequestHead>> {
        let Some(len) = self.buffer_head().await? else {
            return Ok(None);
        };
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        req.parse(&self.buf[..len])
            .map_err(|e| invalid(format!("bad request head: {e}")))?;
        let head = RequestHead {
            method: req.method.unwrap_or_default().to_owned(),
            path: req.path.unwrap_or_default().to_owned(),
            headers: collect_headers(req.headers),
        };
        self.buf.drain(..len);
        Ok(Some(head))
    }

    /// The next response head: status and headers.
    pub async fn read_response_head(&mut self) -> io::Result<(u16, Headers)> {
        let Some(len) = self.buffer_head().await? else {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "EOF before a response",
            ));
        };
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        resp.parse(&self.buf[..len])
            .map_err(|e| invalid(format!("bad response head: {e}")))?;
        let status = resp.code.unwrap_or_default();
        let headers = collect_headers(resp.headers);
        self.buf.drain(..len);
        Ok((status, headers))
    }

    /// A complete response: head and body (none for 1xx, 204 and 304).
    pub async fn read_response(&mut self) -> io::Result<Response> {
        let (status, headers) = self.read_response_head().await?;
        let body = match status {
            100..=199 | 204 | 304 => Vec::new(),
            _ => self.read_body(&headers, true).await?,
        };
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    /// The body a head announces; without Content-Length or chunking it runs to EOF when
    /// `until_eof` (responses) and is empty otherwise (requests).
    pub async fn read_body(
        &mut self,
        headers: &[(String, String)],
        until_eof: bool,
    ) -> io::Result<Vec<u8>> {
        if has_token(headers, "transfer-encoding", "chunked") {
            return self.read_chunked().await;
        }
        if let Some(len) = header(headers, "content-length") {
            let len: usize = len
                .trim()
                .parse()
                .map_err(|_| invalid("bad Content-Length"))?;
            if len > MAX_BODY {
                return Err(invalid("body too large"));
            }
            while self.buf.len() < len {
                self.fill_or_eof_error("a body").await?;
            }
            return Ok(self.buf.drain(..len).collect());
        }
        if !until_eof {
            return Ok(Vec::new());
        }
        while self.fill().await? > 0 {
            if self.buf.len() > MAX_BODY {
                return Err(invalid("body too large"));
            }
        }
        Ok(std::mem::take(&mut self.buf))
    }

    async fn read_chunked(&mut self) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let (used, size) = loop {
                match httparse::parse_chunk_size(&self.buf) {
                    Ok(httparse::Status::Complete((used, size))) => break (used, size),
                    Ok(httparse::Status::Partial) => self.fill_or_eof_error("a chunk size").await?,
                    Err(_) => return Err(invalid("bad chunk size")),
                }
            };
            let size = usize::try_from(size)
                .ok()
                .filter(|s| body.len() + s <= MAX_BODY);
            let size = size.ok_or_else(|| invalid("chunked body too large"))?;
            if size == 0 {
                self.buf.drain(..used);
                return self.skip_trailers().await.map(|()| body);
            }
            while self.buf.len() < used + size + 2 {
                self.fill_or_eof_error("a chunk").await?;
            }
            if &self.buf[used + size..used + size + 2] != b"\r\n" {
                return Err(invalid("chunk not followed by CRLF"));
            }
            body.extend_from_slice(&self.buf[used..used + size]);
            self.buf.drain(..used + size + 2);
        }
    }

    /// Consume trailer fields after the last chunk, up to and including the blank line.
    async fn skip_trailers(&mut self) -> io::Result<()> {
        loop {
            match self.buf.windows(2).position(|w| w == b"\r\n") {
                Some(0) => {
                    self.buf.drain(..2);
                    return Ok(());
                }
                Some(end) => drop(self.buf.drain(..end + 2)),
                None if self.buf.len() > MAX_HEAD => return Err(invalid("trailers too large")),
                None => self.fill_or_eof_error("trailers").await?,
            }
        }
    }

    /// Read until the peer closes; fails if it has not within `limit`.
    pub async fn read_until_eof(&mut self, limit: Duration) -> io::Result<Vec<u8>> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.fill_within(left).await {
                Ok(0) => return Ok(std::mem::take(&mut self.buf)),
                Ok(_) if self.buf.len() > MAX_BODY => {
                    return Err(invalid("too much data before EOF"))
                }
                Ok(_) => {}
                // A reset after the peer's last bytes is a close too.
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                    return Ok(std::mem::take(&mut self.buf))
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Send one request on a fresh connection and read the answer.
pub async fn request(addr: std::net::SocketAddr, raw: &[u8]) -> io::Result<Response> {
    let stream = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    let mut conn = Conn::new(stream);
    conn.write_all(raw).await?;
    conn.read_response().await
}
