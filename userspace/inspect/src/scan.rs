//! The scan buffer (normalized views of every string of every message in a batch, separated
//! by `\n`), the Hyperscan database and the match callback that confirms and maps hits back.

use std::sync::atomic::{AtomicU64, Ordering};

use hyperscan::prelude::*;
use hyperscan::CompileFlags;

use crate::decode::normalize::{normalize, shape, traits, Layout, Shape};
use crate::decode::{base64, decode_layers};
use crate::extract::{binary, json, msgpack, socketio};
use crate::rules::shell::line_start_command;
use crate::rules::sql::SHAPE_WINDOW;
use crate::rules::{Confirm, Family, View, Views, BUILTIN, CHAINED_COMMAND, CUSTOM_VIEWS, SHELL};
use crate::schema::{truncate_on_char_boundary, validate};
use crate::{Finding, InspectionPolicy, Tag, MAX_EXCERPT};

static NEXT_DATABASE_ID: AtomicU64 = AtomicU64::new(1);

/// Built-in rules match case-insensitively, `^`/`$` at line (view) boundaries, and report only
/// where they end: start-of-match tracking is costly in Hyperscan, and the confirmers read back
/// from the end to whatever they need.
const BUILTIN_FLAGS: CompileFlags = CompileFlags::CASELESS.union(CompileFlags::MULTILINE);

/// Layers a string is unpacked through: a JSON document inside a JSON string (as ActionCable
/// sends) and base64 that encodes text, each a layer, the message's own strings the first.
const MAX_NESTING: usize = 3;

pub(crate) enum PreparedMessage {
    /// Decided before scanning (`None` = allow without scanning).
    Done(Option<crate::Finding>),
    /// Its views are in the scan buffer.
    Scanned,
}

enum Owner {
    Builtin(Family),
    Custom(u32),
}

struct PatternMeta {
    owner: Owner,
    rule_id: String,
    confirm: Confirm,
    views: Views,
    /// Start offsets are reported (confirmers and segment checks can use them).
    leftmost: bool,
}

pub(crate) struct Database {
    hs: BlockDatabase,
    patterns: Vec<PatternMeta>,
    id: u64,
}

struct Segment {
    start: usize,
    end: usize,
    message: usize,
    view: View,
}

/// Normalized views of a batch.
#[derive(Default)]
struct ViewBuffer {
    text: String,
    segments: Vec<Segment>,
}

pub(crate) struct ScanScratch {
    hs: hyperscan::Scratch,
    database_id: u64,
    views: ViewBuffer,
    message_count: usize,
    pub inflated: Vec<u8>,
    json: Vec<u8>,
    json_buffers: simd_json::Buffers,
    json_tape: json::TapeBuffer,
}

impl Database {
    /// Compiles the built-in rules plus, per policy index, its custom patterns.
    pub fn build(customs: &[(u32, &[String])]) -> Result<Database, String> {
        let mut patterns = Vec::new();
        let mut metas = Vec::new();
        for rule in BUILTIN {
            let mut pattern = Pattern::with_flags(rule.expression, BUILTIN_FLAGS)
                .map_err(|e| format!("{}: {e}", rule.id))?;
            pattern.id = Some(patterns.len());
            patterns.push(pattern);
            metas.push(PatternMeta {
                owner: Owner::Builtin(rule.family),
                rule_id: rule.id.to_owned(),
                confirm: rule.confirm,
                views: rule.views,
                leftmost: false,
            });
        }
        for &(policy, list) in customs {
            for (index, expression) in list.iter().enumerate() {
                let (mut pattern, leftmost) = compile_custom(expression)?;
                pattern.id = Some(patterns.len());
                patterns.push(pattern);
                metas.push(PatternMeta {
                    owner: Owner::Custom(policy),
                    rule_id: format!("custom.{index}"),
                    confirm: Confirm::None,
                    views: CUSTOM_VIEWS,
                    leftmost,
                });
            }
        }
        let hs: BlockDatabase = Patterns(patterns)
            .build()
            .map_err(|e| format!("cannot compile the rule database: {e}"))?;
        Ok(Database {
            hs,
            patterns: metas,
            id: NEXT_DATABASE_ID.fetch_add(1, Ordering::Relaxed),
        })
    }

