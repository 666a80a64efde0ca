//! Every configuration example of the Sentinel WebSocket guide, verbatim (tests/fixtures/seed-*.kdl),
//! and the corrected copies (seed-*-fixed.kdl).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use frameguard_config::policy::InspectionPolicy;
use frameguard_config::{
    load_file, AgentKind, BuiltinHandler, Config, DataPath, HealthCheck, HealthCheckKind,
    LoadBalancing, LogFormat, Match, MetricsSettings, Protocol, RequestInfo, RouteAction, Router,
    TlsFiles, WebSocketSettings,
};

fn fixture(name: &str) -> String {
    format!("tests/fixtures/{name}")
}

/// The config of a fixture that must load, and its warnings as displayed.
fn load_ok(name: &str) -> (Config, Vec<String>) {
    match load_file(Path::new(&fixture(name))) {
        Ok(loaded) => (
            loaded.config,
            loaded.warnings.iter().map(ToString::to_string).collect(),
        ),
        Err(diagnostics) => panic!("{name} does not load: {diagnostics:#?}"),
    }
}

/// The diagnostics, as displayed, of a fixture that must not load.
fn load_err(name: &str) -> Vec<String> {
    match load_file(Path::new(&fixture(name))) {
        Ok(loaded) => panic!("{name} loads: {loaded:#?}"),
        Err(diagnostics) => diagnostics.iter().map(ToString::to_string).collect(),
    }
}

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

#[test]
fn full_configuration_loads_with_only_warnings() {
    let (config, warnings) = load_ok("seed-configuration.kdl");
    let file = fixture("seed-configuration.kdl");
    assert_eq!(
        warnings,
        [
            format!("{file}:85:9: warning: Frameguard runs the inspector in-process; unix-socket is not used"),
            format!("{file}:87:9: warning: Frameguard runs the inspector in-process; timeout-ms is not used"),
            format!(
                "{file}:91:11: warning: agent `auth` handles request_headers events, which Frameguard does not \
                 implement; the agent is ignored"
            ),
        ]
    );

    assert_eq!(config.source, file);
    assert_eq!(config.system.worker_threads, 0);
    assert_eq!(
        config.system.graceful_shutdown_timeout,
        Duration::from_secs(60)
    );

    let [https, http] = &config.listeners[..] else {
        panic!("{:?}", config.listeners)
    };
    assert_eq!(
        (https.name.as_str(), https.address, https.protocol),
        ("https", addr("0.0.0.0:8443"), Protocol::Https)
    );
    assert_eq!(
        https.tls,
        Some(TlsFiles {
            cert_file: "/etc/sentinel/certs/ws.crt".into(),
            key_file: "/etc/sentinel/certs/ws.key".into()
        })
    );
    assert_eq!(
        (http.name.as_str(), http.address, http.protocol),
        ("http", addr("0.0.0.0:8080"), Protocol::Http)
    );
    assert_eq!(http.tls, None);

    let [health, websocket, socketio, api] = &config.routes[..] else {
        panic!("{:?}", config.routes)
    };
    assert_eq!(health.name, "health");
    assert_eq!(health.priority, 1000);
    assert_eq!(health.matches, [Match::Path("/health".into())]);
    assert_eq!(health.action, RouteAction::Builtin(BuiltinHandler::Health));

    assert_eq!(websocket.priority, 200);
    assert_eq!(websocket.matches, [Match::Path("/ws".into())]);
    assert_eq!(websocket.action, RouteAction::Upstream("ws-backend".into()));
    assert_eq!(websocket.agents, ["ws-inspector"]);
    assert_eq!(websocket.data_path, DataPath::Auto);
    assert_eq!(
        websocket.websocket,
        WebSocketSettings {
            enabled: true,
            ping_interval: Some(Duration::from_secs(30)),
            ping_timeout: Duration::from_secs(10),
            max_message_size: 1 << 20,
            ..WebSocketSettings::default()
        }
    );

    assert_eq!(socketio.matches, [Match::PathPrefix("/socket.io/".into())]);
    assert!(socketio.websocket.enabled);

    assert_eq!(api.priority, 100);
    assert_eq!(api.agents, ["auth"]);
    assert!(!api.websocket.enabled);

    let backend = config.upstream("ws-backend").expect("ws-backend");
    assert_eq!(backend.targets, ["127.0.0.1:3000"]);
    assert_eq!(backend.load_balancing, LoadBalancing::RoundRobin);
    assert_eq!(backend.connect_timeout, Duration::from_secs(5));
    assert_eq!(
        backend.health_check,
        Some(HealthCheck {
            kind: HealthCheckKind::Http {
                path: "/health".into()
            },
            interval: Duration::from_secs(10)
        })
    );

    let inspector = config.agent("ws-inspector").expect("ws-inspector");
    assert_eq!(
        inspector.kind,
        AgentKind::Inspector(InspectionPolicy {
            fail_open: true,
            ..InspectionPolicy::default()
        })
    );
    let auth = config.agent("auth").expect("auth");
    assert_eq!(
        auth.kind,
        AgentKind::Unsupported {
            events: vec!["request_headers".into()]
        }
    );

    assert_eq!(
        config.observability.metrics,
        Some(MetricsSettings {
            address: addr("0.0.0.0:9090"),
            path: "/metrics".into()
        })
    );
    assert_eq!(config.observability.logging.level, "info");
    assert_eq!(config.observability.logging.format, LogFormat::Json);
}

