//! Zero-copy relay of one uninspected direction (upstream -> client) with splice(2).
//!
//! ```text
//! let mut out = SpliceRelay::new(client_wr.as_ref(), upstream_rd.as_ref(), upstream.buffered)?;
//! match out.run(pause_requested).await? {
//!     Ended::UpstreamEnded { close_forwarded, at_boundary } => ...,
//!     Ended::Paused => ...,  // at a frame boundary: write a control frame, then run again
//! }
//! out.totals()
//! ```
//!
//! The relay always knows where the frames are: it reads frame headers into a small buffer and
//! moves every payload of `SPLICE_MIN_PAYLOAD` bytes or more from the upstream socket into a
//! pipe and from the pipe into the client socket, so those bytes never enter userspace. Small
//! frames are read and written in batches instead (two splices per 64-byte frame would cost
//! more than copying them). Nothing is buffered beyond one read or one pipe's worth, so a
//! client that stops reading stops the upstream through TCP backpressure. The same relay
//! carries on a kernel-spliced direction that was evicted or paused (`kernel`), starting from
//! the frame position the verdict program left.

use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use bytes::Bytes;
use frameguard_common::{FrameCursor, MAX_HEADER_LEN};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Payloads at least this long are spliced; shorter ones are copied with their headers.
pub const SPLICE_MIN_PAYLOAD: u64 = 4096;
/// One read of small frames.
const READ_CHUNK: usize = 16 * 1024;
/// Requested pipe capacity (the kernel may grant less; the default is 64 KiB).
const PIPE_CAPACITY: libc::c_int = 256 * 1024;

/// Where a relayed direction's bytes went.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Redirected by the sockmap verdict program, never seen by userspace.
    pub kernel_bytes: u64,
    /// Moved through a pipe with splice(2), never copied into userspace.
    pub spliced_bytes: u64,
    /// Read into and written from userspace memory (headers, small frames, handshake leftover).
    pub copied_bytes: u64,
    /// Times the kernel path gave the direction back to userspace over its memory budget.
    pub evictions: u64,
}

impl Totals {
    /// Every byte that reached the client through this direction.
    pub fn bytes(&self) -> u64 {
        self.kernel_bytes + self.spliced_bytes + self.copied_bytes
    }
}

/// Why `run` returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// The upstream's stream ended (FIN or error) and everything read before was written to the
    /// client. `close_forwarded` is the code of a Close frame that passed (Some(0): one without a
    /// code); `at_boundary` is false when the stream stopped inside a frame, so the client must
    /// not be sent anything more.
    UpstreamEnded {
        close_forwarded: Option<u16>,
        at_boundary: bool,
    },
    /// The pause future resolved and the direction stopped at a frame boundary with nothing in
    /// flight: the caller may write whole frames to the client, then `run` again to resume.
    Paused,
}

/// A non-blocking pipe whose two ends are used only by one relay.
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    capacity: usize,
}

impl Pipe {
    fn new() -> io::Result<Pipe> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both are fresh descriptors that nothing else owns.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // A bigger pipe means fewer splice calls per large payload; the default is fine too.
        // SAFETY: plain fcntl calls on a descriptor we own.
        let capacity = unsafe {
            libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_CAPACITY);
            libc::fcntl(write.as_raw_fd(), libc::F_GETPIPE_SZ)
        };
        if capacity <= 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Pipe {
            read,
            write,
            capacity: capacity as usize,
        })
    }
}

fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // No SPLICE_F_MORE: data corked on an idle connection would wait for an ACK that never
    // comes.
    let flags = libc::SPLICE_F_NONBLOCK | libc::SPLICE_F_MOVE;
    // SAFETY: both are open descriptors and null offsets mean "current position" (required for
    // sockets and pipes).
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            flags,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

