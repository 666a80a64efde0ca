//! `routes { route "name" { priority 200; matches { ... }; upstream "x"; agents "a"; websocket { ... } } }`
//!
//! Routes are decoded into drafts first: whether their upstream and agents exist is checked by
//! [`resolve`] once every section has been read, since `upstreams` may come after `routes`.

use kdl::KdlNode;
use miette::SourceSpan;

use super::{did_you_mean, value_span, Decoder, Upstreams};
use crate::model::{Agent, BuiltinHandler, DataPath, Match, Route, RouteAction, WebSocketSettings};

const KEYS: &[&str] = &[
    "priority",
    "matches",
    "service-type",
    "builtin-handler",
    "upstream",
    "agents",
    "websocket",
    "data-path",
];
const MATCH_KEYS: &[&str] = &["path", "path-prefix", "query-param", "header"];
const WEBSOCKET_KEYS: &[&str] = &[
    "enabled",
    "ping-interval-secs",
    "ping-timeout-secs",
    "max-message-size",
    "max-connections",
    "max-connections-per-ip",
    "idle-timeout-secs",
    "message-timeout-secs",
];

/// Connection limits above this are typos, not capacity plans.
const MAX_CONNECTIONS: u32 = 100_000_000;

#[derive(Clone, Copy)]
enum ServiceType {
    /// Proxied to the route's upstream.
    Proxy,
    Builtin,
}

pub(super) struct RouteDraft {
    name: String,
    name_span: SourceSpan,
    priority: i64,
    matches: Vec<Match>,
    // Outer None: not written; inner None: written but invalid (already reported).
    service_type: Option<Option<(ServiceType, SourceSpan)>>,
    builtin_handler: Option<Option<(BuiltinHandler, SourceSpan)>>,
    upstream: Option<Option<(String, SourceSpan)>>,
    agents: Vec<(String, SourceSpan)>,
    websocket: WebSocketSettings,
    data_path: DataPath,
    /// A value was wrong (and reported): the route is not built.
    invalid: bool,
}

pub(super) fn decode(decoder: &mut Decoder<'_>, node: &KdlNode) -> Vec<RouteDraft> {
    let mut drafts = Vec::new();
    decoder.each_named(node, "route", |decoder, name, name_span, body| {
        drafts.push(decode_route(decoder, name, name_span, body));
    });
    drafts
}

fn decode_route(
    decoder: &mut Decoder<'_>,
    name: String,
    name_span: SourceSpan,
    body: &[KdlNode],
) -> RouteDraft {
    let mut draft = RouteDraft {
        name,
        name_span,
        priority: 0,
        matches: Vec::new(),
        service_type: None,
        builtin_handler: None,
        upstream: None,
        agents: Vec::new(),
        websocket: WebSocketSettings::default(),
        data_path: DataPath::Auto,
        invalid: false,
    };
    decoder.each_child(Some("route"), body, KEYS, &["agents"], |decoder, child| {
        let valid = match child.name().value() {
            "priority" => decoder
                .integer(child, i128::from(i64::MIN), i128::from(i64::MAX))
                .and_then(|priority| i64::try_from(priority).ok())
                .map(|priority| draft.priority = priority)
                .is_some(),
            "matches" => decode_matches(decoder, child, &mut draft.matches),
            "service-type" => {
                let options = [
                    ("builtin", ServiceType::Builtin),
                    ("web", ServiceType::Proxy),
                    ("api", ServiceType::Proxy),
                ];
                let span = value_span(child);
                let service_type = decoder
                    .choice(child, &options)
                    .map(|service| (service, span));
                draft.service_type = Some(service_type);
                service_type.is_some()
            }
            "builtin-handler" => {
                let span = value_span(child);
                let handler = decoder.choice(child, &[("health", BuiltinHandler::Health)]);
                draft.builtin_handler = Some(handler.map(|handler| (handler, span)));
                handler.is_some()
            }
            "upstream" => {
                let span = value_span(child);
                let upstream = decoder.string(child);
                let valid = upstream.is_some();
                draft.upstream = Some(upstream.map(|upstream| (upstream, span)));
                valid
            }
            "agents" => {
                let written = child
                    .entries()
                    .iter()
                    .filter(|entry| entry.name().is_none())
                    .count();
                let agents = decoder.strings(child);
                let valid = agents.len() == written;
                draft.agents.extend(agents);
                valid
            }
            "websocket" => decode_websocket(decoder, child, &mut draft.websocket),
            "data-path" => {
                let options = [
                    ("auto", DataPath::Auto),
                    ("userspace", DataPath::Userspace),
                    ("splice", DataPath::Splice),
                    ("kernel", DataPath::Kernel),
                ];
                decoder
                    .choice(child, &options)
                    .map(|path| draft.data_path = path)
                    .is_some()
            }
            _ => return false,
        };
        draft.invalid |= !valid;
        true
    });
    draft
}

