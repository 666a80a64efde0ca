//! The state every worker shares: the loaded configuration, its router and upstream pools.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use frameguard_config::{Config, Route, Router};

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

pub struct App {
    pub config: Config,
    pub router: Router,
    pub upstreams: Vec<UpstreamPool>,
    pub started: Instant,
}

impl App {
    pub fn new(config: Config) -> App {
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
        App {
            config,
            router,
            upstreams,
            started: Instant::now(),
        }
    }

    /// The index of an upstream pool by name (config validation guarantees routes' names exist).
    pub fn upstream_index(&self, name: &str) -> Option<usize> {
        self.upstreams.iter().position(|u| u.name == name)
    }

    pub fn route(&self, index: usize) -> &Route {
        &self.config.routes[index]
    }
}
