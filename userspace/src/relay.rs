//! Frame relay between an upgraded client and its upstream (the userspace data path).
//!
//! Each direction is a pump: read what the socket has, decode complete events, decide on each
//! message, re-encode the allowed ones for the other side (client->upstream frames get a fresh
//! mask) and write them before reading again, so a slow reader stalls its writer instead of
//! growing a buffer. Closing is coordinated here: a Close is forwarded and the other side's reply
//! awaited for a bounded time; a protocol violation closes the offender with its code and the
//! other side with a neutral one, and the offending message is never written anywhere.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use frameguard_codec::{
    close_payload, encode_control, encode_message, CloseCode, Control, Decoder, DecoderConfig,
    Event, OpCode, ProtocolError, Role,
};
use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{watch, Mutex};
use tokio::time::timeout;

use crate::kernel::{KernelPath, SplicedDirection};
use crate::splice::{Ended, SpliceRelay};
use crate::verdict::{Decision, MessageInspector};

/// Which way a message travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Client -> upstream.
    Inbound,
    /// Upstream -> client.
    Outbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

pub struct RelaySettings {
    pub max_message_size: usize,
    /// RSV bits the negotiated extensions use (RSV1 for permessage-deflate).
    pub allowed_rsv: u8,
    /// How long to wait for the other side's Close, and for the offender to hang up after we
    /// closed it.
    pub close_timeout: Duration,
    /// Send the client a ping this often; no pong within `ping_timeout` drops the connection.
    pub ping_interval: Option<Duration>,
    pub ping_timeout: Duration,
    /// No data message either way for this long closes both sides with 1001.
    pub idle_timeout: Option<Duration>,
    /// A client message begun and not complete after this long closes the client with 1008:
    /// otherwise a client could hold a buffer of up to the message limit for as long as it
    /// likes by stopping mid-message.
    pub message_timeout: Duration,
}

/// Prometheus counters one direction of one connection feeds (resolved once per connection).
#[derive(Clone, Default)]
pub struct DirectionMeters {
    pub messages: Counter,
    pub bytes: Counter,
    /// Frames by opcode: text, binary, close, ping, pong (continuations count with their message).
    pub frames: [Counter; 5],
}

impl DirectionMeters {
    pub const OPCODES: [&'static str; 5] = ["text", "binary", "close", "ping", "pong"];
}

/// What one batch relayed, counted locally and added to the shared counters once: the
/// counters are atomics shared by every worker, and one locked add per message was the relay's
/// most expensive step.
#[derive(Default)]
struct BatchTally {
    messages: u64,
    /// Frames by opcode, indexed as [`DirectionMeters::OPCODES`].
    frames: [u64; 5],
}

impl BatchTally {
    fn add_frames(&mut self, opcode: OpCode, count: u64) {
        let i = match opcode {
            OpCode::Text | OpCode::Continuation => 0,
            OpCode::Binary => 1,
            OpCode::Close => 2,
            OpCode::Ping => 3,
            OpCode::Pong => 4,
        };
        self.frames[i] += count;
    }

    fn record(&self, stats: &SharedStats, meters: &DirectionMeters) {
        if self.messages > 0 {
            stats.messages.fetch_add(self.messages, Ordering::Relaxed);
            meters.messages.inc_by(self.messages);
        }
        let frames: u64 = self.frames.iter().sum();
        if frames > 0 {
            stats.frames.fetch_add(frames, Ordering::Relaxed);
            for (counter, &count) in meters.frames.iter().zip(&self.frames) {
                if count > 0 {
                    counter.inc_by(count);
                }
            }
        }
    }
}

/// Counters of one direction, for the access log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirectionStats {
    pub frames: u64,
    pub messages: u64,
    pub bytes: u64,
}

#[derive(Default)]
struct SharedStats {
    frames: AtomicU64,
    messages: AtomicU64,
    bytes: AtomicU64,
}

