//! One client connection: HTTP/1.1 via hyper, routed; WebSocket upgrades are validated on both
//! sides and then handed to the relay, plain requests are proxied, builtin routes answered.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use frameguard_codec::CloseCode;
use frameguard_config::{BuiltinHandler, DataPath, RouteAction};
use frameguard_inspect::{DeflateParams, MessageDirection};
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tracing::{debug, info, warn};

use crate::app::{App, Shared, WebSocketInfo};
use crate::handshake::{self, ClientUpgrade, DeflateAgreement};
use crate::metrics::{
    DataPathLabel, DirectionLabel, FrameLabels, Metrics, RouteDirection, UpstreamLabel,
};
use crate::relay::{self, Direction, DirectionMeters, Peer, RelaySettings, SplicePath};
use crate::verdict::{AuditContext, Decision, EngineInspector, MessageInspector, PassThrough};

pub type Body = BoxBody<Bytes, hyper::Error>;

/// Largest request head accepted; bigger ones get 431.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// A client must finish its request head within this time (slowloris).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Per-worker resources for one configuration: pooled HTTP clients, one per upstream.
pub struct Worker {
    pub app: Arc<App>,
    pub shared: Arc<Shared>,
    http_clients: Vec<Client<HttpConnector, Body>>,
}

impl Worker {
    pub fn new(app: Arc<App>, shared: Arc<Shared>) -> Worker {
        let http_clients = app
            .upstreams
            .iter()
            .map(|pool| {
                let mut connector = HttpConnector::new();
                connector.set_connect_timeout(Some(pool.connect_timeout()));
                connector.set_nodelay(true);
                Client::builder(TokioExecutor::new())
                    .pool_timer(TokioTimer::new())
                    .pool_idle_timeout(Duration::from_secs(60))
                    .build(connector)
            })
            .collect();
        Worker {
            app,
            shared,
            http_clients,
        }
    }
}

/// What a request handler knows about its connection.
struct Connection {
    worker: Arc<Worker>,
    peer: SocketAddr,
    scheme: &'static str,
}

/// A client stream: plain TCP or TLS.
pub trait ClientStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> ClientStream for S {}