    pub fn alloc_scratch(&self) -> Result<ScanScratch, String> {
        Ok(ScanScratch {
            hs: self
                .hs
                .alloc_scratch()
                .map_err(|e| format!("cannot allocate Hyperscan scratch: {e}"))?,
            database_id: self.id,
            views: ViewBuffer::default(),
            message_count: 0,
            inflated: Vec::new(),
            json: Vec::new(),
            json_buffers: simd_json::Buffers::default(),
            json_tape: json::TapeBuffer::default(),
        })
    }

    /// Scans the batch in `scratch`; one finding slot per message.
    pub fn scan(
        &self,
        policy: &InspectionPolicy,
        policy_index: u32,
        scratch: &mut ScanScratch,
        messages: usize,
    ) -> Result<Vec<Option<Finding>>, ()> {
        let mut findings: Vec<Option<Finding>> = (0..messages).map(|_| None).collect();
        let views = &scratch.views;
        if views.segments.is_empty() {
            return Ok(findings);
        }
        if scratch.database_id != self.id {
            return Err(());
        }
        let mut remaining = {
            let mut seen = vec![false; messages];
            views.segments.iter().for_each(|s| seen[s.message] = true);
            seen.iter().filter(|&&s| s).count()
        };
        // The shape check reads a whole short segment, so its answer holds for every hit in it;
        // Hyperscan reports in end-offset order, so remembering the last segment suffices.
        let mut last_shape: Option<(usize, bool)> = None;
        let enabled = |meta: &PatternMeta| match meta.owner {
            Owner::Builtin(Family::Xss) => policy.xss_detection,
            Owner::Builtin(Family::Sqli) => policy.sqli_detection,
            Owner::Builtin(Family::CmdInjection) => policy.command_injection,
            Owner::Custom(owner) => owner == policy_index,
        };
        let result = self.hs.scan(
            views.text.as_str(),
            &scratch.hs,
            |id: u32, from: u64, to: u64, _flags: u32| {
                let Some(meta) = self.patterns.get(id as usize) else {
                    return Matching::Continue;
                };
                let (from, to) = (from as usize, to as usize);
                let index = views.segments.partition_point(|s| s.end < to);
                let Some(segment) = views.segments.get(index) else {
                    return Matching::Continue;
                };
                if segment.start >= to
                    || findings[segment.message].is_some()
                    || !enabled(meta)
                    || !meta.views.contains(segment.view)
                    || (meta.leftmost && from < segment.start)
                {
                    return Matching::Continue;
                }
                let text = &views.text[segment.start..segment.end];
                let start = if meta.leftmost {
                    from - segment.start
                } else {
                    to - segment.start
                };
                let end = to - segment.start;
                if !text.is_char_boundary(start) || !text.is_char_boundary(end) {
                    return Matching::Continue;
                }
                let cacheable = meta.confirm == Confirm::SqlShape && text.len() <= SHAPE_WINDOW;
                let confirmed = match last_shape {
                    Some((cached, verdict)) if cacheable && cached == index => verdict,
                    _ => {
                        let verdict = meta.confirm.check(text, start, end, segment.view);
                        if cacheable {
                            last_shape = Some((index, verdict));
                        }
                        verdict
                    }
                };
                if !confirmed {
                    return Matching::Continue;
                }
                findings[segment.message] = Some(Finding {
                    tag: match meta.owner {
                        Owner::Builtin(Family::Xss) => Tag::Xss,
                        Owner::Builtin(Family::Sqli) => Tag::Sqli,
                        Owner::Builtin(Family::CmdInjection) => Tag::CmdInjection,
                        Owner::Custom(_) => Tag::CustomPattern,
                    },
                    rule_id: meta.rule_id.clone(),
                    excerpt: excerpt(text, meta.leftmost.then_some(start), end),
                });
                remaining -= 1;
                if remaining == 0 {
                    Matching::Terminate
                } else {
                    Matching::Continue
                }
            },
        );
        match result {
            Ok(()) => {}
            Err(hyperscan::Error::Hyperscan(hyperscan::HsError::ScanTerminated)) => {
                return Ok(findings)
            }
            Err(_) => return Err(()),
        }
        if policy.command_injection {
            line_start_commands(views, &mut findings);
        }
        Ok(findings)
    }