impl SharedStats {
    fn snapshot(&self) -> DirectionStats {
        DirectionStats {
            frames: self.frames.load(Ordering::Relaxed),
            messages: self.messages.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }
}

/// How a relayed connection ended.
#[derive(Debug, Default)]
pub struct RelayOutcome {
    pub inbound: DirectionStats,
    pub outbound: DirectionStats,
    /// The close code the client was sent or sent, if any (1006: dropped without one).
    pub close_code: Option<u16>,
    pub close_reason: String,
}

/// Keep-alive bookkeeping shared by the pumps and the relay's timer.
struct Liveness {
    started: Instant,
    /// Milliseconds since `started` of the last data message either way.
    last_activity_ms: AtomicU64,
    /// Sequence number of the proxy's ping still waiting for its pong (0: none).
    awaiting_pong: AtomicU64,
    /// An idle timeout is configured (otherwise activity is not worth a clock read).
    tracks_idle: bool,
    /// Milliseconds since `started` when the client's incomplete message (or frame) began;
    /// [`COMPLETE`] when none is pending.
    client_incomplete_since_ms: AtomicU64,
}

const COMPLETE: u64 = u64::MAX;

/// The Closes a timeout sends the client and the upstream.
const IDLE_CLOSES: (Notice, Notice) = (
    (CloseCode::GOING_AWAY, "idle timeout"),
    (CloseCode::GOING_AWAY, "idle timeout"),
);
const INCOMPLETE_CLOSES: (Notice, Notice) = (
    (CloseCode::POLICY, "message not completed in time"),
    (CloseCode::GOING_AWAY, "client closed by proxy"),
);

const KEEPALIVE_PREFIX: &[u8] = b"frameguard-keepalive-";

impl Liveness {
    fn touch(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.last_activity_ms.store(ms, Ordering::Relaxed);
    }

    /// Notes whether the client has a message (or frame) pending; its clock starts with the
    /// first incomplete read and stops when nothing is pending.
    fn client_pending(&self, pending: bool) {
        let since = self.client_incomplete_since_ms.load(Ordering::Relaxed);
        if pending && since == COMPLETE {
            let ms = self.started.elapsed().as_millis() as u64;
            self.client_incomplete_since_ms.store(ms, Ordering::Relaxed);
        } else if !pending && since != COMPLETE {
            self.client_incomplete_since_ms
                .store(COMPLETE, Ordering::Relaxed);
        }
    }

    /// True when `pong` answers the proxy's own ping (it is then not forwarded).
    fn takes_pong(&self, pong: &[u8]) -> bool {
        let Some(seq) = pong.strip_prefix(KEEPALIVE_PREFIX) else {
            return false;
        };
        let awaiting = self.awaiting_pong.load(Ordering::Relaxed);
        awaiting != 0 && seq == awaiting.to_string().as_bytes() && {
            self.awaiting_pong.store(0, Ordering::Relaxed);
            true
        }
    }
}

type Reader = Box<dyn AsyncRead + Send + Unpin>;

/// A write half that refuses to write anything after a Close frame, as RFC 6455 requires.
struct Sink {
    io: SinkIo,
    /// The code of the Close frame written to this side (0 when it carried none).
    close_sent: Option<u16>,
    failed: bool,
}

enum SinkIo {
    Direct(Box<dyn AsyncWrite + Send + Unpin>),
    /// A client whose upstream -> client direction is spliced.
    Gated(Arc<Gate>),
}

impl Sink {
    fn new(io: SinkIo) -> SharedSink {
        Arc::new(Mutex::new(Sink {
            io,
            close_sent: None,
            failed: false,
        }))
    }

    /// Write frames; `close` is the code of a Close frame at their end, if there is one.
    /// Returns false when the socket failed.
    async fn write(&mut self, bytes: &[u8], close: Option<u16>) -> bool {
        if self.close_sent.is_some() || self.failed {
            return !self.failed;
        }
        self.close_sent = close;
        self.failed = match &mut self.io {
            SinkIo::Direct(io) => io.write_all(bytes).await.is_err() || io.flush().await.is_err(),
            // Boxed: only the proxy's own frames to a spliced client come here, and the wait
            // would otherwise take room in every pump.
            SinkIo::Gated(gate) => !Box::pin(gate.write(bytes, close.is_some())).await,
        };
        !self.failed
    }

    async fn close(&mut self, notice: Notice, mask: Option<[u8; 4]>) {
        let mut frame = BytesMut::new();
        let ctrl = Control {
            opcode: OpCode::Close,
            payload: close_payload(notice.0, notice.1),
        };
        encode_control(&mut frame, &ctrl, mask);
        self.write(&frame, Some(notice.0 .0)).await;
    }