/// Serve one accepted client connection until it closes (or drains on shutdown).
pub async fn serve<S: ClientStream>(
    worker: Arc<Worker>,
    stream: S,
    peer: SocketAddr,
    scheme: &'static str,
) {
    let mut shutdown = worker.shared.shutdown.clone();
    let conn = Arc::new(Connection {
        worker,
        peer,
        scheme,
    });
    let service = service_fn(move |req| {
        let conn = conn.clone();
        async move { Ok::<_, Infallible>(handle::<S>(req, conn).await) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HANDSHAKE_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    let result = tokio::select! {
        result = &mut connection => result,
        _ = shutdown.changed() => {
            // Finish the request in flight, then close instead of keeping the connection alive.
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(err) = result {
        debug!(%peer, error = %err, "client connection ended with an error");
    }
    served();
}

/// Client connections whose HTTP part is over (an upgraded one goes on in the relay), and
/// their count when free memory was last returned.
static SERVED: AtomicU64 = AtomicU64::new(0);
static SERVED_AT_TRIM: AtomicU64 = AtomicU64::new(0);
static TRIM_SCHEDULED: AtomicBool = AtomicBool::new(false);
/// Connections that must have ended since the last trim for another to be worth its time (a
/// few milliseconds with thousands of connections open).
const TRIM_EVERY: u64 = 32;
/// How long no connection's HTTP part may end before the memory they used is returned.
const TRIM_AFTER_QUIET: Duration = Duration::from_millis(250);

/// A connection's HTTP buffers (hyper's, with the upstream handshake's some 40 KiB) are free
/// now but stay resident: a burst of handshakes leaves that much behind per handshake that
/// was in progress at once. When connections stop ending for a moment, it is returned.
fn served() {
    let served = SERVED.fetch_add(1, Ordering::Relaxed) + 1;
    if served - SERVED_AT_TRIM.load(Ordering::Relaxed) < TRIM_EVERY
        || TRIM_SCHEDULED.swap(true, Ordering::Relaxed)
    {
        return;
    }
    tokio::spawn(async {
        loop {
            let seen = SERVED.load(Ordering::Relaxed);
            tokio::time::sleep(TRIM_AFTER_QUIET).await;
            if SERVED.load(Ordering::Relaxed) == seen {
                break;
            }
        }
        // Cleared first: connections that end from now on count towards the next trim.
        SERVED_AT_TRIM.store(SERVED.load(Ordering::Relaxed), Ordering::Relaxed);
        TRIM_SCHEDULED.store(false, Ordering::Relaxed);
        let started = std::time::Instant::now();
        crate::app::release_free_memory();
        debug!(
            took_us = started.elapsed().as_micros() as u64,
            "returned free memory"
        );
    });
}

async fn handle<S: ClientStream>(
    mut req: Request<Incoming>,
    conn: Arc<Connection>,
) -> Response<Body> {
    if let Err(problem) = settle_host(&mut req) {
        return text(StatusCode::BAD_REQUEST, problem);
    }
    let app = &conn.worker.app;
    let headers: Vec<(&str, &[u8])> = req
        .headers()
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_bytes()))
        .collect();
    let info = frameguard_config::RequestInfo {
        path: req.uri().path(),
        query: req.uri().query(),
        headers: &headers,
    };
    let Some(route_index) = app.router.select(&info) else {
        return text(StatusCode::NOT_FOUND, "no route matches this request\n");
    };
    drop(headers);
    let route = app.route(route_index);
    match &route.action {
        RouteAction::Builtin(BuiltinHandler::Health) => health(&conn.worker.shared),
        RouteAction::Upstream(name) => {
            let Some(upstream) = app.upstream_index(name) else {
                return text(StatusCode::BAD_GATEWAY, "route has no upstream\n");
            };
            if handshake::wants_websocket(req.headers()) {
                websocket::<S>(req, route_index, upstream, &conn).await
            } else {
                proxy_http(req, route_index, upstream, &conn).await
            }
        }
    }
}

/// RFC 9112's rules for the request's host, which a proxy enforces so that the route and the
/// upstream cannot be shown different hosts: exactly one Host header on HTTP/1.1 (two let a
/// route match one and the upstream read the other), and an absolute-form target's authority
/// in its place, as the RFC says the server must read it. Body framing needs nothing here:
/// hyper refuses conflicting lengths and answers a Content-Length beside Transfer-Encoding
/// once, by the chunked body, then closes the connection, so nothing can be smuggled after it.
fn settle_host(req: &mut Request<Incoming>) -> Result<(), &'static str> {
    let headers = req.headers();
    match headers.get_all(header::HOST).iter().count() {
        0 if req.version() == Version::HTTP_11 => return Err("HTTP/1.1 request without a Host\n"),
        0 | 1 => {}
        _ => return Err("more than one Host header\n"),
    }
    // RFC 9112 3.2: a Host that is no authority (`a b`) is refused; an empty one is valid.
    let host_valid = headers.get(header::HOST).is_none_or(|host| {
        host.is_empty() || http::uri::Authority::try_from(host.as_bytes()).is_ok()
    });
    if !host_valid {
        return Err("invalid Host header\n");
    }
    if let Some(authority) = req.uri().authority() {
        let host = HeaderValue::from_str(authority.as_str())
            .map_err(|_| "invalid authority in the request target\n")?;
        req.headers_mut().insert(header::HOST, host);
    }
    Ok(())
}

fn health(shared: &Shared) -> Response<Body> {
    let body = serde_json::json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": shared.started.elapsed().as_secs(),
        "connections": shared.open_connections(),
    });
    let mut resp = full(StatusCode::OK, body.to_string() + "\n");
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

async fn websocket<S: ClientStream>(
    mut req: Request<Incoming>,
    route_index: usize,
    upstream: usize,
    conn: &Connection,
) -> Response<Body> {
    let app = conn.worker.app.clone();
    let shared = conn.worker.shared.clone();
    let route = app.route(route_index);
    if !route.websocket.enabled {
        shared.metrics.handshake("rejected");
        return text(
            StatusCode::BAD_REQUEST,
            "WebSocket is not enabled on this route\n",
        );
    }
    let upgrade =
        match handshake::validate_client_upgrade(req.method(), req.version(), req.headers()) {
            Ok(upgrade) => upgrade,
            Err(rejection) => {
                debug!(peer = %conn.peer, reason = rejection.reason, "upgrade rejected");
                shared.metrics.handshake("rejected");
                let mut resp = text(rejection.status, &format!("{}\n", rejection.reason));
                if rejection.status == StatusCode::UPGRADE_REQUIRED {
                    resp.headers_mut().insert(
                        header::SEC_WEBSOCKET_VERSION,
                        HeaderValue::from_static("13"),
                    );
                }
                return resp;
            }
        };
    if let Some(refusal) = head_refusal(&app, route_index, conn, &req) {
        shared.metrics.handshake("rejected");
        return refusal;
    }
    let limits = &route.websocket;
    let Some(slot) = shared.limits.try_acquire(
        &route.name,
        conn.peer.ip(),
        limits.max_connections,
        limits.max_connections_per_ip,
    ) else {
        shared.metrics.handshake("over_limit");
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many WebSocket connections\n",
        );
    };
    let pool = &app.upstreams[upstream];
    let Some(lease) = pool.pick() else {
        shared.metrics.handshake("upstream_error");
        return text(StatusCode::BAD_GATEWAY, "no healthy upstream target\n");
    };
    let target = lease.target().to_owned();
    let upstream_resp = match open_upstream(&req, &upgrade, &target, conn, pool.connect_timeout())
        .await
    {
        Ok(resp) => resp,
        Err(err) => {
            warn!(route = %route.name, upstream = %pool.name(), %target, error = %err, "upstream handshake failed");
            shared.metrics.handshake("upstream_error");
            shared
                .metrics
                .upstream_connect_errors
                .get_or_create(&UpstreamLabel {
                    upstream: pool.name().to_owned(),
                })
                .inc();
            return text(StatusCode::BAD_GATEWAY, "upstream unavailable\n");
        }
    };
    if upstream_resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        // Not a WebSocket: the client gets the upstream's answer as plain HTTP.
        shared.metrics.handshake("upstream_refused");
        return upstream_resp.map(BodyExt::boxed);
    }
    let negotiated = match handshake::validate_upstream_switch(
        upstream_resp.version(),
        upstream_resp.headers(),
        &upgrade,
    ) {
        Ok(negotiated) => negotiated,
        Err(bad) => {
            warn!(route = %route.name, %target, reason = bad.0, "refusing upstream 101");
            shared.metrics.handshake("upstream_invalid");
            return text(
                StatusCode::BAD_GATEWAY,
                "upstream sent an invalid WebSocket handshake\n",
            );
        }
    };
    shared.metrics.handshake("accepted");
    let mut switch = Response::new(empty());
    *switch.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *switch.headers_mut() = handshake::client_switch_headers(upstream_resp.headers(), &upgrade.key);

    let client_upgrade = hyper::upgrade::on(&mut req);
    let upstream_upgrade = hyper::upgrade::on(upstream_resp);
    let settings = RelaySettings {
        max_message_size: route.websocket.max_message_size,
        allowed_rsv: if negotiated.deflate.is_some() {
            frameguard_codec::RSV1
        } else {
            0
        },
        close_timeout: CLOSE_TIMEOUT,
        ping_interval: route.websocket.ping_interval,
        ping_timeout: route.websocket.ping_timeout,
        idle_timeout: route.websocket.idle_timeout,
        message_timeout: route.websocket.message_timeout,
    };
    let peer = conn.peer;
    let open = shared.open_guard();
    tokio::spawn(async move {
        let _open = open;
        let _slot = slot;
        let _lease = lease;
        let route = app.route(route_index);
        let (client, upstream) = match tokio::try_join!(client_upgrade, upstream_upgrade) {
            Ok(pair) => pair,
            Err(err) => return debug!(%peer, error = %err, "upgrade did not complete"),
        };
        let metrics = &shared.metrics;
        let meters = [Direction::Inbound, Direction::Outbound]
            .map(|d| direction_meters(metrics, &route.name, d));
        let [mut inbound_inspector, mut outbound_inspector] =
            inspectors(&app, route_index, &shared, peer, negotiated.deflate);
        let splice = splice_path(&shared, &app, route_index);
        let Some(upstream) = upgraded_peer::<TcpStream>(upstream) else {
            return warn!(%peer, "upstream connection has an unexpected transport");
        };
        // Only a plain TCP client can be spliced to; TLS clients stay on the frame relay.
        let (client, splice) = match (splice, client.downcast::<TokioIo<TcpStream>>()) {
            (Some(path), Ok(parts)) => (
                ClientSide::Tcp(Peer {
                    stream: parts.io.into_inner(),
                    buffered: parts.read_buf,
                }),
                Some(path),
            ),
            (_, Ok(parts)) => (
                ClientSide::Tcp(Peer {
                    stream: parts.io.into_inner(),
                    buffered: parts.read_buf,
                }),
                None,
            ),
            (_, Err(upgraded)) => match upgraded_peer::<S>(upgraded) {
                Some(peer) => (ClientSide::Other(peer), None),
                None => return warn!(%peer, "upgraded connection has an unexpected transport"),
            },
        };
        let data_path = match &splice {
            None => "userspace",
            Some(SplicePath::Pipe) => "splice",
            Some(SplicePath::Kernel(_)) => "kernel",
        };
        let _listed = shared.list_websocket(WebSocketInfo {
            id: NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed),
            client: peer.to_string(),
            route: route.name.clone(),
            upstream: target.clone(),
            data_path,
            since: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        });
        metrics.connections_active.inc();
        metrics
            .connections
            .get_or_create(&DataPathLabel {
                data_path: data_path.to_owned(),
            })
            .inc();
        let started = std::time::Instant::now();
        let (shutdown, inspectors) = (
            shared.shutdown.clone(),
            [inbound_inspector.as_mut(), outbound_inspector.as_mut()],
        );
        let outcome = match (client, splice) {
            (ClientSide::Tcp(client), Some(path)) => {
                relay::relay_spliced(
                    client,
                    upstream,
                    path,
                    &settings,
                    meters,
                    shutdown,
                    inspectors[0],
                )
                .await
            }
            (ClientSide::Tcp(client), None) => {
                relay::relay(
                    client,
                    upstream,
                    &settings,
                    meters,
                    shutdown,
                    [inbound_inspector.as_mut(), outbound_inspector.as_mut()],
                )
                .await
            }
            (ClientSide::Other(client), _) => {
                relay::relay(
                    client,
                    upstream,
                    &settings,
                    meters,
                    shutdown,
                    [inbound_inspector.as_mut(), outbound_inspector.as_mut()],
                )
                .await
            }
        };
        metrics.connections_active.dec();
        metrics
            .connection_duration
            .observe(started.elapsed().as_secs_f64());
        info!(
            target: "frameguard::access",
            client = %peer,
            route = %route.name,
            upstream = %target,
            data_path,
            duration_ms = started.elapsed().as_millis() as u64,
            frames_in = outcome.inbound.frames,
            bytes_in = outcome.inbound.bytes,
            frames_out = outcome.outbound.frames,
            bytes_out = outcome.outbound.bytes,
            close_code = outcome.close_code.unwrap_or(1005),
            close_reason = %outcome.close_reason,
            "websocket closed"
        );
    });
    switch
}

