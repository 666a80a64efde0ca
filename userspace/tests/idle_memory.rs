//! What an idle relayed connection costs in heap memory, counted by this binary's allocator:
//! the relay's state while it waits for data, before and after traffic (no read or write buffer
//! is kept between messages).

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use frameguard::relay::{relay, DirectionMeters, Peer, RelaySettings};
use frameguard::verdict::PassThrough;
use support::frame::FrameSpec;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Heap bytes in use, counted on every allocation of this test binary.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract for `layout` is the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` or `realloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: as for `dealloc`, and `new_size` is the caller's to check.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const CONNECTIONS: usize = 200;

/// Heap bytes one idle relayed connection may hold: its task, both pumps, the sinks and the
/// shared counters. A read buffer kept per direction would be well past it.
const IDLE_BOUND: usize = 4 * 1024;

/// One relayed connection's four sockets: the test's client and upstream ends, and the
/// proxy's ends of both.
struct Sockets {
    client: TcpStream,
    proxy_client: TcpStream,
    proxy_upstream: TcpStream,
    upstream: TcpStream,
}

async fn pair(listener: &TcpListener) -> (TcpStream, TcpStream) {
    let addr = listener.local_addr().unwrap();
    let (connected, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
    (connected.unwrap(), accepted.unwrap().0)
}

async fn sockets(listener: &TcpListener) -> Sockets {
    let (client, proxy_client) = pair(listener).await;
    let (proxy_upstream, upstream) = pair(listener).await;
    Sockets {
        client,
        proxy_client,
        proxy_upstream,
        upstream,
    }
}

/// The test's ends of a connection whose relay was spawned.
struct Ends {
    client: TcpStream,
    upstream: TcpStream,
}

fn spawn_relay(sockets: Sockets, shutdown: watch::Receiver<bool>) -> Ends {
    let Sockets {
        client,
        proxy_client,
        proxy_upstream,
        upstream,
    } = sockets;
    tokio::spawn(async move {
        let settings = RelaySettings {
            max_message_size: 1 << 20,
            allowed_rsv: 0,
            close_timeout: Duration::from_secs(1),
            ping_interval: None,
            ping_timeout: Duration::from_secs(1),
            idle_timeout: None,
            message_timeout: Duration::from_secs(60),
        };
        let peer = |stream| Peer {
            stream,
            buffered: Bytes::new(),
        };
        let meters = [DirectionMeters::default(), DirectionMeters::default()];
        let (mut inbound, mut outbound) = (PassThrough, PassThrough);
        relay(
            peer(proxy_client),
            peer(proxy_upstream),
            &settings,
            meters,
            shutdown,
            [&mut inbound, &mut outbound],
        )
        .await
    });
    Ends { client, upstream }
}

/// One message each way, read at the other end.
async fn exchange(ends: &mut Ends) {
    let to_upstream = FrameSpec::text("hello upstream").encode();
    ends.client.write_all(&to_upstream).await.unwrap();
    let mut forwarded = vec![0; FrameSpec::text("hello upstream").unmasked().encode().len()];
    ends.upstream.read_exact(&mut forwarded).await.unwrap();
    let to_client = FrameSpec::text("hello client").unmasked().encode();
    ends.upstream.write_all(&to_client).await.unwrap();
    let mut forwarded = vec![0; to_client.len()];
    ends.client.read_exact(&mut forwarded).await.unwrap();
    assert_eq!(forwarded, to_client);
}

/// Let every spawned relay run until it waits on its sockets (the runtime has one thread, so
/// a yield runs each ready task once).
async fn settle() {
    for _ in 0..8 {
        tokio::task::yield_now().await;
    }
}

fn per_connection(since: isize) -> usize {
    (LIVE.load(Ordering::Relaxed) - since).max(0) as usize / CONNECTIONS
}

#[test]
fn an_idle_relayed_connection_holds_no_buffers() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (_shutdown_tx, shutdown) = watch::channel(false);
        // A first connection with traffic sets up what the worker shares between connections
        // (its read scratch buffer, the batch vectors), which is not a per-connection cost.
        let mut warm = spawn_relay(sockets(&listener).await, shutdown.clone());
        exchange(&mut warm).await;

        let mut pending = Vec::with_capacity(CONNECTIONS);
        for _ in 0..CONNECTIONS {
            pending.push(sockets(&listener).await);
        }
        let mut ends = Vec::with_capacity(CONNECTIONS);
        let before = LIVE.load(Ordering::Relaxed);
        for sockets in pending.drain(..) {
            ends.push(spawn_relay(sockets, shutdown.clone()));
        }
        settle().await;
        let idle = per_connection(before);
        for connection in &mut ends {
            exchange(connection).await;
        }
        settle().await;
        let after_traffic = per_connection(before);
        eprintln!("per idle connection: {idle} B; after one message each way: {after_traffic} B");
        assert!(idle <= IDLE_BOUND, "{idle} B per idle connection");
        assert!(
            after_traffic <= idle,
            "{after_traffic} B per idle connection after traffic, {idle} B before"
        );
    });
}
