//! State shared by the workers: the current configuration (replaced on reload) and what must
//! outlive a reload (metrics, connection counts, the shutdown signal).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use frameguard_config::{AgentKind, Config, Route, Router};
use frameguard_inspect::{Engine, PolicyId};
use tokio::sync::watch;

use crate::limits::ConnectionLimits;
use crate::metrics::Metrics;
use crate::tls::{self, TlsAcceptors};

/// The targets of one upstream, picked round-robin.
pub struct UpstreamPool {
    pub name: String,
    targets: Vec<String>,
    next: AtomicUsize,
    pub connect_timeout: Duration,
}

impl UpstreamPool {
    pub fn pick(&self) -> &str {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.targets.len();
        &self.targets[i]
    }
}

/// One loaded configuration with everything derived from it.
pub struct App {
    pub config: Config,
    pub router: Router,
    pub upstreams: Vec<UpstreamPool>,
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
        let upstreams = config
            .upstreams
            .iter()
            .map(|u| UpstreamPool {
                name: u.name.clone(),
                targets: u.targets.clone(),
                next: AtomicUsize::new(0),
                connect_timeout: u.connect_timeout,
            })
            .collect();
        Ok(App {
            config,
            router,
            upstreams,
            tls,
            engine,
            route_policies,
        })
    }

    /// The index of an upstream pool by name (config validation guarantees routes' names exist).
    pub fn upstream_index(&self, name: &str) -> Option<usize> {
        self.upstreams.iter().position(|u| u.name == name)
    }

    pub fn route(&self, index: usize) -> &Route {
        &self.config.routes[index]
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
    /// Accepted connections not yet fully closed.
    open: AtomicUsize,
}

impl Shared {
    pub fn new(app: App, shutdown: watch::Receiver<bool>) -> Shared {
        Shared {
            current: RwLock::new(Arc::new(app)),
            metrics: Metrics::default(),
            limits: Arc::default(),
            shutdown,
            started: Instant::now(),
            open: AtomicUsize::new(0),
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
        *self
            .current
            .write()
            .unwrap_or_else(|poison| poison.into_inner()) = Arc::new(app);
    }

    /// Count one accepted connection until the guard drops (the shutdown drain waits for these).
    pub fn open_guard(self: &Arc<Self>) -> OpenGuard {
        self.open.fetch_add(1, Ordering::Relaxed);
        OpenGuard(self.clone())
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
