//! Frameguard's inspection engine: given a connection's state and one complete WebSocket
//! message, decide Allow / Block / DetectOnly.
//!
//! Pipeline per message: direction filter, frame and message size limits (1009), rate limits
//! (1008), permessage-deflate inflation with the connection's per-direction window (size and
//! ratio caps, 1009), UTF-8 validation of text (1007), structure extraction (socket.io,
//! JSON keys/values, MessagePack strings), JSON Schema / MessagePack validation (1008), then
//! decoding (percent, HTML entities, JS escapes, nested) into normalized views that one
//! Hyperscan database scans for every message of a batch at once. Weak hits are confirmed by
//! token checks (see [`rules`]).
//!
//! Rate limiting is a token bucket per direction: the message bucket holds
//! `rate-limit-burst` tokens (at least 1) and refills at `max-messages-per-sec`; the byte
//! bucket refills at `max-bytes-per-sec` and holds the same burst window in bytes
//! (`max-bytes-per-sec * burst / max-messages-per-sec`, or one second of bytes when no
//! message rate is set). A message that finds either bucket short is a violation and takes
//! no tokens.
//!
//! Malformed payloads (invalid UTF-8 in a text message, undecodable deflate data) close with
//! 1007 and are reported with the `ws-schema-invalid` tag. Engine failures (a Hyperscan scan
//! error, a scratch from another engine, a deflate window lost after an earlier oversized
//! message in detect-only mode) are `ws-engine-error`: allowed and counted with `fail-open`,
//! otherwise closed with 1011.

pub mod decode;
pub mod eval;
pub mod extract;
pub mod inflate;
pub mod rate;
pub mod rules;
mod scan;
mod schema;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

pub use frameguard_config::policy::{Direction as PolicyDirection, InspectionPolicy};

use inflate::{InflateError, Inflater};
use rate::TokenBucket;
use scan::{Database, PreparedMessage};

/// Which way a message travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageDirection {
    /// Client -> upstream.
    Inbound,
    /// Upstream -> client.
    Outbound,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageKind {
    Text,
    Binary,
    /// Text beside the messages that the peer may log, show or act on: what a ping or pong
    /// carries, a close frame's reason, a handshake's query parameter. Scanned when it reads as
    /// text; never rate- or size-limited (the protocol and the request head bound it),
    /// compressed or validated.
    Metadata,
}

/// Audit tag of a detection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tag {
    Xss,
    Sqli,
    CmdInjection,
    CustomPattern,
    SchemaInvalid,
    SizeLimit,
    RateLimit,
    /// The engine could not inspect the message (see the crate docs).
    EngineError,
}

impl Tag {
    pub const ALL: [Tag; 8] = [
        Tag::Xss,
        Tag::Sqli,
        Tag::CmdInjection,
        Tag::CustomPattern,
        Tag::SchemaInvalid,
        Tag::SizeLimit,
        Tag::RateLimit,
        Tag::EngineError,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Tag::Xss => "ws-xss",
            Tag::Sqli => "ws-sqli",
            Tag::CmdInjection => "ws-cmd-injection",
            Tag::CustomPattern => "ws-custom-pattern",
            Tag::SchemaInvalid => "ws-schema-invalid",
            Tag::SizeLimit => "ws-size-limit",
            Tag::RateLimit => "ws-rate-limit",
            Tag::EngineError => "ws-engine-error",
        }
    }

    fn close(self) -> (u16, &'static str) {
        match self {
            Tag::Xss => (1008, "Policy violation: XSS detected"),
            Tag::Sqli => (1008, "Policy violation: SQL injection detected"),
            Tag::CmdInjection => (1008, "Policy violation: command injection detected"),
            Tag::CustomPattern => (1008, "Policy violation: custom pattern matched"),
            Tag::SchemaInvalid => (1008, "Policy violation: schema validation failed"),
            Tag::RateLimit => (1008, "Policy violation: rate limit exceeded"),
            Tag::SizeLimit => (1009, "Message too big"),
            Tag::EngineError => (1011, "Internal error"),
        }
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One complete message as the relay reassembled it.
#[derive(Clone, Copy, Debug)]
pub struct MessageRef<'a> {
    pub direction: MessageDirection,
    pub kind: MessageKind,
    /// RSV1 was set on the first frame (permessage-deflate).
    pub compressed: bool,
    /// The message payload as on the wire (still compressed when `compressed`).
    pub payload: &'a [u8],
    /// Largest wire frame payload of the message.
    pub largest_frame: usize,
}

