//! Bad configurations and the exact `file:line:column` diagnostics they produce.

use std::path::Path;

use frameguard_config::policy::{Direction, InspectionPolicy};
use frameguard_config::{load_file, parse_str, AgentKind, Config, Match, MetricsSettings};

/// Listeners and upstreams appended to the inline cases, which put what they test first.
const BASE: &str = "listeners { listener \"http\" { address \"127.0.0.1:8080\"; }; }\n\
                    upstreams { upstream \"backend\" { target \"127.0.0.1:3000\"; }; }\n";

/// A route section that makes an inline case complete.
const ROUTES: &str = "routes { route \"ws\" { upstream \"backend\"; }; }\n";

fn displayed(diagnostics: &[frameguard_config::Diagnostic]) -> Vec<String> {
    diagnostics.iter().map(ToString::to_string).collect()
}

fn load_err(name: &str) -> Vec<String> {
    let path = format!("tests/fixtures/{name}");
    match load_file(Path::new(&path)) {
        Ok(loaded) => panic!("{name} loads: {loaded:#?}"),
        Err(diagnostics) => displayed(&diagnostics),
    }
}

fn parse_ok(text: &str) -> (Config, Vec<String>) {
    match parse_str(text, "inline.kdl") {
        Ok(loaded) => (loaded.config, displayed(&loaded.warnings)),
        Err(diagnostics) => panic!("does not load: {diagnostics:#?}\n{text}"),
    }
}

fn parse_err(text: &str) -> Vec<String> {
    match parse_str(text, "inline.kdl") {
        Ok(loaded) => panic!("loads: {loaded:#?}\n{text}"),
        Err(diagnostics) => displayed(&diagnostics),
    }
}

#[test]
fn wrong_types_are_all_reported_at_their_values() {
    let f = "tests/fixtures/bad-wrong-type.kdl";
    assert_eq!(
        load_err("bad-wrong-type.kdl"),
        [
            format!("{f}:3:20: error: `worker-threads` expects an integer, found string \"four\""),
            format!(
                "{f}:8:17: error: `address` \"0.0.0.0:80800\" is not an IP:PORT socket address such as \
                 \"127.0.0.1:8080\""
            ),
            format!("{f}:9:18: error: unknown `protocol` \"ws\" (expected one of \"http\", \"https\")"),
            format!("{f}:15:18: error: `priority` expects an integer, found number 1.5"),
            format!("{f}:16:24: error: `path` \"ws\" must start with '/'"),
            format!("{f}:19:21: error: `enabled` expects #true or #false, found string \"yes\""),
            format!("{f}:20:29: error: `max-connections` must be at least 1, found -5"),
            format!("{f}:21:32: error: `ping-interval-secs` must be at least 1, found 0"),
            format!("{f}:28:16: error: `target` \"127.0.0.1\" needs a port, such as \"127.0.0.1:3000\""),
            format!("{f}:29:30: error: `connect-timeout-secs` expects an integer, found #true"),
            format!(
                "{f}:35:15: error: unknown `level` \"verbose\" (expected one of \"trace\", \"debug\", \"info\", \
                 \"warn\", \"error\")"
            ),
        ]
    );
}

#[test]
fn unknown_upstreams_get_a_hint_when_a_name_is_close() {
    let f = "tests/fixtures/bad-unknown-upstream.kdl";
    assert_eq!(
        load_err("bad-unknown-upstream.kdl"),
        [
            format!(
                "{f}:9:18: error: upstream `bakend` is not defined (did you mean \"backend\"?)"
            ),
            format!("{f}:12:18: error: upstream `invoices` is not defined"),
        ]
    );
}

#[test]
fn bad_sizes_are_reported_at_their_values() {
    let f = "tests/fixtures/bad-size.kdl";
    assert_eq!(
        load_err("bad-size.kdl"),
        [
            format!(
                "{f}:13:30: error: `max-message-size`: unknown size unit `XB` in \"64XB\" (use B, KB, MB or GB; \
                 1KB = 1024 bytes)"
            ),
            format!("{f}:27:29: error: `max-text-frame-size`: size \"1.3B\" is not a whole number of bytes"),
            format!(
                "{f}:28:31: error: `max-binary-frame-size` expects a size such as \"64KB\" or a number of bytes, \
                 found number 1.5"
            ),
            format!("{f}:29:26: error: `max-message-size` must not be negative, found -1"),
        ]
    );
}

