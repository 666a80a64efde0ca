//! Kernel-assisted splice of one direction (upstream -> client) through a sockmap.
//!
//! # Design note for wiring (read this first)
//!
//! Only a direction that needs no inspection is spliced: the upstream -> client direction of a
//! route whose outbound inspection is off. The inbound (client -> upstream) direction stays on
//! the relay's ordinary userspace pump and is never touched by any program. TLS clients cannot
//! use it (the kernel would send plaintext): only plain `TcpStream` pairs.
//!
//! ```text
//! let kernel = KernelPath::load()?;              // once at start; cheap Clone, Send + Sync
//!     // Err(Unavailable(reason)) -> log "eBPF unavailable: {reason}; using userspace relay"
//! let (client_rd, client_wr) = client.into_split();     // tokio OwnedReadHalf/OwnedWriteHalf
//! let (upstream_rd, upstream_wr) = upstream.into_split();
//! let mut out = kernel.splice(client_wr.as_ref(), upstream_rd.as_ref(), upstream.buffered)?;
//! // inbound pump: unchanged, reads client_rd, writes upstream_wr.
//! // outbound: instead of Pump::run
//! match out.run(pause_requested).await? {
//!     Ended::UpstreamEnded { close_forwarded } => ...  // every byte before the upstream's FIN
//!                                                      // reached the client; close_forwarded is
//!                                                      // the code of a Close frame that passed
//!                                                      // (Some(0): no code), like Sink::close_sent
//!     Ended::Paused => ...   // stopped at a frame boundary: nothing is in flight towards the
//!                            // client; write a Ping / Close(1001, 1008) to the client now,
//!                            // then call `out.run(..)` again to resume, or drop `out`.
//! }
//! out.totals()       // Totals { kernel_bytes, spliced_bytes, copied_bytes, evictions }
//! kernel.counters()  // process-wide: bytes spliced in kernel, evictions, redirect failures
//! ```
//!
//! Rules for the caller:
//! - While `run` is executing, the kernel writes into the client socket directly: nothing else
//!   may write to the client. Any write to the client (keep-alive ping, 1008 after a blocked
//!   inbound message, 1001 on shutdown, idle 1001) is: resolve the `pause` future, wait for
//!   `Ended::Paused`, write, then `run` again (or drop). Bound the wait with the close timeout:
//!   a client that stopped reading also stops the pause from completing.
//! - Dropping a `SplicedDirection` (at any point, also mid-`run`) removes every map entry of the
//!   connection. Bytes still queued in the kernel for a client that never read them are then
//!   discarded, which is what tearing a connection down means anyway.
//! - `splice::SpliceRelay` (splice(2) through a pipe) has the same `new`/`run`/`totals` shape and
//!   needs no privileges; it is also what a kernel-spliced direction continues on after an
//!   eviction.
//!
//! # How it works
//!
//! Map A (`UPSTREAMS`, SOCKHASH keyed by socket cookie) holds upstream sockets and has only an
//! SK_SKB stream verdict attached (no parser; it never returns SK_PASS). The verdict looks up the
//! peer (upstream cookie -> client cookie), redirects the whole skb with `bpf_sk_redirect_hash`
//! into map B (`CLIENTS`, SOCKHASH without programs), counts the bytes, and walks the WebSocket
//! frame headers in the skb (bounded loop) so that the per-connection state always says how many
//! bytes complete the current frame. Every `budget / 4` redirected bytes it posts a checkpoint on
//! a ring buffer; userspace then compares the redirected bytes with the client's
//! `tcpi_bytes_acked` (relative to insert) and evicts when more than the budget (4 MiB by
//! default) is unacknowledged.
//!
//! Detaching (EOF, pause, eviction): delete the upstream from map A (no new redirects; a socket
//! lock round-trip makes sure no verdict is still running), wait until the client socket has taken
//! every redirected byte (on EOF: until the client acknowledged them), delete the client from map
//! B, then finish the current frame in userspace from the upstream's receive queue. Waiting for
//! EOF uses an epoll set watching only RDHUP/ERR/HUP of the upstream: an idle spliced
//! connection never wakes the process. (A busy one still wakes the worker's tokio epoll: the
//! psock signals the upstream socket readable after every batch the verdict consumed, and
//! tokio's registration of that socket cannot be narrowed from a `&TcpStream`.)
//!
//! # Known kernel limitation: leaving the map under load
//!
//! Removing a socket from the verdict's sockhash while its verdict is running on another CPU
//! makes the kernel discard the skb in flight (`sk_psock_verdict_recv` finds no program and
//! drops it); nothing in userspace can order the removal against the softirq. Leaving at the
//! upstream's FIN is safe (nothing arrives after it), but a pause or an eviction while the
//! upstream is streaming can hit it. Waiting for a moment without verdict runs before the
//! removal (`Mode::Quiescing`, a few milliseconds at most) took it from 14 to 6 in 100
//! evictions when 64 saturated connections fall behind at once (kernel_measure); the test
//! suite's traffic has not hit it. The byte counters of the upstream socket expose it (bytes
//! the kernel consumed against bytes the verdict redirected), and `run` then fails the
//! connection (counted in `redirect_failures`) rather than forward a stream with a hole in it.

