//! `system { worker-threads 0; graceful-shutdown-timeout-secs 30; connection-steering "reuseport" }`

use kdl::KdlNode;

use super::Decoder;
use crate::model::{Steering, System};

const KEYS: &[&str] = &[
    "worker-threads",
    "graceful-shutdown-timeout-secs",
    "connection-steering",
];

/// Far more threads than any machine has cores; bounds what a typo can spawn.
const MAX_WORKER_THREADS: u32 = 1024;

pub(super) fn decode(decoder: &mut Decoder<'_>, node: &KdlNode) -> System {
    let mut system = System::default();
    let children = decoder.block(node);
    decoder.each_child(Some("system"), children, KEYS, &[], |decoder, child| {
        match child.name().value() {
            "worker-threads" => {
                if let Some(threads) = decoder.count(child, 0, MAX_WORKER_THREADS) {
                    system.worker_threads = threads;
                }
            }
            "graceful-shutdown-timeout-secs" => {
                if let Some(timeout) = decoder.seconds(child, 0) {
                    system.graceful_shutdown_timeout = timeout;
                }
            }
            "connection-steering" => {
                let options = [
                    ("reuseport", Steering::Reuseport),
                    ("reuseport-cpu", Steering::ReuseportCpu),
                    ("acceptor", Steering::Acceptor),
                ];
                if let Some(steering) = decoder.choice(child, &options) {
                    system.connection_steering = steering;
                }
            }
            _ => return false,
        }
        true
    });
    system
}
