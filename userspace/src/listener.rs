//! Listeners, the per-core workers that serve them, and the process lifecycle (signals,
//! reload, graceful shutdown, the metrics endpoint).
//!
//! Each worker is a thread pinned to one core running its own current-thread tokio runtime. New
//! connections reach it one of three ways (`system { connection-steering }`):
//! - `reuseport` (default): every worker has its own SO_REUSEPORT socket on every listener
//!   address and the kernel hashes connections over them;
//! - `reuseport-cpu`: the same sockets with a classic BPF program that picks the socket of the
//!   worker pinned to the CPU that handled the connection's SYN;
//! - `acceptor`: one socket per address, accepted on the control thread and handed to the
//!   workers in turn over a channel.
//!
//! A connection never leaves the worker that got it.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use frameguard_config::{Config, DataPath, Steering};
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use socket2::{Domain, Protocol as SockProtocol, Socket, Type};
use tokio::sync::{watch, Notify};
use tracing::{error, info, warn};

use crate::app::{App, Shared};
use crate::kernel::KernelPath;
use crate::server::{self, Worker, HANDSHAKE_TIMEOUT};

/// Re-reads the configuration on SIGHUP (the same file and command-line overrides).
pub type Reload = Box<dyn Fn() -> Result<Config, String> + Send>;

/// Connections accepted but not yet taken by their worker, per worker and listener; past it
/// the acceptor tries the next worker.
const HANDOFF_QUEUE: usize = 1024;

/// An accepted connection on its way from the acceptor to a worker.
type HandedOff = (std::net::TcpStream, SocketAddr);

/// Where one worker gets the connections of one listener.
struct BoundListener {
    name: String,
    incoming: Incoming,
}

enum Incoming {
    /// The worker's own SO_REUSEPORT socket.
    Socket(std::net::TcpListener),
    Handoff(Handoff),
}

/// Connections the acceptor hands over to one worker; `ready` is signalled after each one.
struct Handoff {
    connections: Receiver<HandedOff>,
    ready: Arc<Notify>,
}

/// The acceptor's side of one listener in `acceptor` steering.
struct Acceptor {
    name: String,
    socket: std::net::TcpListener,
    workers: Vec<(Sender<HandedOff>, Arc<Notify>)>,
}