use std::collections::HashMap as StdHashMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use aya::maps::{Array, HashMap, MapData, MapError, RingBuf, SockHash};
use aya::programs::SkSkb;
use aya::Ebpf;
use aya_log::EbpfLogger;
use bytes::Bytes;
use frameguard_common::{Checkpoint, FrameCursor, SocketKey, SpliceStats};
use socket2::SockRef;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tracing::debug;

use crate::splice::{Ended, SpliceRelay, Totals};

/// The verdict program, built by `cargo xtask build-ebpf` / build.rs; empty when this binary was
/// built without the nightly toolchain.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/frameguard-ebpf.o"));
/// "built", or why the object is missing.
const OBJECT_BUILD: &str = env!("FRAMEGUARD_EBPF_BUILD");

/// Default per-connection budget of redirected but unacknowledged bytes.
pub const DEFAULT_BUDGET: u64 = 4 << 20;
/// Insert attempts that found bytes stuck in the upstream's queue before a connection stays
/// in userspace.
const MAX_ATTACH_RETRIES: u32 = 3;
/// Polling bounds while waiting for the client socket to take the redirected bytes (only
/// while detaching; an attached connection is never polled).
const CATCH_UP_FIRST_POLL: Duration = Duration::from_micros(50);
const CATCH_UP_MAX_POLL: Duration = Duration::from_millis(10);
/// Before leaving the verdict's map the connection waits for one look interval without a
/// verdict run, at most `QUIESCE_LOOKS` times: removal mid-verdict loses the skb in flight.
/// A removal right after the checkpoint that asked for it (the verdict just ran, the next skb
/// is on its way) was the worst case.
const QUIESCE_LOOK: Duration = Duration::from_millis(1);
const QUIESCE_LOOKS: u32 = 4;

const TCP_ESTABLISHED: u8 = 1;
const TCP_CLOSE_WAIT: u8 = 8;

/// Why the kernel path cannot be used here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unavailable(pub String);

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unavailable {}

/// Process-wide counters of the kernel path (for metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelCounters {
    /// Bytes the verdict program redirected, counted when a connection leaves the kernel path.
    pub bytes_spliced: u64,
    /// Connections moved back to userspace because they exceeded their memory budget.
    pub evictions: u64,
    /// skbs the kernel could not redirect (and dropped): should stay 0.
    pub redirect_failures: u64,
    /// Connections that could not enter the kernel path and stayed on the splice(2) relay.
    pub attach_fallbacks: u64,
}

/// Entries in each of the program's maps (all 0 when no connection is spliced).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MapOccupancy {
    pub upstreams: usize,
    pub clients: usize,
    pub peers: usize,
    pub stats: usize,
}

#[derive(Default)]
struct Counters {
    bytes_spliced: AtomicU64,
    evictions: AtomicU64,
    redirect_failures: AtomicU64,
    attach_fallbacks: AtomicU64,
}

struct Maps {
    upstreams: SockHash<MapData, SocketKey>,
    clients: SockHash<MapData, SocketKey>,
    peers: HashMap<MapData, SocketKey, SocketKey>,
    stats: HashMap<MapData, SocketKey, SpliceStats>,
    orphan_drops: Array<MapData, u64>,
}