fn send(fd: RawFd, bytes: &[u8], flags: libc::c_int) -> io::Result<usize> {
    // SAFETY: `bytes` is a valid buffer of the given length.
    let n = unsafe { libc::send(fd, bytes.as_ptr().cast(), bytes.len(), flags) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// What the relay waits for before it can make progress.
enum Wait {
    ClientWritable,
    UpstreamReadable,
}

/// One step's outcome.
enum Step {
    Progress,
    Wait(Wait),
    Done(Ended),
}

/// splice(2) relay of one direction; see the module docs.
pub struct SpliceRelay<'a> {
    client: &'a TcpStream,
    upstream: &'a TcpStream,
    pipe: Pipe,
    /// Bytes in the pipe not yet spliced to the client.
    in_pipe: usize,
    /// Bytes read from upstream; `pending[written..]` is still to be written to the client.
    pending: Vec<u8>,
    written: usize,
    /// Frame position after the last byte read from upstream.
    cursor: FrameCursor,
    /// The last payload was large: read only a header's worth next, so the next large payload
    /// is spliced rather than read.
    large_frames: bool,
    upstream_ended: bool,
    totals: Totals,
}

impl<'a> SpliceRelay<'a> {
    /// Relay `upstream` -> `client`, starting with `leftover` (bytes already read from upstream
    /// past the handshake, forwarded first). Both streams stay owned by the caller.
    pub fn new(
        client: &'a TcpStream,
        upstream: &'a TcpStream,
        leftover: Bytes,
    ) -> io::Result<SpliceRelay<'a>> {
        let mut cursor = FrameCursor::default();
        cursor.advance(&leftover);
        Ok(SpliceRelay {
            client,
            upstream,
            pipe: Pipe::new()?,
            in_pipe: 0,
            pending: leftover.to_vec(),
            written: 0,
            cursor,
            large_frames: false,
            upstream_ended: false,
            totals: Totals {
                copied_bytes: leftover.len() as u64,
                ..Totals::default()
            },
        })
    }

    /// Take the stream over again after the kernel redirected `kernel_bytes` more of it and
    /// left its frame position at `cursor`. Only called while nothing is pending here.
    pub(crate) fn resume_at(&mut self, cursor: FrameCursor, kernel_bytes: u64) {
        self.cursor = cursor;
        self.large_frames = false;
        self.totals.kernel_bytes += kernel_bytes;
    }

    pub fn totals(&self) -> Totals {
        self.totals
    }

    pub(crate) fn totals_mut(&mut self) -> &mut Totals {
        &mut self.totals
    }

    pub(crate) fn cursor(&self) -> FrameCursor {
        self.cursor
    }

    /// True when nothing read from upstream is still waiting to be written to the client.
    pub(crate) fn flushed(&self) -> bool {
        self.in_pipe == 0 && self.written == self.pending.len()
    }

    /// Relay until the upstream ends, or until `pause` resolves and a frame boundary is reached.
    /// Cancel-safe: dropping the future loses nothing, a later `run` carries on.
    pub async fn run(&mut self, pause: impl Future<Output = ()>) -> io::Result<Ended> {
        tokio::pin!(pause);
        let mut pausing = false;
        loop {
            let wait = match self.step(pausing)? {
                Step::Progress => continue,
                Step::Done(ended) => return Ok(ended),
                Step::Wait(wait) => wait,
            };
            let ready = async {
                match wait {
                    Wait::ClientWritable => self.client.writable().await,
                    Wait::UpstreamReadable => self.upstream.readable().await,
                }
            };
            tokio::select! {
                biased;
                _ = &mut pause, if !pausing => pausing = true,
                ready = ready => ready?,
            }
        }
    }

    /// Run until the upstream socket has nothing more to read right now, with everything read
    /// written to the client. Returns the ending if the upstream ended meanwhile.
    pub(crate) async fn drain(&mut self) -> io::Result<Option<Ended>> {
        loop {
            match self.step(false)? {
                Step::Progress => {}
                Step::Done(ended) => return Ok(Some(ended)),
                Step::Wait(Wait::ClientWritable) => self.client.writable().await?,
                Step::Wait(Wait::UpstreamReadable) => return Ok(None),
            }
        }
    }

    /// Do one non-blocking piece of work.
    fn step(&mut self, pausing: bool) -> io::Result<Step> {
        if self.in_pipe > 0 {
            let (pipe, client) = (self.pipe.read.as_raw_fd(), self.client.as_raw_fd());
            let len = self.in_pipe;
            return match self
                .client
                .try_io(Interest::WRITABLE, || splice(pipe, client, len))
            {
                Ok(n) => {
                    self.in_pipe -= n;
                    Ok(Step::Progress)
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    Ok(Step::Wait(Wait::ClientWritable))
                }
                Err(err) => Err(err),
            };
        }
        if self.written < self.pending.len() {
            // A header followed by a spliced payload goes out in the payload's segments (the
            // splice that follows without MSG_MORE pushes both) instead of in a tiny packet.
            let flags = libc::MSG_DONTWAIT
                | libc::MSG_NOSIGNAL
                | if self.wants_splice(pausing) {
                    libc::MSG_MORE
                } else {
                    0
                };
            let (client, unsent) = (self.client.as_raw_fd(), &self.pending[self.written..]);
            let sent = self
                .client
                .try_io(Interest::WRITABLE, || send(client, unsent, flags));
            return match sent {
                Ok(n) => {
                    self.written += n;
                    if self.written == self.pending.len() {
                        self.pending.clear();
                        self.written = 0;
                    }
                    Ok(Step::Progress)
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    Ok(Step::Wait(Wait::ClientWritable))
                }
                Err(err) => Err(err),
            };
        }
        if self.upstream_ended {
            return Ok(Step::Done(Ended::UpstreamEnded {
                close_forwarded: self.cursor.close_seen(),
                at_boundary: self.cursor.at_boundary(),
            }));
        }
        if pausing {
            if self.cursor.at_boundary() {
                return Ok(Step::Done(Ended::Paused));
            }
            if self.cursor.lost() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the upstream stream has no frame boundaries to pause at",
                ));
            }
        }
        if self.wants_splice(pausing) {
            self.splice_in()
        } else {
            self.read_in(pausing)
        }
    }

    /// The next bytes from upstream are a payload worth splicing (while pausing, the rest of a
    /// large one).
    fn wants_splice(&self, pausing: bool) -> bool {
        !self.upstream_ended
            && (self.cursor.payload_left >= SPLICE_MIN_PAYLOAD
                || (pausing && self.large_frames && self.cursor.payload_left > 0))
    }

    fn splice_in(&mut self) -> io::Result<Step> {
        let len = self.cursor.payload_left.min(self.pipe.capacity as u64) as usize;
        let (upstream, pipe) = (self.upstream.as_raw_fd(), self.pipe.write.as_raw_fd());
        match self
            .upstream
            .try_io(Interest::READABLE, || splice(upstream, pipe, len))
        {
            Ok(0) => self.upstream_ended = true,
            Ok(n) => {
                self.cursor.payload_left -= n as u64;
                self.in_pipe = n;
                self.totals.spliced_bytes += n as u64;
                self.large_frames = true;
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                return Ok(Step::Wait(Wait::UpstreamReadable))
            }
            Err(_) => self.upstream_ended = true,
        }
        Ok(Step::Progress)
    }

    fn read_in(&mut self, pausing: bool) -> io::Result<Step> {
        let want = if pausing {
            // Never read past the boundary the pause stops at.
            self.cursor.bytes_to_boundary().clamp(1, READ_CHUNK as u64) as usize
        } else if self.cursor.payload_left > 0 || !self.large_frames {
            READ_CHUNK
        } else {
            MAX_HEADER_LEN - self.cursor.header_len as usize
        };
        self.pending.resize(want, 0);
        match self.upstream.try_read(&mut self.pending) {
            Ok(0) => {
                self.pending.clear();
                self.upstream_ended = true;
            }
            Ok(n) => {
                self.pending.truncate(n);
                self.cursor.advance(&self.pending);
                self.totals.copied_bytes += n as u64;
                if self.cursor.payload_left < SPLICE_MIN_PAYLOAD {
                    self.large_frames = false;
                }
            }
            Err(err) => {
                self.pending.clear();
                if err.kind() == io::ErrorKind::WouldBlock {
                    return Ok(Step::Wait(Wait::UpstreamReadable));
                }
                self.upstream_ended = true;
            }
        }
        Ok(Step::Progress)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (a, b) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (a.unwrap(), b.unwrap().0)
    }

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0x82];
        match payload.len() {
            n if n < 126 => out.push(n as u8),
            n if n <= 0xffff => {
                out.push(126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(payload);
        out
    }

    /// upstream_peer -> [upstream | relay | client] -> client_peer
    struct Rig {
        upstream_peer: TcpStream,
        upstream: TcpStream,
        client: TcpStream,
        client_peer: TcpStream,
    }

    async fn rig() -> Rig {
        let (upstream_peer, upstream) = pair().await;
        let (client, client_peer) = pair().await;
        Rig {
            upstream_peer,
            upstream,
            client,
            client_peer,
        }
    }

    #[tokio::test]
    async fn mixed_frames_arrive_intact_and_large_payloads_are_spliced() {
        let Rig {
            mut upstream_peer,
            upstream,
            client,
            mut client_peer,
        } = rig().await;
        let mut stream = frame(b"leftover");
        let leftover = Bytes::from(stream.clone());
        let mut sent = Vec::new();
        for i in 0..200u32 {
            let len = [10usize, 100, 5000, 70_000][i as usize % 4];
            let payload: Vec<u8> = (0..len).map(|j| (j as u32 ^ i) as u8).collect();
            sent.extend(frame(&payload));
        }
        stream.extend_from_slice(&sent);
        let writer = tokio::spawn(async move {
            upstream_peer.write_all(&sent).await.unwrap();
            upstream_peer.shutdown().await.unwrap();
        });
        let mut relay = SpliceRelay::new(&client, &upstream, leftover).unwrap();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            client_peer.read_to_end(&mut got).await.unwrap();
            got
        });
        let ended = relay.run(std::future::pending()).await.unwrap();
        assert_eq!(
            ended,
            Ended::UpstreamEnded {
                close_forwarded: None,
                at_boundary: true
            }
        );
        writer.await.unwrap();
        let totals = relay.totals();
        drop(relay);
        drop(client);
        let got = reader.await.unwrap();
        assert_eq!(got.len(), stream.len());
        assert!(got == stream, "bytes differ");
        assert_eq!(totals.bytes(), stream.len() as u64);
        // 50 frames of 70,000 and 50 of 5,000 bytes. The spliced share depends on how reads
        // fall on a loaded machine; that splicing happens at all is what this checks.
        assert!(totals.spliced_bytes > 0, "{totals:?}");
    }

    #[tokio::test]
    async fn a_pause_waits_for_the_end_of_the_current_frame() {
        let Rig {
            mut upstream_peer,
            upstream,
            client,
            mut client_peer,
        } = rig().await;
        let whole = frame(&[7u8; 50_000]);
        upstream_peer.write_all(&whole[..20_000]).await.unwrap();
        let mut relay = SpliceRelay::new(&client, &upstream, Bytes::new()).unwrap();
        let (pause_tx, pause_rx) = tokio::sync::oneshot::channel::<()>();
        let finish = async {
            pause_tx.send(()).unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            // The relay cannot stop before the frame is complete.
            upstream_peer.write_all(&whole[20_000..]).await.unwrap();
            upstream_peer.write_all(&frame(b"next")).await.unwrap();
        };
        let (ended, ()) = tokio::join!(
            relay.run(async {
                let _ = pause_rx.await;
            }),
            finish
        );
        assert_eq!(ended.unwrap(), Ended::Paused);
        let mut got = vec![0u8; whole.len()];
        client_peer.read_exact(&mut got).await.unwrap();
        assert!(got == whole);
        // Nothing of the next frame was forwarded; the caller may write its own frame now.
        client.try_write(&frame(b"ping")).unwrap();
        let mut ping = [0u8; 6];
        client_peer.read_exact(&mut ping).await.unwrap();
        assert_eq!(&ping[2..], b"ping");
        drop(upstream_peer);
        let ended = relay.run(std::future::pending()).await.unwrap();
        assert!(matches!(
            ended,
            Ended::UpstreamEnded {
                at_boundary: true,
                ..
            }
        ));
        let mut next = [0u8; 6];
        client_peer.read_exact(&mut next).await.unwrap();
        assert_eq!(&next[2..], b"next");
    }

    #[tokio::test]
    async fn an_upstream_close_frame_and_a_cut_frame_are_reported() {
        let Rig {
            mut upstream_peer,
            upstream,
            client,
            client_peer: _client_peer,
        } = rig().await;
        upstream_peer
            .write_all(&[0x88, 0x02, 0x03, 0xe8])
            .await
            .unwrap();
        upstream_peer.write_all(&[0x82, 0x7e, 0x10]).await.unwrap();
        drop(upstream_peer);
        let mut relay = SpliceRelay::new(&client, &upstream, Bytes::new()).unwrap();
        let ended = relay.run(std::future::pending()).await.unwrap();
        assert_eq!(
            ended,
            Ended::UpstreamEnded {
                close_forwarded: Some(1000),
                at_boundary: false
            }
        );
    }
}
