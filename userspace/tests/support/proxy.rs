//! Running the real `frameguard` binary: a config file of the test's own, free ports, a
//! readiness poll on /health, and a guard that kills the child and shows its log on failure.

use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::NamedTempFile;

use super::http;

/// Bound of a start or a reload: compiling the inspection rules takes seconds in a debug build,
/// and more on a loaded 2-core machine.
const READY_LIMIT: Duration = Duration::from_secs(30);
const READY_POLL: Duration = Duration::from_millis(20);
const LOG_TAIL_BYTES: u64 = 12 * 1024;
const LOG_LIMIT_BYTES: u64 = 16 << 20;

/// Max message size of the `/ws` route.
pub const WS_MAX_MESSAGE: &str = "2MB";
/// Max message size of the `/ws-small` route.
pub const SMALL_MAX_MESSAGE: &str = "64KB";

/// The tests' standard configuration: a health route; WebSocket routes `/ws` (2MB messages),
/// `/ws-small` (64KB), `/ws-keepalive` (ping every second, 1 s to answer), `/ws-idle` (closed
/// after 1 s without traffic), `/ws-limited` (2 connections per client address) and
/// `/ws-capped` (2 connections in all); plain HTTP under `/api/`. Everything goes to `upstream`.
pub fn standard_config(listen: SocketAddr, upstream: SocketAddr) -> String {
    standard_config_with_metrics(listen, upstream, None)
}