impl Maps {
    /// Remove every entry of one connection, upstream socket first so that nothing is
    /// redirected to a client that is no longer in the map. Missing entries are fine: a
    /// sockhash drops a socket by itself when it closes.
    fn remove_connection(&mut self, upstream: SocketKey, client: SocketKey) {
        let _ = self.upstreams.remove(&upstream);
        let _ = self.clients.remove(&client);
        let _ = self.stats.remove(&upstream);
        let _ = self.peers.remove(&upstream);
    }
}

type Waiters = Arc<Mutex<StdHashMap<SocketKey, Arc<Notify>>>>;

struct Inner {
    maps: Mutex<Maps>,
    waiters: Waiters,
    counters: Counters,
    budget: u64,
    /// eventfd that stops the checkpoint thread.
    stop: OwnedFd,
    dispatcher: Mutex<Option<JoinHandle<()>>>,
    /// Keeps the verdict program loaded and attached.
    _ebpf: Mutex<Ebpf>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writing 8 bytes from a valid buffer to an eventfd we own.
        unsafe { libc::write(self.stop.as_raw_fd(), one.as_ptr().cast(), one.len()) };
        if let Some(thread) = lock(&self.dispatcher).take() {
            let _ = thread.join();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

fn map_error(err: MapError) -> io::Error {
    io::Error::other(err)
}

/// The loaded sockmap program and its maps; see the module docs. Cheap to clone.
#[derive(Clone)]
pub struct KernelPath {
    inner: Arc<Inner>,
}

impl KernelPath {
    /// Load and attach the verdict program with the default budget.
    pub fn load() -> Result<KernelPath, Unavailable> {
        KernelPath::load_with_budget(DEFAULT_BUDGET)
    }

    /// Load and attach the verdict program; `budget` bounds the bytes of one connection that
    /// were redirected but not yet acknowledged by its client.
    pub fn load_with_budget(budget: u64) -> Result<KernelPath, Unavailable> {
        if OBJECT.is_empty() {
            return Err(Unavailable(format!(
                "this binary was built without the eBPF object ({OBJECT_BUILD})"
            )));
        }
        let fail = |what: &str, err: &dyn fmt::Display| Unavailable(format!("{what}: {err}"));
        let mut ebpf = Ebpf::load(OBJECT).map_err(|e| fail("cannot load the eBPF object", &e))?;
        let logger = EbpfLogger::init(&mut ebpf).map_err(|e| fail("cannot read eBPF logs", &e))?;
        let mut take = |name: &str| {
            ebpf.take_map(name)
                .ok_or_else(|| Unavailable(format!("the eBPF object has no map {name}")))
        };
        let upstreams = take("UPSTREAMS")?;
        let clients = take("CLIENTS")?;
        let peers = take("PEERS")?;
        let stats = take("STATS")?;
        let checkpoints = take("CHECKPOINTS")?;
        let orphan_drops = take("ORPHAN_DROPS")?;
        let bad_map = |e: MapError| fail("unexpected map type", &e);
        let maps = Maps {
            upstreams: upstreams.try_into().map_err(bad_map)?,
            clients: clients.try_into().map_err(bad_map)?,
            peers: peers.try_into().map_err(bad_map)?,
            stats: stats.try_into().map_err(bad_map)?,
            orphan_drops: orphan_drops.try_into().map_err(bad_map)?,
        };
        let checkpoints: RingBuf<MapData> = checkpoints.try_into().map_err(bad_map)?;
        let program: &mut SkSkb = ebpf
            .program_mut("frameguard_verdict")
            .ok_or_else(|| Unavailable("the eBPF object has no verdict program".into()))?
            .try_into()
            .map_err(|e| fail("unexpected program type", &e))?;
        program
            .load()
            .map_err(|e| fail("the verifier refused the program", &e))?;
        program
            .attach(maps.upstreams.fd())
            .map_err(|e| fail("cannot attach the verdict", &e))?;
        // SAFETY: plain eventfd creation; the result is checked before use.
        let stop = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if stop < 0 {
            return Err(fail("eventfd", &io::Error::last_os_error()));
        }
        // SAFETY: a fresh descriptor that nothing else owns.
        let stop = unsafe { OwnedFd::from_raw_fd(stop) };
        let waiters = Waiters::default();
        let dispatcher = {
            let waiters = waiters.clone();
            let stop = stop.as_raw_fd();
            std::thread::Builder::new()
                .name("frameguard-ebpf".into())
                .spawn(move || dispatch(checkpoints, logger, stop, &waiters))
                .map_err(|e| fail("cannot start the checkpoint thread", &e))?
        };
        Ok(KernelPath {
            inner: Arc::new(Inner {
                maps: Mutex::new(maps),
                waiters,
                counters: Counters::default(),
                budget,
                stop,
                dispatcher: Mutex::new(Some(dispatcher)),
                _ebpf: Mutex::new(ebpf),
            }),
        })
    }

    /// Per-connection budget of redirected, unacknowledged bytes.
    pub fn budget(&self) -> u64 {
        self.inner.budget
    }

    pub fn counters(&self) -> KernelCounters {
        let counters = &self.inner.counters;
        let orphans = lock(&self.inner.maps).orphan_drops.get(&0, 0).unwrap_or(0);
        KernelCounters {
            bytes_spliced: counters.bytes_spliced.load(Ordering::Relaxed),
            evictions: counters.evictions.load(Ordering::Relaxed),
            redirect_failures: counters.redirect_failures.load(Ordering::Relaxed) + orphans,
            attach_fallbacks: counters.attach_fallbacks.load(Ordering::Relaxed),
        }
    }

    pub fn occupancy(&self) -> MapOccupancy {
        let maps = lock(&self.inner.maps);
        MapOccupancy {
            upstreams: maps.upstreams.keys().count(),
            clients: maps.clients.keys().count(),
            peers: maps.peers.keys().count(),
            stats: maps.stats.keys().count(),
        }
    }

    /// Splice `upstream` -> `client` in the kernel, after forwarding `leftover` (bytes already
    /// read from upstream past the handshake). Without leftover and with nothing queued on the
    /// upstream socket the sockets are inserted here; otherwise the first `run` forwards what
    /// is there, drains the socket and then inserts them.
    pub fn splice<'a>(
        &self,
        client: &'a TcpStream,
        upstream: &'a TcpStream,
        leftover: Bytes,
    ) -> io::Result<SplicedDirection<'a>> {
        let client_key = SockRef::from(client).cookie()?;
        let upstream_key = SockRef::from(upstream).cookie()?;
        let watch = hangup_watch(upstream.as_raw_fd())?;
        // SAFETY: the AsyncFd owns the epoll descriptor, which nothing else closes or replaces.
        let hangup = unsafe { AsyncFd::register_with_interest(watch, Interest::READABLE)? };
        let notify = Arc::new(Notify::new());
        lock(&self.inner.waiters).insert(upstream_key, notify.clone());
        let mut direction = SplicedDirection {
            path: self.clone(),
            client,
            upstream,
            client_key,
            upstream_key,
            relay: SpliceRelay::new(client, upstream, leftover)?,
            hangup,
            notify,
            mode: Mode::Userspace,
            kernel_allowed: true,
            attach_retries: 0,
        };
        // Insert at once when nothing is pending: then the upstream cannot have sent anything
        // the verdict misses. Otherwise `run` forwards and drains first.
        if direction.relay.flushed() {
            direction.try_attach()?;
        }
        Ok(direction)
    }
}

