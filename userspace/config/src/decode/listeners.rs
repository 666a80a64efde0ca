//! `listeners { listener "name" { address "0.0.0.0:8443"; protocol "https"; tls { ... } } }`
//!
//! `protocol` defaults to "https" when a `tls` block is present and to "http" otherwise.

use std::collections::HashMap;
use std::path::PathBuf;

use kdl::KdlNode;
use miette::SourceSpan;

use super::{value_span, Decoder};
use crate::model::{Listener, Protocol, TlsFiles};

const KEYS: &[&str] = &["address", "protocol", "tls"];
const TLS_KEYS: &[&str] = &["cert-file", "key-file"];

pub(super) fn decode(decoder: &mut Decoder<'_>, node: &KdlNode) -> Vec<Listener> {
    let mut listeners: Vec<Listener> = Vec::new();
    let mut addresses = HashMap::new();
    decoder.each_named(node, "listener", |decoder, name, name_span, body| {
        let Some(listener) = decode_listener(decoder, name, name_span, body) else {
            return;
        };
        if let Some(first) = addresses.insert(listener.address, listener.name.clone()) {
            decoder.error(
                name_span,
                format!(
                    "listener `{}` uses the address {} of listener `{first}`",
                    listener.name, listener.address
                ),
            );
        }
        listeners.push(listener);
    });
    listeners
}

fn decode_listener(
    decoder: &mut Decoder<'_>,
    name: String,
    name_span: SourceSpan,
    body: &[KdlNode],
) -> Option<Listener> {
    let mut address = None;
    let mut protocol = None;
    let mut tls = None;
    let mut tls_span = None;
    let mut complete = true;
    decoder.each_child(Some("listener"), body, KEYS, &[], |decoder, child| {
        match child.name().value() {
            "address" => {
                let parsed = decoder.socket_address(child);
                complete &= parsed.is_some();
                address = Some(parsed);
            }
            "protocol" => {
                let choice = decoder.choice(
                    child,
                    &[("http", Protocol::Http), ("https", Protocol::Https)],
                );
                protocol = choice.map(|protocol| (protocol, value_span(child)));
                complete &= protocol.is_some();
            }
            "tls" => {
                tls_span = Some(child.name().span());
                tls = decode_tls(decoder, child);
                complete &= tls.is_some();
            }
            _ => return false,
        }
        true
    });
    if address.is_none() {
        decoder.error(
            name_span,
            format!("listener `{name}` needs an `address`, such as address \"0.0.0.0:8080\""),
        );
        complete = false;
    }
    let protocol = match (protocol, tls_span) {
        (Some((Protocol::Https, span)), None) => {
            decoder.error(
                span,
                "protocol \"https\" needs a `tls { cert-file \"...\"; key-file \"...\" }` block",
            );
            return None;
        }
        (Some((Protocol::Http, _)), Some(span)) => {
            decoder.error(span, "`tls` on a listener with protocol \"http\": use protocol \"https\" or remove `tls`");
            return None;
        }
        (Some((protocol, _)), _) => protocol,
        (None, Some(_)) => Protocol::Https,
        (None, None) => Protocol::Http,
    };
    match (complete, address) {
        (true, Some(Some(address))) => Some(Listener {
            name,
            address,
            protocol,
            tls,
        }),
        _ => None,
    }
}

fn decode_tls(decoder: &mut Decoder<'_>, node: &KdlNode) -> Option<TlsFiles> {
    // Outer None: not written; inner None: written but invalid (already reported).
    let mut cert_file: Option<Option<PathBuf>> = None;
    let mut key_file: Option<Option<PathBuf>> = None;
    let children = decoder.block(node);
    decoder.each_child(Some("tls"), children, TLS_KEYS, &[], |decoder, child| {
        let file = match child.name().value() {
            "cert-file" => &mut cert_file,
            "key-file" => &mut key_file,
            _ => return false,
        };
        *file = Some(decoder.string(child).map(PathBuf::from));
        true
    });
    for (key, file) in [("cert-file", &cert_file), ("key-file", &key_file)] {
        if file.is_none() {
            decoder.error(node.name().span(), format!("`tls` needs `{key}`"));
        }
    }
    Some(TlsFiles {
        cert_file: cert_file.flatten()?,
        key_file: key_file.flatten()?,
    })
}