#[test]
fn an_unclosed_block_is_a_syntax_error_at_its_brace() {
    let f = "tests/fixtures/bad-unclosed-block.kdl";
    assert_eq!(
        load_err("bad-unclosed-block.kdl"),
        [
            format!("{f}:7:8: error: No closing '}}' for child block"),
            format!("{f}:7:9: error: Closing '}}' was not found after nodes"),
        ]
    );
}

#[test]
fn duplicates_are_errors_pointing_at_the_first() {
    let f = "tests/fixtures/bad-duplicate-route.kdl";
    assert_eq!(
        load_err("bad-duplicate-route.kdl"),
        [
            format!("{f}:10:9: error: duplicate `priority` (first at 9:9)"),
            format!("{f}:13:11: error: duplicate route `ws` (first at 8:11)"),
            format!("{f}:22:14: error: duplicate upstream `backend` (first at 19:14)"),
        ]
    );
}

#[test]
fn kdl_v1_booleans_get_a_hint() {
    let text =
        format!("{ROUTES}{BASE}routes {{ route \"x\" {{ websocket {{ enabled true; }}; }}; }}\n");
    assert_eq!(
        parse_err(&text),
        ["inline.kdl:4:42: error: Expected identifier string: KDL v2 writes #true instead of true"]
    );
}

#[test]
fn unimplemented_nodes_and_properties_are_warnings_with_hints() {
    let text = format!(
        "limits {{ max-body \"1MB\"; }}\n\
         routes {{\n\
         \x20   route \"ws\" {{\n\
         \x20       upstream \"backend\"\n\
         \x20       match {{ path \"/ws\"; }}\n\
         \x20       matches {{ path \"/ws\" exact=#true; }}\n\
         \x20       retry-policy \"none\"\n\
         \x20   }}\n\
         }}\n{BASE}"
    );
    let (config, warnings) = parse_ok(&text);
    assert_eq!(
        warnings,
        [
            "inline.kdl:1:1: warning: unknown node `limits` at the top level, ignored",
            "inline.kdl:5:9: warning: unknown node `match` in `route`, ignored (did you mean `matches`?)",
            "inline.kdl:6:30: warning: unknown property `exact` on `path`, ignored",
            "inline.kdl:7:9: warning: unknown node `retry-policy` in `route`, ignored",
        ]
    );
    assert_eq!(config.routes[0].matches, [Match::Path("/ws".into())]);
}

#[test]
fn missing_sections_are_errors() {
    assert_eq!(
        parse_err(ROUTES),
        [
            "inline.kdl:1:1: error: no listeners defined: add `listeners { listener \"http\" { address \
             \"127.0.0.1:8080\" } }`",
            "inline.kdl:1:32: error: upstream `backend` is not defined (the configuration defines no upstreams)",
        ]
    );
    assert_eq!(
        parse_err(&format!("routes {{ }}\n{BASE}")),
        ["inline.kdl:1:1: error: no routes defined: add `routes { route \"name\" { ... } }`"]
    );
    assert_eq!(
        parse_err(&format!("{ROUTES}listeners {{ }}\nupstreams {{ upstream \"backend\" {{ target \"h:1\"; }}; }}")),
        [
            "inline.kdl:2:1: error: no listeners defined: add `listeners { listener \"http\" { address \
             \"127.0.0.1:8080\" } }`"
        ]
    );
}

#[test]
fn listener_protocol_and_tls_must_agree() {
    let listeners = "listeners {\n\
        \x20   listener \"a\" { address \"0.0.0.0:443\"; protocol \"https\"; }\n\
        \x20   listener \"b\" { address \"0.0.0.0:80\"; protocol \"http\"; tls { cert-file \"c\"; key-file \"k\"; }; }\n\
        \x20   listener \"c\" { address \"0.0.0.0:8443\"; tls { cert-file \"c\"; }; }\n\
        \x20   listener \"d\" { protocol \"http\"; }\n\
        \x20   listener \"e\" { address \"0.0.0.0:81\"; }\n\
        \x20   listener \"f\" { address \"0.0.0.0:81\"; }\n\
        }\n";
    let text =
        format!("{listeners}{ROUTES}upstreams {{ upstream \"backend\" {{ target \"h:1\"; }}; }}\n");
    assert_eq!(
        parse_err(&text),
        [
            "inline.kdl:2:52: error: protocol \"https\" needs a `tls { cert-file \"...\"; key-file \"...\" }` block",
            "inline.kdl:3:59: error: `tls` on a listener with protocol \"http\": use protocol \"https\" or remove \
             `tls`",
            "inline.kdl:4:44: error: `tls` needs `key-file`",
            "inline.kdl:5:14: error: listener `d` needs an `address`, such as address \"0.0.0.0:8080\"",
            "inline.kdl:7:14: error: listener `f` uses the address 0.0.0.0:81 of listener `e`",
        ]
    );
}

