//! Inspection engine.