/// What was found, for the audit log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Detection {
    pub tag: Tag,
    /// Stable rule identifier, e.g. `xss.script-tag`, `size.message`, `custom.0`.
    pub rule_id: String,
    /// At most [`MAX_EXCERPT`] bytes of decoded text around the match (or a short description
    /// for limits).
    pub excerpt: String,
}

/// Longest excerpt in a [`Detection`].
pub const MAX_EXCERPT: usize = 128;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Block {
        close_code: u16,
        reason: &'static str,
        detection: Detection,
    },
    /// Detected in detect-only mode (or an engine error with fail-open): forward, log, count.
    DetectOnly(Detection),
}

/// Negotiated permessage-deflate parameters. Window bits of 0 mean the default, 15.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeflateParams {
    pub server_no_context_takeover: bool,
    pub client_no_context_takeover: bool,
    pub server_max_window_bits: u8,
    pub client_max_window_bits: u8,
}

/// Index of a policy in the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicyId(u32);

/// Engine construction or use failure.
#[derive(Debug)]
pub struct EngineError(String);

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EngineError {}

/// Hard ceiling on inflated size when neither the route nor the policy sets one.
pub const DEFAULT_INFLATE_LIMIT: usize = 64 << 20;

struct CompiledPolicy {
    name: String,
    policy: InspectionPolicy,
    schema: Option<jsonschema::Validator>,
}

/// The compiled rules and policies; `Send + Sync`, shared by worker threads.
pub struct Engine {
    database: Database,
    policies: Vec<CompiledPolicy>,
    by_name: HashMap<String, PolicyId>,
    engine_errors: AtomicU64,
}

/// Per-thread scan scratch and reusable buffers.
pub struct Scratch {
    scan: scan::ScanScratch,
}

/// Per-direction connection state.
struct DirectionState {
    inflater: Option<Inflater>,
    messages: Option<TokenBucket>,
    bytes: Option<TokenBucket>,
    /// socket.io binary attachments still expected in this direction.
    pending_attachments: u32,
}

/// Per-connection state: rate buckets, inflaters and socket.io attachment tracking per
/// direction. Fixed size apart from the inflaters' windows (at most 2 x 32 KiB + zlib state).
pub struct ConnectionState {
    policy: PolicyId,
    max_message_size: usize,
    inbound: DirectionState,
    outbound: DirectionState,
}

impl ConnectionState {
    fn direction(&mut self, direction: MessageDirection) -> &mut DirectionState {
        match direction {
            MessageDirection::Inbound => &mut self.inbound,
            MessageDirection::Outbound => &mut self.outbound,
        }
    }
}

/// A violation found before content scanning, or by it.
pub(crate) struct Finding {
    pub tag: Tag,
    pub rule_id: String,
    pub excerpt: String,
}

impl Finding {
    /// Payloads that are not what their frame type says (RFC 6455 close code 1007).
    fn malformed(&self) -> bool {
        matches!(
            self.rule_id.as_str(),
            "utf8.invalid" | "deflate.corrupt" | "deflate.not-negotiated"
        )
    }

    fn limit(tag: Tag, rule_id: &str, excerpt: String) -> Finding {
        Finding {
            tag,
            rule_id: rule_id.to_owned(),
            excerpt,
        }
    }
}

impl Engine {
    /// One Hyperscan database for all policies (built-ins + every policy's custom patterns,
    /// ids mapped back). Errors: a custom pattern that does not compile (the message names
    /// the pattern), an unreadable or invalid schema file.
    pub fn new(policies: &[(String, InspectionPolicy)]) -> Result<Engine, EngineError> {
        let mut compiled = Vec::with_capacity(policies.len());
        let mut by_name = HashMap::new();
        for (index, (name, policy)) in policies.iter().enumerate() {
            let schema = match &policy.json_schema {
                Some(path) => Some(schema::load(path).map_err(EngineError)?),
                None => None,
            };
            by_name.insert(name.clone(), PolicyId(index as u32));
            compiled.push(CompiledPolicy {
                name: name.clone(),
                policy: policy.clone(),
                schema,
            });
        }
        let customs: Vec<(u32, &[String])> = compiled
            .iter()
            .enumerate()
            .map(|(i, p)| (i as u32, p.policy.custom_patterns.as_slice()))
            .collect();
        let database = Database::build(&customs).map_err(EngineError)?;
        Ok(Engine {
            database,
            policies: compiled,
            by_name,
            engine_errors: AtomicU64::new(0),
        })
    }