#[test]
fn duplicate_listener_names_are_errors() {
    let text = format!(
        "listeners {{\n    listener \"http\" {{ address \"127.0.0.1:1\"; }}\n    listener \"http\" {{ address \"127.0.0.1:2\"; }}\n}}\n\
         {ROUTES}upstreams {{ upstream \"backend\" {{ target \"h:1\"; }}; }}\n"
    );
    assert_eq!(
        parse_err(&text),
        ["inline.kdl:3:14: error: duplicate listener `http` (first at 2:14)"]
    );
}

#[test]
fn https_listener_defaults_from_tls() {
    let text = format!(
        "listeners {{ listener \"tls\" {{ address \"0.0.0.0:8443\"; tls {{ cert-file \"c.pem\"; key-file \"k.pem\"; }}; }}; }}\n\
         {ROUTES}upstreams {{ upstream \"backend\" {{ target \"h:1\"; }}; }}\n"
    );
    let (config, warnings) = parse_ok(&text);
    assert_eq!(warnings, Vec::<String>::new());
    assert_eq!(
        config.listeners[0].protocol,
        frameguard_config::Protocol::Https
    );
}

#[test]
fn route_actions_must_be_complete() {
    let routes = "routes {\n\
        \x20   route \"a\" { service-type \"builtin\"; builtin-handler \"status\"; }\n\
        \x20   route \"b\" { service-type \"builtin\"; }\n\
        \x20   route \"c\" { service-type \"builtin\"; builtin-handler \"health\"; upstream \"backend\"; }\n\
        \x20   route \"d\" { builtin-handler \"health\"; }\n\
        \x20   route \"e\" { matches { path \"/e\"; }; }\n\
        \x20   route \"f\" { service-type \"static\"; }\n\
        }\n";
    assert_eq!(
        parse_err(&format!("{routes}{BASE}")),
        [
            "inline.kdl:2:57: error: unknown `builtin-handler` \"status\" (expected one of \"health\")",
            "inline.kdl:3:30: error: service-type \"builtin\" needs a `builtin-handler`, such as builtin-handler \
             \"health\"",
            "inline.kdl:4:76: error: a route with service-type \"builtin\" takes no `upstream`",
            "inline.kdl:5:33: error: `builtin-handler` needs service-type \"builtin\"",
            "inline.kdl:6:11: error: route `e` needs an `upstream`, or service-type \"builtin\" with a \
             `builtin-handler`",
            "inline.kdl:7:30: error: unknown `service-type` \"static\" (expected one of \"builtin\", \"web\", \
             \"api\")",
        ]
    );
}

#[test]
fn match_entries_are_validated() {
    let routes = "routes { route \"ws\" { upstream \"backend\"; matches {\n\
        \x20   query-param \"token\"\n\
        \x20   header name=\"Bad Header\"\n\
        \x20   header value=\"x\"\n\
        \x20   path \"/ws?x=1\"\n\
        \x20   path-prefix 5\n\
        }; }; }\n";
    assert_eq!(
        parse_err(&format!("{routes}{BASE}")),
        [
            "inline.kdl:2:17: error: `query-param` takes properties: query-param name=\"...\" value=\"...\" \
             (value is optional)",
            "inline.kdl:3:12: error: `header` name \"Bad Header\" is not a valid HTTP header name",
            "inline.kdl:4:5: error: `header` needs name=\"...\"",
            "inline.kdl:5:10: error: `path` \"/ws?x=1\" must not contain a query; match it with `query-param`",
            "inline.kdl:6:17: error: `path-prefix` expects a string, found integer 5",
        ]
    );
}

