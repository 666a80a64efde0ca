//! The HTTP/1.1 upgrade of RFC 6455 section 4, client and server side. httparse reads the heads;
//! the checks are only what a load tool needs to be sure it talks WebSocket to the right peer.

use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::BytesMut;
use sha1::{Digest, Sha1};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::target::Target;

/// RFC 6455 section 1.3.
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// A request or response head longer than this is refused rather than buffered.
const MAX_HEAD_BYTES: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;

const BAD_REQUEST: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(ACCEPT_GUID.as_bytes());
    BASE64.encode(sha.finalize())
}

/// Connects to `target` and upgrades. Returns the stream and any bytes that arrived after the
/// response head (the first frames, if the server was quick).
pub async fn connect(target: &Target) -> Result<(TcpStream, BytesMut)> {
    let mut stream = TcpStream::connect(target.addr)
        .await
        .with_context(|| format!("connect {}", target.addr))?;
    stream.set_nodelay(true)?;
    let key = BASE64.encode(fastrand::u128(..).to_ne_bytes());
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n",
        target.path, target.host
    );
    stream.write_all(request.as_bytes()).await?;
    let expected_accept = accept_key(&key);
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        if let Some(head_len) = check_response(&buf, &expected_accept)? {
            let rest = buf.split_off(head_len);
            return Ok((stream, rest));
        }
        read_more(&mut stream, &mut buf).await?;
    }
}

/// Reads a client's upgrade request from `stream` and accepts it; anything else gets a 400.
/// Returns the stream and the bytes that followed the request head.
pub async fn accept(mut stream: TcpStream) -> Result<(TcpStream, BytesMut)> {
    stream.set_nodelay(true)?;
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        match upgrade_response(&buf) {
            Ok(Some((head_len, response))) => {
                stream.write_all(response.as_bytes()).await?;
                let rest = buf.split_off(head_len);
                return Ok((stream, rest));
            }
            Ok(None) => {}
            Err(e) => {
                // Best effort: the peer learns why before the connection drops.
                let _ = stream.write_all(BAD_REQUEST).await;
                return Err(e);
            }
        }
        read_more(&mut stream, &mut buf).await?;
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut BytesMut) -> Result<()> {
    if buf.len() >= MAX_HEAD_BYTES {
        bail!("handshake head longer than {MAX_HEAD_BYTES} bytes");
    }
    if stream.read_buf(buf).await? == 0 {
        bail!("connection closed during the handshake");
    }
    Ok(())
}

fn header<'h>(headers: &'h [httparse::Header<'_>], name: &str) -> Option<&'h [u8]> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}

fn has_token(value: Option<&[u8]>, token: &str) -> bool {
    value.is_some_and(|v| {
        v.split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

/// Checks a server's response head in `buf`. Ok(None) = incomplete; Ok(Some(len)) = a valid
/// 101 whose head is `len` bytes long.
fn check_response(buf: &[u8], expected_accept: &str) -> Result<Option<usize>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(head_len) = response.parse(buf)? else {
        return Ok(None);
    };
    let code = response.code.unwrap_or(0);
    if code != 101 {
        bail!(
            "upgrade refused: {code} {}",
            response.reason.unwrap_or_default()
        );
    }
    if !has_token(header(response.headers, "upgrade"), "websocket") {
        bail!("101 response without `Upgrade: websocket`");
    }
    if header(response.headers, "sec-websocket-accept") != Some(expected_accept.as_bytes()) {
        bail!("101 response with a wrong Sec-WebSocket-Accept");
    }
    Ok(Some(head_len))
}

/// Parses a client's request head in `buf`. Ok(None) = incomplete; Ok(Some((len, response))) =
/// a valid upgrade request `len` bytes long and the 101 response to send.
fn upgrade_response(buf: &[u8]) -> Result<Option<(usize, String)>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(head_len) = request.parse(buf)? else {
        return Ok(None);
    };
    if request.method != Some("GET") {
        bail!("upgrade request with method {:?}", request.method);
    }
    if !has_token(header(request.headers, "upgrade"), "websocket")
        || !has_token(header(request.headers, "connection"), "upgrade")
    {
        bail!("not a WebSocket upgrade request");
    }
    if header(request.headers, "sec-websocket-version") != Some(b"13") {
        bail!("unsupported Sec-WebSocket-Version");
    }
    let key = header(request.headers, "sec-websocket-key")
        .and_then(|k| std::str::from_utf8(k).ok())
        .context("upgrade request without Sec-WebSocket-Key")?;
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        accept_key(key.trim())
    );
    Ok(Some((head_len, response)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQUEST: &[u8] = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: WebSocket\r\n\
        Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Version: 13\r\n\r\n";

    #[test]
    fn accept_key_matches_rfc_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn upgrade_request_gets_101_with_accept_key() {
        let (len, response) = upgrade_response(REQUEST).unwrap().unwrap();
        assert_eq!(len, REQUEST.len());
        assert!(response.starts_with("HTTP/1.1 101 "));
        assert!(response.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    }

    #[test]
    fn partial_request_waits_for_more() {
        assert!(upgrade_response(&REQUEST[..REQUEST.len() - 2])
            .unwrap()
            .is_none());
    }

    #[test]
    fn plain_get_and_wrong_version_are_refused() {
        assert!(upgrade_response(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").is_err());
        let old = String::from_utf8_lossy(REQUEST).replace("Version: 13", "Version: 8");
        assert!(upgrade_response(old.as_bytes()).is_err());
    }

    #[test]
    fn response_accept_key_is_checked() {
        let good = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
            Connection: Upgrade\r\nSec-WebSocket-Accept: abc=\r\n\r\n";
        assert_eq!(
            check_response(good.as_bytes(), "abc=").unwrap(),
            Some(good.len())
        );
        assert!(check_response(good.as_bytes(), "xyz=").is_err());
        assert!(check_response(&good.as_bytes()[..20], "abc=")
            .unwrap()
            .is_none());
    }

    #[test]
    fn non_101_response_is_an_error_naming_the_status() {
        let err = check_response(b"HTTP/1.1 404 Not Found\r\n\r\n", "abc=").unwrap_err();
        assert!(err.to_string().contains("404"), "{err}");
    }
}
