//! `Config::apply_overrides`: the CLI quick flags --listen, --upstream and --path.

use std::path::Path;

use frameguard_config::{default_config, load_file, parse_str, Config, Match};

fn seed_configuration() -> Config {
    load_file(Path::new("tests/fixtures/seed-configuration.kdl"))
        .expect("seed configuration loads")
        .config
}

#[test]
fn none_leaves_the_config_as_is() {
    let mut config = default_config();
    config.apply_overrides(None, None, None).unwrap();
    assert_eq!(config, default_config());
}

#[test]
fn listen_replaces_the_first_listener_address_only() {
    let mut config = seed_configuration();
    config
        .apply_overrides(Some("127.0.0.1:9443".parse().unwrap()), None, None)
        .unwrap();
    assert_eq!(
        config.listeners[0].address,
        "127.0.0.1:9443".parse().unwrap()
    );
    assert_eq!(config.listeners[1].address, "0.0.0.0:8080".parse().unwrap());
}

#[test]
fn upstream_and_path_change_the_first_websocket_route() {
    let mut config = seed_configuration();
    config
        .apply_overrides(None, Some("[::1]:4000"), Some("/live"))
        .unwrap();
    // "websocket" is the first route with websocket enabled; its upstream is "ws-backend".
    assert_eq!(
        config.upstream("ws-backend").unwrap().targets,
        ["[::1]:4000"]
    );
    let websocket = config
        .routes
        .iter()
        .find(|route| route.name == "websocket")
        .unwrap();
    assert_eq!(websocket.matches, [Match::Path("/live".into())]);
    let socketio = config
        .routes
        .iter()
        .find(|route| route.name == "socketio")
        .unwrap();
    assert_eq!(socketio.matches, [Match::PathPrefix("/socket.io/".into())]);
}

#[test]
fn path_replaces_path_matches_and_keeps_the_others() {
    let text = "listeners { listener \"l\" { address \"127.0.0.1:1\"; }; }\n\
                routes { route \"ws\" { upstream \"u\"; websocket { enabled #true; }; matches {\n\
                    path-prefix \"/old/\"; header name=\"Cookie\"; }; }; }\n\
                upstreams { upstream \"u\" { target \"h:1\"; }; }\n";
    let mut config = parse_str(text, "inline.kdl").unwrap().config;
    config.apply_overrides(None, None, Some("/new")).unwrap();
    assert_eq!(
        config.routes[0].matches,
        [
            Match::Path("/new".into()),
            Match::Header {
                name: "Cookie".into(),
                value: None
            }
        ]
    );
}

#[test]
fn invalid_overrides_change_nothing() {
    let mut config = default_config();
    let listen = Some("127.0.0.1:1".parse().unwrap());
    assert_eq!(
        config.apply_overrides(listen, Some("no-port"), None),
        Err(
            "invalid upstream override: \"no-port\" needs a port, such as \"127.0.0.1:3000\""
                .to_owned()
        )
    );
    assert_eq!(
        config.apply_overrides(listen, None, Some("ws")),
        Err("invalid path override: \"ws\" must start with '/'".to_owned())
    );
    assert_eq!(config, default_config());
}

#[test]
fn overrides_need_something_to_override() {
    let text = "listeners { listener \"l\" { address \"127.0.0.1:1\"; }; }\n\
                routes { route \"plain\" { upstream \"u\"; }; }\n\
                upstreams { upstream \"u\" { target \"h:1\"; }; }\n";
    let mut config = parse_str(text, "inline.kdl").unwrap().config;
    let unchanged = config.clone();
    assert_eq!(
        config.apply_overrides(None, Some("h:2"), None),
        Err(
            "cannot override upstream or path: no route has `websocket { enabled #true }`"
                .to_owned()
        )
    );
    assert_eq!(config, unchanged);

    let mut no_listeners = default_config();
    no_listeners.listeners.clear();
    assert_eq!(
        no_listeners.apply_overrides(Some("127.0.0.1:1".parse().unwrap()), None, None),
        Err("cannot override the listen address: the configuration has no listener".to_owned())
    );

    let mut builtin_websocket = default_config();
    builtin_websocket
        .routes
        .retain(|route| route.name == "health");
    builtin_websocket.routes[0].websocket.enabled = true;
    assert_eq!(
        builtin_websocket.apply_overrides(None, Some("h:2"), None),
        Err("cannot override the upstream: websocket route `health` has no upstream".to_owned())
    );
}