#[test]
fn match_entries_decode() {
    let routes = "routes { route \"ws\" { upstream \"backend\"; data-path \"splice\"; priority -3; matches {\n\
        \x20   query-param name=\"v\" value=\"2\"\n\
        \x20   header name=\"X-Tenant\"\n\
        }; }; }\n";
    let (config, warnings) = parse_ok(&format!("{routes}{BASE}"));
    assert_eq!(warnings, Vec::<String>::new());
    let route = &config.routes[0];
    assert_eq!(route.priority, -3);
    assert_eq!(route.data_path, frameguard_config::DataPath::Splice);
    assert_eq!(
        route.matches,
        [
            Match::QueryParam {
                name: "v".into(),
                value: Some("2".into())
            },
            Match::Header {
                name: "X-Tenant".into(),
                value: None
            },
        ]
    );
}

#[test]
fn inspector_options_fill_the_policy() {
    let agents = "agents {\n\
        \x20   agent \"strict\" {\n\
        \x20       xss-detection #false\n\
        \x20       custom-patterns \"evil[0-9]+\" \"a{2,}\"\n\
        \x20       custom-patterns \"more\"\n\
        \x20       json-schema \"/etc/frameguard/schema.json\"\n\
        \x20       msgpack-validation #true\n\
        \x20       max-messages-per-sec 100\n\
        \x20       max-bytes-per-sec \"1MB\"\n\
        \x20       rate-limit-burst 20\n\
        \x20       max-text-frame-size \"4KB\"\n\
        \x20       max-binary-frame-size 65536\n\
        \x20       max-message-size \"1.5MB\"\n\
        \x20       block-mode #false\n\
        \x20       log-frames #true\n\
        \x20       inspect-binary #true\n\
        \x20       direction \"both\"\n\
        \x20       failure-mode \"open\"\n\
        \x20   }\n\
        \x20   agent \"typed\" { type \"websocket-inspector\"; fail-open #true; }\n\
        }\n";
    let (config, warnings) = parse_ok(&format!("{agents}{ROUTES}{BASE}"));
    assert_eq!(warnings, Vec::<String>::new());
    let expected = InspectionPolicy {
        xss_detection: false,
        sqli_detection: true,
        command_injection: true,
        custom_patterns: vec!["evil[0-9]+".into(), "a{2,}".into(), "more".into()],
        json_schema: Some("/etc/frameguard/schema.json".into()),
        msgpack_validation: true,
        max_messages_per_sec: 100,
        max_bytes_per_sec: 1 << 20,
        rate_limit_burst: 20,
        max_text_frame_size: 4096,
        max_binary_frame_size: 65536,
        max_message_size: 1_572_864,
        block_mode: false,
        fail_open: true,
        log_frames: true,
        inspect_binary: true,
        direction: Direction::Both,
    };
    assert_eq!(
        config.agent("strict").map(|a| &a.kind),
        Some(&AgentKind::Inspector(expected))
    );
    assert_eq!(
        config.agent("typed").map(|a| &a.kind),
        Some(&AgentKind::Inspector(InspectionPolicy {
            fail_open: true,
            ..InspectionPolicy::default()
        }))
    );
}

#[test]
fn agents_that_are_not_the_inspector_are_warnings() {
    let agents = "agents {\n\
        \x20   agent \"waf\" { type \"waf\"; unix-socket path=\"/run/waf.sock\"; }\n\
        \x20   agent \"empty\" { }\n\
        \x20   agent \"mixed\" { events \"websocket_frame\" \"request_body\"; grpc-address \"0.0.0.0:50051\"; }\n\
        \x20   agent \"typo\" { xss-detect #true; }\n\
        }\n";
    let (config, warnings) = parse_ok(&format!("{agents}{ROUTES}{BASE}"));
    assert_eq!(
        warnings,
        [
            "inline.kdl:2:11: warning: agent `waf` is of type \"waf\", which Frameguard does not implement; the \
             agent is ignored",
            "inline.kdl:3:11: warning: agent `empty` has no `events` and no inspector options, which Frameguard \
             does not implement; the agent is ignored",
            "inline.kdl:4:46: warning: the in-process inspector handles only websocket_frame events; \
             `request_body` is ignored",
            "inline.kdl:4:62: warning: Frameguard runs the inspector in-process; grpc-address is not used",
            "inline.kdl:5:11: warning: agent `typo` has no `events` and no inspector options, which Frameguard \
             does not implement; the agent is ignored",
            "inline.kdl:5:20: warning: unknown node `xss-detect` in `agent`, ignored (did you mean \
             `xss-detection`?)",
        ]
    );
    assert_eq!(
        config.agent("waf").map(|a| &a.kind),
        Some(&AgentKind::Unsupported { events: vec![] })
    );
    assert!(matches!(
        config.agent("mixed").map(|a| &a.kind),
        Some(AgentKind::Inspector(_))
    ));
}