    async fn finish(&mut self) {
        match &mut self.io {
            SinkIo::Direct(io) => {
                let _ = io.shutdown().await;
            }
            SinkIo::Gated(gate) => {
                let _ = socket2::SockRef::from(gate.client.as_ref())
                    .shutdown(std::net::Shutdown::Write);
            }
        }
    }
}

type SharedSink = Arc<Mutex<Sink>>;

/// A Close the proxy itself sends: code and reason.
type Notice = (CloseCode, &'static str);

/// Why one pump stopped.
#[derive(Debug)]
enum PumpEnd {
    /// The source sent a Close (code, if any), which was forwarded.
    Closed(Option<u16>),
    /// The source's TCP stream ended (or failed) without a Close.
    Eof,
    /// The destination could not be written.
    DestinationFailed,
    /// The source broke the protocol or a policy; nothing of the offending message was forwarded.
    Violation {
        code: CloseCode,
        reason: &'static str,
        /// The inspector refused a message (not the codec a frame).
        refused: bool,
    },
}

struct Pump {
    direction: Direction,
    source: Reader,
    destination: SharedSink,
    decoder: Decoder,
    /// Received bytes not decoded yet: a partial frame, or nothing (and no allocation).
    read_buf: BytesMut,
    stats: Arc<SharedStats>,
    meters: DirectionMeters,
    liveness: Arc<Liveness>,
}

/// Most a read takes at once.
const READ_CHUNK: usize = 64 * 1024;

thread_local! {
    /// The worker's read buffer, shared by its pumps: a connection waiting for data holds none,
    /// only the bytes of a partial frame.
    static READ_SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_CHUNK].into_boxed_slice());
    /// Decoded events and their decisions while a batch is judged and encoded; never held
    /// across an await, so one pair serves all the worker's pumps.
    static BATCH: RefCell<(Vec<Event>, Vec<Decision>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Read once from `source` into the worker's scratch buffer and hand the bytes to `take`.
async fn read_scratch(source: &mut Reader, mut take: impl FnMut(&[u8])) -> std::io::Result<usize> {
    std::future::poll_fn(|cx| {
        READ_SCRATCH.with_borrow_mut(|scratch| {
            let mut buf = ReadBuf::new(scratch);
            std::task::ready!(Pin::new(&mut *source).poll_read(cx, &mut buf))?;
            take(buf.filled());
            Poll::Ready(Ok(buf.filled().len()))
        })
    })
    .await
}

/// The frames one batch produced for the destination.
struct Outgoing {
    frames: BytesMut,
    /// The code of the Close frame at the end of `frames`, if there is one (0: none given).
    close: Option<u16>,
    /// Why the pump ends once `frames` are written, if it does.
    end: Option<PumpEnd>,
}

impl Pump {
    async fn run(
        mut self: Box<Self>,
        inspector: &mut dyn MessageInspector,
    ) -> (Box<Pump>, PumpEnd) {
        // Bytes that arrived with the handshake are decoded before the first read.
        let end = loop {
            let outgoing = self.prepare(inspector);
            if let Some(end) = self.deliver(outgoing).await {
                break end;
            }
            let read_buf = &mut self.read_buf;
            match read_scratch(&mut self.source, |bytes| read_buf.extend_from_slice(bytes)).await {
                Ok(0) | Err(_) => break PumpEnd::Eof,
                Ok(n) => {
                    self.stats.bytes.fetch_add(n as u64, Ordering::Relaxed);
                    self.meters.bytes.inc_by(n as u64);
                }
            }
        };
        (self, end)
    }

    /// Decode every complete event in the read buffer (up to a Close or a protocol error),
    /// inspect them as one batch and encode the allowed ones in order, stopping at the first
    /// one refused.
    fn prepare(&mut self, inspector: &mut dyn MessageInspector) -> Outgoing {
        let outgoing = BATCH.with_borrow_mut(|(events, decisions)| {
            let failure = self.decode_available(events);
            decisions.clear();
            inspector.inspect(self.direction, events, decisions);
            let mut outgoing = self.encode(events, decisions);
            outgoing.end = outgoing.end.or(failure.map(|err| PumpEnd::Violation {
                code: err.code,
                reason: err.reason,
                refused: false,
            }));
            outgoing
        });
        if self.read_buf.is_empty() {
            // Let go of the buffer between frames, so that an idle connection holds none.
            self.read_buf = BytesMut::new();
        }
        if self.direction == Direction::Inbound {
            self.liveness
                .client_pending(!self.read_buf.is_empty() || self.decoder.in_message());
        }
        outgoing
    }

    fn decode_available(&mut self, events: &mut Vec<Event>) -> Option<ProtocolError> {
        loop {
            match self.decoder.decode(&mut self.read_buf) {
                Ok(Some(event)) => {
                    let is_close = matches!(&event, Event::Control(c) if c.opcode == OpCode::Close);
                    events.push(event);
                    if is_close {
                        return None;
                    }
                }
                Ok(None) => return None,
                Err(err) => return Some(err),
            }
        }
    }

    fn next_mask(direction: Direction) -> Option<[u8; 4]> {
        (direction == Direction::Inbound).then(rand::random)
    }

    fn encode(&mut self, events: &mut Vec<Event>, decisions: &mut Vec<Decision>) -> Outgoing {
        let mut outgoing = Outgoing {
            frames: BytesMut::with_capacity(events.iter().map(Event::encoded_len_bound).sum()),
            close: None,
            end: None,
        };
        let mut tally = BatchTally::default();
        for (event, decision) in events.drain(..).zip(decisions.drain(..)) {
            if let Decision::Close(code, reason) = decision {
                outgoing.end = Some(PumpEnd::Violation {
                    code,
                    reason,
                    refused: true,
                });
                break;
            }
            match &event {
                Event::Message(msg) => {
                    tally.messages += 1;
                    tally.add_frames(msg.opcode, msg.fragments.len() as u64);
                    let direction = self.direction;
                    encode_message(&mut outgoing.frames, msg, || Self::next_mask(direction));
                }
                Event::Control(ctrl) => {
                    tally.add_frames(ctrl.opcode, 1);
                    if ctrl.opcode == OpCode::Pong
                        && self.direction == Direction::Inbound
                        && self.liveness.takes_pong(&ctrl.payload)
                    {
                        continue;
                    }
                    encode_control(&mut outgoing.frames, ctrl, Self::next_mask(self.direction));
                    if ctrl.opcode == OpCode::Close {
                        let code = ctrl.close_code_reason().map(|(code, _)| code.0);
                        outgoing.close = Some(code.unwrap_or(0));
                        outgoing.end = Some(PumpEnd::Closed(code));
                        break;
                    }
                }
            }
        }
        tally.record(&self.stats, &self.meters);
        if tally.messages > 0 && self.liveness.tracks_idle {
            self.liveness.touch();
        }
        outgoing
    }

    /// Write a batch's frames; returns why the pump ends, if it does.
    async fn deliver(&mut self, outgoing: Outgoing) -> Option<PumpEnd> {
        if !outgoing.frames.is_empty() {
            let mut destination = match self.destination.try_lock() {
                Ok(destination) => destination,
                // Boxed for the same reason: the sink is rarely contended.
                Err(_) => Box::pin(self.destination.lock()).await,
            };
            if !destination.write(&outgoing.frames, outgoing.close).await {
                return Some(PumpEnd::DestinationFailed);
            }
        }
        outgoing.end
    }
}

/// One side of the relay: the upgraded stream and the bytes already read past the handshake.
pub struct Peer<S> {
    pub stream: S,
    pub buffered: Bytes,
}

/// The Closes the proxy sends when one pump ends first: to that pump's source, and to the
/// other side.
fn notices(first: Direction, end: &PumpEnd) -> (Option<Notice>, Option<Notice>) {
    const CLIENT_GONE: Notice = (CloseCode::GOING_AWAY, "client went away");
    const UPSTREAM_GONE: Notice = (CloseCode::INTERNAL, "upstream connection lost");
    let (source_gone, other_gone) = match first {
        Direction::Inbound => (CLIENT_GONE, UPSTREAM_GONE),
        Direction::Outbound => (UPSTREAM_GONE, CLIENT_GONE),
    };
    match end {
        PumpEnd::Closed(_) => (None, None),
        PumpEnd::Eof => (None, Some(source_gone)),
        PumpEnd::DestinationFailed => (Some(other_gone), None),
        PumpEnd::Violation {
            code,
            reason,
            refused,
        } => {
            let to_other = match first {
                Direction::Inbound => (CloseCode::GOING_AWAY, "client closed by proxy"),
                // The client hears the verdict on what it was about to receive; of an upstream
                // that broke the protocol, only that its gateway failed.
                Direction::Outbound if *refused => (*code, *reason),
                Direction::Outbound => (CloseCode::BAD_GATEWAY, "upstream violated the protocol"),
            };
            (Some((*code, reason)), Some(to_other))
        }
    }
}

/// Read and drop what the offender still sends, so that closing the socket does not turn into
/// a reset that could destroy the Close frame we just sent it.
async fn discard_until_eof(source: &mut Reader) {
    while let Ok(n) = read_scratch(source, |_| ()).await {
        if n == 0 {
            break;
        }
    }
}

/// What the keep-alive timer wants done next.
enum Due {
    Ping,
    PingTimeout,
    Idle,
    /// The client's message is not complete in time.
    Incomplete,
}

struct Keepalive<'a> {
    settings: &'a RelaySettings,
    liveness: &'a Liveness,
    next_ping: Option<Instant>,
    ping_sent: Option<Instant>,
    seq: u64,
}

impl Keepalive<'_> {
    /// The next instant something is due, and what.
    fn next(&self) -> Option<(Instant, Due)> {
        let awaiting = self.liveness.awaiting_pong.load(Ordering::Relaxed) != 0;
        let ping_deadline = match (awaiting, self.ping_sent) {
            (true, Some(sent)) => Some((sent + self.settings.ping_timeout, Due::PingTimeout)),
            _ => self.next_ping.map(|at| (at, Due::Ping)),
        };
        let idle = self.settings.idle_timeout.map(|idle| {
            let last = self.liveness.last_activity_ms.load(Ordering::Relaxed);
            (
                self.liveness.started + Duration::from_millis(last) + idle,
                Due::Idle,
            )
        });
        let timeout = self.settings.message_timeout;
        // The pumps do not wake this timer when a message begins: with none pending, look
        // again a timeout from now (a stall is then noticed within twice the timeout).
        let incomplete = match self
            .liveness
            .client_incomplete_since_ms
            .load(Ordering::Relaxed)
        {
            COMPLETE => (Instant::now() + timeout, Due::Incomplete),
            ms => (
                self.liveness.started + Duration::from_millis(ms) + timeout,
                Due::Incomplete,
            ),
        };
        [ping_deadline, idle, Some(incomplete)]
            .into_iter()
            .flatten()
            .min_by_key(|(at, _)| *at)
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Relay frames between `client` and `upstream` until the connection ends, or until shutdown
/// asks the client to close (1001) and it has.
///
/// Everything is set up before the future is returned, so that it holds only what the
/// connection needs while it runs.
pub fn relay<'a, C, U>(
    client: Peer<C>,
    upstream: Peer<U>,
    settings: &'a RelaySettings,
    meters: [DirectionMeters; 2],
    shutdown: watch::Receiver<bool>,
    inspectors: [&'a mut dyn MessageInspector; 2],
) -> impl Future<Output = RelayOutcome> + Send + 'a
where
    C: AsyncRead + AsyncWrite + Send + 'static,
    U: AsyncRead + AsyncWrite + Send + 'static,
{
    let (client_read, client_write) = tokio::io::split(client.stream);
    let (upstream_read, upstream_write) = tokio::io::split(upstream.stream);
    let client_sink = Sink::new(SinkIo::Direct(Box::new(client_write)));
    let upstream_sink = Sink::new(SinkIo::Direct(Box::new(upstream_write)));
    let conn = ConnectionParts::new(settings);
    let [inbound_inspector, outbound_inspector] = inspectors;
    let [inbound_meters, outbound_meters] = meters;
    let inbound = conn.pump(
        Direction::Inbound,
        Box::new(client_read),
        &upstream_sink,
        client.buffered,
        inbound_meters,
    );
    let outbound = conn.pump(
        Direction::Outbound,
        Box::new(upstream_read),
        &client_sink,
        upstream.buffered,
        outbound_meters,
    );
    drive(
        conn,
        [client_sink, upstream_sink],
        [
            start(inbound, inbound_inspector),
            start(outbound, outbound_inspector),
        ],
        shutdown,
    )
}

/// How an uninspected upstream -> client direction is carried without the frame pump.
#[derive(Clone)]
pub enum SplicePath {
    /// splice(2) through a pipe (no privileges needed).
    Pipe,
    /// The sockmap verdict program.
    Kernel(KernelPath),
}

/// Like [`relay`], but the upstream -> client direction is spliced (it must need no
/// inspection). Writes the proxy itself makes to the client (pings, Closes) wait for the
/// spliced direction to pause at a frame boundary. Set up before the future is returned, as
/// [`relay`] is.
pub fn relay_spliced<'a>(
    client: Peer<TcpStream>,
    upstream: Peer<TcpStream>,
    path: SplicePath,
    settings: &'a RelaySettings,
    meters: [DirectionMeters; 2],
    shutdown: watch::Receiver<bool>,
    inbound_inspector: &'a mut dyn MessageInspector,
) -> impl Future<Output = RelayOutcome> + Send + 'a {
    let client_stream = Arc::new(client.stream);
    let upstream_stream = Arc::new(upstream.stream);
    let gate = Arc::new(Gate::new(client_stream.clone()));
    let client_sink = Sink::new(SinkIo::Gated(gate.clone()));
    let upstream_sink = Sink::new(SinkIo::Direct(Box::new(SharedTcp(upstream_stream.clone()))));
    let conn = ConnectionParts::new(settings);
    let [inbound_meters, outbound_meters] = meters;
    let inbound = conn.pump(
        Direction::Inbound,
        Box::new(SharedTcp(client_stream.clone())),
        &upstream_sink,
        client.buffered,
        inbound_meters,
    );
    let outbound_stats = conn.stats[Direction::Outbound as usize].clone();
    let driver = tokio::spawn(drive_spliced(
        path,
        client_stream,
        upstream_stream,
        upstream.buffered,
        gate,
        outbound_stats,
        outbound_meters,
    ));
    let outbound_run: PumpFuture<'_> =
        Box::pin(async { (None, driver.await.unwrap_or(PumpEnd::Eof)) });
    drive(
        conn,
        [client_sink, upstream_sink],
        [start(inbound, inbound_inspector), outbound_run],
        shutdown,
    )
}