/// The client side of an upgraded connection: plain TCP (which can be spliced to) or TLS.
enum ClientSide<S> {
    Tcp(Peer<TcpStream>),
    Other(Peer<S>),
}

/// How this connection's upstream -> client direction is carried, when it is not the frame
/// relay: only where nothing inspects that direction, as the route or `--data-path` asks.
/// `auto` is the frame relay: measured on the reference machine, it beats splice(2) for small
/// messages and the sockmap path everywhere (see README, "Data paths").
fn splice_path(shared: &Shared, app: &App, route_index: usize) -> Option<SplicePath> {
    let route = app.route(route_index);
    let outbound_inspected = match (&app.engine, app.route_policies[route_index]) {
        (Some(engine), Some(policy)) => engine.inspects(policy, MessageDirection::Outbound),
        _ => false,
    };
    if outbound_inspected {
        return None;
    }
    match shared.data_path_override.unwrap_or(route.data_path) {
        DataPath::Auto | DataPath::Userspace => None,
        DataPath::Splice => Some(SplicePath::Pipe),
        DataPath::Kernel => shared.kernel.clone().map(SplicePath::Kernel),
    }
}

/// The inspectors of a connection's two directions: the route's policy where it inspects that
/// direction, pass-through otherwise.
fn inspectors(
    app: &App,
    route_index: usize,
    shared: &Arc<Shared>,
    peer: SocketAddr,
    deflate: Option<DeflateAgreement>,
) -> [Box<dyn MessageInspector>; 2] {
    let (Some(engine), Some(policy)) = (&app.engine, app.route_policies[route_index]) else {
        return [Box::new(PassThrough), Box::new(PassThrough)];
    };
    let route = app.route(route_index);
    let deflate = deflate.map(|d| DeflateParams {
        server_no_context_takeover: d.server_no_context_takeover,
        client_no_context_takeover: d.client_no_context_takeover,
        server_max_window_bits: d.server_max_window_bits,
        client_max_window_bits: d.client_max_window_bits,
    });
    let state = engine.new_connection(policy, deflate, route.websocket.max_message_size);
    let state = Arc::new(std::sync::Mutex::new(state));
    let audit = Arc::new(AuditContext {
        connection_id: NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed),
        client: peer,
        route: route.name.clone(),
        policy: engine.policy_options(policy).0.to_owned(),
    });
    [MessageDirection::Inbound, MessageDirection::Outbound].map(|direction| {
        if !engine.inspects(policy, direction) {
            return Box::new(PassThrough) as Box<dyn MessageInspector>;
        }
        Box::new(EngineInspector {
            engine: engine.clone(),
            state: state.clone(),
            audit: audit.clone(),
            shared: shared.clone(),
        })
    })
}

