//! permessage-deflate inflation of a conversation (consecutive chat JSON messages), compressed
//! with context takeover (each message may refer back to the ones before) and without (each
//! message stands alone). Throughput counts inflated bytes.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use frameguard_benches::{chat_json, Deflater, MESSAGE_SIZES};
use frameguard_inspect::inflate::Inflater;
use frameguard_inspect::DEFAULT_INFLATE_LIMIT;

/// Messages per conversation: enough for the shared window to matter.
const MESSAGES: u64 = 32;

fn inflate(c: &mut Criterion) {
    let mut group = c.benchmark_group("inflate");
    for size in MESSAGE_SIZES {
        let messages: Vec<String> = (0..MESSAGES).map(|seed| chat_json(size, seed)).collect();
        let inflated: usize = messages.iter().map(String::len).sum();
        group.throughput(Throughput::Bytes(inflated as u64));
        for (name, context_takeover) in [("context-takeover", true), ("no-context-takeover", false)]
        {
            let mut deflater = Deflater::new(context_takeover);
            let wire: Vec<Vec<u8>> = messages
                .iter()
                .map(|message| deflater.compress(message.as_bytes()))
                .collect();
            let compressed: usize = wire.iter().map(Vec::len).sum();
            // The ratio explains the timings: takeover leaves less input per inflated byte.
            eprintln!("inflate/{name}/{size}: {inflated} bytes sent as {compressed}");
            group.bench_with_input(BenchmarkId::new(name, size), &wire, |b, wire| {
                let mut out = Vec::new();
                // With takeover the conversation must start from a fresh window every pass; the
                // inflater's allocation is not timed.
                b.iter_batched_ref(
                    || Inflater::new(15, !context_takeover),
                    |inflater| {
                        for message in wire {
                            inflater
                                .inflate(message, DEFAULT_INFLATE_LIMIT, &mut out)
                                .expect("inflates");
                            black_box(&out);
                        }
                    },
                    BatchSize::PerIteration,
                )
            });
        }
    }
    group.finish();
}

criterion_group!(benches, inflate);
criterion_main!(benches);