/// The checkpoint thread: sleeps in poll(2) until the verdict posts a checkpoint or a log
/// record, wakes the connection concerned, and exits when `stop` is signalled.
fn dispatch(
    mut checkpoints: RingBuf<MapData>,
    mut logger: EbpfLogger<&'static dyn log::Log>,
    stop: RawFd,
    waiters: &Waiters,
) {
    let mut logger_ok = true;
    loop {
        let mut fds = [
            libc::pollfd {
                fd: checkpoints.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: logger.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: stop,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: `fds` is a valid array of three pollfd structures.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        if fds[2].revents != 0 {
            return;
        }
        while let Some(item) = checkpoints.next() {
            if item.len() < std::mem::size_of::<Checkpoint>() {
                continue;
            }
            // SAFETY: the record holds at least one Checkpoint, which is plain integers; the read
            // does not assume alignment.
            let checkpoint: Checkpoint = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
            if let Some(notify) = lock(waiters).get(&checkpoint.upstream) {
                notify.notify_one();
            }
        }
        if fds[1].revents != 0 && logger_ok {
            // aya-log panics on a record it cannot decode; losing the logs must not lose the
            // checkpoints.
            logger_ok =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| logger.flush())).is_ok();
        }
    }
}

/// An epoll set that becomes readable when `fd` reports RDHUP, HUP or ERR, and never for data:
/// the upstream socket's own readiness fires for every skb the verdict consumes.
fn hangup_watch(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: plain epoll creation; checked below.
    let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if epoll < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor that nothing else owns.
    let epoll = unsafe { OwnedFd::from_raw_fd(epoll) };
    let mut event = libc::epoll_event {
        events: libc::EPOLLRDHUP as u32,
        u64: 0,
    };
    // SAFETY: both descriptors are open and `event` is a valid epoll_event.
    if unsafe { libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut event) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(epoll)
}

