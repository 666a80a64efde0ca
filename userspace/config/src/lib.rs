//! Frameguard configuration: KDL (v2) in the shape of Sentinel's `sentinel.kdl`, validated into a
//! [`Config`], plus the [`Router`] that picks a route for a request.
//!
//! ```
//! let loaded = frameguard_config::parse_str(r#"
//! system { worker-threads 0; graceful-shutdown-timeout-secs 30 }
//! listeners { listener "http" { address "0.0.0.0:8080"; protocol "http" } }
//! routes {
//!     route "ws" {
//!         priority 200
//!         matches { path "/ws"; query-param name="token"; header name="Cookie" }
//!         upstream "backend"
//!         agents "inspector"
//!         websocket { enabled #true; ping-interval-secs 30; max-message-size "1MB" }
//!     }
//! }
//! upstreams { upstream "backend" { target "127.0.0.1:3000" } }
//! agents { agent "inspector" { events "websocket_frame"; xss-detection #true } }
//! observability { metrics { enabled #true; address "127.0.0.1:9090" }; logging { level "info" } }
//! "#, "example.kdl").expect("the example loads");
//! assert_eq!(loaded.warnings, []);
//! assert_eq!(loaded.config.routes[0].name, "ws");
//! ```
//!
//! Decisions:
//! - A configuration must be complete enough to run: no `listeners` (or an empty one) and no
//!   `routes` are errors. Fragments such as the guide's "Connection Limits" snippet therefore do
//!   not load on their own; the seed fixtures show the exact errors. Missing `system`, `agents`
//!   and `observability` take their defaults.
//! - Every problem is collected, not just the first. Wrong value types, out-of-range numbers,
//!   bad addresses, sizes or enum values, duplicates, and undefined upstreams are errors at the
//!   offending value. Nodes and properties Frameguard does not implement, undefined agent names
//!   (dropped from the route) and agents other than the WebSocket inspector are warnings:
//!   nothing is ignored silently.
//! - Sizes are binary (`KB` = 1024, see [`parse_size`]); integers are bytes.
//! - Durations are whole seconds (`*-secs`), capped at 30 days. Optional limits and intervals
//!   (`max-connections`, `ping-interval-secs`, `idle-timeout-secs`...) reject 0: leaving the node
//!   out means "none".
//! - File paths (`cert-file`, `json-schema`) are kept as written; nothing but the configuration
//!   file itself is read here.
//! - `service-type "builtin"` with `builtin-handler "health"` serves the route in-process;
//!   `service-type` "web" or "api" (or none) proxies it to its `upstream`. A listener's
//!   `protocol` defaults to "https" when it has a `tls` block, "http" otherwise.
//! - An agent whose `events` include "websocket_frame", or with `type "websocket-inspector"`,
//!   or with any inspector option (`xss-detection`, `max-messages-per-sec`, ...) is
//!   [`AgentKind::Inspector`]; its `unix-socket`, `grpc-address` and `timeout-ms` draw a warning,
//!   as the inspector runs in-process. Other agents are [`AgentKind::Unsupported`], with a
//!   warning. Routes keep the names of defined agents, unsupported ones included.
//! - The `kdl` parser recurses per block and per comment token and backtracks exponentially on
//!   nested `/- { }` blocks, so a text is refused above 1 MiB or with more than 8 slashdashed
//!   children blocks, and is parsed on a thread whose stack is sized from its `{`, `*` and `/`
//!   counts: no text can overflow the stack.
//! - Column numbers count characters, not bytes.

mod decode;
mod diagnostic;
mod guard;
mod model;
pub mod policy;
mod router;
mod size;

use std::io::Read;
use std::path::Path;

pub use diagnostic::{Diagnostic, Severity};
pub use model::*;
pub use router::{RequestInfo, Router};
pub use size::parse_size;

use diagnostic::Report;

/// The configuration used when none is given (see `src/default.kdl`).
pub const DEFAULT_CONFIG_KDL: &str = include_str!("default.kdl");

/// The `source` of [`default_config`].
const DEFAULT_SOURCE: &str = "<embedded default>";

/// A configuration that loaded, with the warnings to show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<Diagnostic>,
}