#[test]
fn agent_option_errors() {
    let agents = "agents {\n\
        \x20   agent \"a\" { failure-mode \"open\"; fail-open #false; direction \"sideways\"; }\n\
        \x20   agent \"a\" { }\n\
        \x20   agent \"b\" { custom-patterns; max-messages-per-sec -1; json-schema \"\"; }\n\
        }\n";
    assert_eq!(
        parse_err(&format!("{agents}{ROUTES}{BASE}")),
        [
            "inline.kdl:2:38: error: `fail-open` and `failure-mode` both set the failure behaviour; keep one",
            "inline.kdl:2:66: error: unknown `direction` \"sideways\" (expected one of \"inbound\", \"outbound\", \
             \"both\")",
            "inline.kdl:3:11: error: duplicate agent `a` (first at 2:11)",
            "inline.kdl:4:17: error: `custom-patterns` needs at least one value",
            "inline.kdl:4:55: error: `max-messages-per-sec` must be at least 0, found -1",
            "inline.kdl:4:71: error: `json-schema` must not be empty",
        ]
    );
}

#[test]
fn metrics_need_enabled_and_an_address() {
    let with_metrics =
        |metrics: &str| format!("observability {{ metrics {{ {metrics} }}; }}\n{ROUTES}{BASE}");
    let (config, warnings) = parse_ok(&with_metrics("address \"127.0.0.1:9090\";"));
    assert_eq!(
        warnings,
        ["inline.kdl:1:17: warning: metrics are off: add `enabled #true` to serve them"]
    );
    assert_eq!(config.observability.metrics, None);

    let (config, warnings) = parse_ok(&with_metrics("enabled #false; address \"127.0.0.1:9090\";"));
    assert_eq!(warnings, Vec::<String>::new());
    assert_eq!(config.observability.metrics, None);

    let (config, _) = parse_ok(&with_metrics(
        "enabled #true; address \"[::1]:9100\"; path \"/m\";",
    ));
    assert_eq!(
        config.observability.metrics,
        Some(MetricsSettings {
            address: "[::1]:9100".parse().unwrap(),
            path: "/m".into()
        })
    );

    assert_eq!(
        parse_err(&with_metrics("enabled #true;")),
        ["inline.kdl:1:17: error: enabled metrics need an `address`, such as address \"127.0.0.1:9090\""]
    );
    assert_eq!(
        parse_err(&with_metrics("enabled #true; address \"localhost:9090\"; path \"metrics\";")),
        [
            "inline.kdl:1:50: error: `address` \"localhost:9090\" is not an IP:PORT socket address such as \
             \"127.0.0.1:8080\"",
            "inline.kdl:1:73: error: `path` \"metrics\" must start with '/'",
        ]
    );
}

#[test]
fn values_of_the_wrong_shape() {
    let text =
        format!("system {{ worker-threads 2 4; graceful-shutdown-timeout-secs; }}\n{ROUTES}{BASE}");
    assert_eq!(
        parse_err(&text),
        [
            "inline.kdl:1:27: error: `worker-threads` takes one value, found another: integer 4",
            "inline.kdl:1:30: error: `graceful-shutdown-timeout-secs` needs a value",
        ]
    );
}

#[test]
fn section_values_and_annotations_are_warnings() {
    let text = format!("system \"main\" {{ worker-threads (u8)2; }}\n{ROUTES}{BASE}");
    let (config, warnings) = parse_ok(&text);
    assert_eq!(
        warnings,
        [
            "inline.kdl:1:8: warning: `system` takes no values, `string \"main\"` ignored",
            "inline.kdl:1:32: warning: type annotation `(u8)` on the value of `worker-threads` ignored",
        ]
    );
    assert_eq!(config.system.worker_threads, 2);
}