static NEXT_CONNECTION_ID: AtomicU64 = AtomicU64::new(1);

fn direction_meters(metrics: &Metrics, route: &str, direction: Direction) -> DirectionMeters {
    let label = |s: &str| s.to_owned();
    DirectionMeters {
        messages: metrics
            .messages
            .get_or_create(&RouteDirection {
                route: label(route),
                direction: label(direction.as_str()),
            })
            .clone(),
        bytes: metrics
            .bytes
            .get_or_create(&DirectionLabel {
                direction: label(direction.as_str()),
            })
            .clone(),
        frames: DirectionMeters::OPCODES.map(|opcode| {
            metrics
                .frames
                .get_or_create(&FrameLabels {
                    direction: label(direction.as_str()),
                    opcode: label(opcode),
                })
                .clone()
        }),
    }
}

/// The transport under an upgraded connection, with the bytes hyper read past the head.
fn upgraded_peer<S: ClientStream>(upgraded: hyper::upgrade::Upgraded) -> Option<Peer<S>> {
    let parts = upgraded.downcast::<TokioIo<S>>().ok()?;
    Some(Peer {
        stream: parts.io.into_inner(),
        buffered: parts.read_buf,
    })
}

/// Connect to `target` and send it the upgrade request; returns its answer.
async fn open_upstream(
    req: &Request<Incoming>,
    upgrade: &ClientUpgrade,
    target: &str,
    conn: &Connection,
    connect_timeout: Duration,
) -> anyhow::Result<Response<Incoming>> {
    let stream = tokio::time::timeout(connect_timeout, TcpStream::connect(target)).await??;
    stream.set_nodelay(true)?;
    let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await?;
    tokio::spawn(connection.with_upgrades());
    let path = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let mut upstream_req = Request::new(Empty::<Bytes>::new());
    *upstream_req.uri_mut() = path.parse()?;
    *upstream_req.version_mut() = Version::HTTP_11;
    *upstream_req.headers_mut() = handshake::upstream_request_headers(
        req.headers(),
        conn.peer.ip(),
        conn.scheme,
        Some(upgrade),
    );
    if !upstream_req.headers().contains_key(header::HOST) {
        upstream_req
            .headers_mut()
            .insert(header::HOST, HeaderValue::from_str(target)?);
    }
    Ok(tokio::time::timeout(HANDSHAKE_TIMEOUT, sender.send_request(upstream_req)).await??)
}