/// Returns false when a match was invalid (and reported).
fn decode_matches(decoder: &mut Decoder<'_>, node: &KdlNode, matches: &mut Vec<Match>) -> bool {
    let mut valid = true;
    let children = decoder.block(node);
    decoder.each_child(
        Some("matches"),
        children,
        MATCH_KEYS,
        MATCH_KEYS,
        |decoder, child| {
            let decoded = match child.name().value() {
                "path" => decoder.path(child).map(Match::Path),
                "path-prefix" => decoder.path(child).map(Match::PathPrefix),
                "query-param" => decoder
                    .name_and_value(child)
                    .map(|(name, value)| Match::QueryParam { name, value }),
                "header" => decoder.name_and_value(child).and_then(|(header, value)| {
                    if is_header_name(&header) {
                        return Some(Match::Header {
                            name: header,
                            value,
                        });
                    }
                    let at = child
                        .entry("name")
                        .map_or(child.name().span(), |entry| entry.span());
                    decoder.error(
                        at,
                        format!("`header` name \"{header}\" is not a valid HTTP header name"),
                    );
                    None
                }),
                _ => return false,
            };
            match decoded {
                Some(decoded) => matches.push(decoded),
                None => valid = false,
            }
            true
        },
    );
    valid
}

/// RFC 9110 `token`.
fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn decode_websocket(
    decoder: &mut Decoder<'_>,
    node: &KdlNode,
    settings: &mut WebSocketSettings,
) -> bool {
    let mut valid = true;
    let children = decoder.block(node);
    decoder.each_child(
        Some("websocket"),
        children,
        WEBSOCKET_KEYS,
        &[],
        |decoder, child| {
            // Optional limits reject 0: leaving the node out is how to say "no limit".
            valid &= match child.name().value() {
                "enabled" => decoder
                    .bool(child)
                    .map(|enabled| settings.enabled = enabled)
                    .is_some(),
                "ping-interval-secs" => decoder
                    .seconds(child, 1)
                    .map(|t| settings.ping_interval = Some(t))
                    .is_some(),
                "ping-timeout-secs" => decoder
                    .seconds(child, 1)
                    .map(|t| settings.ping_timeout = t)
                    .is_some(),
                "idle-timeout-secs" => decoder
                    .seconds(child, 1)
                    .map(|t| settings.idle_timeout = Some(t))
                    .is_some(),
                "message-timeout-secs" => decoder
                    .seconds(child, 1)
                    .map(|t| settings.message_timeout = t)
                    .is_some(),
                "max-message-size" => match decoder.size(child) {
                    Some(0) => {
                        decoder.error(
                            value_span(child),
                            "`max-message-size` must be at least 1 byte",
                        );
                        false
                    }
                    Some(size) => match usize::try_from(size) {
                        Ok(size) => {
                            settings.max_message_size = size;
                            true
                        }
                        Err(_) => {
                            decoder.error(
                                value_span(child),
                                "`max-message-size` does not fit this machine's memory",
                            );
                            false
                        }
                    },
                    None => false,
                },
                "max-connections" => decoder
                    .count(child, 1, MAX_CONNECTIONS)
                    .map(|limit| settings.max_connections = Some(limit))
                    .is_some(),
                "max-connections-per-ip" => decoder
                    .count(child, 1, MAX_CONNECTIONS)
                    .map(|limit| settings.max_connections_per_ip = Some(limit))
                    .is_some(),
                _ => return false,
            };
            true
        },
    );
    valid
}

