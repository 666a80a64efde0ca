//! Listeners, the per-core workers that serve them, and the process lifecycle (signals,
//! reload, graceful shutdown, the metrics endpoint).
//!
//! Each worker is a thread pinned to one core running its own current-thread tokio runtime,
//! with its own SO_REUSEPORT socket on every listener address: the kernel spreads new
//! connections over the workers and a connection never leaves the core that accepted it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use frameguard_config::{Config, DataPath};
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use socket2::{Domain, Protocol as SockProtocol, Socket, Type};
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::app::{App, Shared};
use crate::kernel::KernelPath;
use crate::server::{self, Worker, HANDSHAKE_TIMEOUT};

/// Re-reads the configuration on SIGHUP (the same file and command-line overrides).
pub type Reload = Box<dyn Fn() -> Result<Config, String> + Send>;

/// One bound listener socket of one worker.
struct BoundListener {
    name: String,
    socket: std::net::TcpListener,
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

/// Bind every listener once per worker. Port 0 is resolved by the first bind so that all
/// workers share the same port.
fn bind_all(config: &Config, workers: usize) -> anyhow::Result<Vec<Vec<BoundListener>>> {
    let mut per_worker: Vec<Vec<BoundListener>> = (0..workers).map(|_| Vec::new()).collect();
    for listener in &config.listeners {
        let first = bind_reuseport(listener.address)
            .with_context(|| format!("listener `{}`", listener.name))?;
        let address = first.local_addr()?;
        info!(listener = %listener.name, %address, protocol = ?listener.protocol, workers, "listening");
        for (i, slot) in per_worker.iter_mut().enumerate() {
            let socket = if i == 0 {
                first.try_clone()?
            } else {
                bind_reuseport(address)?
            };
            slot.push(BoundListener {
                name: listener.name.clone(),
                socket,
            });
        }
    }
    Ok(per_worker)
}

/// Run the proxy until SIGINT or SIGTERM, then drain.
pub fn run(config: Config, reload: Reload, data_path: Option<DataPath>) -> anyhow::Result<()> {
    let kernel = load_kernel(&config, data_path)?;
    let workers = worker_count(config.system.worker_threads);
    let bound = bind_all(&config, workers)?;
    let metrics_socket = match &config.observability.metrics {
        Some(m) => Some((
            bind_reuseport(m.address).context("metrics listener")?,
            m.path.clone(),
        )),
        None => None,
    };
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let shared = Arc::new(Shared::new(
        App::build(config)?,
        shutdown_rx,
        kernel,
        data_path,
    ));
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

async fn accept_loop(shared: Arc<Shared>, listener: BoundListener) {
    let socket = match tokio::net::TcpListener::from_std(listener.socket) {
        Ok(socket) => socket,
        Err(err) => return error!(listener = %listener.name, error = %err, "listener unusable"),
    };
    let mut shutdown = shared.shutdown.clone();
    let mut worker: Option<Arc<Worker>> = None;
    loop {
        let (stream, peer) = tokio::select! {
            accepted = socket.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // EMFILE and friends: back off instead of spinning.
                    warn!(listener = %listener.name, error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
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