    /// Raw Hyperscan throughput: scans `data` with the full database, counting matches, with
    /// no decoding or confirmation (for benchmarks).
    pub fn raw_scan(&self, scratch: &ScanScratch, data: &[u8]) -> Result<usize, String> {
        let mut count = 0;
        self.hs
            .scan(data, &scratch.hs, |_, _, _, _| {
                count += 1;
                Matching::Continue
            })
            .map_err(|e| e.to_string())?;
        Ok(count)
    }
}

/// Commands at the start of a segment or line, for the messages still without a finding.
fn line_start_commands(views: &ViewBuffer, findings: &mut [Option<Finding>]) {
    for segment in &views.segments {
        if findings[segment.message].is_some() || !SHELL.contains(segment.view) {
            continue;
        }
        let text = &views.text[segment.start..segment.end];
        if let Some(end) = line_start_command(text, segment.view) {
            findings[segment.message] = Some(Finding {
                tag: Tag::CmdInjection,
                rule_id: CHAINED_COMMAND.to_owned(),
                excerpt: excerpt(text, None, end),
            });
        }
    }
}

/// Custom patterns report their start when Hyperscan can track it (so a match never spans two
/// strings); a few expression shapes cannot, and then compile without it.
fn compile_custom(expression: &str) -> Result<(Pattern, bool), String> {
    let invalid =
        |e: &dyn std::fmt::Display| format!("custom pattern {expression:?} does not compile: {e}");
    for (flags, leftmost) in [
        (CompileFlags::MULTILINE | CompileFlags::SOM_LEFTMOST, true),
        (CompileFlags::MULTILINE, false),
    ] {
        let pattern = Pattern::with_flags(expression, flags).map_err(|e| invalid(&e))?;
        match pattern.build::<hyperscan::Block>() {
            Ok(_) => return Ok((pattern, leftmost)),
            Err(e) if !leftmost => return Err(invalid(&e)),
            Err(_) => {}
        }
    }
    Err(invalid(&"unsupported expression"))
}

/// Up to [`MAX_EXCERPT`] bytes around the match, on char boundaries.
fn excerpt(text: &str, start: Option<usize>, end: usize) -> String {
    let (from, to) = match start {
        Some(start) if end - start <= MAX_EXCERPT => {
            let pad = (MAX_EXCERPT - (end - start)) / 2;
            (start.saturating_sub(pad), (end + pad).min(text.len()))
        }
        Some(start) => (start, start + MAX_EXCERPT),
        None => (
            end.saturating_sub(MAX_EXCERPT * 3 / 4),
            (end + MAX_EXCERPT / 4).min(text.len()),
        ),
    };
    let mut from = from.min(text.len());
    while !text.is_char_boundary(from) {
        from += 1;
    }
    let mut to = to.min(text.len()).max(from);
    while !text.is_char_boundary(to) {
        to -= 1;
    }
    let mut out = text[from..to].to_owned();
    truncate_on_char_boundary(&mut out, MAX_EXCERPT);
    out
}

impl ViewBuffer {
    /// Appends the views of one string of message `message`; returns its [`Shape`].
    fn add_string(&mut self, message: usize, s: &str) -> Shape {
        let shape = shape(s);
        if !shape.verbatim {
            self.add_views(message, s);
        } else if !s.is_empty() {
            let start = self.text.len();
            self.text.push_str(s);
            self.end_segment(message, View::Original, start);
        }
        shape
    }

    /// The views of a string that is not verbatim.
    fn add_views(&mut self, message: usize, s: &str) {
        let Some(original) = self.push(message, View::Original, s, Layout::Main, None) else {
            return;
        };
        let decoded = decode_layers(s);
        let best = decoded.as_deref().unwrap_or(s);
        if decoded.is_some() {
            self.push(message, View::Decoded, best, Layout::Main, Some(original));
        }
        let t = traits(best);
        if t.sql_comment {
            self.push(
                message,
                View::SqlJoined,
                best,
                Layout::SqlJoined,
                Some(original),
            );
        }
        if t.line_break {
            self.push(message, View::Lines, best, Layout::Lines, Some(original));
        }
        if t.shell_meta {
            self.push(message, View::Shell, best, Layout::Shell, Some(original));
        }
        // Decoding can turn shell backslash tricks (`\i\n`) into escapes; undo them on the
        // string as received too.
        if decoded.is_some() && traits(s).shell_meta {
            self.push(message, View::Shell, s, Layout::Shell, Some(original));
        }
    }