/// Carry the spliced direction until the upstream ends or the proxy closed the client.
async fn drive_spliced(
    path: SplicePath,
    client: Arc<TcpStream>,
    upstream: Arc<TcpStream>,
    leftover: Bytes,
    gate: Arc<Gate>,
    stats: Arc<SharedStats>,
    meters: DirectionMeters,
) -> PumpEnd {
    let spliced = match &path {
        SplicePath::Pipe => SpliceRelay::new(&client, &upstream, leftover).map(Spliced::Pipe),
        SplicePath::Kernel(kernel) => kernel
            .splice(&client, &upstream, leftover)
            .map(Spliced::Kernel),
    };
    let mut spliced = match spliced {
        Ok(spliced) => spliced,
        Err(err) => {
            tracing::warn!(error = %err, "cannot splice; closing the connection");
            gate.stop(false).await;
            return PumpEnd::Eof;
        }
    };
    let mut reported = 0;
    let end = loop {
        let ended = spliced.run(gate.requested.notified()).await;
        let moved = spliced.totals().bytes();
        stats.bytes.fetch_add(moved - reported, Ordering::Relaxed);
        meters.bytes.inc_by(moved - reported);
        reported = moved;
        match ended {
            Ok(Ended::Paused) => {
                if gate.flush().await {
                    break PumpEnd::Closed(None);
                }
            }
            Ok(Ended::UpstreamEnded {
                close_forwarded,
                at_boundary,
            }) => {
                gate.stop(at_boundary).await;
                break match close_forwarded {
                    Some(code) => PumpEnd::Closed(Some(code)),
                    None => PumpEnd::Eof,
                };
            }
            Err(_) => {
                gate.stop(false).await;
                break PumpEnd::Eof;
            }
        }
    };
    gate.stop(true).await;
    end
}

