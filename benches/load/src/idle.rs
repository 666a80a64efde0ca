//! `frameguard-load idle`: opens many WebSocket connections that send nothing and reports how much
//! the watched processes' resident memory grew per connection.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::time::Instant;

use crate::cli::{parse_seconds, thread_count, TargetArgs};
use crate::connect::connect_many;
use crate::proc_stats::{sample_tree, Sample};
use crate::report::{IdleReport, IdleWatch};
use crate::target::Target;

#[derive(clap::Args, Clone, Debug)]
pub struct IdleArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Connections to open and hold.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub conns: u32,
    /// Seconds to wait once all are open before memory is sampled, for the server to settle.
    #[arg(long, default_value = "1", value_parser = parse_seconds)]
    pub settle: Duration,
}

pub fn run(args: &IdleArgs) -> Result<IdleReport> {
    let target = Arc::new(Target::parse(&args.target.url)?);
    let conns = args.conns as usize;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(thread_count(args.target.threads))
        .enable_all()
        .build()?;
    let sample = || -> Result<Vec<Sample>> {
        args.target
            .watches
            .iter()
            .map(|w| sample_tree(w.pid).with_context(|| format!("sample {}={}", w.name, w.pid)))
            .collect()
    };

    let before = sample()?;
    let started = Instant::now();
    let mut connected = runtime.block_on(connect_many(
        &target,
        conns,
        args.target.connect_concurrency as usize,
    ));
    let connect_s = started.elapsed().as_secs_f64();
    std::thread::sleep(args.settle);
    let after = sample()?;
    let dropped = runtime.block_on(async {
        connected
            .streams
            .iter_mut()
            .map(|ws| ws.closed_by_peer())
            .filter(|&closed| closed)
            .count()
    });
    let established = connected.streams.len();
    // Closing happens as the runtime shuts down; the report does not wait for the server.
    drop(connected.streams);

    let watch = args
        .target
        .watches
        .iter()
        .zip(before.iter().zip(&after))
        .map(|(w, (before, after))| IdleWatch {
            name: w.name.clone(),
            pid: w.pid,
            rss_kib_before: before.rss_kib,
            rss_kib_after: after.rss_kib,
            kib_per_conn: (established > 0)
                .then(|| (after.rss_kib as f64 - before.rss_kib as f64) / established as f64),
        })
        .collect();
    Ok(IdleReport {
        tags: args.target.tag_map(),
        url: args.target.url.clone(),
        conns,
        established,
        connect_failures: connected.failures,
        first_error: connected.first_error,
        dropped,
        connect_s,
        watch,
    })
}