    pub fn policy(&self, name: &str) -> Option<PolicyId> {
        self.by_name.get(name).copied()
    }

    /// The policy's name and options.
    pub fn policy_options(&self, policy: PolicyId) -> (&str, &InspectionPolicy) {
        let p = &self.policies[policy.0 as usize];
        (&p.name, &p.policy)
    }

    /// One per worker thread.
    pub fn alloc_scratch(&self) -> Result<Scratch, EngineError> {
        Ok(Scratch {
            scan: self.database.alloc_scratch().map_err(EngineError)?,
        })
    }

    pub fn inspects(&self, policy: PolicyId, direction: MessageDirection) -> bool {
        let d = self.policies[policy.0 as usize].policy.direction;
        match direction {
            MessageDirection::Inbound => d.inspects_inbound(),
            MessageDirection::Outbound => d.inspects_outbound(),
        }
    }

    /// Raw Hyperscan scan of `data` with the full database (built-ins and custom patterns), no
    /// decoding or confirmation; returns the number of raw matches. For benchmarks.
    pub fn raw_scan(&self, scratch: &Scratch, data: &[u8]) -> Result<usize, EngineError> {
        self.database
            .raw_scan(&scratch.scan, data)
            .map_err(EngineError)
    }

    /// Engine errors seen so far (counted whether fail-open allowed the message or not).
    pub fn engine_errors(&self) -> u64 {
        self.engine_errors.load(Ordering::Relaxed)
    }

    /// `max_message_size` is the route's websocket max-message-size (also caps inflation;
    /// 0 = unlimited).
    pub fn new_connection(
        &self,
        policy: PolicyId,
        deflate: Option<DeflateParams>,
        max_message_size: usize,
    ) -> ConnectionState {
        let p = &self.policies[policy.0 as usize].policy;
        let direction = |no_context_takeover: bool, window_bits: u8| DirectionState {
            inflater: deflate.map(|_| Inflater::new(window_bits, no_context_takeover)),
            messages: (p.max_messages_per_sec > 0)
                .then(|| TokenBucket::new(p.max_messages_per_sec, p.rate_limit_burst.max(1))),
            bytes: (p.max_bytes_per_sec > 0).then(|| {
                // The same burst window as the message bucket, or one second of bytes.
                let capacity = p
                    .max_bytes_per_sec
                    .saturating_mul(p.rate_limit_burst.max(1))
                    .checked_div(p.max_messages_per_sec)
                    .unwrap_or(p.max_bytes_per_sec);
                TokenBucket::new(p.max_bytes_per_sec, capacity.max(1))
            }),
            pending_attachments: 0,
        };
        let d = deflate.unwrap_or_default();
        ConnectionState {
            policy,
            max_message_size,
            inbound: direction(d.client_no_context_takeover, d.client_max_window_bits),
            outbound: direction(d.server_no_context_takeover, d.server_max_window_bits),
        }
    }