#[test]
fn deep_nesting_parses_on_a_stack_of_its_own() {
    let nested = format!(
        "{}{}\n{ROUTES}{BASE}",
        "a { ".repeat(3000),
        "} ".repeat(3000)
    );
    let (_, warnings) = parse_ok(&nested);
    assert_eq!(
        warnings,
        ["inline.kdl:1:1: warning: unknown node `a` at the top level, ignored"]
    );
}

#[test]
fn long_block_comments_parse() {
    let commented = format!("/* {} */\n{ROUTES}{BASE}", "a/b * c/d ".repeat(5000));
    let (config, warnings) = parse_ok(&commented);
    assert_eq!(warnings, Vec::<String>::new());
    assert_eq!(config.routes.len(), 1);
}

#[test]
fn slashdashed_children_chains_are_refused() {
    let chain = format!("{ROUTES}{BASE}{}", "a /-{\n".repeat(9));
    assert_eq!(
        parse_err(&chain),
        [
            "inline.kdl:12:3: error: more than 8 slashdashed children blocks (`/- {`): the KDL parser slows \
             down exponentially on them; delete unused blocks instead"
        ]
    );
}

#[test]
fn unreadable_files_are_one_diagnostic_at_the_start() {
    let missing = load_file(Path::new("tests/fixtures/does-not-exist.kdl")).unwrap_err();
    assert_eq!(
        displayed(&missing),
        [
            "tests/fixtures/does-not-exist.kdl:1:1: error: cannot read the configuration: No such file or \
             directory (os error 2)"
        ]
    );

    let path = std::env::temp_dir().join(format!(
        "frameguard-config-{}-latin1.kdl",
        std::process::id()
    ));
    std::fs::write(&path, b"system {\n  worker-threads 1 // caf\xe9\n}\n").unwrap();
    let result = load_file(&path);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(
        displayed(&result.unwrap_err()),
        [format!(
            "{}:2:26: error: the configuration is not valid UTF-8",
            path.display()
        )]
    );
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    const SEED: &str = include_str!("fixtures/seed-configuration.kdl");

    proptest! {
        // kdl is slow in debug builds (tens of ms for the seed): few cases, each one thorough.
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn on_kdl_like_noise(text in "[{}\"#/*\\\\;= \na-z0-9.-]{0,300}") {
            let _ = parse_str(&text, "noise.kdl");
        }

        /// Brace-heavy text meant to make the nesting guard and the parser disagree about what
        /// is a string or a comment (a disagreement would overflow the stack and abort).
        #[test]
        fn on_deep_brace_noise(text in "([{]{1,8}|[\"#/*\\\n}]|a| ){0,400}") {
            let _ = parse_str(&text, "braces.kdl");
        }

        #[test]
        fn on_a_mangled_seed(cut in 0..SEED.len(), len in 0usize..40, insert in "[{}\"#/*\\\\;= \na-z0-9.-]{0,8}") {
            let cut = (0..=cut).rev().find(|&i| SEED.is_char_boundary(i)).unwrap_or(0);
            let end = (cut + len..=SEED.len()).find(|&i| SEED.is_char_boundary(i)).unwrap_or(SEED.len());
            let text = format!("{}{insert}{}", &SEED[..cut], &SEED[end..]);
            let _ = parse_str(&text, "mangled.kdl");
        }
    }
}

#[test]
fn connection_steering_is_one_of_three_strategies() {
    for (name, steering) in [
        ("reuseport", frameguard_config::Steering::Reuseport),
        ("reuseport-cpu", frameguard_config::Steering::ReuseportCpu),
        ("acceptor", frameguard_config::Steering::Acceptor),
    ] {
        let text = format!("system {{ connection-steering \"{name}\"; }}\n{ROUTES}{BASE}");
        assert_eq!(parse_ok(&text).0.system.connection_steering, steering);
    }
    let text = format!("system {{ connection-steering \"random\"; }}\n{ROUTES}{BASE}");
    assert_eq!(
        parse_err(&text),
        [
            "inline.kdl:1:30: error: unknown `connection-steering` \"random\" (expected one of \
          \"reuseport\", \"reuseport-cpu\", \"acceptor\")"
        ]
    );
}