/// Forward a plain HTTP request to the upstream over the worker's pooled client.
async fn proxy_http(
    req: Request<Incoming>,
    route_index: usize,
    upstream: usize,
    conn: &Connection,
) -> Response<Body> {
    let app = &conn.worker.app;
    if let Some(refusal) = head_refusal(app, route_index, conn, &req) {
        return refusal;
    }
    let (parts, body) = req.into_parts();
    // A route that inspects WebSocket messages inspects request bodies too: otherwise the same
    // payload would pass over HTTP (socket.io's polling transport, for one).
    let body = match inspect_http_body(app, route_index, conn, body).await {
        Ok(body) => body,
        Err(refusal) => return refusal,
    };
    let req = Request::from_parts(parts, body);
    let Some(lease) = app.upstreams[upstream].pick() else {
        return text(StatusCode::BAD_GATEWAY, "no healthy upstream target\n");
    };
    let target = lease.target();
    let path = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let Ok(uri) = format!("http://{target}{path}").parse::<http::Uri>() else {
        return text(StatusCode::BAD_REQUEST, "invalid request target\n");
    };
    let headers =
        handshake::upstream_request_headers(req.headers(), conn.peer.ip(), conn.scheme, None);
    let (parts, body) = req.into_parts();
    let mut upstream_req = Request::new(body);
    *upstream_req.method_mut() = parts.method;
    *upstream_req.uri_mut() = uri;
    *upstream_req.headers_mut() = headers;
    match conn.worker.http_clients[upstream]
        .request(upstream_req)
        .await
    {
        // A switch the request never asked for would leave the client a connection in an
        // unknown protocol (RFC 9110 15.2.2).
        Ok(resp) if resp.status() == StatusCode::SWITCHING_PROTOCOLS => {
            warn!(%target, "upstream switched protocols on a plain request");
            text(
                StatusCode::BAD_GATEWAY,
                "upstream switched protocols unasked\n",
            )
        }
        Ok(resp) => {
            let (mut parts, body) = resp.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            Response::from_parts(parts, body.boxed())
        }
        Err(err) => {
            warn!(%target, error = %err, "upstream request failed");
            text(StatusCode::BAD_GATEWAY, "upstream unavailable\n")
        }
    }
}