    /// Appends one view; drops it when empty or equal to the `same_as` segment. Returns the
    /// index of the new segment.
    fn push(
        &mut self,
        message: usize,
        view: View,
        src: &str,
        layout: Layout,
        same_as: Option<usize>,
    ) -> Option<usize> {
        let start = self.text.len();
        normalize(src, layout, &mut self.text);
        let fresh = &self.text[start..];
        let duplicate = same_as.is_some_and(|i| {
            let s = &self.segments[i];
            self.text[s.start..s.end] == *fresh
        });
        if fresh.is_empty() || duplicate {
            self.text.truncate(start);
            return None;
        }
        Some(self.end_segment(message, view, start))
    }

    /// Records the text from `start` as a segment and separates it from the next one.
    fn end_segment(&mut self, message: usize, view: View, start: usize) -> usize {
        let end = self.text.len();
        self.text.push('\n');
        self.segments.push(Segment {
            start,
            end,
            message,
            view,
        });
        self.segments.len() - 1
    }
}

impl ScanScratch {
    pub fn begin_batch(&mut self) {
        self.views.text.clear();
        self.views.text.push('\n');
        self.views.segments.clear();
        self.message_count = 0;
    }

    pub fn next_message(&mut self) -> usize {
        self.message_count += 1;
        self.message_count - 1
    }

    /// Scans `text` as one string of a message (unpacked as [`add_unpacked_string`] does).
    pub fn add_plain(&mut self, message: usize, text: &str) {
        add_unpacked_string(&mut self.views, &mut self.json_buffers, message, text, 1);
    }

    /// Scans the text binary data reads as; `false` if it reads as none.
    pub fn add_binary_text(&mut self, message: usize, bytes: &[u8]) -> bool {
        let (views, buffers) = (&mut self.views, &mut self.json_buffers);
        binary::visit_text(bytes, &mut |text| {
            add_unpacked_string(views, buffers, message, text, 1)
        })
    }

    /// Adds a text message: socket.io packet, JSON document or plain text. With a schema, the
    /// JSON document (or socket.io payload) must conform. Returns the socket.io attachments
    /// announced by the packet.
    pub fn add_text(
        &mut self,
        message: usize,
        text: &str,
        schema: Option<&jsonschema::Validator>,
    ) -> Result<u32, Finding> {
        // A byte order mark is no text, and parsers that accept JSON after one are common.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        if let Some(data) = socketio::engineio_base64_message(text) {
            self.add_binary_data(message, &data);
        }
        let packet = socketio::parse(text);
        let (body, attachments) = match &packet {
            Some(p) => {
                if let Some(namespace) = p.namespace {
                    self.add_plain(message, namespace);
                }
                if p.payload.is_empty() {
                    return Ok(p.attachments);
                }
                (p.payload, p.attachments)
            }
            None => (text, 0),
        };
        if json::starts_like_json(body) || schema.is_some() {
            match self.add_json(message, body, schema) {
                Some(Ok(())) => return Ok(attachments),
                Some(Err(finding)) => return Err(finding),
                None if schema.is_some() => {
                    return Err(Finding {
                        tag: Tag::SchemaInvalid,
                        rule_id: "schema.invalid-json".into(),
                        excerpt: "text message is not JSON".into(),
                    })
                }
                None => {}
            }
        }
        // Not JSON (that was tried above): text, and what it encodes in base64.
        add_string_as_text(&mut self.views, &mut self.json_buffers, message, body, 1);
        Ok(attachments)
    }

    /// `None` if `body` is not JSON.
    fn add_json(
        &mut self,
        message: usize,
        body: &str,
        schema: Option<&jsonschema::Validator>,
    ) -> Option<Result<(), Finding>> {
        let mut buf = std::mem::take(&mut self.json);
        buf.clear();
        buf.extend_from_slice(body.as_bytes());
        let views = &mut self.views;
        let outcome =
            self.json_tape
                .parse_with(&mut buf, &mut self.json_buffers, |tape, buffers| {
                    let violation = schema.and_then(|v| validate(v, json::to_serde(tape).as_ref()));
                    match violation {
                        Some(finding) => Err(finding),
                        None => {
                            for s in json::strings(tape) {
                                add_unpacked_string(views, buffers, message, s, 1);
                            }
                            Ok(())
                        }
                    }
                });
        self.json = buf;
        outcome
    }

    /// Binary data found inside a text message: its MessagePack strings, or the text it reads as.
    fn add_binary_data(&mut self, message: usize, data: &[u8]) {
        if !self.add_msgpack(message, data) {
            self.add_binary_text(message, data);
        }
    }

    /// Adds the strings of a MessagePack message; `false` if it is not MessagePack.
    pub fn add_msgpack(&mut self, message: usize, bytes: &[u8]) -> bool {
        let mark = (self.views.text.len(), self.views.segments.len());
        let (views, buffers) = (&mut self.views, &mut self.json_buffers);
        let valid = msgpack::visit_strings(bytes, &mut |s| {
            add_unpacked_string(views, buffers, message, s, 1)
        });
        if !valid {
            self.views.text.truncate(mark.0);
            self.views.segments.truncate(mark.1);
        }
        valid
    }
}

