//! Listeners and the per-core workers that serve them.
//!
//! Each worker is a thread pinned to one core running its own current-thread tokio runtime,
//! with its own SO_REUSEPORT socket on every listener address: the kernel spreads new
//! connections over the workers and a connection never leaves the core that accepted it.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{bail, Context};
use frameguard_config::Protocol;
use socket2::{Domain, Protocol as SockProtocol, Socket, Type};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::app::App;
use crate::server::{self, Worker};

/// One bound listener socket of one worker.
struct BoundListener {
    name: String,
    socket: std::net::TcpListener,
    scheme: &'static str,
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
    socket.listen(1024)?;
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
fn bind_all(app: &App, workers: usize) -> anyhow::Result<Vec<Vec<BoundListener>>> {
    let mut per_worker: Vec<Vec<BoundListener>> = (0..workers).map(|_| Vec::new()).collect();
    for listener in &app.config.listeners {
        if listener.protocol == Protocol::Https {
            bail!(
                "listener `{}`: protocol \"https\" (TLS termination) is not available in this build",
                listener.name
            );
        }
        let first = bind_reuseport(listener.address)
            .with_context(|| format!("listener `{}`", listener.name))?;
        let address = first.local_addr()?;
        info!(listener = %listener.name, %address, workers, "listening");
        for (i, slot) in per_worker.iter_mut().enumerate() {
            let socket = if i == 0 {
                first.try_clone()?
            } else {
                bind_reuseport(address)?
            };
            slot.push(BoundListener {
                name: listener.name.clone(),
                socket,
                scheme: "http",
            });
        }
    }
    Ok(per_worker)
}

/// Run the proxy until SIGINT or SIGTERM.
pub fn run(app: Arc<App>) -> anyhow::Result<()> {
    let workers = worker_count(app.config.system.worker_threads);
    let bound = bind_all(&app, workers)?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let mut threads = Vec::with_capacity(workers);
    for (index, listeners) in bound.into_iter().enumerate() {
        let app = app.clone();
        let shutdown = shutdown_rx.clone();
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
                runtime.block_on(worker_main(app, listeners, shutdown))
            })?;
        threads.push(thread);
    }
    let signals = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    signals.block_on(wait_for_shutdown_signal())?;
    info!("shutting down");
    let _ = shutdown_tx.send(true);
    for thread in threads {
        let _ = thread.join();
    }
    Ok(())
}

async fn wait_for_shutdown_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

async fn worker_main(
    app: Arc<App>,
    listeners: Vec<BoundListener>,
    shutdown: watch::Receiver<bool>,
) {
    let worker = Arc::new(Worker::new(app));
    let mut accept_loops = tokio::task::JoinSet::new();
    for listener in listeners {
        let worker = worker.clone();
        let mut shutdown = shutdown.clone();
        accept_loops.spawn(async move {
            let socket = match tokio::net::TcpListener::from_std(listener.socket) {
                Ok(socket) => socket,
                Err(err) => return warn!(listener = %listener.name, error = %err, "listener unusable"),
            };
            loop {
                tokio::select! {
                    accepted = socket.accept() => match accepted {
                        Ok((stream, peer)) => {
                            tokio::spawn(server::serve(worker.clone(), stream, peer, listener.scheme));
                        }
                        Err(err) => warn!(listener = %listener.name, error = %err, "accept failed"),
                    },
                    _ = shutdown.changed() => break,
                }
            }
        });
    }
    while accept_loops.join_next().await.is_some() {}
}