/// The two kinds of spliced direction, driven the same way.
enum Spliced<'a> {
    Pipe(SpliceRelay<'a>),
    Kernel(SplicedDirection<'a>),
}

impl Spliced<'_> {
    async fn run(
        &mut self,
        pause: impl std::future::Future<Output = ()>,
    ) -> std::io::Result<Ended> {
        match self {
            Spliced::Pipe(relay) => relay.run(pause).await,
            Spliced::Kernel(direction) => direction.run(pause).await,
        }
    }

    fn totals(&self) -> crate::splice::Totals {
        match self {
            Spliced::Pipe(relay) => relay.totals(),
            Spliced::Kernel(direction) => direction.totals(),
        }
    }
}

/// Writes to a client whose inbound direction is spliced: while splicing, a write is queued
/// and the splice asked to pause at a frame boundary; the splice driver writes the queue.
struct Gate {
    client: Arc<TcpStream>,
    state: std::sync::Mutex<GateState>,
    requested: tokio::sync::Notify,
}

#[derive(Default)]
struct GateState {
    /// Writes now go straight to the socket (the splice has ended).
    direct: bool,
    /// The splice ended inside a frame: nothing more may be written.
    poisoned: bool,
    queue: Vec<(Bytes, bool, tokio::sync::oneshot::Sender<bool>)>,
}