/// A string of a message: one that is itself a JSON document is unpacked, others are scanned as
/// text, and so is the text one encodes in base64. `depth` counts the layers (JSON in a string,
/// base64) already unpacked. The unpacking is out of line: nearly every string is plain.
#[inline]
fn add_unpacked_string(
    views: &mut ViewBuffer,
    buffers: &mut simd_json::Buffers,
    message: usize,
    s: &str,
    depth: usize,
) {
    let unpacked = depth < MAX_NESTING
        && json::starts_like_json(s)
        && add_nested_json(views, buffers, message, s, depth);
    if !unpacked {
        add_string_as_text(views, buffers, message, s, depth);
    }
}

/// A string that is not JSON: its views, and the text it encodes in base64, if it may.
#[inline]
fn add_string_as_text(
    views: &mut ViewBuffer,
    buffers: &mut simd_json::Buffers,
    message: usize,
    s: &str,
    depth: usize,
) {
    let shape = views.add_string(message, s);
    if depth < MAX_NESTING && (shape.may_be_base64 || s.len() > base64::MIN_EMBEDDED_LEN) {
        add_base64_text(views, buffers, message, s, shape.may_be_base64, depth);
    }
}

/// The strings of the JSON document `s`; `false` if it is not one.
#[inline(never)]
fn add_nested_json(
    views: &mut ViewBuffer,
    buffers: &mut simd_json::Buffers,
    message: usize,
    s: &str,
    depth: usize,
) -> bool {
    let mut inner = s.as_bytes().to_vec();
    let Some(tape) = json::parse(&mut inner, buffers) else {
        return false;
    };
    for nested in json::strings(&tape) {
        add_unpacked_string(views, buffers, message, nested, depth + 1);
    }
    true
}

/// The text `s` encodes in base64 (gzip'd or not), all of it or inside it, if it does.
#[inline(never)]
fn add_base64_text(
    views: &mut ViewBuffer,
    buffers: &mut simd_json::Buffers,
    message: usize,
    s: &str,
    may_be_whole: bool,
    depth: usize,
) {
    base64::visit_decoded(s, may_be_whole, &mut |encoded| {
        add_encoded(views, buffers, message, encoded, depth)
    });
}

fn add_encoded(
    views: &mut ViewBuffer,
    buffers: &mut simd_json::Buffers,
    message: usize,
    encoded: base64::Encoded,
    depth: usize,
) {
    match encoded {
        base64::Encoded::Text(text) => {
            add_unpacked_string(views, buffers, message, &text, depth + 1)
        }
        base64::Encoded::Compressed(data) => {
            binary::visit_text(&data, &mut |text| {
                add_unpacked_string(views, buffers, message, text, depth + 1)
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_rule_compiles_alone() {
        let failures: Vec<String> = BUILTIN
            .iter()
            .filter_map(|rule| {
                let pattern = Pattern::with_flags(rule.expression, BUILTIN_FLAGS).ok()?;
                pattern
                    .build::<hyperscan::Block>()
                    .err()
                    .map(|e| format!("{}: {e}", rule.id))
            })
            .collect();
        assert!(failures.is_empty(), "{failures:#?}");
    }

    #[test]
    fn excerpts_are_bounded_and_char_safe() {
        let text = "é".repeat(200);
        for (start, end) in [(Some(10), 20), (None, 200), (Some(0), 400), (None, 2)] {
            let e = excerpt(&text, start, end);
            assert!(e.len() <= 128, "{}", e.len());
        }
        assert_eq!(excerpt("abc <script> def", Some(4), 11), "abc <script> def");
    }
}
