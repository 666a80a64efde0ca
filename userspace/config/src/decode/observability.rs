//! `observability { metrics { enabled #true; address "0.0.0.0:9090"; path "/metrics" }
//! logging { level "info"; format "json" } }`

use kdl::KdlNode;

use super::Decoder;
use crate::model::{LogFormat, LoggingSettings, MetricsSettings, Observability};

const KEYS: &[&str] = &["metrics", "logging"];
const METRICS_KEYS: &[&str] = &["enabled", "address", "path"];
const LOGGING_KEYS: &[&str] = &["level", "format"];
const LEVELS: [(&str, &str); 5] = [
    ("trace", "trace"),
    ("debug", "debug"),
    ("info", "info"),
    ("warn", "warn"),
    ("error", "error"),
];

pub(super) fn decode(decoder: &mut Decoder<'_>, node: &KdlNode) -> Observability {
    let mut observability = Observability::default();
    let children = decoder.block(node);
    decoder.each_child(
        Some("observability"),
        children,
        KEYS,
        &[],
        |decoder, child| {
            match child.name().value() {
                "metrics" => observability.metrics = decode_metrics(decoder, child),
                "logging" => observability.logging = decode_logging(decoder, child),
                _ => return false,
            }
            true
        },
    );
    observability
}

fn decode_metrics(decoder: &mut Decoder<'_>, node: &KdlNode) -> Option<MetricsSettings> {
    let mut enabled = None;
    // Outer None: not written; inner None: written but invalid (already reported).
    let mut address = None;
    let mut path = Some("/metrics".to_owned());
    let children = decoder.block(node);
    decoder.each_child(
        Some("metrics"),
        children,
        METRICS_KEYS,
        &[],
        |decoder, child| {
            match child.name().value() {
                "enabled" => enabled = decoder.bool(child),
                "address" => address = Some(decoder.socket_address(child)),
                "path" => path = decoder.path(child),
                _ => return false,
            }
            true
        },
    );
    match enabled {
        Some(true) => {}
        Some(false) => return None,
        None => {
            let written = node
                .children()
                .is_some_and(|children| children.get("enabled").is_some());
            if !written {
                decoder.warning(
                    node.name().span(),
                    "metrics are off: add `enabled #true` to serve them",
                );
            }
            return None;
        }
    }
    let Some(address) = address else {
        decoder.error(
            node.name().span(),
            "enabled metrics need an `address`, such as address \"127.0.0.1:9090\"",
        );
        return None;
    };
    Some(MetricsSettings {
        address: address?,
        path: path?,
    })
}

fn decode_logging(decoder: &mut Decoder<'_>, node: &KdlNode) -> LoggingSettings {
    let mut logging = LoggingSettings::default();
    let children = decoder.block(node);
    decoder.each_child(
        Some("logging"),
        children,
        LOGGING_KEYS,
        &[],
        |decoder, child| {
            match child.name().value() {
                "level" => {
                    if let Some(level) = decoder.choice(child, &LEVELS) {
                        logging.level = level.to_owned();
                    }
                }
                "format" => {
                    if let Some(format) = decoder.choice(
                        child,
                        &[("json", LogFormat::Json), ("text", LogFormat::Text)],
                    ) {
                        logging.format = format;
                    }
                }
                _ => return false,
            }
            true
        },
    );
    logging
}