impl Gate {
    fn new(client: Arc<TcpStream>) -> Gate {
        Gate {
            client,
            state: Default::default(),
            requested: tokio::sync::Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    async fn write(&self, bytes: &[u8], is_close: bool) -> bool {
        let queued = {
            let mut state = self.lock();
            if state.poisoned {
                return false;
            }
            if state.direct {
                None
            } else {
                let (tx, rx) = tokio::sync::oneshot::channel();
                state
                    .queue
                    .push((Bytes::copy_from_slice(bytes), is_close, tx));
                Some(rx)
            }
        };
        match queued {
            None => write_all_shared(&self.client, bytes).await.is_ok(),
            Some(rx) => {
                self.requested.notify_one();
                rx.await.unwrap_or(false)
            }
        }
    }

    /// Write the queued frames (the splice is paused). True when one of them was a Close:
    /// the client must then get nothing more from the upstream.
    async fn flush(&self) -> bool {
        let queue = std::mem::take(&mut self.lock().queue);
        let mut closed = false;
        for (bytes, is_close, done) in queue {
            let ok = write_all_shared(&self.client, &bytes).await.is_ok();
            closed |= is_close;
            let _ = done.send(ok);
        }
        closed
    }

    /// The splice is over: later writes go straight to the socket (or nowhere, when it stopped
    /// inside a frame); queued ones are written now.
    async fn stop(&self, at_boundary: bool) {
        {
            let mut state = self.lock();
            state.direct = true;
            state.poisoned |= !at_boundary;
            if state.poisoned {
                for (_, _, done) in state.queue.drain(..) {
                    let _ = done.send(false);
                }
            }
        }
        self.flush().await;
    }
}

async fn write_all_shared(stream: &TcpStream, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        stream.writable().await?;
        match stream.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

/// A TcpStream shared between the relay and a splice, read and written through `&TcpStream`.
struct SharedTcp(Arc<TcpStream>);

impl AsyncRead for SharedTcp {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        loop {
            std::task::ready!(self.0.poll_read_ready(cx))?;
            match self.0.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return std::task::Poll::Ready(Ok(()));
                }
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(err) => return std::task::Poll::Ready(Err(err)),
            }
        }
    }
}

