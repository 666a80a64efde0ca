//! Verdicts on relayed messages: the seam between the relay and the inspection engine.

use frameguard_codec::{CloseCode, Event};

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
}

/// A direction that no policy inspects.
pub struct PassThrough;

impl MessageInspector for PassThrough {
    fn inspect(&mut self, _: Direction, events: &[Event], decisions: &mut Vec<Decision>) {
        decisions.extend(events.iter().map(|_| Decision::Forward));
    }
}