#[test]
fn full_configuration_routes_requests() {
    let (config, _) = load_ok("seed-configuration.kdl");
    let router = Router::new(&config.routes);
    let route = |path: &str| {
        router
            .select(&RequestInfo {
                path,
                query: None,
                headers: &[],
            })
            .map(|index| config.routes[index].name.as_str())
    };
    assert_eq!(route("/health"), Some("health"));
    assert_eq!(route("/ws"), Some("websocket"));
    assert_eq!(route("/ws/more"), None);
    assert_eq!(route("/socket.io/"), Some("socketio"));
    assert_eq!(route("/api/rooms"), Some("api"));
    assert_eq!(route("/"), None);
}

#[test]
fn token_in_query_string_names_an_undefined_upstream() {
    let file = fixture("seed-token-in-query-string.kdl");
    assert_eq!(
        load_err("seed-token-in-query-string.kdl"),
        [format!(
            "{file}:18:18: error: upstream `ws-backend` is not defined (did you mean \"backend\"?)"
        )]
    );
}

#[test]
fn token_in_query_string_fixed_matches_the_token() {
    let (config, warnings) = load_ok("seed-token-in-query-string-fixed.kdl");
    assert_eq!(warnings, Vec::<String>::new());
    let route = &config.routes[0];
    assert_eq!(
        route.matches,
        [
            Match::Path("/ws".into()),
            Match::QueryParam {
                name: "token".into(),
                value: None
            }
        ]
    );
    assert_eq!(route.action, RouteAction::Upstream("backend".into()));
    let router = Router::new(&config.routes);
    let select = |query| {
        router.select(&RequestInfo {
            path: "/ws",
            query,
            headers: &[],
        })
    };
    assert_eq!(select(Some("token=eyJ")), Some(0));
    assert_eq!(select(None), None);
}

#[test]
fn token_in_subprotocol_names_an_undefined_upstream() {
    let file = fixture("seed-token-in-subprotocol.kdl");
    assert_eq!(
        load_err("seed-token-in-subprotocol.kdl"),
        [format!(
            "{file}:18:18: error: upstream `ws-backend` is not defined (did you mean \"backend\"?)"
        )]
    );
}

#[test]
fn token_in_subprotocol_fixed_requires_the_cookie_header() {
    let (config, warnings) = load_ok("seed-token-in-subprotocol-fixed.kdl");
    assert_eq!(warnings, Vec::<String>::new());
    assert_eq!(
        config.routes[0].matches,
        [
            Match::Path("/ws".into()),
            Match::Header {
                name: "Cookie".into(),
                value: None
            }
        ]
    );
    let router = Router::new(&config.routes);
    let select = |headers: &[(&str, &[u8])]| {
        router.select(&RequestInfo {
            path: "/ws",
            query: None,
            headers,
        })
    };
    assert_eq!(select(&[("cookie", b"session=1")]), Some(0));
    assert_eq!(select(&[("authorization", b"Bearer x")]), None);
}

