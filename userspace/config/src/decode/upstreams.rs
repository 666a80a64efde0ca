//! `upstreams { upstream "name" { target "127.0.0.1:3000"; load-balancing "round-robin";
//! health-check { type "http" { path "/health" }; interval-secs 10 }; connect-timeout-secs 5 } }`

use std::net::Ipv6Addr;
use std::time::Duration;

use kdl::KdlNode;
use miette::SourceSpan;

use super::{Decoder, Upstreams};
use crate::model::{HealthCheck, HealthCheckKind, LoadBalancing, Upstream};

const KEYS: &[&str] = &[
    "target",
    "load-balancing",
    "health-check",
    "connect-timeout-secs",
];
const HEALTH_CHECK_KEYS: &[&str] = &["type", "interval-secs"];
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(10);

pub(super) fn decode(decoder: &mut Decoder<'_>, node: &KdlNode) -> Upstreams {
    let mut upstreams = Upstreams::default();
    decoder.each_named(node, "upstream", |decoder, name, name_span, body| {
        upstreams.names.push(name.clone());
        if let Some(upstream) = decode_upstream(decoder, name, name_span, body) {
            upstreams.items.push(upstream);
        }
    });
    upstreams
}

fn decode_upstream(
    decoder: &mut Decoder<'_>,
    name: String,
    name_span: SourceSpan,
    body: &[KdlNode],
) -> Option<Upstream> {
    let mut upstream = Upstream {
        name,
        targets: Vec::new(),
        load_balancing: LoadBalancing::RoundRobin,
        health_check: None,
        connect_timeout: DEFAULT_CONNECT_TIMEOUT,
    };
    let mut valid = true;
    let mut wrote_target = false;
    decoder.each_child(
        Some("upstream"),
        body,
        KEYS,
        &["target"],
        |decoder, child| {
            valid &= match child.name().value() {
                "target" => {
                    wrote_target = true;
                    decoder
                        .argument(child)
                        .and_then(|entry| {
                            let target = decoder.string_of("target", entry)?;
                            if let Err(why) = check_target(&target) {
                                decoder.error(entry.span(), format!("`target` {why}"));
                                return None;
                            }
                            upstream.targets.push(target);
                            Some(())
                        })
                        .is_some()
                }
                "load-balancing" => {
                    let options = [
                        ("round-robin", LoadBalancing::RoundRobin),
                        ("least-connections", LoadBalancing::LeastConnections),
                    ];
                    decoder
                        .choice(child, &options)
                        .map(|policy| upstream.load_balancing = policy)
                        .is_some()
                }
                "health-check" => {
                    upstream.health_check = decode_health_check(decoder, child);
                    upstream.health_check.is_some()
                }
                "connect-timeout-secs" => decoder
                    .seconds(child, 1)
                    .map(|t| upstream.connect_timeout = t)
                    .is_some(),
                _ => return false,
            };
            true
        },
    );
    if !wrote_target {
        decoder.error(
            name_span,
            format!(
                "upstream `{}` needs a `target`, such as target \"127.0.0.1:3000\"",
                upstream.name
            ),
        );
        return None;
    }
    valid.then_some(upstream)
}

fn decode_health_check(decoder: &mut Decoder<'_>, node: &KdlNode) -> Option<HealthCheck> {
    // Outer None: `type` not written; inner None: written but invalid (already reported).
    let mut kind: Option<Option<HealthCheckKind>> = None;
    let mut interval = Some(DEFAULT_HEALTH_CHECK_INTERVAL);
    let children = decoder.block(node);
    decoder.each_child(
        Some("health-check"),
        children,
        HEALTH_CHECK_KEYS,
        &[],
        |decoder, child| {
            match child.name().value() {
                "type" => kind = Some(decode_check_type(decoder, child)),
                "interval-secs" => interval = decoder.seconds(child, 1),
                _ => return false,
            }
            true
        },
    );
    if kind.is_none() {
        decoder.error(
            node.name().span(),
            "`health-check` needs a `type`: type \"http\" { path \"/health\" } or type \"tcp\"",
        );
    }
    Some(HealthCheck {
        kind: kind.flatten()?,
        interval: interval?,
    })
}

