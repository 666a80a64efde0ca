//! `agents { agent "name" { events "websocket_frame"; failure-mode "open"; xss-detection #true ... } }`
//!
//! Sentinel runs agents as external processes; Frameguard runs the WebSocket inspector in-process.
//! An agent is the inspector when its events include `websocket_frame`, when it has
//! `type "websocket-inspector"`, or when it sets any inspector option (named as the inspector's
//! command-line flags). Its transport settings (`unix-socket`, `grpc-address`, `timeout-ms`) are
//! accepted with a warning. Any other agent is kept as unsupported, with a warning.

use std::path::PathBuf;

use kdl::KdlNode;
use miette::SourceSpan;

use super::Decoder;
use crate::model::{Agent, AgentKind};
use crate::policy::{Direction, InspectionPolicy};

const INSPECTOR_EVENT: &str = "websocket_frame";
const INSPECTOR_TYPE: &str = "websocket-inspector";

const AGENT_KEYS: &[&str] = &["events", "type", "failure-mode"];
const TRANSPORT_KEYS: &[&str] = &["unix-socket", "grpc-address", "timeout-ms"];
const INSPECTOR_KEYS: &[&str] = &[
    "xss-detection",
    "sqli-detection",
    "command-injection",
    "custom-patterns",
    "json-schema",
    "msgpack-validation",
    "max-messages-per-sec",
    "max-bytes-per-sec",
    "rate-limit-burst",
    "max-text-frame-size",
    "max-binary-frame-size",
    "max-message-size",
    "block-mode",
    "fail-open",
    "log-frames",
    "inspect-binary",
    "direction",
];
const REPEATABLE: &[&str] = &["events", "custom-patterns"];

pub(super) fn decode(decoder: &mut Decoder<'_>, node: &KdlNode) -> Vec<Agent> {
    let mut agents = Vec::new();
    decoder.each_named(node, "agent", |decoder, name, name_span, body| {
        agents.push(decode_agent(decoder, name, name_span, body));
    });
    agents
}

fn decode_agent(
    decoder: &mut Decoder<'_>,
    name: String,
    name_span: SourceSpan,
    body: &[KdlNode],
) -> Agent {
    let mut policy = InspectionPolicy::default();
    let mut events: Vec<(String, SourceSpan)> = Vec::new();
    let mut agent_type: Option<String> = None;
    let mut sets_inspector_option = false;
    let mut transports: Vec<&KdlNode> = Vec::new();
    // `failure-mode` (Sentinel's agent setting) and `fail-open` (the inspector's) set the same thing.
    let mut failure_setting: Option<&str> = None;
    let keys: Vec<&str> = [AGENT_KEYS, TRANSPORT_KEYS, INSPECTOR_KEYS].concat();
    decoder.each_child(Some("agent"), body, &keys, REPEATABLE, |decoder, child| {
        let key = child.name().value();
        if TRANSPORT_KEYS.contains(&key) {
            transports.push(child);
            return true;
        }
        if key == "fail-open" || key == "failure-mode" {
            if let Some(other) = failure_setting.replace(key) {
                decoder.error(
                    child.name().span(),
                    format!("`{key}` and `{other}` both set the failure behaviour; keep one"),
                );
                return true;
            }
        }
        match key {
            "events" => events.extend(decoder.strings(child)),
            "type" => agent_type = decoder.string(child),
            "failure-mode" => {
                if let Some(fail_open) = decoder.choice(child, &[("open", true), ("closed", false)])
                {
                    policy.fail_open = fail_open;
                }
            }
            _ => {
                if !decode_inspector_option(decoder, child, &mut policy) {
                    return false;
                }
                sets_inspector_option = true;
            }
        }
        true
    });

    let is_inspector = sets_inspector_option
        || agent_type.as_deref() == Some(INSPECTOR_TYPE)
        || events.iter().any(|(event, _)| event == INSPECTOR_EVENT);
    if is_inspector {
        for transport in transports {
            decoder.warning(
                transport.name().span(),
                format!(
                    "Frameguard runs the inspector in-process; {} is not used",
                    transport.name().value()
                ),
            );
        }
        for (event, span) in events.iter().filter(|(event, _)| event != INSPECTOR_EVENT) {
            decoder.warning(
                *span,
                format!("the in-process inspector handles only {INSPECTOR_EVENT} events; `{event}` is ignored"),
            );
        }
        return Agent {
            name,
            kind: AgentKind::Inspector(policy),
        };
    }
    let events: Vec<String> = events.into_iter().map(|(event, _)| event).collect();
    let what = match (&agent_type, events.as_slice()) {
        (Some(agent_type), _) => format!("is of type \"{agent_type}\""),
        (None, []) => "has no `events` and no inspector options".to_owned(),
        (None, events) => format!("handles {} events", events.join(", ")),
    };
    decoder.warning(
        name_span,
        format!("agent `{name}` {what}, which Frameguard does not implement; the agent is ignored"),
    );
    Agent {
        name,
        kind: AgentKind::Unsupported { events },
    }
}

/// Returns false when `node` is no inspector option.
fn decode_inspector_option(
    decoder: &mut Decoder<'_>,
    node: &KdlNode,
    policy: &mut InspectionPolicy,
) -> bool {
    let key = node.name().value();
    let flag = match key {
        "xss-detection" => Some(&mut policy.xss_detection),
        "sqli-detection" => Some(&mut policy.sqli_detection),
        "command-injection" => Some(&mut policy.command_injection),
        "msgpack-validation" => Some(&mut policy.msgpack_validation),
        "block-mode" => Some(&mut policy.block_mode),
        "fail-open" => Some(&mut policy.fail_open),
        "log-frames" => Some(&mut policy.log_frames),
        "inspect-binary" => Some(&mut policy.inspect_binary),
        _ => None,
    };
    if let Some(flag) = flag {
        if let Some(value) = decoder.bool(node) {
            *flag = value;
        }
        return true;
    }
    let amount = match key {
        "max-messages-per-sec" => Some(&mut policy.max_messages_per_sec),
        "rate-limit-burst" => Some(&mut policy.rate_limit_burst),
        _ => None,
    };
    if let Some(amount) = amount {
        if let Some(value) = decoder.integer(node, 0, i128::from(u64::MAX)) {
            *amount = u64::try_from(value).unwrap_or(u64::MAX);
        }
        return true;
    }
    let size = match key {
        "max-bytes-per-sec" => Some(&mut policy.max_bytes_per_sec),
        "max-text-frame-size" => Some(&mut policy.max_text_frame_size),
        "max-binary-frame-size" => Some(&mut policy.max_binary_frame_size),
        "max-message-size" => Some(&mut policy.max_message_size),
        _ => None,
    };
    if let Some(size) = size {
        if let Some(value) = decoder.size(node) {
            *size = value;
        }
        return true;
    }
    match key {
        "custom-patterns" => {
            policy.custom_patterns.extend(
                decoder
                    .strings(node)
                    .into_iter()
                    .map(|(pattern, _)| pattern),
            );
        }
        "json-schema" => {
            if let Some(path) = decoder.string(node) {
                policy.json_schema = Some(PathBuf::from(path));
            }
        }
        "direction" => {
            let options = [
                ("inbound", Direction::Inbound),
                ("outbound", Direction::Outbound),
                ("both", Direction::Both),
            ];
            if let Some(direction) = decoder.choice(node, &options) {
                policy.direction = direction;
            }
        }
        _ => return false,
    }
    true
}