fn tcp_info(fd: RawFd) -> io::Result<libc::tcp_info> {
    // SAFETY: tcp_info is plain integers, so all-zero is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` and `len` describe a writable buffer of the right size.
    let ret = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(info)
}

/// Bytes the client socket has acknowledged, and bytes written into it (acknowledged plus
/// still queued), since it was created. The second is read after the first, so it never
/// overstates.
fn client_progress(fd: RawFd) -> io::Result<(u64, u64, u8)> {
    let info = tcp_info(fd)?;
    let mut queued: libc::c_int = 0;
    // SAFETY: SIOCOUTQ writes one int.
    if unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut queued) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((
        info.tcpi_bytes_acked,
        info.tcpi_bytes_acked + queued.max(0) as u64,
        info.tcpi_state,
    ))
}

/// Bytes in the socket's receive queue that nobody consumed yet.
fn unread(fd: RawFd) -> io::Result<u64> {
    let mut queued: libc::c_int = 0;
    // SAFETY: FIONREAD (SIOCINQ) writes one int.
    if unsafe { libc::ioctl(fd, libc::FIONREAD, &mut queued) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(queued.max(0) as u64)
}

/// True when the socket's receive queue holds something (data or EOF), without consuming it
/// and without trusting tokio's cached readiness.
fn has_unread(fd: RawFd) -> io::Result<bool> {
    let mut byte = 0u8;
    // SAFETY: a one-byte peek into a valid buffer.
    let n = unsafe {
        libc::recv(
            fd,
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    if n >= 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    if err.kind() == io::ErrorKind::WouldBlock {
        Ok(false)
    } else {
        Ok(true)
    }
}

/// Client-socket counters taken when the sockets entered the maps.
#[derive(Clone, Copy, Debug)]
struct Mark {
    acked: u64,
    written: u64,
    /// Bytes the upstream socket had received, all consumed by userspace.
    received: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Detach {
    Pause,
    UpstreamEnded,
    OverBudget,
    /// Bytes queued before insertion were not picked up by the verdict: take them out and
    /// insert again.
    Retry,
}

enum Mode {
    /// Not in the maps: the splice(2) relay moves the bytes.
    Userspace,
    Attached(Mark),
    /// Still attached, waiting for a moment the verdict is idle before leaving the map (see
    /// "Known kernel limitation"): `skbs` is the verdict's skb count at the last look.
    Quiescing {
        mark: Mark,
        why: Detach,
        skbs: u64,
        looks: u32,
    },
    /// Out of the verdict's map; waiting for the client socket to take what was redirected.
    Detaching {
        mark: Mark,
        redirected: u64,
        cursor: FrameCursor,
        why: Detach,
        poll: Duration,
        /// The upstream's byte counters confirmed that the kernel consumed exactly the bytes
        /// it redirected.
        accounted: bool,
    },
}

/// One direction spliced by the kernel; see the module docs for the protocol.
pub struct SplicedDirection<'a> {
    path: KernelPath,
    client: &'a TcpStream,
    upstream: &'a TcpStream,
    client_key: SocketKey,
    upstream_key: SocketKey,
    relay: SpliceRelay<'a>,
    hangup: AsyncFd<OwnedFd>,
    notify: Arc<Notify>,
    mode: Mode,
    /// False once the connection left the kernel path for good (eviction, upstream end,
    /// repeated insert failures).
    kernel_allowed: bool,
    attach_retries: u32,
}

impl SplicedDirection<'_> {
    /// Where this direction's bytes went so far (kernel bytes count once they left the kernel).
    pub fn totals(&self) -> Totals {
        self.relay.totals()
    }

    /// True while the verdict program redirects this connection.
    pub fn in_kernel(&self) -> bool {
        matches!(self.mode, Mode::Attached(_) | Mode::Quiescing { .. })
    }

    /// Drive the direction until the upstream ends, or until `pause` resolves and the stream
    /// is at a frame boundary with nothing in flight. Cancel-safe: a later `run` carries on.
    pub async fn run(&mut self, pause: impl Future<Output = ()>) -> io::Result<Ended> {
        tokio::pin!(pause);
        let mut pausing = false;
        loop {
            match self.mode {
                Mode::Userspace if pausing => return self.relay.run(std::future::ready(())).await,
                Mode::Userspace if !self.kernel_allowed => return self.relay.run(pause).await,
                Mode::Userspace => {
                    let drained = tokio::select! {
                        biased;
                        _ = &mut pause => { pausing = true; continue; }
                        drained = self.relay.drain() => drained?,
                    };
                    if let Some(ended) = drained {
                        return Ok(ended);
                    }
                    if !self.try_attach()? {
                        // Something arrived between the drain and the check: drain again.
                        tokio::select! {
                            biased;
                            _ = &mut pause => pausing = true,
                            ready = self.upstream.readable() => ready?,
                        }
                    }
                }
                Mode::Attached(mark) => {
                    tokio::select! {
                        biased;
                        _ = &mut pause, if !pausing => {
                            pausing = true;
                            self.quiesce(mark, Detach::Pause)?;
                        }
                        ready = self.hangup.readable() => {
                            drop(ready?);
                            self.begin_detach(mark, Detach::UpstreamEnded);
                        }
                        _ = self.notify.notified() => {
                            if self.over_budget(mark)? {
                                self.quiesce(mark, Detach::OverBudget)?;
                            }
                        }
                    }
                }
                Mode::Quiescing {
                    mark,
                    why,
                    skbs,
                    looks,
                } => {
                    tokio::select! {
                        biased;
                        _ = &mut pause, if !pausing => pausing = true,
                        ready = self.hangup.readable() => {
                            drop(ready?);
                            self.begin_detach(mark, Detach::UpstreamEnded);
                        }
                        _ = tokio::time::sleep(QUIESCE_LOOK) => {
                            let now = self.connection_stats()?.redirected_skbs;
                            if now == skbs || looks >= QUIESCE_LOOKS {
                                self.begin_detach(mark, why);
                            } else {
                                self.mode = Mode::Quiescing { mark, why, skbs: now, looks: looks + 1 };
                            }
                        }
                    }
                }
                Mode::Detaching { poll, .. } => {
                    if !self.finish_detach()? {
                        tokio::select! {
                            biased;
                            _ = &mut pause, if !pausing => pausing = true,
                            _ = tokio::time::sleep(poll) => {}
                        }
                    }
                }
            }
        }
    }

    fn maps(&self) -> MutexGuard<'_, Maps> {
        lock(&self.path.inner.maps)
    }

    fn connection_stats(&self) -> io::Result<SpliceStats> {
        self.maps()
            .stats
            .get(&self.upstream_key, 0)
            .map_err(map_error)
    }

    /// Insert the sockets if the upstream's receive queue is empty. Returns false when it was
    /// not (the caller drains again). The relay must be flushed and drained.
    fn try_attach(&mut self) -> io::Result<bool> {
        let (client_fd, upstream_fd) = (self.client.as_raw_fd(), self.upstream.as_raw_fd());
        // Read before the emptiness check: when the queue is empty at the check, every byte
        // counted here was consumed by userspace, so the verdict must account for the rest.
        let received_before = tcp_info(upstream_fd)?.tcpi_bytes_received;
        if has_unread(upstream_fd)? {
            return Ok(false);
        }
        let (acked, written, _) = client_progress(client_fd)?;
        let mark = Mark {
            acked,
            written,
            received: received_before,
        };
        let interval = (self.path.inner.budget / 4).max(1);
        let stats = SpliceStats {
            next_checkpoint: interval,
            checkpoint_interval: interval,
            cursor: self.relay.cursor(),
            ..SpliceStats::default()
        };
        let inserted = {
            let mut maps = self.maps();
            let (up, client) = (self.upstream_key, self.client_key);
            // Peer and stats first, then the redirect target, then the source: the verdict can
            // never see a socket whose peer is missing.
            let result = maps
                .peers
                .insert(up, client, 0)
                .and_then(|()| maps.stats.insert(up, stats, 0))
                .and_then(|()| maps.clients.insert(client, client_fd, 0))
                .and_then(|()| maps.upstreams.insert(up, upstream_fd, 0));
            if result.is_err() {
                maps.remove_connection(up, client);
            }
            result
        };
        if let Err(err) = inserted {
            debug!(error = %err, "cannot insert a connection into the sockmap; staying in userspace");
            self.kernel_allowed = false;
            self.path
                .inner
                .counters
                .attach_fallbacks
                .fetch_add(1, Ordering::Relaxed);
            return Ok(true);
        }
        // TCP_INFO takes the socket lock, so every byte counted now was either seen by the
        // verdict or had been queued before the insert and is waiting for a packet that may
        // never come.
        let received_after = tcp_info(upstream_fd)?.tcpi_bytes_received;
        let redirected = self.connection_stats()?.redirected_bytes;
        if received_after.saturating_sub(received_before) > redirected {
            self.attach_retries += 1;
            self.begin_detach(mark, Detach::Retry);
        } else {
            self.attach_retries = 0;
            self.mode = Mode::Attached(mark);
        }
        Ok(true)
    }

    fn over_budget(&self, mark: Mark) -> io::Result<bool> {
        let redirected = self.connection_stats()?.redirected_bytes;
        let (acked, _, _) = client_progress(self.client.as_raw_fd())?;
        Ok(redirected.saturating_sub(acked.saturating_sub(mark.acked)) > self.path.inner.budget)
    }

    /// Start leaving the kernel path: first wait (briefly) for a moment the verdict is idle.
    fn quiesce(&mut self, mark: Mark, why: Detach) -> io::Result<()> {
        let skbs = self.connection_stats()?.redirected_skbs;
        self.mode = Mode::Quiescing {
            mark,
            why,
            skbs,
            looks: 0,
        };
        Ok(())
    }

    /// Take the upstream out of the verdict's map and record what was redirected.
    fn begin_detach(&mut self, mark: Mark, why: Detach) {
        let _ = self.maps().upstreams.remove(&self.upstream_key);
        // The socket lock round-trip waits out a verdict still running on another CPU, so the
        // stats read next are final.
        let _ = tcp_info(self.upstream.as_raw_fd());
        let stats = self.connection_stats().unwrap_or_default();
        self.path
            .inner
            .counters
            .redirect_failures
            .fetch_add(stats.redirect_failures, Ordering::Relaxed);
        if why == Detach::OverBudget {
            self.relay.totals_mut().evictions += 1;
            self.path
                .inner
                .counters
                .evictions
                .fetch_add(1, Ordering::Relaxed);
        }
        self.mode = Mode::Detaching {
            mark,
            redirected: stats.redirected_bytes,
            cursor: stats.cursor,
            why,
            poll: CATCH_UP_FIRST_POLL,
            // After the upstream's FIN nothing more can arrive while the entry is removed.
            accounted: why == Detach::UpstreamEnded,
        };
    }

    /// Bytes the kernel took off the upstream's receive queue since the insert, or None while
    /// bytes are still arriving (the two reads of the queue length differ).
    fn kernel_consumed(&self, mark: Mark) -> io::Result<Option<u64>> {
        let fd = self.upstream.as_raw_fd();
        let unread_before = unread(fd)?;
        let received = tcp_info(fd)?.tcpi_bytes_received;
        if unread(fd)? != unread_before {
            return Ok(None);
        }
        Ok(Some(
            received
                .saturating_sub(mark.received)
                .saturating_sub(unread_before),
        ))
    }

    /// True once the upstream's FIN arrived (it counts one byte in tcpi_bytes_received).
    fn upstream_hung_up(&self) -> bool {
        let mut fds = libc::pollfd {
            fd: self.hangup.get_ref().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, no waiting.
        unsafe { libc::poll(&mut fds, 1, 0) > 0 }
    }

    /// Finish detaching once the client socket holds every redirected byte (acknowledged, when
    /// the upstream ended: closing must not lose what its psock still queues). Returns false
    /// while it does not.
    fn finish_detach(&mut self) -> io::Result<bool> {
        let Mode::Detaching {
            mark,
            mut redirected,
            mut cursor,
            why,
            poll,
            accounted,
        } = self.mode
        else {
            return Ok(true);
        };
        let next_poll = (poll * 2).min(CATCH_UP_MAX_POLL);
        if !accounted {
            // Removing a socket from the verdict's map while the verdict runs on another CPU
            // makes the kernel drop the skb in flight (it finds no program and discards it).
            // That cannot be prevented from userspace; it is detected here and the connection
            // fails instead of carrying a stream with a hole in it.
            let Some(consumed) = self.kernel_consumed(mark)? else {
                if let Mode::Detaching { poll: next, .. } = &mut self.mode {
                    *next = next_poll;
                }
                return Ok(false);
            };
            // A verdict that was still running when the entry went away shows up here as
            // redirected bytes the first read missed: they are in the client's queue, so wait
            // for them like for the rest.
            let latest = self.connection_stats()?;
            if latest.redirected_bytes > redirected {
                redirected = latest.redirected_bytes;
                cursor = latest.cursor;
                if let Mode::Detaching {
                    redirected: recorded,
                    cursor: recorded_cursor,
                    ..
                } = &mut self.mode
                {
                    *recorded = redirected;
                    *recorded_cursor = cursor;
                }
            }
            let fin = self.upstream_hung_up() as u64;
            if consumed > redirected + fin {
                self.path
                    .inner
                    .counters
                    .redirect_failures
                    .fetch_add(1, Ordering::Relaxed);
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "the kernel dropped {} upstream bytes while the connection left the \
                         sockmap ({consumed} consumed, {redirected} redirected)",
                        consumed - redirected
                    ),
                ));
            }
            if let Mode::Detaching { accounted, .. } = &mut self.mode {
                *accounted = true;
            }
        }
        let (acked, written, state) = client_progress(self.client.as_raw_fd())?;
        let taken = if why == Detach::UpstreamEnded {
            acked.saturating_sub(mark.acked)
        } else {
            written.saturating_sub(mark.written)
        };
        if taken < redirected {
            if state != TCP_ESTABLISHED && state != TCP_CLOSE_WAIT {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    "the client connection ended with spliced bytes undelivered",
                ));
            }
            if let Mode::Detaching { poll: next, .. } = &mut self.mode {
                *next = next_poll;
            }
            return Ok(false);
        }
        let (up, client) = (self.upstream_key, self.client_key);
        self.maps().remove_connection(up, client);
        self.relay.resume_at(cursor, redirected);
        self.path
            .inner
            .counters
            .bytes_spliced
            .fetch_add(redirected, Ordering::Relaxed);
        self.mode = Mode::Userspace;
        match why {
            Detach::Pause => {}
            Detach::UpstreamEnded => self.kernel_allowed = false,
            Detach::OverBudget => self.kernel_allowed = false,
            Detach::Retry if self.attach_retries >= MAX_ATTACH_RETRIES => {
                self.kernel_allowed = false;
                self.path
                    .inner
                    .counters
                    .attach_fallbacks
                    .fetch_add(1, Ordering::Relaxed);
            }
            Detach::Retry => {}
        }
        Ok(true)
    }
}

impl Drop for SplicedDirection<'_> {
    fn drop(&mut self) {
        if !matches!(self.mode, Mode::Userspace) {
            let (up, client) = (self.upstream_key, self.client_key);
            self.maps().remove_connection(up, client);
        }
        lock(&self.path.inner.waiters).remove(&self.upstream_key);
    }
}