/// Reads and parses a configuration file. A file that cannot be read is one diagnostic at 1:1.
pub fn load_file(path: &Path) -> Result<Loaded, Vec<Diagnostic>> {
    let file_name = path.display().to_string();
    let fail = |line: usize, column: usize, message: String| {
        vec![Diagnostic {
            severity: Severity::Error,
            file: file_name.clone(),
            line,
            column,
            message,
        }]
    };
    let mut bytes = Vec::new();
    let read = std::fs::File::open(path).and_then(|file| {
        file.take(guard::MAX_SOURCE_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
    });
    if let Err(err) = read {
        return Err(fail(1, 1, format!("cannot read the configuration: {err}")));
    }
    guard::check_size(bytes.len()).map_err(|message| fail(1, 1, message))?;
    match String::from_utf8(bytes) {
        Ok(text) => parse_str(&text, &file_name),
        Err(err) => {
            let valid = &err.as_bytes()[..err.utf8_error().valid_up_to()];
            // The prefix is valid UTF-8 by construction.
            let valid = std::str::from_utf8(valid).unwrap_or_default();
            let line = valid.matches('\n').count() + 1;
            let column = valid
                .rsplit('\n')
                .next()
                .map_or(0, |last| last.chars().count())
                + 1;
            Err(fail(
                line,
                column,
                "the configuration is not valid UTF-8".to_owned(),
            ))
        }
    }
}

/// Parses and validates configuration text; `file` names it in diagnostics and becomes
/// [`Config::source`]. On failure, returns every error (and warning) found, in source order.
pub fn parse_str(source: &str, file: &str) -> Result<Loaded, Vec<Diagnostic>> {
    let refuse = |offset: usize, message: String| {
        let mut report = Report::new(file, source);
        report.error(offset, message);
        Err(report.into_diagnostics())
    };
    let stack_size = match guard::parser_stack_size(source) {
        Ok(stack_size) => stack_size,
        Err((offset, message)) => return refuse(offset, message),
    };
    // The parser recurses with the nesting of the text (see `guard`): it runs on a stack sized
    // for this text, and the document is dropped there too.
    std::thread::scope(|scope| {
        let parser = std::thread::Builder::new()
            .name("config-parser".to_owned())
            .stack_size(stack_size)
            .spawn_scoped(scope, || parse_on_this_thread(source, file));
        match parser {
            Ok(parser) => parser
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Err(err) => refuse(0, format!("cannot start the configuration parser: {err}")),
        }
    })
}

fn parse_on_this_thread(source: &str, file: &str) -> Result<Loaded, Vec<Diagnostic>> {
    let mut report = Report::new(file, source);
    let document = match kdl::KdlDocument::parse_v2(source) {
        Ok(document) => document,
        Err(err) => {
            for diagnostic in err.diagnostics {
                let message = diagnostic.message.as_deref().unwrap_or("invalid KDL");
                let start = diagnostic.span.offset();
                let spanned = source
                    .get(start..start + diagnostic.span.len())
                    .unwrap_or_default();
                let message = match (&diagnostic.help, spanned) {
                    (Some(help), _) => format!("{message} ({help})"),
                    // The KDL v1 spelling, as in many Sentinel examples.
                    (None, "true" | "false" | "null") => {
                        format!("{message}: KDL v2 writes #{spanned} instead of {spanned}")
                    }
                    (None, _) => message.to_owned(),
                };
                let severity = match diagnostic.severity {
                    miette::Severity::Error => Severity::Error,
                    miette::Severity::Warning | miette::Severity::Advice => Severity::Warning,
                };
                report.push(severity, start, message);
            }
            return Err(report.into_diagnostics());
        }
    };
    let (config, report) = decode::decode(&document, report, file);
    if report.has_errors() {
        return Err(report.into_diagnostics());
    }
    Ok(Loaded {
        config,
        warnings: report.into_diagnostics(),
    })
}

/// The embedded default configuration ([`DEFAULT_CONFIG_KDL`]).
pub fn default_config() -> Config {
    match parse_str(DEFAULT_CONFIG_KDL, DEFAULT_SOURCE) {
        Ok(loaded) => loaded.config,
        // The embedded text is fixed at build time and a unit test loads it.
        Err(diagnostics) => {
            panic!("the embedded default configuration is invalid: {diagnostics:?}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::InspectionPolicy;
    use std::time::Duration;

    #[test]
    fn default_config_loads_without_warnings() {
        let loaded = parse_str(DEFAULT_CONFIG_KDL, DEFAULT_SOURCE).expect("default config loads");
        assert_eq!(loaded.warnings, []);
        let config = loaded.config;
        assert_eq!(config.source, "<embedded default>");
        assert_eq!(
            config.system,
            System {
                worker_threads: 0,
                graceful_shutdown_timeout: Duration::from_secs(30),
                connection_steering: Steering::Reuseport,
            }
        );
        assert_eq!(config.listeners.len(), 1);
        assert_eq!(
            config.listeners[0].address,
            "127.0.0.1:8080".parse().unwrap()
        );
        assert_eq!(config.listeners[0].protocol, Protocol::Http);
        let [health, ws] = &config.routes[..] else {
            panic!("two routes: {:?}", config.routes)
        };
        assert_eq!(health.priority, 1000);
        assert_eq!(health.matches, [Match::Path("/health".into())]);
        assert_eq!(health.action, RouteAction::Builtin(BuiltinHandler::Health));
        assert_eq!(ws.priority, 100);
        assert_eq!(ws.matches, [Match::Path("/ws".into())]);
        assert_eq!(ws.action, RouteAction::Upstream("backend".into()));
        assert!(ws.websocket.enabled);
        assert_eq!(ws.agents, ["inspector"]);
        assert_eq!(
            config.upstream("backend").map(|u| u.targets.clone()),
            Some(vec!["127.0.0.1:3000".into()])
        );
        assert_eq!(
            config.agent("inspector").map(|a| &a.kind),
            Some(&AgentKind::Inspector(InspectionPolicy {
                inspect_binary: true,
                ..InspectionPolicy::default()
            }))
        );
        assert_eq!(
            config.observability.metrics,
            Some(MetricsSettings {
                address: "127.0.0.1:9090".parse().unwrap(),
                path: "/metrics".into()
            })
        );
        assert_eq!(
            config.observability.logging,
            LoggingSettings {
                level: "info".into(),
                format: LogFormat::Text
            }
        );
        assert_eq!(default_config(), config);
    }
}