/// [`standard_config`], with the Prometheus endpoint on `metrics` if given.
pub fn standard_config_with_metrics(
    listen: SocketAddr,
    upstream: SocketAddr,
    metrics: Option<SocketAddr>,
) -> String {
    let metrics = metrics_node(metrics);
    format!(
        r#"system {{ worker-threads 2; graceful-shutdown-timeout-secs 2 }}
listeners {{ listener "http" {{ address "{listen}"; protocol "http" }} }}
routes {{
    route "health" {{ priority 1000; matches {{ path "/health" }}; service-type "builtin"; builtin-handler "health" }}
    route "ws" {{ priority 100; matches {{ path "/ws" }}; upstream "backend"
        websocket {{ enabled #true; max-message-size "{WS_MAX_MESSAGE}" }} }}
    route "ws-small" {{ priority 100; matches {{ path "/ws-small" }}; upstream "backend"
        websocket {{ enabled #true; max-message-size "{SMALL_MAX_MESSAGE}" }} }}
    route "ws-keepalive" {{ priority 100; matches {{ path "/ws-keepalive" }}; upstream "backend"
        websocket {{ enabled #true; ping-interval-secs 1; ping-timeout-secs 1 }} }}
    route "ws-idle" {{ priority 100; matches {{ path "/ws-idle" }}; upstream "backend"
        websocket {{ enabled #true; idle-timeout-secs 1 }} }}
    route "ws-hasty" {{ priority 100; matches {{ path "/ws-hasty" }}; upstream "backend"
        websocket {{ enabled #true; message-timeout-secs 1 }} }}
    route "ws-limited" {{ priority 100; matches {{ path "/ws-limited" }}; upstream "backend"
        websocket {{ enabled #true; max-connections-per-ip 2 }} }}
    route "ws-capped" {{ priority 100; matches {{ path "/ws-capped" }}; upstream "backend"
        websocket {{ enabled #true; max-connections 2 }} }}
    route "api" {{ priority 50; matches {{ path-prefix "/api/" }}; upstream "backend" }}
}}
upstreams {{ upstream "backend" {{ target "{upstream}" }} }}
observability {{ {metrics}logging {{ level "debug"; format "text" }} }}
"#
    )
}

/// The `metrics` node of an `observability` block (with its separator), or nothing.
fn metrics_node(metrics: Option<SocketAddr>) -> String {
    match metrics {
        Some(address) => format!(r#"metrics {{ enabled #true; address "{address}" }}; "#),
        None => String::new(),
    }
}

/// A JSON Schema for the `/ws-schema` route of [`inspected_config`]: chat messages only.
pub const CHAT_SCHEMA: &str = r#"{
  "$schema": "http://json-schema.org/draft-07/schema#",
  "type": "object",
  "required": ["type", "text"],
  "properties": {
    "type": { "enum": ["chat"] },
    "text": { "type": "string", "maxLength": 200 }
  }
}"#;

/// A configuration with inspection, everything going to `upstream`:
/// - `/ws-inspected` (and `/socket.io/...`): XSS, SQLi, command injection and the custom
///   pattern `forbidden-[0-9]+`, blocking, inbound, binary messages inspected too;
/// - `/ws-detect`: the same detections in detect-only mode;
/// - `/ws-rate`: at most 5 messages per second with a burst of 5;
/// - `/ws-schema`: text messages must match the JSON Schema at `schema`;
/// - `/ws-msgpack`: binary messages must be MessagePack, and their strings are inspected;
/// - `/ws-both`: the default detections on messages both ways;
/// - `/ws-chat`: the default policy (text messages inbound, binary ones not inspected);
/// - `/ws` without inspection.
///
/// `metrics` adds the Prometheus endpoint on that address.
pub fn inspected_config(
    listen: SocketAddr,
    upstream: SocketAddr,
    schema: &Path,
    metrics: Option<SocketAddr>,
) -> String {
    let schema = schema.display();
    let metrics = metrics_node(metrics);
    let route = |name: &str, agent: &str| {
        format!(
            r#"route "{name}" {{ priority 100; matches {{ path "/{name}" }}; upstream "backend"; agents "{agent}"
        websocket {{ enabled #true; max-message-size "{WS_MAX_MESSAGE}" }} }}"#
        )
    };
    let routes = [
        route("ws-inspected", "inspector"),
        route("ws-detect", "detector"),
        route("ws-rate", "limiter"),
        route("ws-schema", "validator"),
        route("ws-msgpack", "msgpack"),
        route("ws-both", "both-ways"),
        route("ws-chat", "chat"),
    ]
    .join(
        "
    ",
    );
    format!(
        r#"system {{ worker-threads 2; graceful-shutdown-timeout-secs 2 }}
listeners {{ listener "http" {{ address "{listen}"; protocol "http" }} }}
routes {{
    route "health" {{ priority 1000; matches {{ path "/health" }}; service-type "builtin"; builtin-handler "health" }}
    {routes}
    route "socketio" {{ priority 90; matches {{ path-prefix "/socket.io/" }}; upstream "backend"; agents "inspector"
        websocket {{ enabled #true }} }}
    route "ws" {{ priority 100; matches {{ path "/ws" }}; upstream "backend"; websocket {{ enabled #true }} }}
}}
upstreams {{ upstream "backend" {{ target "{upstream}" }} }}
agents {{
    agent "inspector" {{
        type "websocket-inspector"; xss-detection #true; sqli-detection #true; command-injection #true
        block-mode #true; direction "inbound"; inspect-binary #true; custom-patterns "forbidden-[0-9]+"
    }}
    agent "detector" {{ type "websocket-inspector"; block-mode #false }}
    agent "limiter" {{ type "websocket-inspector"; max-messages-per-sec 5; rate-limit-burst 5 }}
    agent "validator" {{ type "websocket-inspector"; json-schema "{schema}" }}
    agent "msgpack" {{ type "websocket-inspector"; msgpack-validation #true; inspect-binary #true }}
    agent "both-ways" {{ type "websocket-inspector"; direction "both" }}
    agent "chat" {{ type "websocket-inspector" }}
}}
observability {{ {metrics}logging {{ level "debug"; format "text" }} }}
"#
    )
}

/// A port on 127.0.0.1 that nothing listens on right now and that no other test of this
/// process has been given (the proxy binds with SO_REUSEPORT, so two proxies on one port
/// would silently share it). It is taken below the kernel's ephemeral range: the test servers
/// that bind port 0 get ports from that range, and one of them could otherwise be handed this
/// port between the check here and the proxy's own bind.
pub fn free_port() -> u16 {
    use std::collections::HashSet;
    use std::sync::Mutex;
    const BELOW_EPHEMERAL: std::ops::Range<u16> = 20000..32000;
    static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    for _ in 0..1000 {
        let port = rand::Rng::gen_range(&mut rand::thread_rng(), BELOW_EPHEMERAL);
        let mut handed_out = HANDED_OUT.lock().expect("port set");
        let handed_out = handed_out.get_or_insert_with(HashSet::new);
        if !handed_out.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed_out.insert(port);
            return port;
        }
    }
    panic!("no fresh free port after 1000 tries");
}

pub fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// A temporary file named `*{suffix}` holding `contents`.
pub fn temp_file(suffix: &str, contents: &str) -> NamedTempFile {
    let mut file = NamedTempFile::with_suffix(suffix).expect("temporary file");
    std::io::Write::write_all(&mut file, contents.as_bytes()).expect("write temporary file");
    file
}

/// A running proxy; killed when dropped, printing the tail of its log if the test failed.
pub struct Proxy {
    pub addr: SocketAddr,
    child: Child,
    log: NamedTempFile,
    config: NamedTempFile,
    /// Files the configuration names (schemas, certificates), kept as long as the proxy.
    files: Vec<NamedTempFile>,
}

impl Proxy {
    /// The standard configuration in front of `upstream`.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        Proxy::start_with(|listen| standard_config(listen, upstream)).await
    }

    /// [`inspected_config`] in front of `upstream`, with its schema file.
    pub async fn start_inspected(upstream: SocketAddr, metrics: Option<SocketAddr>) -> Proxy {
        let schema = temp_file(".json", CHAT_SCHEMA);
        let mut proxy =
            Proxy::start_with(|listen| inspected_config(listen, upstream, schema.path(), metrics))
                .await;
        proxy.keep(schema);
        proxy
    }

    /// Start on a free port with the config `config(listen_address)` and wait until /health
    /// answers 200 with JSON.
    pub async fn start_with(config: impl FnOnce(SocketAddr) -> String) -> Proxy {
        let addr = free_addr();
        let config_file = temp_file(".kdl", &config(addr));
        let log = NamedTempFile::new().expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_frameguard"))
            .arg("run")
            .arg("--config")
            .arg(config_file.path())
            .stdin(Stdio::null())
            .stdout(log.reopen().expect("log handle"))
            .stderr(log.reopen().expect("log handle"))
            .spawn()
            .expect("spawn frameguard");
        let mut proxy = Proxy {
            addr,
            child,
            log,
            config: config_file,
            files: Vec::new(),
        };
        proxy.wait_ready().await;
        proxy
    }

    async fn wait_ready(&mut self) {
        let deadline = tokio::time::Instant::now() + READY_LIMIT;
        let mut last = String::from("no attempt");
        while tokio::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "frameguard exited with {status} before it was ready:\n{}",
                    self.log_tail()
                );
            }
            let req = "GET /health HTTP/1.1\r\nHost: frameguard\r\nConnection: close\r\n\r\n";
            match tokio::time::timeout(
                Duration::from_secs(1),
                http::request(self.addr, req.as_bytes()),
            )
            .await
            {
                Ok(Ok(resp)) if resp.status == 200 => {
                    let json: Result<serde_json::Value, _> = serde_json::from_slice(&resp.body);
                    assert!(
                        json.is_ok(),
                        "/health answered 200 without JSON: {:?}",
                        resp.body_text()
                    );
                    return;
                }
                Ok(Ok(resp)) => last = format!("status {}", resp.status),
                Ok(Err(e)) => last = e.to_string(),
                Err(_) => last = "timed out".to_owned(),
            }
            tokio::time::sleep(READY_POLL).await;
        }
        panic!(
            "frameguard not ready within {READY_LIMIT:?} (last: {last}):\n{}",
            self.log_tail()
        );
    }

    /// Keep `file` (named by the configuration) until the proxy is dropped.
    pub fn keep(&mut self, file: NamedTempFile) {
        self.files.push(file);
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Ask the proxy to shut down gracefully (SIGTERM).
    pub fn terminate(&self) {
        self.signal("TERM");
    }

    /// Replace the configuration file with `text` and ask the proxy to reload it (SIGHUP).
    pub fn reload_with(&self, text: &str) {
        std::fs::write(self.config.path(), text).expect("rewrite the config file");
        self.signal("HUP");
    }

    /// Everything the proxy wrote to stdout and stderr so far (at most `LOG_LIMIT_BYTES`).
    pub fn log(&self) -> String {
        let mut text = Vec::new();
        match self.log.reopen() {
            Ok(file) => {
                let _ = file.take(LOG_LIMIT_BYTES).read_to_end(&mut text);
            }
            Err(e) => return format!("(log unreadable: {e})"),
        }
        String::from_utf8_lossy(&text).into_owned()
    }

    /// The configuration file the proxy was started with (and reloads).
    pub fn config_path(&self) -> &Path {
        self.config.path()
    }

    /// Wait (bounded by `READY_LIMIT`, as a reload may be the awaited event) until `count` log
    /// lines contain `needle`; those lines.
    pub async fn wait_for_log_lines(&self, needle: &str, count: usize) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + READY_LIMIT;
        loop {
            let lines: Vec<String> = self
                .log()
                .lines()
                .filter(|l| l.contains(needle))
                .map(str::to_owned)
                .collect();
            if lines.len() >= count {
                return lines;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "{} log lines with {needle:?}, expected {count}:\n{}",
                    lines.len(),
                    self.log_tail()
                );
            }
            tokio::time::sleep(READY_POLL).await;
        }
    }

    /// The audit events logged so far: the JSON lines of target `frameguard::audit`.
    pub fn audit_events(&self) -> Vec<serde_json::Value> {
        self.log()
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|event| event["target"] == "frameguard::audit")
            .collect()
    }

    /// Wait (bounded by `IO_TIMEOUT`) for `count` audit events; all of them.
    pub async fn wait_for_audit_events(&self, count: usize) -> Vec<serde_json::Value> {
        let deadline = tokio::time::Instant::now() + super::IO_TIMEOUT;
        loop {
            let events = self.audit_events();
            if events.len() >= count {
                return events;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "{} audit events, expected {count}:\n{}",
                    events.len(),
                    self.log_tail()
                );
            }
            tokio::time::sleep(READY_POLL).await;
        }
    }

    /// Wait (at most `limit`) for the proxy to exit; its exit status.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            tokio::time::sleep(READY_POLL).await;
        }
        None
    }

    /// The last part of the proxy's stdout and stderr.
    pub fn log_tail(&self) -> String {
        let mut file = match self.log.reopen() {
            Ok(file) => file,
            Err(e) => return format!("(log unreadable: {e})"),
        };
        let len = file.metadata().map_or(0, |m| m.len());
        let _ = file.seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL_BYTES)));
        let mut tail = Vec::new();
        let _ = file.read_to_end(&mut tail);
        String::from_utf8_lossy(&tail).into_owned()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- frameguard log (tail) ----\n{}\n---- end of frameguard log ----",
                self.log_tail()
            );
        }
    }
}
