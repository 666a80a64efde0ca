//! Running the real `frameguard` binary: a config file of the test's own, free ports, a
//! readiness poll on /health, and a guard that kills the child and shows its log on failure.

use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::NamedTempFile;

use super::http;

const READY_LIMIT: Duration = Duration::from_secs(10);
const READY_POLL: Duration = Duration::from_millis(20);
const LOG_TAIL_BYTES: u64 = 12 * 1024;

/// Max message size of the `/ws` route.
pub const WS_MAX_MESSAGE: &str = "2MB";
/// Max message size of the `/ws-small` route.
pub const SMALL_MAX_MESSAGE: &str = "64KB";

/// The tests' standard configuration: a health route; WebSocket routes `/ws` (2MB messages),
/// `/ws-small` (64KB), `/ws-keepalive` (ping every second, 1 s to answer), `/ws-idle` (closed
/// after 1 s without traffic) and `/ws-limited` (2 connections per client address); plain HTTP
/// under `/api/`. Everything goes to `upstream`.
pub fn standard_config(listen: SocketAddr, upstream: SocketAddr) -> String {
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
    route "ws-limited" {{ priority 100; matches {{ path "/ws-limited" }}; upstream "backend"
        websocket {{ enabled #true; max-connections-per-ip 2 }} }}
    route "api" {{ priority 50; matches {{ path-prefix "/api/" }}; upstream "backend" }}
}}
upstreams {{ upstream "backend" {{ target "{upstream}" }} }}
observability {{ logging {{ level "debug"; format "text" }} }}
"#
    )
}

/// A port on 127.0.0.1 that nothing listens on right now and that no other test of this
/// process has been given (the proxy binds with SO_REUSEPORT, so two proxies on one port
/// would silently share it).
pub fn free_port() -> u16 {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    for _ in 0..100 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind 127.0.0.1:0")
            .port();
        if HANDED_OUT
            .lock()
            .expect("port set")
            .get_or_insert_with(HashSet::new)
            .insert(port)
        {
            return port;
        }
    }
    panic!("no fresh free port after 100 tries");
}

pub fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// A running proxy; killed when dropped, printing the tail of its log if the test failed.
pub struct Proxy {
    pub addr: SocketAddr,
    child: Child,
    log: NamedTempFile,
    _config: NamedTempFile,
}

impl Proxy {
    /// The standard configuration in front of `upstream`.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        Proxy::start_with(|listen| standard_config(listen, upstream)).await
    }

    /// Start on a free port with the config `config(listen_address)` and wait until /health
    /// answers 200 with JSON.
    pub async fn start_with(config: impl FnOnce(SocketAddr) -> String) -> Proxy {
        let addr = free_addr();
        let mut config_file = NamedTempFile::with_suffix(".kdl").expect("config file");
        std::io::Write::write_all(&mut config_file, config(addr).as_bytes()).expect("write config");
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
            _config: config_file,
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

    /// Ask the proxy to shut down gracefully (SIGTERM).
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
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