/// Checks each draft's action, upstream and agents against the decoded sections.
pub(super) fn resolve(
    decoder: &mut Decoder<'_>,
    drafts: Vec<RouteDraft>,
    upstreams: &Upstreams,
    agents: &[Agent],
) -> Vec<Route> {
    let mut routes = Vec::with_capacity(drafts.len());
    for draft in drafts {
        let action = resolve_action(decoder, &draft, upstreams);
        let mut agent_names = Vec::with_capacity(draft.agents.len());
        for (agent, span) in draft.agents {
            if agents.iter().any(|defined| defined.name == agent) {
                agent_names.push(agent);
            } else {
                decoder.warning(
                    span,
                    format!(
                        "route `{}` names agent `{agent}`, which is not defined; ignored",
                        draft.name
                    ),
                );
            }
        }
        if let (Some(action), false) = (action, draft.invalid) {
            routes.push(Route {
                name: draft.name,
                priority: draft.priority,
                matches: draft.matches,
                action,
                websocket: draft.websocket,
                agents: agent_names,
                data_path: draft.data_path,
            });
        }
    }
    routes
}

fn resolve_action(
    decoder: &mut Decoder<'_>,
    draft: &RouteDraft,
    upstreams: &Upstreams,
) -> Option<RouteAction> {
    if matches!(draft.service_type, Some(None))
        || matches!(draft.builtin_handler, Some(None))
        || matches!(draft.upstream, Some(None))
    {
        return None;
    }
    let upstream = draft.upstream.clone().flatten();
    match (
        draft.service_type.flatten(),
        draft.builtin_handler.flatten(),
        &upstream,
    ) {
        (Some((ServiceType::Builtin, _)), Some((handler, _)), None) => {
            Some(RouteAction::Builtin(handler))
        }
        (Some((ServiceType::Builtin, span)), None, _) => {
            decoder.error(span, "service-type \"builtin\" needs a `builtin-handler`, such as builtin-handler \"health\"");
            None
        }
        (Some((ServiceType::Builtin, _)), Some(_), Some((_, span))) => {
            decoder.error(
                *span,
                "a route with service-type \"builtin\" takes no `upstream`",
            );
            None
        }
        (_, Some((_, span)), _) => {
            decoder.error(span, "`builtin-handler` needs service-type \"builtin\"");
            None
        }
        (_, None, Some((upstream, span))) => {
            if upstreams
                .items
                .iter()
                .any(|defined| defined.name == *upstream)
            {
                return Some(RouteAction::Upstream(upstream.clone()));
            }
            if upstreams.names.contains(upstream) {
                return None;
            }
            let hint = match did_you_mean(upstream, upstreams.names.iter().map(String::as_str)) {
                Some(close) => format!(" (did you mean \"{close}\"?)"),
                None => match upstreams.names.as_slice() {
                    [only] => format!(" (did you mean \"{only}\"?)"),
                    [] => " (the configuration defines no upstreams)".to_owned(),
                    _ => String::new(),
                },
            };
            decoder.error(*span, format!("upstream `{upstream}` is not defined{hint}"));
            None
        }
        (_, None, None) => {
            decoder.error(
                draft.name_span,
                format!("route `{}` needs an `upstream`, or service-type \"builtin\" with a `builtin-handler`", draft.name),
            );
            None
        }
    }
}