fn bind_reuseport(addr: SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM,
        Some(SockProtocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket
        .bind(&addr.into())
        .with_context(|| format!("cannot bind {addr}"))?;
    socket.listen(4096)?;
    Ok(socket.into())
}

/// The number of workers `worker-threads` asks for (0 = one per core).
pub fn worker_count(configured: usize) -> usize {
    match configured {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

/// Bind every listener for the workers as `steering` says: per worker with SO_REUSEPORT, or
/// once for the acceptor. Port 0 is resolved by the first bind so that all workers share the
/// same port.
fn bind_all(
    config: &Config,
    workers: usize,
    steering: Steering,
) -> anyhow::Result<(Vec<Vec<BoundListener>>, Vec<Acceptor>)> {
    let mut per_worker: Vec<Vec<BoundListener>> = (0..workers).map(|_| Vec::new()).collect();
    let mut acceptors = Vec::new();
    for listener in &config.listeners {
        let first = bind_reuseport(listener.address)
            .with_context(|| format!("listener `{}`", listener.name))?;
        let address = first.local_addr()?;
        info!(listener = %listener.name, %address, protocol = ?listener.protocol, workers, ?steering, "listening");
        if steering == Steering::Acceptor {
            let mut handoffs = Vec::with_capacity(workers);
            for slot in per_worker.iter_mut() {
                let (sender, connections) = crossbeam_channel::bounded(HANDOFF_QUEUE);
                let ready = Arc::new(Notify::new());
                slot.push(BoundListener {
                    name: listener.name.clone(),
                    incoming: Incoming::Handoff(Handoff {
                        connections,
                        ready: ready.clone(),
                    }),
                });
                handoffs.push((sender, ready));
            }
            acceptors.push(Acceptor {
                name: listener.name.clone(),
                socket: first,
                workers: handoffs,
            });
            continue;
        }
        for (i, slot) in per_worker.iter_mut().enumerate() {
            let socket = if i == 0 {
                first.try_clone()?
            } else {
                bind_reuseport(address)?
            };
            slot.push(BoundListener {
                name: listener.name.clone(),
                incoming: Incoming::Socket(socket),
            });
        }
        if steering == Steering::ReuseportCpu {
            steer_by_cpu(&first, workers)
                .with_context(|| format!("listener `{}`: reuseport-cpu steering", listener.name))?;
        }
    }
    Ok((per_worker, acceptors))
}

/// Attach to a reuseport group a classic BPF program that returns the receiving CPU modulo the
/// group's size as the socket index. Sockets join the group in bind order, which is worker
/// order, and worker i is pinned to the i-th core, so with one worker per core each connection
/// stays on the CPU whose softirq handled its SYN.
fn steer_by_cpu(socket: &std::net::TcpListener, workers: usize) -> io::Result<()> {
    let instruction = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let mut program = [
        instruction(
            libc::BPF_LD | libc::BPF_W | libc::BPF_ABS,
            (libc::SKF_AD_OFF + libc::SKF_AD_CPU) as u32,
        ),
        instruction(libc::BPF_ALU | libc::BPF_MOD | libc::BPF_K, workers as u32),
        instruction(libc::BPF_RET | libc::BPF_A, 0),
    ];
    let fprog = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_mut_ptr(),
    };
    // SAFETY: `fprog` points at `program`, which outlives the call; the kernel copies it.
    let ret = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_REUSEPORT_CBPF,
            (&fprog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Accept on the control thread and hand each connection to the next worker whose queue has
/// room; when every queue is full the connection is refused (closed) rather than queued
/// without bound.
async fn run_acceptor(acceptor: Acceptor, mut shutdown: watch::Receiver<bool>) {
    let Some(source) = Incoming::Socket(acceptor.socket).open(&acceptor.name) else {
        return;
    };
    let mut next = 0;
    while let Some((stream, peer)) = next_connection(&source, &acceptor.name, &mut shutdown).await {
        let Ok(mut connection) = stream.into_std().map(|stream| (stream, peer)) else {
            continue;
        };
        for _ in 0..acceptor.workers.len() {
            let (sender, ready) = &acceptor.workers[next];
            next = (next + 1) % acceptor.workers.len();
            match sender.try_send(connection) {
                Ok(()) => {
                    ready.notify_one();
                    break;
                }
                Err(TrySendError::Full(back) | TrySendError::Disconnected(back)) => {
                    connection = back;
                }
            }
        }
    }
}

/// Run the proxy until SIGINT or SIGTERM, then drain.
pub fn run(config: Config, reload: Reload, data_path: Option<DataPath>) -> anyhow::Result<()> {
    let kernel = load_kernel(&config, data_path)?;
    // Built (rule databases compiled) before the listeners exist, so that the first connection
    // finds the proxy ready rather than waiting in the backlog.
    let app = App::build(config)?;
    let config = &app.config;
    let workers = worker_count(config.system.worker_threads);
    let (bound, acceptors) = bind_all(config, workers, config.system.connection_steering)?;
    let metrics_socket = match &config.observability.metrics {
        Some(m) => Some((
            bind_reuseport(m.address).context("metrics listener")?,
            m.path.clone(),
        )),
        None => None,
    };
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let shared = Arc::new(Shared::new(app, shutdown_rx, kernel, data_path));
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let mut threads = Vec::with_capacity(workers);
    for (index, listeners) in bound.into_iter().enumerate() {
        let shared = shared.clone();
        let core = (!cores.is_empty()).then(|| cores[index % cores.len()]);
        let thread = std::thread::Builder::new()
            .name(format!("frameguard-worker-{index}"))
            .spawn(move || {
                if let Some(core) = core {
                    if !core_affinity::set_for_current(core) {
                        warn!(worker = index, "could not pin worker to its core");
                    }
                }
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("worker runtime");
                runtime.block_on(worker_main(shared, listeners))
            })?;
        threads.push(thread);
    }
    let control = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    control.block_on(async {
        if let Some((socket, path)) = metrics_socket {
            let listener = tokio::net::TcpListener::from_std(socket)?;
            info!(address = %listener.local_addr()?, %path, "metrics listening");
            tokio::spawn(serve_metrics(listener, path, shared.clone()));
        }
        for acceptor in acceptors {
            tokio::spawn(run_acceptor(acceptor, shared.shutdown.clone()));
        }
        shared.app().start_health_checks(&shared.shutdown);
        supervise(&shared, &reload).await
    })?;
    info!(
        open = shared.open_connections(),
        "shutting down: no new connections, draining"
    );
    let _ = shutdown_tx.send(true);
    let grace = shared.app().config.system.graceful_shutdown_timeout;
    let deadline = Instant::now() + grace;
    while shared.open_connections() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left = shared.open_connections();
    if left > 0 {
        warn!(left, "graceful shutdown timeout reached, closing the rest");
    } else {
        for thread in threads {
            let _ = thread.join();
        }
    }
    info!("stopped");
    Ok(())
}

/// Load the sockmap programs when a WebSocket route asks for the kernel path (then failing to
/// load is fatal) or leaves the choice to `auto` (then it is reported and the userspace relay
/// is used).
fn load_kernel(config: &Config, data_path: Option<DataPath>) -> anyhow::Result<Option<KernelPath>> {
    let paths: Vec<DataPath> = config
        .routes
        .iter()
        .filter(|route| route.websocket.enabled)
        .map(|route| data_path.unwrap_or(route.data_path))
        .collect();
    let required = paths.contains(&DataPath::Kernel);
    if !required && !paths.contains(&DataPath::Auto) {
        return Ok(None);
    }
    match KernelPath::load() {
        Ok(kernel) if required => {
            info!("kernel data path loaded: routes with data-path \"kernel\" splice upstream -> client in the kernel");
            Ok(Some(kernel))
        }
        Ok(kernel) => {
            info!("kernel data path available (opt-in with data-path \"kernel\"); auto uses the userspace relay");
            Ok(Some(kernel))
        }
        Err(reason) if required => {
            anyhow::bail!("data-path \"kernel\" needs eBPF, which cannot load: {reason}")
        }
        Err(reason) => {
            info!("eBPF unavailable: {reason}; using userspace relay");
            Ok(None)
        }
    }
}

/// Wait for SIGINT/SIGTERM, applying SIGHUP reloads meanwhile.
async fn supervise(shared: &Shared, reload: &Reload) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
            _ = hup.recv() => apply_reload(shared, reload),
        }
    }
}

fn apply_reload(shared: &Shared, reload: &Reload) {
    let config = match reload() {
        Ok(config) => config,
        Err(err) => return error!("reload rejected, keeping the running configuration: {err}"),
    };
    let old = shared.app();
    let same_listeners = old.config.listeners.len() == config.listeners.len()
        && old
            .config
            .listeners
            .iter()
            .zip(&config.listeners)
            .all(|(a, b)| a.name == b.name && a.address == b.address && a.protocol == b.protocol);
    if !same_listeners {
        warn!("reload: listener addresses and protocols only change on restart; keeping the bound ones");
    }
    match App::build(config) {
        Ok(app) => {
            shared.replace(app);
            info!("configuration reloaded; new connections use it");
        }
        Err(err) => error!("reload rejected, keeping the running configuration: {err:#}"),
    }
}

async fn worker_main(shared: Arc<Shared>, listeners: Vec<BoundListener>) {
    let mut accept_loops = tokio::task::JoinSet::new();
    for listener in listeners {
        let shared = shared.clone();
        accept_loops.spawn(accept_loop(shared, listener));
    }
    while accept_loops.join_next().await.is_some() {}
    // Keep the runtime alive while its connections drain; the main thread decides when to stop.
    while shared.open_connections() > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Incoming {
    /// Ready for the current runtime; None (logged) when the socket cannot be registered.
    fn open(self, listener: &str) -> Option<Source> {
        match self {
            Incoming::Socket(socket) => match tokio::net::TcpListener::from_std(socket) {
                Ok(socket) => Some(Source::Socket(socket)),
                Err(err) => {
                    error!(listener, error = %err, "listener unusable");
                    None
                }
            },
            Incoming::Handoff(handoff) => Some(Source::Handoff(handoff)),
        }
    }
}

/// The next connection from `source`, or None at shutdown.
async fn next_connection(
    source: &Source,
    listener: &str,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<(tokio::net::TcpStream, SocketAddr)> {
    loop {
        tokio::select! {
            accepted = source.accept() => match accepted {
                Ok(accepted) => return Some(accepted),
                Err(err) => {
                    // EMFILE and friends: back off instead of spinning.
                    warn!(listener, error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => return None,
        }
    }
}

enum Source {
    Socket(tokio::net::TcpListener),
    Handoff(Handoff),
}

impl Source {
    async fn accept(&self) -> io::Result<(tokio::net::TcpStream, SocketAddr)> {
        match self {
            Source::Socket(socket) => socket.accept().await,
            Source::Handoff(Handoff { connections, ready }) => loop {
                // A notification without a waiter is kept, so none is lost between the two.
                if let Ok((stream, peer)) = connections.try_recv() {
                    return Ok((tokio::net::TcpStream::from_std(stream)?, peer));
                }
                ready.notified().await;
            },
        }
    }
}

async fn accept_loop(shared: Arc<Shared>, listener: BoundListener) {
    let Some(source) = listener.incoming.open(&listener.name) else {
        return;
    };
    let mut shutdown = shared.shutdown.clone();
    let mut worker: Option<Arc<Worker>> = None;
    while let Some((stream, peer)) = next_connection(&source, &listener.name, &mut shutdown).await {
        let app = shared.app();
        let current = match &worker {
            Some(w) if Arc::ptr_eq(&w.app, &app) => w.clone(),
            _ => worker
                .insert(Arc::new(Worker::new(app.clone(), shared.clone())))
                .clone(),
        };
        let guard = shared.open_guard();
        let tls = app.tls.get(&listener.name).cloned();
        tokio::spawn(async move {
            let _guard = guard;
            let _ = stream.set_nodelay(true);
            match tls {
                None => server::serve(current, stream, peer, "http").await,
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls_stream)) => {
                            server::serve(current, tls_stream, peer, "https").await
                        }
                        Ok(Err(err)) => {
                            tracing::debug!(%peer, error = %err, "TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

/// What `frameguard status` prints: the kernel path's state and every open WebSocket.
fn status_json(shared: &Shared) -> String {
    let kernel = shared.kernel.as_ref().map(|k| {
        let c = k.counters();
        serde_json::json!({
            "bytes_spliced": c.bytes_spliced,
            "evictions": c.evictions,
            "redirect_failures": c.redirect_failures,
            "attach_fallbacks": c.attach_fallbacks,
        })
    });
    serde_json::json!({
        "uptime_secs": shared.started.elapsed().as_secs(),
        "open_connections": shared.open_connections(),
        "kernel_path": kernel,
        "websockets": shared.websockets(),
    })
    .to_string()
        + "\n"
}

async fn serve_metrics(listener: tokio::net::TcpListener, path: String, shared: Arc<Shared>) {
    let path = Arc::new(path);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let (path, shared) = (path.clone(), shared.clone());
        tokio::spawn(async move {
            let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let (path, shared) = (path.clone(), shared.clone());
                async move {
                    let (status, content_type, body) = match req.uri().path() {
                        p if p == path.as_str() => (
                            StatusCode::OK,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            shared.metrics.encode(),
                        ),
                        "/status" => (StatusCode::OK, "application/json", status_json(&shared)),
                        _ => (
                            StatusCode::NOT_FOUND,
                            "text/plain",
                            "not found\n".to_owned(),
                        ),
                    };
                    let mut resp = Response::new(Full::new(bytes::Bytes::from(body)));
                    *resp.status_mut() = status;
                    resp.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static(content_type),
                    );
                    Ok::<_, std::convert::Infallible>(resp)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The listener of a two-socket group that a connection made from `cpu` lands on.
    fn landing(group: &[std::net::TcpListener], cpu: core_affinity::CoreId) -> Option<usize> {
        let address = group[0].local_addr().unwrap();
        let client = std::thread::spawn(move || {
            assert!(core_affinity::set_for_current(cpu), "cannot pin to {cpu:?}");
            std::net::TcpStream::connect(address).unwrap()
        })
        .join()
        .unwrap();
        let found = group.iter().position(|socket| socket.accept().is_ok());
        drop(client);
        found
    }

    #[test]
    fn reuseport_cpu_steering_picks_the_socket_of_the_receiving_cpu() {
        let first = bind_reuseport("127.0.0.1:0".parse().unwrap()).unwrap();
        let second = bind_reuseport(first.local_addr().unwrap()).unwrap();
        let group = [first, second];
        steer_by_cpu(&group[0], group.len()).unwrap();
        let cores = core_affinity::get_core_ids().unwrap_or_default();
        assert!(!cores.is_empty(), "no CPUs to pin to");
        for core in cores.into_iter().take(4) {
            for _ in 0..5 {
                // Loopback handles the SYN in the sending CPU's softirq.
                assert_eq!(
                    landing(&group, core),
                    Some(core.id % group.len()),
                    "{core:?}"
                );
            }
        }
    }
}