/// Request headers that applications log or show, and that attacks ride in for that reason
/// (Log4Shell's `${jndi:...}` in a User-Agent).
const LOGGED_HEADERS: [header::HeaderName; 2] = [header::USER_AGENT, header::REFERER];

/// The request head's path segments, query parameter names and values, and
/// [`LOGGED_HEADERS`], judged on a route that inspects client messages before anything goes
/// upstream: applications read a room, a nickname or a search from the upgrade's URL as they
/// read messages. A block answers 403.
fn head_refusal<B>(
    app: &App,
    route_index: usize,
    conn: &Connection,
    req: &Request<B>,
) -> Option<Response<Body>> {
    let mut inspector = request_inspector(app, route_index, conn)?;
    let uri = req.uri();
    let target = uri.path_and_query().map_or("", |pq| pq.as_str());
    // Ids, slugs and numbers, the usual target, carry nothing to judge.
    let plain = |b: &u8| b.is_ascii_alphanumeric() || b"/._~-?&=".contains(b);
    let mut items: Vec<&[u8]> = Vec::new();
    if !target.as_bytes().iter().all(plain) {
        let query = uri.query().unwrap_or("").split('&').flat_map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            [name, value]
        });
        items.extend(uri.path().split('/').chain(query).map(str::as_bytes));
    }
    for name in &LOGGED_HEADERS {
        items.extend(
            req.headers()
                .get_all(name)
                .iter()
                .map(HeaderValue::as_bytes),
        );
    }
    items.retain(|item| !item.is_empty());
    if items.is_empty() {
        return None;
    }
    let mut decisions = Vec::with_capacity(items.len());
    inspector.inspect_metadata(Direction::Inbound, &items, &mut decisions);
    refusal(&decisions)
}

