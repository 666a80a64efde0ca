//! Corpus evaluation: how many lines of a file a policy blocks.

use std::time::Instant;

use crate::{Engine, MessageDirection, MessageKind, MessageRef, PolicyId, Verdict};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvalResult {
    pub total: usize,
    pub blocked: usize,
}

impl EvalResult {
    /// Blocked share in 0.0..=1.0 (0 for an empty corpus).
    pub fn share(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.blocked as f64 / self.total as f64
        }
    }
}

/// Runs each line as one inbound text message through a fresh connection of `policy`
/// (so rate limits never interfere); returns (total, blocked). Detect-only verdicts count as
/// blocked too: they are detections.
pub fn blocked_share(
    engine: &Engine,
    policy: PolicyId,
    lines: impl Iterator<Item = String>,
) -> EvalResult {
    let mut result = EvalResult::default();
    let Ok(mut scratch) = engine.alloc_scratch() else {
        return result;
    };
    let now = Instant::now();
    for line in lines {
        let mut conn = engine.new_connection(policy, None, 0);
        let message = MessageRef {
            direction: MessageDirection::Inbound,
            kind: MessageKind::Text,
            compressed: false,
            payload: line.as_bytes(),
            largest_frame: line.len(),
        };
        result.total += 1;
        if !matches!(
            engine.inspect(&mut conn, &mut scratch, now, message),
            Verdict::Allow
        ) {
            result.blocked += 1;
        }
    }
    result
}
