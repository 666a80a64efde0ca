//! Verdicts on relayed messages: the seam between the relay and the inspection engine, and the
//! audit log of every detection.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use frameguard_codec::{CloseCode, Event, OpCode, RSV1};
use frameguard_inspect::{
    ConnectionState, Detection, Engine, MessageDirection, MessageKind, MessageRef, Scratch, Tag,
    Verdict,
};
use tracing::warn;

use crate::app::Shared;
use crate::metrics::TagLabel;
use crate::relay::Direction;

/// What the relay does with one decoded event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Forward,
    /// Close the sender with this code and reason; the event is not forwarded.
    Close(CloseCode, &'static str),
}

/// Decides on the events one read produced, as a batch, pushing one decision per event.
pub trait MessageInspector: Send {
    fn inspect(&mut self, direction: Direction, events: &[Event], decisions: &mut Vec<Decision>);

    /// Decides on text that travels beside the messages (a handshake's query parameters),
    /// pushing one decision per item.
    fn inspect_metadata(
        &mut self,
        direction: Direction,
        items: &[&[u8]],
        decisions: &mut Vec<Decision>,
    );
}

/// A direction that no policy inspects.
pub struct PassThrough;

impl MessageInspector for PassThrough {
    fn inspect(&mut self, _: Direction, events: &[Event], decisions: &mut Vec<Decision>) {
        decisions.extend(events.iter().map(|_| Decision::Forward));
    }

    fn inspect_metadata(&mut self, _: Direction, items: &[&[u8]], decisions: &mut Vec<Decision>) {
        decisions.extend(items.iter().map(|_| Decision::Forward));
    }
}

/// Who a connection is, for audit events.
pub struct AuditContext {
    pub connection_id: u64,
    pub client: SocketAddr,
    pub route: String,
    pub policy: String,
}

thread_local! {
    /// Hyperscan scratch of this worker thread, one per live engine (a reload makes a new
    /// engine while connections on the old one go on).
    static SCRATCH: RefCell<Vec<(Weak<Engine>, Scratch)>> = const { RefCell::new(Vec::new()) };
}

/// Runs one direction of a connection through the engine. Both directions of a connection
/// share its `ConnectionState` (rate buckets, deflate contexts).
pub struct EngineInspector {
    pub engine: Arc<Engine>,
    pub state: Arc<Mutex<ConnectionState>>,
    pub audit: Arc<AuditContext>,
    pub shared: Arc<Shared>,
}

impl EngineInspector {
    fn with_scratch<R>(&self, f: impl FnOnce(&mut Scratch) -> R) -> Option<R> {
        SCRATCH.with(|slots| {
            let mut slots = slots.borrow_mut();
            // A Weak that no longer upgrades belongs to a freed engine, whose address a new
            // engine may reuse: drop those before comparing.
            slots.retain(|(engine, _)| engine.strong_count() > 0);
            let index = match slots
                .iter()
                .position(|(engine, _)| std::ptr::eq(engine.as_ptr(), Arc::as_ptr(&self.engine)))
            {
                Some(index) => index,
                None => {
                    let scratch = self.engine.alloc_scratch().ok()?;
                    slots.push((Arc::downgrade(&self.engine), scratch));
                    slots.len() - 1
                }
            };
            Some(f(&mut slots[index].1))
        })
    }

    fn audit(&self, direction: Direction, detection: &Detection, action: &str) {
        let metrics = &self.shared.metrics;
        let tag = TagLabel {
            tag: detection.tag.as_str().to_owned(),
        };
        match action {
            "blocked" => metrics.blocked.get_or_create(&tag).inc(),
            _ => metrics.detect_only.get_or_create(&tag).inc(),
        };
        if detection.tag == Tag::EngineError {
            metrics.inspection_errors.inc();
        }
        warn!(
            target: "frameguard::audit",
            connection_id = self.audit.connection_id,
            client_ip = %self.audit.client.ip(),
            route = %self.audit.route,
            policy = %self.audit.policy,
            direction = direction.as_str(),
            tag = detection.tag.as_str(),
            rule_id = %detection.rule_id,
            excerpt = %detection.excerpt,
            action,
            "detection"
        );
    }
}

fn message_direction(direction: Direction) -> MessageDirection {
    match direction {
        Direction::Inbound => MessageDirection::Inbound,
        Direction::Outbound => MessageDirection::Outbound,
    }
}

impl MessageInspector for EngineInspector {
    fn inspect(&mut self, direction: Direction, events: &[Event], decisions: &mut Vec<Decision>) {
        let messages: Vec<MessageRef<'_>> = events
            .iter()
            .map(|event| match event {
                Event::Message(msg) => MessageRef {
                    direction: message_direction(direction),
                    kind: if msg.opcode == OpCode::Text {
                        MessageKind::Text
                    } else {
                        MessageKind::Binary
                    },
                    compressed: msg.rsv & RSV1 != 0,
                    payload: &msg.payload,
                    largest_frame: msg.fragments.iter().copied().max().unwrap_or(0),
                },
                // What the peer may log or show: a ping's or pong's data, a close's reason.
                Event::Control(ctrl) => metadata(
                    direction,
                    match ctrl.close_code_reason() {
                        Some((_, reason)) => reason.as_bytes(),
                        None => &ctrl.payload,
                    },
                ),
            })
            .collect();
        self.decide(direction, &messages, decisions);
    }

    fn inspect_metadata(
        &mut self,
        direction: Direction,
        items: &[&[u8]],
        decisions: &mut Vec<Decision>,
    ) {
        let items: Vec<MessageRef<'_>> =
            items.iter().map(|item| metadata(direction, item)).collect();
        self.decide(direction, &items, decisions);
    }
}

fn metadata(direction: Direction, payload: &[u8]) -> MessageRef<'_> {
    MessageRef {
        direction: message_direction(direction),
        kind: MessageKind::Metadata,
        compressed: false,
        payload,
        largest_frame: payload.len(),
    }
}

impl EngineInspector {
    /// Runs `messages` through the engine as one batch, pushing one decision each.
    fn decide(
        &mut self,
        direction: Direction,
        messages: &[MessageRef<'_>],
        decisions: &mut Vec<Decision>,
    ) {
        let started = Instant::now();
        let mut verdicts = Vec::with_capacity(messages.len());
        let scanned = {
            let mut state = self
                .state
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            self.with_scratch(|scratch| {
                self.engine
                    .inspect_batch(&mut state, scratch, started, messages, &mut verdicts)
            })
        };
        let metrics = &self.shared.metrics;
        metrics
            .inspection_latency
            .observe(started.elapsed().as_secs_f64());
        let data_messages = messages
            .iter()
            .filter(|m| m.kind != MessageKind::Metadata)
            .count();
        metrics.messages_inspected.inc_by(data_messages as u64);
        if scanned.is_none() {
            metrics.inspection_errors.inc();
            decisions.extend(
                messages
                    .iter()
                    .map(|_| Decision::Close(CloseCode::INTERNAL, "Internal error")),
            );
            return;
        }
        for verdict in verdicts {
            decisions.push(match verdict {
                Verdict::Allow => Decision::Forward,
                Verdict::DetectOnly(detection) => {
                    self.audit(direction, &detection, "detect-only");
                    Decision::Forward
                }
                Verdict::Block {
                    close_code,
                    reason,
                    detection,
                } => {
                    self.audit(direction, &detection, "blocked");
                    Decision::Close(CloseCode(close_code), reason)
                }
            });
        }
    }
}