#[test]
fn connection_limits_fragment_is_not_a_complete_configuration() {
    let file = fixture("seed-connection-limits.kdl");
    assert_eq!(
        load_err("seed-connection-limits.kdl"),
        [
            format!(
                "{file}:1:1: error: no listeners defined: add `listeners {{ listener \"http\" {{ address \
                 \"127.0.0.1:8080\" }} }}`"
            ),
            format!("{file}:3:18: error: upstream `ws-backend` is not defined (the configuration defines no upstreams)"),
        ]
    );
}

#[test]
fn connection_limits_fixed_sets_the_limits() {
    let (config, warnings) = load_ok("seed-connection-limits-fixed.kdl");
    assert_eq!(warnings, Vec::<String>::new());
    let route = &config.routes[0];
    assert_eq!(route.matches, []);
    assert_eq!(
        route.websocket,
        WebSocketSettings {
            enabled: true,
            max_connections: Some(1000),
            max_connections_per_ip: Some(10),
            idle_timeout: Some(Duration::from_secs(300)),
            ..WebSocketSettings::default()
        }
    );
    // No matches: every request.
    let router = Router::new(&config.routes);
    assert_eq!(
        router.select(&RequestInfo {
            path: "/anything",
            query: None,
            headers: &[]
        }),
        Some(0)
    );
}

#[test]
fn multi_room_chat_names_an_undefined_upstream_and_agents() {
    let file = fixture("seed-multi-room-chat-example.kdl");
    let hint = "upstream `chat-service` is not defined (did you mean \"backend\"?)";
    assert_eq!(
        load_err("seed-multi-room-chat-example.kdl"),
        [
            format!("{file}:19:18: error: {hint}"),
            format!("{file}:20:16: warning: route `chat-ws` names agent `auth`, which is not defined; ignored"),
            format!("{file}:34:18: error: {hint}"),
            format!("{file}:35:16: warning: route `chat-api` names agent `auth`, which is not defined; ignored"),
            format!("{file}:35:23: warning: route `chat-api` names agent `ratelimit`, which is not defined; ignored"),
            format!("{file}:41:9: warning: Frameguard runs the inspector in-process; unix-socket is not used"),
            format!("{file}:43:9: warning: Frameguard runs the inspector in-process; timeout-ms is not used"),
        ]
    );
}

#[test]
fn multi_room_chat_fixed_loads_with_agent_warnings() {
    let (config, warnings) = load_ok("seed-multi-room-chat-example-fixed.kdl");
    let file = fixture("seed-multi-room-chat-example-fixed.kdl");
    assert_eq!(
        warnings,
        [
            format!("{file}:24:16: warning: route `chat-ws` names agent `auth`, which is not defined; ignored"),
            format!("{file}:39:16: warning: route `chat-api` names agent `auth`, which is not defined; ignored"),
            format!("{file}:39:23: warning: route `chat-api` names agent `ratelimit`, which is not defined; ignored"),
            format!("{file}:45:9: warning: Frameguard runs the inspector in-process; unix-socket is not used"),
            format!("{file}:47:9: warning: Frameguard runs the inspector in-process; timeout-ms is not used"),
        ]
    );
    let [chat_ws, chat_api] = &config.routes[..] else {
        panic!("{:?}", config.routes)
    };
    assert_eq!(chat_ws.action, RouteAction::Upstream("chat-service".into()));
    assert_eq!(chat_ws.agents, ["ws-inspector"]);
    assert_eq!(
        chat_ws.websocket.ping_interval,
        Some(Duration::from_secs(30))
    );
    assert_eq!(chat_ws.websocket.max_message_size, 64 * 1024);
    assert_eq!(chat_api.agents, Vec::<String>::new());
    assert_eq!(
        config.upstream("chat-service").map(|u| u.targets.clone()),
        Some(vec!["127.0.0.1:3000".into()])
    );
}
