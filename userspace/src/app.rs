//! State shared by the workers: the current configuration (replaced on reload) and what must
//! outlive a reload (metrics, connection counts, the shutdown signal).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use anyhow::Context;
use frameguard_config::{AgentKind, Config, DataPath, Route, Router};
use frameguard_inspect::{Engine, PolicyId};
use tokio::sync::watch;

use crate::kernel::KernelPath;
use crate::limits::ConnectionLimits;
use crate::metrics::Metrics;
use crate::tls::{self, TlsAcceptors};
use crate::upstream::UpstreamPool;

/// Return the heap's free pages to the kernel. glibc gives back only the top of a heap by
/// itself, so memory freed below live allocations (a compile's scratch, the buffers of a burst
/// of handshakes) otherwise stays resident.
pub fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim takes no pointers and has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// How much free memory a heap keeps at its top. malloc_trim leaves the top of the workers'
/// heaps alone, and glibc's own threshold for it grows with the largest block freed (rule
/// compilation frees megabytes), so without a fixed one a worker's heap would keep what a
/// burst of handshakes grew it by.
const HEAP_TOP_KEPT: i32 = 128 * 1024;

fn keep_heap_tops_small() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt takes no pointers; M_TRIM_THRESHOLD accepts any non-negative size.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, HEAP_TOP_KEPT);
    }
}

/// One loaded configuration with everything derived from it.
pub struct App {
    pub config: Config,
    pub router: Router,
    pub upstreams: Vec<Arc<UpstreamPool>>,
    /// Stops this configuration's health checks once it is replaced.
    health_stop: watch::Sender<bool>,
    pub tls: TlsAcceptors,
    /// The inspection engine, when any inspector agent is configured.
    pub engine: Option<Arc<Engine>>,
    /// The inspection policy of each route (by route index): its first inspector agent.
    pub route_policies: Vec<Option<PolicyId>>,
}

impl App {
    /// Build everything a configuration needs before it serves a single connection: TLS
    /// acceptors and the compiled inspection engine.
    pub fn build(config: Config) -> anyhow::Result<App> {
        let tls = tls::acceptors(&config)?;
        let policies: Vec<_> = config
            .agents
            .iter()
            .filter_map(|agent| match &agent.kind {
                AgentKind::Inspector(policy) => Some((agent.name.clone(), policy.clone())),
                AgentKind::Unsupported { .. } => None,
            })
            .collect();
        let engine = match policies.is_empty() {
            true => None,
            false => Some(Arc::new(
                Engine::new(&policies).context("inspection engine")?,
            )),
        };
        let route_policies = config
            .routes
            .iter()
            .map(|route| {
                let engine = engine.as_ref()?;
                route.agents.iter().find_map(|name| engine.policy(name))
            })
            .collect();
        let router = Router::new(&config.routes);
        let upstreams = config.upstreams.iter().map(UpstreamPool::new).collect();
        let (health_stop, _) = watch::channel(false);
        // Compiling the rules (and, before this, loading the kernel program) leaves megabytes
        // of freed scratch in the heap.
        keep_heap_tops_small();
        release_free_memory();
        Ok(App {
            config,
            router,
            upstreams,
            health_stop,
            tls,
            engine,
            route_policies,
        })
    }

    /// The index of an upstream pool by name (config validation guarantees routes' names exist).
    pub fn upstream_index(&self, name: &str) -> Option<usize> {
        self.upstreams.iter().position(|u| u.name() == name)
    }

    pub fn route(&self, index: usize) -> &Route {
        &self.config.routes[index]
    }

    /// Start probing this configuration's upstream targets (on the current tokio runtime);
    /// the probes stop when the configuration is replaced or the process shuts down.
    pub fn start_health_checks(&self, shutdown: &watch::Receiver<bool>) {
        for pool in &self.upstreams {
            let probes = pool.health_checks(self.health_stop.subscribe());
            let mut shutdown = shutdown.clone();
            let stop = self.health_stop.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = probes => {}
                    _ = shutdown.changed() => { let _ = stop.send(true); }
                }
            });
        }
    }

    fn stop_health_checks(&self) {
        let _ = self.health_stop.send(true);
    }
}

/// What every worker and connection shares for the life of the process.
pub struct Shared {
    current: RwLock<Arc<App>>,
    pub metrics: Metrics,
    pub limits: Arc<ConnectionLimits>,
    /// Flips to true when the process starts shutting down.
    pub shutdown: watch::Receiver<bool>,
    pub started: Instant,
    /// The sockmap data path, when it loaded (routes asked for it, or `auto` probed it).
    pub kernel: Option<KernelPath>,
    /// `--data-path`: overrides every route's `data-path`.
    pub data_path_override: Option<DataPath>,
    /// Accepted connections not yet fully closed.
    open: AtomicUsize,
    /// Relayed WebSocket connections, for `frameguard status`.
    websockets: std::sync::Mutex<std::collections::BTreeMap<u64, WebSocketInfo>>,
}

/// One relayed WebSocket connection as `frameguard status` shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct WebSocketInfo {
    pub id: u64,
    pub client: String,
    pub route: String,
    pub upstream: String,
    pub data_path: &'static str,
    /// Seconds since the Unix epoch.
    pub since: u64,
}

/// Lists a connection in the status until dropped.
pub struct WebSocketEntry {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for WebSocketEntry {
    fn drop(&mut self) {
        self.shared.websocket_table().remove(&self.id);
    }
}

impl Shared {
    pub fn new(
        app: App,
        shutdown: watch::Receiver<bool>,
        kernel: Option<KernelPath>,
        data_path_override: Option<DataPath>,
    ) -> Shared {
        Shared {
            current: RwLock::new(Arc::new(app)),
            metrics: Metrics::default(),
            limits: Arc::default(),
            shutdown,
            started: Instant::now(),
            kernel,
            data_path_override,
            open: AtomicUsize::new(0),
            websockets: Default::default(),
        }
    }

    /// The configuration new connections use.
    pub fn app(&self) -> Arc<App> {
        self.current
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }

    /// Install a reloaded configuration; connections already open keep the one they started with.
    pub fn replace(&self, app: App) {
        app.start_health_checks(&self.shutdown);
        let old = std::mem::replace(
            &mut *self
                .current
                .write()
                .unwrap_or_else(|poison| poison.into_inner()),
            Arc::new(app),
        );
        old.stop_health_checks();
    }

    /// Count one accepted connection until the guard drops (the shutdown drain waits for these).
    pub fn open_guard(self: &Arc<Self>) -> OpenGuard {
        self.open.fetch_add(1, Ordering::Relaxed);
        OpenGuard(self.clone())
    }

    fn websocket_table(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<u64, WebSocketInfo>> {
        self.websockets
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    pub fn list_websocket(self: &Arc<Self>, info: WebSocketInfo) -> WebSocketEntry {
        let id = info.id;
        self.websocket_table().insert(id, info);
        WebSocketEntry {
            shared: self.clone(),
            id,
        }
    }

    /// The open WebSocket connections, oldest first.
    pub fn websockets(&self) -> Vec<WebSocketInfo> {
        self.websocket_table().values().cloned().collect()
    }

    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

pub struct OpenGuard(Arc<Shared>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}