    /// Inspects the messages that one read produced, in order, with one Hyperscan scan for the
    /// whole batch. Pushes exactly one verdict per message into `out`.
    pub fn inspect_batch(
        &self,
        conn: &mut ConnectionState,
        scratch: &mut Scratch,
        now: Instant,
        messages: &[MessageRef<'_>],
        out: &mut Vec<Verdict>,
    ) {
        let policy = &self.policies[conn.policy.0 as usize];
        let scan = &mut scratch.scan;
        scan.begin_batch();
        let mut prepared = Vec::with_capacity(messages.len());
        for message in messages {
            prepared.push(self.prepare(policy, conn, scan, now, message));
        }
        let findings = self
            .database
            .scan(&policy.policy, conn.policy.0, scan, messages.len());
        let scan_failed = findings.is_err();
        let mut findings = findings.unwrap_or_default();
        for (index, state) in prepared.into_iter().enumerate() {
            let finding = match state {
                PreparedMessage::Done(finding) => finding,
                PreparedMessage::Scanned if scan_failed => {
                    Some(self.engine_error("engine.scan-failed"))
                }
                PreparedMessage::Scanned => findings[index].take(),
            };
            out.push(self.verdict(&policy.policy, finding));
        }
    }

    /// Inspects one message.
    pub fn inspect(
        &self,
        conn: &mut ConnectionState,
        scratch: &mut Scratch,
        now: Instant,
        message: MessageRef<'_>,
    ) -> Verdict {
        let mut out = Vec::with_capacity(1);
        self.inspect_batch(conn, scratch, now, std::slice::from_ref(&message), &mut out);
        out.pop().unwrap_or(Verdict::Allow)
    }

    fn engine_error(&self, rule_id: &str) -> Finding {
        self.engine_errors.fetch_add(1, Ordering::Relaxed);
        Finding::limit(Tag::EngineError, rule_id, String::new())
    }

    fn verdict(&self, policy: &InspectionPolicy, finding: Option<Finding>) -> Verdict {
        let Some(finding) = finding else {
            return Verdict::Allow;
        };
        if finding.tag == Tag::EngineError && policy.fail_open {
            return Verdict::Allow;
        }
        let (close_code, reason) = if finding.malformed() {
            (1007, "Invalid message data")
        } else {
            finding.tag.close()
        };
        let detection = Detection {
            tag: finding.tag,
            rule_id: finding.rule_id,
            excerpt: finding.excerpt,
        };
        if policy.block_mode || finding.tag == Tag::EngineError {
            Verdict::Block {
                close_code,
                reason,
                detection,
            }
        } else {
            Verdict::DetectOnly(detection)
        }
    }

    /// Limits, inflation, validation and view building for one message; what is left for the
    /// batch scan is in `scan`'s buffer.
    fn prepare(
        &self,
        policy: &CompiledPolicy,
        conn: &mut ConnectionState,
        scan: &mut scan::ScanScratch,
        now: Instant,
        message: &MessageRef<'_>,
    ) -> PreparedMessage {
        let p = &policy.policy;
        let message_index = scan.next_message();
        let inspected = match message.direction {
            MessageDirection::Inbound => p.direction.inspects_inbound(),
            MessageDirection::Outbound => p.direction.inspects_outbound(),
        };
        if !inspected {
            return PreparedMessage::Done(None);
        }
        let (frame_limit, frame_rule) = match message.kind {
            MessageKind::Text => (p.max_text_frame_size, "size.text-frame"),
            MessageKind::Binary => (p.max_binary_frame_size, "size.binary-frame"),
            // Bounded by the protocol, never compressed, and no message to the rate limits.
            MessageKind::Metadata => {
                let payload = message.payload;
                return self.prepare_payload(policy, conn, scan, message_index, message, payload);
            }
        };
        if frame_limit > 0 && message.largest_frame as u64 > frame_limit {
            let excerpt = format!("frame of {} bytes > {frame_limit}", message.largest_frame);
            return PreparedMessage::Done(Some(Finding::limit(
                Tag::SizeLimit,
                frame_rule,
                excerpt,
            )));
        }
        let message_limit = effective_limit(p.max_message_size, conn.max_message_size);
        if let Some(limit) = message_limit {
            if message.payload.len() > limit {
                let excerpt = format!("message of {} bytes > {limit}", message.payload.len());
                return PreparedMessage::Done(Some(Finding::limit(
                    Tag::SizeLimit,
                    "size.message",
                    excerpt,
                )));
            }
        }
        let state = conn.direction(message.direction);
        if let Some(finding) = rate_check(state, now, message.payload.len() as u64) {
            return PreparedMessage::Done(Some(finding));
        }
        if !message.compressed {
            return self.prepare_payload(
                policy,
                conn,
                scan,
                message_index,
                message,
                message.payload,
            );
        }
        let Some(inflater) = state.inflater.as_mut() else {
            return PreparedMessage::Done(Some(Finding::limit(
                Tag::SchemaInvalid,
                "deflate.not-negotiated",
                "compressed message without permessage-deflate".into(),
            )));
        };
        let limit = message_limit.unwrap_or(DEFAULT_INFLATE_LIMIT);
        let mut inflated = std::mem::take(&mut scan.inflated);
        let outcome = match inflater.inflate(message.payload, limit, &mut inflated) {
            Ok(()) => self.prepare_payload(policy, conn, scan, message_index, message, &inflated),
            Err(error) => PreparedMessage::Done(Some(self.inflate_finding(error, limit))),
        };
        scan.inflated = inflated;
        outcome
    }

    fn inflate_finding(&self, error: InflateError, limit: usize) -> Finding {
        match error {
            InflateError::TooBig => Finding::limit(
                Tag::SizeLimit,
                "size.inflated",
                format!("inflated message > {limit} bytes"),
            ),
            InflateError::Bomb => Finding::limit(
                Tag::SizeLimit,
                "size.inflate-ratio",
                format!("compression ratio > {}:1", inflate::MAX_RATIO),
            ),
            InflateError::Corrupt => Finding::limit(
                Tag::SchemaInvalid,
                "deflate.corrupt",
                "invalid deflate data".into(),
            ),
            InflateError::Desynced => self.engine_error("engine.deflate-desynced"),
        }
    }

    fn prepare_payload(
        &self,
        policy: &CompiledPolicy,
        conn: &mut ConnectionState,
        scan: &mut scan::ScanScratch,
        message_index: usize,
        message: &MessageRef<'_>,
        payload: &[u8],
    ) -> PreparedMessage {
        let p = &policy.policy;
        let state = conn.direction(message.direction);
        match message.kind {
            MessageKind::Text => {
                let Ok(text) = std::str::from_utf8(payload) else {
                    return PreparedMessage::Done(Some(Finding {
                        tag: Tag::SchemaInvalid,
                        rule_id: "utf8.invalid".into(),
                        excerpt: "text message is not valid UTF-8".into(),
                    }));
                };
                match scan.add_text(message_index, text, policy.schema.as_ref()) {
                    Ok(attachments) => {
                        state.pending_attachments = attachments;
                        PreparedMessage::Scanned
                    }
                    Err(finding) => PreparedMessage::Done(Some(finding)),
                }
            }
            MessageKind::Binary => {
                // A socket.io attachment is an event argument the application reads.
                let attachment = state.pending_attachments > 0;
                if attachment {
                    state.pending_attachments -= 1;
                } else if !(p.msgpack_validation || p.inspect_binary) {
                    return PreparedMessage::Done(None);
                }
                let limit = effective_limit(p.max_message_size, conn.max_message_size)
                    .unwrap_or(DEFAULT_INFLATE_LIMIT);
                let inflated = match inflate::inflate_binary(payload, limit) {
                    Ok(inflated) => inflated,
                    Err(error) => {
                        return PreparedMessage::Done(Some(self.inflate_finding(error, limit)))
                    }
                };
                let payload = inflated.as_deref().unwrap_or(payload);
                if attachment {
                    return add_binary_text(scan, message_index, payload);
                }
                if scan.add_msgpack(message_index, payload) {
                    return PreparedMessage::Scanned;
                }
                if p.msgpack_validation {
                    return PreparedMessage::Done(Some(Finding {
                        tag: Tag::SchemaInvalid,
                        rule_id: "schema.msgpack-invalid".into(),
                        excerpt: "binary message is not MessagePack".into(),
                    }));
                }
                add_binary_text(scan, message_index, payload)
            }
            MessageKind::Metadata => add_binary_text(scan, message_index, payload),
        }
    }
}

/// Scans a binary payload as the text it may be read as (an application that calls
/// `toString()` on every message, or reads the strings of its own framing); one that does not
/// read as text is allowed unscanned.
fn add_binary_text(
    scan: &mut scan::ScanScratch,
    message: usize,
    payload: &[u8],
) -> PreparedMessage {
    if scan.add_binary_text(message, payload) {
        PreparedMessage::Scanned
    } else {
        PreparedMessage::Done(None)
    }
}

fn effective_limit(policy: u64, route: usize) -> Option<usize> {
    let policy = usize::try_from(policy).unwrap_or(usize::MAX);
    match (policy, route) {
        (0, 0) => None,
        (0, r) => Some(r),
        (p, 0) => Some(p),
        (p, r) => Some(p.min(r)),
    }
}

fn rate_check(state: &mut DirectionState, now: Instant, bytes: u64) -> Option<Finding> {
    if let Some(bucket) = state.messages.as_mut() {
        if !bucket.allows(now, 1) {
            return Some(Finding::limit(
                Tag::RateLimit,
                "rate.messages",
                "messages per second exceeded".into(),
            ));
        }
    }
    if let Some(bucket) = state.bytes.as_mut() {
        if !bucket.allows(now, bytes) {
            return Some(Finding::limit(
                Tag::RateLimit,
                "rate.bytes",
                "bytes per second exceeded".into(),
            ));
        }
        bucket.take(bytes);
    }
    if let Some(bucket) = state.messages.as_mut() {
        bucket.take(1);
    }
    None
}
