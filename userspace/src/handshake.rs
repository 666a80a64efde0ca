//! RFC 6455 opening handshake, both halves, as pure functions over HTTP heads.
//!
//! The client's upgrade request is validated before anything is sent upstream; the upstream's
//! answer is accepted as a WebSocket only if it is a 101 whose `Sec-WebSocket-Accept` matches
//! the key and whose extensions are a subset of what was offered. Anything else never becomes a
//! tunnel: a fake 101 could otherwise smuggle arbitrary bytes past the proxy.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Version};
use sha1::{Digest, Sha1};

const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The only extension Frameguard can decode; others are stripped from the offer because their
/// RSV bits would make messages uninspectable.
pub const PERMESSAGE_DEFLATE: &str = "permessage-deflate";

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`.
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(ACCEPT_GUID);
    BASE64.encode(sha.finalize())
}

/// Why a client's upgrade was refused: the HTTP status to answer with and a short reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub status: StatusCode,
    pub reason: &'static str,
}

impl Rejection {
    fn bad_request(reason: &'static str) -> Rejection {
        Rejection {
            status: StatusCode::BAD_REQUEST,
            reason,
        }
    }
}

/// True when the request asks for a WebSocket (an `Upgrade: websocket` token). Such a request is
/// validated strictly; requests without it are plain HTTP.
pub fn wants_websocket(headers: &HeaderMap) -> bool {
    header_has_token(headers, &header::UPGRADE, "websocket")
}

/// A client upgrade that passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientUpgrade {
    pub key: HeaderValue,
    /// permessage-deflate offers from the client, forwarded upstream verbatim.
    pub deflate_offer: Option<HeaderValue>,
    /// The subprotocols the client offered, the only ones an upstream may choose.
    pub protocols: Vec<String>,
}

pub fn validate_client_upgrade(
    method: &Method,
    version: Version,
    headers: &HeaderMap,
) -> Result<ClientUpgrade, Rejection> {
    if method != Method::GET {
        return Err(Rejection::bad_request("WebSocket upgrade must use GET"));
    }
    if version != Version::HTTP_11 {
        return Err(Rejection::bad_request(
            "WebSocket upgrade must use HTTP/1.1",
        ));
    }
    if !wants_websocket(headers) {
        return Err(Rejection::bad_request("missing Upgrade: websocket"));
    }
    if !header_has_token(headers, &header::CONNECTION, "upgrade") {
        return Err(Rejection::bad_request(
            "Connection header must contain upgrade",
        ));
    }
    let mut versions = headers.get_all(header::SEC_WEBSOCKET_VERSION).iter();
    let version_ok = matches!((versions.next(), versions.next()),
        (Some(v), None) if v.as_bytes().trim_ascii() == b"13");
    if !version_ok {
        return Err(Rejection {
            status: StatusCode::UPGRADE_REQUIRED,
            reason: "unsupported Sec-WebSocket-Version",
        });
    }
    let mut keys = headers.get_all(header::SEC_WEBSOCKET_KEY).iter();
    let key = match (keys.next(), keys.next()) {
        (Some(key), None) => key.clone(),
        _ => {
            return Err(Rejection::bad_request(
                "exactly one Sec-WebSocket-Key is required",
            ))
        }
    };
    match BASE64.decode(key.as_bytes().trim_ascii()) {
        Ok(raw) if raw.len() == 16 => {}
        _ => {
            return Err(Rejection::bad_request(
                "Sec-WebSocket-Key must be base64 of 16 bytes",
            ))
        }
    }
    // The upstream gets no body (the connection turns into frames), so a request announcing
    // one would have it read the first frames as that body.
    let has_body = headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get_all(header::CONTENT_LENGTH)
            .iter()
            .any(|v| v.as_bytes().trim_ascii() != b"0");
    if has_body {
        return Err(Rejection::bad_request(
            "a WebSocket upgrade carries no body",
        ));
    }
    // RFC 6455 section 4.1: subprotocol names are HTTP tokens; anything else is no protocol
    // an upstream could agree to, only text for it to log.
    let mut protocols = Vec::new();
    for item in headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
    {
        if !is_token(item) {
            return Err(Rejection::bad_request(
                "Sec-WebSocket-Protocol must list tokens",
            ));
        }
        protocols.push(String::from_utf8_lossy(item.trim_ascii()).into_owned());
    }
    Ok(ClientUpgrade {
        key,
        deflate_offer: deflate_offer(headers),
        protocols,
    })
}

/// An HTTP token (RFC 9110 section 5.6.2) between optional whitespace.
fn is_token(item: &[u8]) -> bool {
    let item = item.trim_ascii();
    !item.is_empty()
        && item
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// The permessage-deflate offers among the client's extension offers, joined into one header
/// value; other extensions are dropped.
fn deflate_offer(headers: &HeaderMap) -> Option<HeaderValue> {
    let offers: Vec<&str> = headers
        .get_all(header::SEC_WEBSOCKET_EXTENSIONS)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|offer| extension_name(offer).eq_ignore_ascii_case(PERMESSAGE_DEFLATE))
        .collect();
    if offers.is_empty() {
        return None;
    }
    HeaderValue::from_str(&offers.join(", ")).ok()
}

fn extension_name(extension: &str) -> &str {
    extension.split(';').next().unwrap_or("").trim()
}

/// permessage-deflate parameters the upstream agreed to (RFC 7692).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateAgreement {
    pub server_no_context_takeover: bool,
    pub client_no_context_takeover: bool,
    pub server_max_window_bits: u8,
    pub client_max_window_bits: u8,
}

/// What the upstream's 101 established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub deflate: Option<DeflateAgreement>,
}

/// The upstream's 101 was not a valid WebSocket acceptance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadUpstreamAnswer(pub &'static str);

/// Check a 101 answer from upstream against the request Frameguard sent, as RFC 6455 section
/// 4.1 and RFC 7692 section 7.1 have a client check it: the client gets what the proxy accepts.
pub fn validate_upstream_switch(
    version: Version,
    headers: &HeaderMap,
    sent: &ClientUpgrade,
) -> Result<Negotiated, BadUpstreamAnswer> {
    if version != Version::HTTP_11 {
        return Err(BadUpstreamAnswer("101 not in HTTP/1.1"));
    }
    if !wants_websocket(headers) || !header_has_token(headers, &header::CONNECTION, "upgrade") {
        return Err(BadUpstreamAnswer(
            "101 without Upgrade: websocket / Connection: upgrade",
        ));
    }
    let expected = accept_key(sent.key.as_bytes());
    let mut accepts = headers.get_all(header::SEC_WEBSOCKET_ACCEPT).iter();
    match (accepts.next(), accepts.next()) {
        (Some(accept), None) if accept.as_bytes().trim_ascii() == expected.as_bytes() => {}
        _ => return Err(BadUpstreamAnswer("101 with a wrong Sec-WebSocket-Accept")),
    }
    let mut chosen = headers.get_all(header::SEC_WEBSOCKET_PROTOCOL).iter();
    match (chosen.next(), chosen.next()) {
        (None, _) => {}
        (Some(protocol), None)
            if sent
                .protocols
                .iter()
                .any(|offered| offered.as_bytes() == protocol.as_bytes().trim_ascii()) => {}
        _ => {
            return Err(BadUpstreamAnswer(
                "101 with a subprotocol that was not offered",
            ))
        }
    }
    let mut deflate = None;
    for extension in headers
        .get_all(header::SEC_WEBSOCKET_EXTENSIONS)
        .iter()
        .map(|v| {
            v.to_str()
                .map_err(|_| BadUpstreamAnswer("non-ASCII extension header"))
        })
    {
        for accepted in extension?
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            if !extension_name(accepted).eq_ignore_ascii_case(PERMESSAGE_DEFLATE) {
                return Err(BadUpstreamAnswer(
                    "upstream accepted an extension that was not offered",
                ));
            }
            let Some(offer) = sent.deflate_offer.as_ref().filter(|_| deflate.is_none()) else {
                return Err(BadUpstreamAnswer(
                    "upstream accepted permessage-deflate unasked or twice",
                ));
            };
            deflate = Some(deflate_agreement(accepted, offer)?);
        }
    }
    Ok(Negotiated { deflate })
}

/// permessage-deflate parameters of one offer or answer (RFC 7692 section 7.1).
#[derive(Debug, Default)]
struct DeflateParams {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: named without a value, as an offer may (any window the server picks).
    client_max_window_bits: Option<Option<u8>>,
}

impl DeflateParams {
    fn parse(extension: &str) -> Result<DeflateParams, BadUpstreamAnswer> {
        let mut params = DeflateParams::default();
        for param in extension.split(';').skip(1).map(str::trim) {
            let (name, value) = match param.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
                None => (param, None),
            };
            // 8 to 15 in decimal digits, without a leading zero.
            let bits = value
                .filter(|v| !v.starts_with('0'))
                .and_then(|v| v.parse::<u8>().ok())
                .filter(|b| (8..=15).contains(b));
            let bad_bits = BadUpstreamAnswer("permessage-deflate window bits out of range");
            let duplicate = match (name.to_ascii_lowercase().as_str(), value) {
                ("server_no_context_takeover", None) => {
                    std::mem::replace(&mut params.server_no_context_takeover, true)
                }
                ("client_no_context_takeover", None) => {
                    std::mem::replace(&mut params.client_no_context_takeover, true)
                }
                ("server_max_window_bits", Some(_)) => params
                    .server_max_window_bits
                    .replace(bits.ok_or(bad_bits)?)
                    .is_some(),
                ("client_max_window_bits", None) => {
                    params.client_max_window_bits.replace(None).is_some()
                }
                ("client_max_window_bits", Some(_)) => params
                    .client_max_window_bits
                    .replace(Some(bits.ok_or(bad_bits)?))
                    .is_some(),
                _ => return Err(BadUpstreamAnswer("unknown permessage-deflate parameter")),
            };
            if duplicate {
                return Err(BadUpstreamAnswer(
                    "permessage-deflate parameter given twice",
                ));
            }
        }
        Ok(params)
    }

    /// Whether `answer` accepts this offer as RFC 7692 section 7.1 lets a server: a context
    /// takeover or window the client asked the server to give up is given up, and a client
    /// window is limited only where the client offered to limit it.
    fn accepted_by(&self, answer: &DeflateParams) -> bool {
        let server_window = match self.server_max_window_bits {
            Some(offered) => answer.server_max_window_bits.is_some_and(|b| b <= offered),
            None => true,
        };
        let client_window = match (self.client_max_window_bits, answer.client_max_window_bits) {
            (None, Some(_)) | (_, Some(None)) => false,
            (Some(Some(offered)), Some(Some(answered))) => answered <= offered,
            _ => true,
        };
        (answer.server_no_context_takeover || !self.server_no_context_takeover)
            && server_window
            && client_window
    }
}

/// The agreement in the upstream's `accepted` extension, which must accept one of the offers
/// the client made (and Frameguard forwarded).
fn deflate_agreement(
    accepted: &str,
    offers: &HeaderValue,
) -> Result<DeflateAgreement, BadUpstreamAnswer> {
    let answer = DeflateParams::parse(accepted)?;
    let matches_an_offer = offers
        .to_str()
        .unwrap_or("")
        .split(',')
        .filter_map(|offer| DeflateParams::parse(offer).ok())
        .any(|offer| offer.accepted_by(&answer));
    if !matches_an_offer {
        return Err(BadUpstreamAnswer(
            "permessage-deflate answer accepts none of the offers",
        ));
    }
    Ok(DeflateAgreement {
        server_no_context_takeover: answer.server_no_context_takeover,
        client_no_context_takeover: answer.client_no_context_takeover,
        server_max_window_bits: answer.server_max_window_bits.unwrap_or(15),
        client_max_window_bits: answer.client_max_window_bits.flatten().unwrap_or(15),
    })
}

/// Headers that describe one hop and are never forwarded as they are (RFC 9110 7.6.1).
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// Headers for the upstream copy of a client request: end-to-end headers kept (including
/// Sec-WebSocket-Protocol), hop-by-hop ones dropped, X-Forwarded-For/-Proto added. For an
/// upgrade, the WebSocket handshake headers are set from `upgrade`.
pub fn upstream_request_headers(
    client_headers: &HeaderMap,
    client_ip: std::net::IpAddr,
    forwarded_proto: &'static str,
    upgrade: Option<&ClientUpgrade>,
) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(client_headers.len() + 4);
    let connection_listed = connection_tokens(client_headers);
    for (name, value) in client_headers {
        let listed = connection_listed
            .iter()
            .any(|t| name.as_str().eq_ignore_ascii_case(t));
        let websocket_owned = name == header::SEC_WEBSOCKET_EXTENSIONS
            || name == header::SEC_WEBSOCKET_KEY
            || name == header::SEC_WEBSOCKET_VERSION;
        if is_hop_by_hop(name) || listed || websocket_owned || name == "x-forwarded-proto" {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    let client_ip = client_ip.to_string();
    let forwarded_for = match client_headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
    {
        Some(previous) => format!("{previous}, {client_ip}"),
        None => client_ip,
    };
    out.remove("x-forwarded-for");
    if let Ok(value) = HeaderValue::from_str(&forwarded_for) {
        out.insert("x-forwarded-for", value);
    }
    out.insert(
        "x-forwarded-proto",
        HeaderValue::from_static(forwarded_proto),
    );
    if let Some(upgrade) = upgrade {
        out.remove(header::CONTENT_LENGTH);
        out.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        out.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        out.insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        out.insert(header::SEC_WEBSOCKET_KEY, upgrade.key.clone());
        if let Some(offer) = &upgrade.deflate_offer {
            out.insert(header::SEC_WEBSOCKET_EXTENSIONS, offer.clone());
        }
    }
    out
}

/// Headers of the 101 Frameguard sends the client, from the upstream's validated 101.
pub fn client_switch_headers(upstream_headers: &HeaderMap, client_key: &HeaderValue) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, value) in upstream_headers {
        if is_hop_by_hop(name)
            || name == header::SEC_WEBSOCKET_ACCEPT
            || name == header::CONTENT_LENGTH
        {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    out.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    let accept = accept_key(client_key.as_bytes());
    out.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept).expect("base64 is a valid header value"),
    );
    out
}

fn connection_tokens(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

fn header_has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upgrade_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("example.com"));
        h.insert(header::UPGRADE, HeaderValue::from_static("WebSocket"));
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        h.insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        h.insert(
            header::SEC_WEBSOCKET_KEY,
            HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
        );
        h
    }

    #[test]
    fn accept_key_matches_rfc_example() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn valid_upgrade_passes() {
        let up =
            validate_client_upgrade(&Method::GET, Version::HTTP_11, &upgrade_headers()).unwrap();
        assert_eq!(up.key, "dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(up.deflate_offer, None);
    }

    #[test]
    fn each_defect_has_its_status() {
        let check = |method: Method, version: Version, edit: &dyn Fn(&mut HeaderMap)| {
            let mut h = upgrade_headers();
            edit(&mut h);
            validate_client_upgrade(&method, version, &h)
                .unwrap_err()
                .status
        };
        let none = |_: &mut HeaderMap| {};
        assert_eq!(
            check(Method::POST, Version::HTTP_11, &none),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            check(Method::GET, Version::HTTP_10, &none),
            StatusCode::BAD_REQUEST
        );
        let no_conn = |h: &mut HeaderMap| {
            h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        };
        assert_eq!(
            check(Method::GET, Version::HTTP_11, &no_conn),
            StatusCode::BAD_REQUEST
        );
        let markup_protocol = |h: &mut HeaderMap| {
            h.insert(
                header::SEC_WEBSOCKET_PROTOCOL,
                HeaderValue::from_static("chat, <script>alert(1)</script>"),
            );
        };
        assert_eq!(
            check(Method::GET, Version::HTTP_11, &markup_protocol),
            StatusCode::BAD_REQUEST
        );
        let v8 = |h: &mut HeaderMap| {
            h.insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("8"));
        };
        assert_eq!(
            check(Method::GET, Version::HTTP_11, &v8),
            StatusCode::UPGRADE_REQUIRED
        );
        let two_versions = |h: &mut HeaderMap| {
            h.append(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("8"));
        };
        assert_eq!(
            check(Method::GET, Version::HTTP_11, &two_versions),
            StatusCode::UPGRADE_REQUIRED
        );
        for (name, value) in [
            (header::CONTENT_LENGTH, "10"),
            (header::TRANSFER_ENCODING, "chunked"),
        ] {
            let body = |h: &mut HeaderMap| {
                h.insert(name.clone(), HeaderValue::from_static(value));
            };
            assert_eq!(
                check(Method::GET, Version::HTTP_11, &body),
                StatusCode::BAD_REQUEST
            );
        }
        let no_version = |h: &mut HeaderMap| {
            h.remove(header::SEC_WEBSOCKET_VERSION);
        };
        assert_eq!(
            check(Method::GET, Version::HTTP_11, &no_version),
            StatusCode::UPGRADE_REQUIRED
        );
        let short_key = |h: &mut HeaderMap| {
            h.insert(
                header::SEC_WEBSOCKET_KEY,
                HeaderValue::from_static("c2hvcnQ="),
            );
        };
        assert_eq!(
            check(Method::GET, Version::HTTP_11, &short_key),
            StatusCode::BAD_REQUEST
        );
        let junk_key = |h: &mut HeaderMap| {
            h.insert(
                header::SEC_WEBSOCKET_KEY,
                HeaderValue::from_static("!!!not base64!!!"),
            );
        };
        assert_eq!(
            check(Method::GET, Version::HTTP_11, &junk_key),
            StatusCode::BAD_REQUEST
        );
        let two_keys = |h: &mut HeaderMap| {
            h.append(
                header::SEC_WEBSOCKET_KEY,
                HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
            );
        };
        assert_eq!(
            check(Method::GET, Version::HTTP_11, &two_keys),
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn only_permessage_deflate_offers_are_kept() {
        let mut h = upgrade_headers();
        h.insert(
            header::SEC_WEBSOCKET_EXTENSIONS,
            HeaderValue::from_static(
                "x-webkit-deflate-frame, permessage-deflate; client_max_window_bits",
            ),
        );
        let up = validate_client_upgrade(&Method::GET, Version::HTTP_11, &h).unwrap();
        assert_eq!(
            up.deflate_offer.unwrap(),
            "permessage-deflate; client_max_window_bits"
        );
    }

    fn switch_headers(accept: &str, extensions: Option<&'static str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(
            header::SEC_WEBSOCKET_ACCEPT,
            HeaderValue::from_str(accept).unwrap(),
        );
        if let Some(e) = extensions {
            h.insert(
                header::SEC_WEBSOCKET_EXTENSIONS,
                HeaderValue::from_static(e),
            );
        }
        h
    }

    #[test]
    fn upstream_switch_needs_the_right_accept() {
        let sent =
            validate_client_upgrade(&Method::GET, Version::HTTP_11, &upgrade_headers()).unwrap();
        let good = switch_headers("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", None);
        assert_eq!(
            validate_upstream_switch(Version::HTTP_11, &good, &sent),
            Ok(Negotiated { deflate: None })
        );
        let fake = switch_headers("AAAAAAAAAAAAAAAAAAAAAAAAAAA=", None);
        assert!(validate_upstream_switch(Version::HTTP_11, &fake, &sent).is_err());
        let mut missing = good.clone();
        missing.remove(header::SEC_WEBSOCKET_ACCEPT);
        assert!(validate_upstream_switch(Version::HTTP_11, &missing, &sent).is_err());
    }

    #[test]
    fn upstream_extensions_must_have_been_offered() {
        let mut h = upgrade_headers();
        let accept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
        let plain = validate_client_upgrade(&Method::GET, Version::HTTP_11, &h).unwrap();
        let deflate = switch_headers(accept, Some("permessage-deflate"));
        assert!(validate_upstream_switch(Version::HTTP_11, &deflate, &plain).is_err());

        h.insert(
            header::SEC_WEBSOCKET_EXTENSIONS,
            HeaderValue::from_static("permessage-deflate; client_max_window_bits"),
        );
        let offered = validate_client_upgrade(&Method::GET, Version::HTTP_11, &h).unwrap();
        let agreed = switch_headers(
            accept,
            Some("permessage-deflate; server_no_context_takeover; client_max_window_bits=10"),
        );
        let negotiated = validate_upstream_switch(Version::HTTP_11, &agreed, &offered).unwrap();
        assert_eq!(
            negotiated.deflate,
            Some(DeflateAgreement {
                server_no_context_takeover: true,
                client_no_context_takeover: false,
                server_max_window_bits: 15,
                client_max_window_bits: 10,
            })
        );
        let unknown = switch_headers(accept, Some("permessage-bzip"));
        assert!(validate_upstream_switch(Version::HTTP_11, &unknown, &offered).is_err());
        let bad_bits = switch_headers(accept, Some("permessage-deflate; server_max_window_bits=7"));
        assert!(validate_upstream_switch(Version::HTTP_11, &bad_bits, &offered).is_err());
    }

    #[test]
    fn upstream_subprotocol_and_version_must_be_what_a_client_accepts() {
        let accept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
        let mut h = upgrade_headers();
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("chat, superchat"),
        );
        let sent = validate_client_upgrade(&Method::GET, Version::HTTP_11, &h).unwrap();
        let choosing = |protocol: &'static str| {
            let mut answer = switch_headers(accept, None);
            answer.insert(
                header::SEC_WEBSOCKET_PROTOCOL,
                HeaderValue::from_static(protocol),
            );
            validate_upstream_switch(Version::HTTP_11, &answer, &sent)
        };
        assert!(choosing("superchat").is_ok());
        assert!(choosing("evil").is_err());
        assert!(choosing("chat, superchat").is_err());
        let plain = validate_client_upgrade(&Method::GET, Version::HTTP_11, &upgrade_headers());
        let mut answer = switch_headers(accept, None);
        answer.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("chat"),
        );
        assert!(validate_upstream_switch(Version::HTTP_11, &answer, &plain.unwrap()).is_err());
        let answer = switch_headers(accept, None);
        assert!(validate_upstream_switch(Version::HTTP_10, &answer, &sent).is_err());
    }

    #[test]
    fn upstream_deflate_answer_must_accept_an_offer() {
        let accept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
        let judge = |offer: &'static str, answer: &'static str| {
            let mut h = upgrade_headers();
            h.insert(
                header::SEC_WEBSOCKET_EXTENSIONS,
                HeaderValue::from_static(offer),
            );
            let sent = validate_client_upgrade(&Method::GET, Version::HTTP_11, &h).unwrap();
            validate_upstream_switch(
                Version::HTTP_11,
                &switch_headers(accept, Some(answer)),
                &sent,
            )
            .is_ok()
        };
        let pmd = "permessage-deflate";
        // What a server may answer.
        assert!(judge(pmd, "permessage-deflate; client_no_context_takeover"));
        assert!(judge(pmd, "permessage-deflate; server_max_window_bits=10"));
        assert!(judge(
            "permessage-deflate; server_max_window_bits=10",
            "permessage-deflate; server_max_window_bits=9"
        ));
        assert!(judge(
            "permessage-deflate; client_max_window_bits=12",
            "permessage-deflate; client_max_window_bits=12"
        ));
        // The second of two offers is the one accepted.
        assert!(judge(
            "permessage-deflate; server_max_window_bits=10, permessage-deflate",
            pmd
        ));
        // What it may not.
        for (offer, answer) in [
            (
                pmd,
                "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            ),
            (pmd, "permessage-deflate; client_max_window_bits=10"),
            (pmd, "permessage-deflate; server_max_window_bits=010"),
            ("permessage-deflate; server_max_window_bits=10", pmd),
            (
                "permessage-deflate; server_max_window_bits=10",
                "permessage-deflate; server_max_window_bits=12",
            ),
            ("permessage-deflate; server_no_context_takeover", pmd),
            (
                "permessage-deflate; client_max_window_bits=8",
                "permessage-deflate; client_max_window_bits=9",
            ),
            (
                "permessage-deflate; client_max_window_bits",
                "permessage-deflate; client_max_window_bits",
            ),
        ] {
            assert!(!judge(offer, answer), "{offer} answered by {answer}");
        }
    }

    #[test]
    fn upstream_headers_drop_hop_by_hop_and_add_forwarding() {
        let mut h = upgrade_headers();
        h.insert("x-custom", HeaderValue::from_static("1"));
        h.insert("x-forwarded-for", HeaderValue::from_static("10.1.1.1"));
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("chat"),
        );
        let up = validate_client_upgrade(&Method::GET, Version::HTTP_11, &h).unwrap();
        let out = upstream_request_headers(&h, "192.0.2.7".parse().unwrap(), "http", Some(&up));
        assert_eq!(out["x-forwarded-for"], "10.1.1.1, 192.0.2.7");
        assert_eq!(out["x-forwarded-proto"], "http");
        assert_eq!(out["x-custom"], "1");
        assert_eq!(out[header::SEC_WEBSOCKET_PROTOCOL], "chat");
        assert_eq!(out[header::CONNECTION], "Upgrade");
        assert!(out.get("keep-alive").is_none());

        let plain = upstream_request_headers(&h, "192.0.2.7".parse().unwrap(), "https", None);
        assert!(plain.get(header::UPGRADE).is_none());
        assert!(plain.get(header::SEC_WEBSOCKET_KEY).is_none());
        assert_eq!(plain["x-forwarded-proto"], "https");
    }

    #[test]
    fn client_switch_carries_upstream_choices() {
        let mut upstream = switch_headers("ignored", Some("permessage-deflate"));
        upstream.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("chat"),
        );
        let out = client_switch_headers(
            &upstream,
            &HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
        );
        assert_eq!(
            out[header::SEC_WEBSOCKET_ACCEPT],
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(out[header::SEC_WEBSOCKET_PROTOCOL], "chat");
        assert_eq!(out[header::SEC_WEBSOCKET_EXTENSIONS], "permessage-deflate");
    }
}