/// The client-message inspector of a route, for what a plain request carries; `None` when the
/// route inspects no client messages.
fn request_inspector(
    app: &App,
    route_index: usize,
    conn: &Connection,
) -> Option<Box<dyn MessageInspector>> {
    let (Some(engine), Some(policy)) = (&app.engine, app.route_policies[route_index]) else {
        return None;
    };
    if !engine.inspects(policy, MessageDirection::Inbound) {
        return None;
    }
    let [inspector, _] = inspectors(app, route_index, &conn.worker.shared, conn.peer, None);
    Some(inspector)
}

/// The answer to a request an inspector refused part of: 413 for size, 403 otherwise.
fn refusal(decisions: &[Decision]) -> Option<Response<Body>> {
    decisions.iter().find_map(|decision| match *decision {
        Decision::Close(code, reason) => {
            let status = match code {
                CloseCode::TOO_BIG => StatusCode::PAYLOAD_TOO_LARGE,
                _ => StatusCode::FORBIDDEN,
            };
            Some(text(status, &format!("{reason}\n")))
        }
        Decision::Forward => None,
    })
}

/// The request body to forward: as it came when the route inspects nothing, otherwise read
/// whole (up to the route's max-message-size: 413 beyond) and judged like WebSocket messages,
/// each engine.io packet (separated by 0x1e) on its own. A block answers 403.
async fn inspect_http_body(
    app: &Arc<App>,
    route_index: usize,
    conn: &Connection,
    body: Incoming,
) -> Result<Body, Response<Body>> {
    let Some(mut inspector) = request_inspector(app, route_index, conn) else {
        return Ok(body.boxed());
    };
    let route = app.route(route_index);
    let limit = route.websocket.max_message_size;
    let bytes = match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => {
            return Err(text(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body too large\n",
            ))
        }
        Err(_) => return Err(text(StatusCode::BAD_REQUEST, "malformed request body\n")),
    };
    let events: Vec<frameguard_codec::Event> = bytes
        .split(|&b| b == 0x1e)
        .filter(|packet| !packet.is_empty())
        .map(|packet| {
            let payload = bytes.slice_ref(packet);
            let opcode = match std::str::from_utf8(packet) {
                Ok(_) => frameguard_codec::OpCode::Text,
                Err(_) => frameguard_codec::OpCode::Binary,
            };
            frameguard_codec::Event::Message(frameguard_codec::Message {
                opcode,
                rsv: 0,
                fragments: frameguard_codec::FrameLengths::from_slice(&[payload.len()]),
                payload,
            })
        })
        .collect();
    let mut decisions = Vec::with_capacity(events.len());
    inspector.inspect(Direction::Inbound, &events, &mut decisions);
    if let Some(refused) = refusal(&decisions) {
        return Err(refused);
    }
    Ok(Full::new(bytes).map_err(|never| match never {}).boxed())
}

/// Drop hop-by-hop headers from a response before relaying it.
fn strip_hop_by_hop(headers: &mut http::HeaderMap) {
    let names: Vec<_> = headers
        .keys()
        .filter(|n| handshake::is_hop_by_hop(n))
        .cloned()
        .collect();
    for name in names {
        headers.remove(name);
    }
}

fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

fn full(status: StatusCode, body: String) -> Response<Body> {
    let mut resp = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed(),
    );
    *resp.status_mut() = status;
    resp
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    let mut resp = full(status, body.to_owned());
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}
