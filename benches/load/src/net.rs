//! One WebSocket connection's socket and buffers, driven by readiness so that reading never waits
//! behind a write: a peer that is itself blocked writing to us can always make progress.

use std::io;

use bytes::{Buf, BytesMut};
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// How much room a read asks for at least.
const READ_CHUNK: usize = 64 * 1024;

pub struct WsStream {
    stream: TcpStream,
    /// Received bytes not decoded yet.
    pub read_buf: BytesMut,
    /// Encoded frames not written yet.
    pub write_buf: BytesMut,
}

/// What one call of [`WsStream::pump`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub read: usize,
    /// The peer closed its side (read returned 0).
    pub eof: bool,
    /// The deadline passed before the socket was ready.
    pub timed_out: bool,
}

impl WsStream {
    /// `leftover` = bytes that arrived with the handshake. Buffers grow on first use, so an
    /// idle connection costs little memory.
    pub fn new(stream: TcpStream, leftover: BytesMut) -> WsStream {
        WsStream {
            stream,
            read_buf: leftover,
            write_buf: BytesMut::new(),
        }
    }

    /// Waits until the socket is readable (if `want_read`) or writable (if anything is pending),
    /// or until `deadline`; then writes what it can and reads what is there.
    pub async fn pump(
        &mut self,
        want_read: bool,
        deadline: Option<Instant>,
    ) -> io::Result<Progress> {
        let interest = match (want_read, !self.write_buf.is_empty()) {
            (true, true) => Interest::READABLE | Interest::WRITABLE,
            (true, false) => Interest::READABLE,
            (false, true) => Interest::WRITABLE,
            (false, false) => {
                let Some(deadline) = deadline else {
                    return Err(io::Error::other("pump with nothing to wait for"));
                };
                tokio::time::sleep_until(deadline).await;
                return Ok(Progress {
                    timed_out: true,
                    ..Progress::default()
                });
            }
        };
        let ready = match deadline {
            Some(deadline) => {
                match tokio::time::timeout_at(deadline, self.stream.ready(interest)).await {
                    Ok(ready) => ready?,
                    Err(_) => {
                        return Ok(Progress {
                            timed_out: true,
                            ..Progress::default()
                        })
                    }
                }
            }
            None => self.stream.ready(interest).await?,
        };
        let mut progress = Progress::default();
        if ready.is_writable() && !self.write_buf.is_empty() {
            match self.stream.try_write(&self.write_buf) {
                Ok(written) => self.write_buf.advance(written),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        if want_read && (ready.is_readable() || ready.is_read_closed()) {
            if self.read_buf.capacity() - self.read_buf.len() < READ_CHUNK / 4 {
                self.read_buf.reserve(READ_CHUNK);
            }
            match self.stream.try_read_buf(&mut self.read_buf) {
                Ok(0) => progress.eof = true,
                Ok(read) => progress.read = read,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(progress)
    }

    /// Without waiting: whether the peer has hung up (or reset) the connection. Whatever was
    /// readable stays in `read_buf`.
    pub fn closed_by_peer(&mut self) -> bool {
        match self.stream.try_read_buf(&mut self.read_buf) {
            Ok(read) => read == 0,
            Err(e) => e.kind() != io::ErrorKind::WouldBlock,
        }
    }

    /// Writes everything pending, giving up at `deadline`.
    pub async fn flush(&mut self, deadline: Instant) -> io::Result<()> {
        while !self.write_buf.is_empty() {
            if self.pump(false, Some(deadline)).await?.timed_out {
                return Err(io::ErrorKind::TimedOut.into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Sends `bytes` while receiving as many, with nothing else reading the socket.
    async fn exchange(mut ws: WsStream, bytes: usize) -> io::Result<()> {
        ws.write_buf.resize(bytes, 0x5a);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !ws.write_buf.is_empty() || ws.read_buf.len() < bytes {
            let progress = ws.pump(ws.read_buf.len() < bytes, Some(deadline)).await?;
            if progress.eof || progress.timed_out {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok(())
    }

    #[tokio::test]
    async fn both_sides_sending_more_than_socket_buffers_hold_do_not_deadlock() {
        const BYTES: usize = 16 << 20;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let stream = TcpStream::connect(addr).await.unwrap();
            exchange(WsStream::new(stream, BytesMut::new()), BYTES).await
        });
        let (stream, _) = listener.accept().await.unwrap();
        exchange(WsStream::new(stream, BytesMut::new()), BYTES)
            .await
            .unwrap();
        client.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn pump_with_nothing_to_do_waits_for_the_deadline() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let mut ws = WsStream::new(stream, BytesMut::new());
        let deadline = Instant::now() + Duration::from_millis(20);
        assert!(ws.pump(false, Some(deadline)).await.unwrap().timed_out);
        assert!(Instant::now() >= deadline);
        assert!(ws.pump(false, None).await.is_err());
        let (_, _) = listener.accept().await.unwrap();
    }

    #[tokio::test]
    async fn peer_hang_up_is_seen_without_waiting() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let mut ws = WsStream::new(stream, BytesMut::new());
        let (server, _) = listener.accept().await.unwrap();
        assert!(!ws.closed_by_peer());
        drop(server);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(ws.closed_by_peer());
    }
}
