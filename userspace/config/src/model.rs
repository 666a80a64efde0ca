//! The validated configuration: plain data, filled by the decoder from KDL.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::policy::InspectionPolicy;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub system: System,
    pub listeners: Vec<Listener>,
    pub routes: Vec<Route>,
    pub upstreams: Vec<Upstream>,
    pub agents: Vec<Agent>,
    pub observability: Observability,
    /// The file name the configuration came from, or `"<embedded default>"`.
    pub source: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct System {
    /// 0 = one worker per core.
    pub worker_threads: usize,
    pub graceful_shutdown_timeout: Duration,
    pub connection_steering: Steering,
}

impl Default for System {
    fn default() -> Self {
        System {
            worker_threads: 0,
            graceful_shutdown_timeout: Duration::from_secs(30),
            connection_steering: Steering::Reuseport,
        }
    }
}

/// How new connections reach the workers (`system { connection-steering "..." }`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Steering {
    /// Each worker has its own SO_REUSEPORT socket; the kernel hashes connections over them.
    Reuseport,
    /// The same sockets with a classic BPF program that picks the worker pinned to the CPU
    /// that received the connection.
    ReuseportCpu,
    /// One socket; an acceptor hands the connections to the workers in turn.
    Acceptor,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Http,
    Https,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listener {
    pub name: String,
    pub address: SocketAddr,
    pub protocol: Protocol,
    /// Always `Some` for [`Protocol::Https`], always `None` for [`Protocol::Http`].
    pub tls: Option<TlsFiles>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub name: String,
    /// Higher wins.
    pub priority: i64,
    /// All must hold; empty matches every request.
    pub matches: Vec<Match>,
    pub action: RouteAction,
    pub websocket: WebSocketSettings,
    /// Names of defined agents, in the order written (undefined names are dropped with a warning).
    pub agents: Vec<String>,
    pub data_path: DataPath,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteAction {
    /// The name of a defined upstream.
    Upstream(String),
    Builtin(BuiltinHandler),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuiltinHandler {
    Health,
}

/// Where WebSocket payload bytes are moved once a connection is established.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DataPath {
    /// The proxy picks the fastest path the route's inspection allows.
    #[default]
    Auto,
    Userspace,
    Splice,
    Kernel,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Match {
    /// The request path (without query) equals this.
    Path(String),
    /// The request path starts with this.
    PathPrefix(String),
    /// The query has this (percent-decoded) parameter, with this value if given.
    QueryParam { name: String, value: Option<String> },
    /// The request has this header (name compared case-insensitively), with this value if given.
    Header { name: String, value: Option<String> },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebSocketSettings {
    pub enabled: bool,
    pub ping_interval: Option<Duration>,
    pub ping_timeout: Duration,
    pub max_message_size: usize,
    pub max_connections: Option<usize>,
    pub max_connections_per_ip: Option<usize>,
    pub idle_timeout: Option<Duration>,
    /// A client message (or frame) begun must be complete within this long.
    pub message_timeout: Duration,
}

impl Default for WebSocketSettings {
    fn default() -> Self {
        WebSocketSettings {
            enabled: false,
            ping_interval: None,
            ping_timeout: Duration::from_secs(10),
            max_message_size: 1 << 20,
            max_connections: None,
            max_connections_per_ip: None,
            idle_timeout: None,
            message_timeout: Duration::from_secs(60),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    pub name: String,
    /// `host:port` as written; the port is validated.
    pub targets: Vec<String>,
    pub load_balancing: LoadBalancing,
    pub health_check: Option<HealthCheck>,
    pub connect_timeout: Duration,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LoadBalancing {
    #[default]
    RoundRobin,
    LeastConnections,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    pub kind: HealthCheckKind,
    pub interval: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HealthCheckKind {
    Http { path: String },
    Tcp,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Agent {
    pub name: String,
    pub kind: AgentKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentKind {
    /// Frameguard's in-process WebSocket inspector.
    Inspector(InspectionPolicy),
    /// An external agent kind Frameguard does not implement (kept so routes can name it).
    Unsupported { events: Vec<String> },
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observability {
    /// `None` when metrics are disabled or not configured.
    pub metrics: Option<MetricsSettings>,
    pub logging: LoggingSettings,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricsSettings {
    pub address: SocketAddr,
    pub path: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggingSettings {
    /// One of `trace`, `debug`, `info`, `warn`, `error`.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LoggingSettings {
    fn default() -> Self {
        LoggingSettings {
            level: "info".to_owned(),
            format: LogFormat::Text,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    #[default]
    Text,
}

impl Config {
    pub fn upstream(&self, name: &str) -> Option<&Upstream> {
        self.upstreams.iter().find(|upstream| upstream.name == name)
    }

    pub fn agent(&self, name: &str) -> Option<&Agent> {
        self.agents.iter().find(|agent| agent.name == name)
    }

    /// Overrides from CLI quick flags: replace the listen address of the first listener, the
    /// targets of the upstream used by the first websocket route, and that route's path match.
    /// None = leave as is. Either every override applies or none does.
    pub fn apply_overrides(
        &mut self,
        listen: Option<SocketAddr>,
        upstream: Option<&str>,
        path: Option<&str>,
    ) -> Result<(), String> {
        if listen.is_some() && self.listeners.is_empty() {
            return Err(
                "cannot override the listen address: the configuration has no listener".to_owned(),
            );
        }
        if let Some(target) = upstream {
            crate::decode::check_target(target)
                .map_err(|why| format!("invalid upstream override: {why}"))?;
        }
        if let Some(path) = path {
            crate::decode::check_path(path)
                .map_err(|why| format!("invalid path override: {why}"))?;
        }
        let websocket_route = self.routes.iter().position(|route| route.websocket.enabled);
        if upstream.is_some() || path.is_some() {
            let Some(route_index) = websocket_route else {
                return Err(
                    "cannot override upstream or path: no route has `websocket { enabled #true }`"
                        .to_owned(),
                );
            };
            let route = &self.routes[route_index];
            if upstream.is_some() && !matches!(route.action, RouteAction::Upstream(_)) {
                return Err(format!(
                    "cannot override the upstream: websocket route `{}` has no upstream",
                    route.name
                ));
            }
        }

        if let Some(address) = listen {
            self.listeners[0].address = address;
        }
        let Some(route_index) = websocket_route else {
            return Ok(());
        };
        if let Some(target) = upstream {
            if let RouteAction::Upstream(name) = &self.routes[route_index].action {
                let name = name.clone();
                if let Some(pool) = self.upstreams.iter_mut().find(|pool| pool.name == name) {
                    pool.targets = vec![target.to_owned()];
                }
            }
        }
        if let Some(path) = path {
            let matches = &mut self.routes[route_index].matches;
            matches.retain(|m| !matches!(m, Match::Path(_) | Match::PathPrefix(_)));
            matches.insert(0, Match::Path(path.to_owned()));
        }
        Ok(())
    }
}