impl AsyncWrite for SharedTcp {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        loop {
            std::task::ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write(buf) {
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => continue,
                result => return std::task::Poll::Ready(result),
            }
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let socket = socket2::SockRef::from(self.0.as_ref());
        std::task::Poll::Ready(socket.shutdown(std::net::Shutdown::Write))
    }
}

/// Per-connection pieces both relay flavours build their pumps from.
struct ConnectionParts<'a> {
    settings: &'a RelaySettings,
    liveness: Arc<Liveness>,
    stats: [Arc<SharedStats>; 2],
}

impl<'a> ConnectionParts<'a> {
    fn new(settings: &'a RelaySettings) -> ConnectionParts<'a> {
        ConnectionParts {
            settings,
            liveness: Arc::new(Liveness {
                started: Instant::now(),
                last_activity_ms: AtomicU64::new(0),
                awaiting_pong: AtomicU64::new(0),
                tracks_idle: settings.idle_timeout.is_some(),
                client_incomplete_since_ms: AtomicU64::new(COMPLETE),
            }),
            stats: [Arc::default(), Arc::default()],
        }
    }

    fn pump(
        &self,
        direction: Direction,
        source: Reader,
        destination: &SharedSink,
        buffered: Bytes,
        meters: DirectionMeters,
    ) -> Box<Pump> {
        let role = match direction {
            Direction::Inbound => Role::Server,
            Direction::Outbound => Role::Client,
        };
        Box::new(Pump {
            direction,
            source,
            destination: destination.clone(),
            decoder: Decoder::new(DecoderConfig {
                role,
                allowed_rsv: self.settings.allowed_rsv,
                max_message_size: self.settings.max_message_size,
            }),
            read_buf: BytesMut::from(&buffered[..]),
            stats: self.stats[direction as usize].clone(),
            meters,
            liveness: self.liveness.clone(),
        })
    }
}

/// How a direction ended, with its pump when it had one (a spliced direction has none).
type PumpRun = (Option<Box<Pump>>, PumpEnd);

/// A running direction. On the heap, as the pump is, so that the connection's future only
/// points at them.
type PumpFuture<'a> = Pin<Box<dyn Future<Output = PumpRun> + Send + 'a>>;

fn start(pump: Box<Pump>, inspector: &mut dyn MessageInspector) -> PumpFuture<'_> {
    Box::pin(async move {
        let (pump, end) = pump.run(inspector).await;
        (Some(pump), end)
    })
}