#[derive(Clone, Copy)]
enum CheckType {
    Http,
    Tcp,
}

/// `type "http" { path "/health" }` or `type "tcp"`.
fn decode_check_type(decoder: &mut Decoder<'_>, node: &KdlNode) -> Option<HealthCheckKind> {
    let entry = decoder.single_argument(node)?;
    match decoder.choice_of(
        "type",
        entry,
        &[("http", CheckType::Http), ("tcp", CheckType::Tcp)],
    )? {
        CheckType::Tcp => {
            decoder.no_children(node);
            Some(HealthCheckKind::Tcp)
        }
        CheckType::Http => {
            let mut path = None;
            let children = node.children().map_or(&[][..], |children| children.nodes());
            decoder.each_child(Some("type"), children, &["path"], &[], |decoder, child| {
                if child.name().value() != "path" {
                    return false;
                }
                path = Some(decoder.path(child));
                true
            });
            match path {
                Some(path) => path.map(|path| HealthCheckKind::Http { path }),
                None => {
                    decoder.error(
                        entry.span(),
                        "type \"http\" needs a path: type \"http\" { path \"/health\" }",
                    );
                    None
                }
            }
        }
    }
}

/// An upstream target as written in `target` and the `--upstream` override: `host:port`.
pub(crate) fn check_target(target: &str) -> Result<(), String> {
    let Some((host, port)) = target.rsplit_once(':') else {
        return Err(format!(
            "\"{target}\" needs a port, such as \"127.0.0.1:3000\""
        ));
    };
    match port.parse::<u16>() {
        Ok(port) if port > 0 => {}
        _ => {
            return Err(format!(
                "\"{target}\" has an invalid port \"{port}\" (expected 1-65535)"
            ))
        }
    }
    let valid_host = match host
        .strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
    {
        Some(ipv6) => ipv6.parse::<Ipv6Addr>().is_ok(),
        None if host.contains(':') => {
            return Err(format!(
                "\"{target}\": write an IPv6 address in brackets, such as \"[::1]:3000\""
            ));
        }
        None => {
            !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        }
    };
    if valid_host {
        Ok(())
    } else {
        Err(format!("\"{target}\" has an invalid host \"{host}\""))
    }
}

#[cfg(test)]
mod tests {
    use super::check_target;

    #[test]
    fn targets_need_a_host_and_a_port() {
        for good in [
            "127.0.0.1:3000",
            "backend.internal:80",
            "[::1]:3000",
            "ws_1:65535",
        ] {
            assert_eq!(check_target(good), Ok(()), "{good}");
        }
        assert_eq!(
            check_target("127.0.0.1"),
            Err("\"127.0.0.1\" needs a port, such as \"127.0.0.1:3000\"".into())
        );
        assert_eq!(
            check_target("host:0"),
            Err("\"host:0\" has an invalid port \"0\" (expected 1-65535)".into())
        );
        assert_eq!(
            check_target("host:http"),
            Err("\"host:http\" has an invalid port \"http\" (expected 1-65535)".into())
        );
        assert_eq!(
            check_target("::1:3000"),
            Err("\"::1:3000\": write an IPv6 address in brackets, such as \"[::1]:3000\"".into())
        );
        assert_eq!(
            check_target(":3000"),
            Err("\":3000\" has an invalid host \"\"".into())
        );
        assert_eq!(
            check_target("a b:3000"),
            Err("\"a b:3000\" has an invalid host \"a b\"".into())
        );
        assert_eq!(
            check_target("[zz]:3000"),
            Err("\"[zz]:3000\" has an invalid host \"[zz]\"".into())
        );
    }
}