/// The life of a relayed connection after both directions started: keep-alive, idle timeout,
/// shutdown, and the close sequence once a direction ends.
async fn drive(
    conn: ConnectionParts<'_>,
    [client_sink, upstream_sink]: [SharedSink; 2],
    [mut inbound_run, mut outbound_run]: [PumpFuture<'_>; 2],
    mut shutdown: watch::Receiver<bool>,
) -> RelayOutcome {
    let settings = conn.settings;
    let liveness = &conn.liveness;
    let mut keepalive = Keepalive {
        settings,
        liveness,
        next_ping: settings.ping_interval.map(|every| Instant::now() + every),
        ping_sent: None,
        seq: 0,
    };
    let mut shutting_down = *shutdown.borrow();
    if shutting_down {
        client_sink
            .lock()
            .await
            .close((CloseCode::GOING_AWAY, "server shutting down"), None)
            .await;
    }
    // Set when a timeout closed both sides (the reason the access log gives).
    let mut timed_out: Option<&'static str> = None;
    let first = loop {
        let due = keepalive.next();
        tokio::select! {
            ended = &mut inbound_run => break Some((Direction::Inbound, ended)),
            ended = &mut outbound_run => break Some((Direction::Outbound, ended)),
            changed = shutdown.changed(), if !shutting_down => {
                shutting_down = true;
                if changed.is_ok() {
                    // Ask the client to close; the pumps carry on until the close handshake ends.
                    client_sink.lock().await.close((CloseCode::GOING_AWAY, "server shutting down"), None).await;
                }
            }
            // Pongs and traffic move the deadlines while we sleep: act only on what is still due.
            _ = sleep_until(due.map(|d| d.0)) => match keepalive.next().filter(|d| d.0 <= Instant::now()).map(|d| d.1) {
                Some(Due::Ping) => {
                    keepalive.seq += 1;
                    let mut payload = KEEPALIVE_PREFIX.to_vec();
                    payload.extend_from_slice(keepalive.seq.to_string().as_bytes());
                    let mut frame = BytesMut::new();
                    let ping = Control { opcode: OpCode::Ping, payload: payload.into() };
                    encode_control(&mut frame, &ping, None);
                    liveness.awaiting_pong.store(keepalive.seq, Ordering::Relaxed);
                    keepalive.ping_sent = Some(Instant::now());
                    keepalive.next_ping = settings.ping_interval.map(|every| Instant::now() + every);
                    client_sink.lock().await.write(&frame, None).await;
                }
                Some(Due::PingTimeout) => break None,
                Some(due @ (Due::Idle | Due::Incomplete)) => {
                    let (to_client, to_upstream) = match due {
                        Due::Idle => IDLE_CLOSES,
                        _ => INCOMPLETE_CLOSES,
                    };
                    timed_out = Some(to_client.1);
                    client_sink.lock().await.close(to_client, None).await;
                    upstream_sink.lock().await.close(to_upstream, Some(rand::random())).await;
                    break None;
                }
                None => {}
            },
        }
    };
    let mut outcome = RelayOutcome::default();
    match first {
        Some((first, (first_pump, first_end))) => {
            if let (Direction::Outbound, PumpEnd::Closed(code), None) =
                (first, &first_end, &first_pump)
            {
                // A spliced upstream Close went straight to the client.
                client_sink
                    .lock()
                    .await
                    .close_sent
                    .get_or_insert(code.unwrap_or(0));
            }
            // Boxed: the close sequence needs room only once it starts.
            let second_end = Box::pin(finish_after_first_end(
                first,
                first_pump,
                &first_end,
                [&client_sink, &upstream_sink],
                settings.close_timeout,
                [&mut inbound_run, &mut outbound_run],
            ))
            .await;
            let (inbound_end, outbound_end) = match first {
                Direction::Inbound => (Some(&first_end), second_end.as_ref()),
                Direction::Outbound => (second_end.as_ref(), Some(&first_end)),
            };
            if let Some(PumpEnd::Closed(code)) = inbound_end {
                outcome.close_code = Some(code.unwrap_or(0));
            }
            if let (Some(PumpEnd::Violation { reason, .. }), Direction::Inbound) =
                (inbound_end, first)
            {
                outcome.close_reason = (*reason).to_owned();
            }
            if let (Some(PumpEnd::Violation { reason, .. }), Direction::Outbound) =
                (outbound_end, first)
            {
                outcome.close_reason = (*reason).to_owned();
            }
        }
        None => match timed_out {
            Some(reason) => {
                outcome.close_reason = reason.to_owned();
                let _ = timeout(settings.close_timeout, async {
                    tokio::join!(inbound_run, outbound_run)
                })
                .await;
            }
            None => {
                outcome.close_code = Some(CloseCode::ABNORMAL.0);
                outcome.close_reason = "no pong within ping-timeout".to_owned();
            }
        },
    }
    client_sink.lock().await.finish().await;
    upstream_sink.lock().await.finish().await;
    let client_sent = client_sink.lock().await.close_sent;
    outcome.close_code = client_sent.or(outcome.close_code).filter(|&code| code != 0);
    outcome.inbound = conn.stats[0].snapshot();
    outcome.outbound = conn.stats[1].snapshot();
    outcome
}

/// After one pump ended: tell both sides what they need to hear, drain an offender, and let
/// the other pump run until its peer answers the Close. Returns the other pump's end, if it
/// ended in time.
async fn finish_after_first_end(
    first: Direction,
    mut first_pump: Option<Box<Pump>>,
    first_end: &PumpEnd,
    [client_sink, upstream_sink]: [&SharedSink; 2],
    close_timeout: Duration,
    [inbound_run, outbound_run]: [&mut PumpFuture<'_>; 2],
) -> Option<PumpEnd> {
    let (source_sink, other_sink) = match first {
        Direction::Inbound => (client_sink, upstream_sink),
        Direction::Outbound => (upstream_sink, client_sink),
    };
    let source_mask = (first == Direction::Outbound).then(rand::random::<[u8; 4]>);
    let other_mask = (first == Direction::Inbound).then(rand::random::<[u8; 4]>);
    let (to_source, to_other) = notices(first, first_end);
    if let Some(notice) = to_source {
        let mut sink = source_sink.lock().await;
        sink.close(notice, source_mask).await;
        sink.finish().await;
    }
    if let Some(notice) = to_other {
        other_sink.lock().await.close(notice, other_mask).await;
    }
    let drain = async {
        if let (PumpEnd::Violation { .. }, Some(pump)) = (first_end, first_pump.as_mut()) {
            let _ = timeout(close_timeout, discard_until_eof(&mut pump.source)).await;
        }
    };
    let second = match first {
        Direction::Inbound => tokio::join!(timeout(close_timeout, outbound_run), drain).0,
        Direction::Outbound => tokio::join!(timeout(close_timeout, inbound_run), drain).0,
    };
    second.ok().map(|(_, end)| end)
}
