//! Inspection throughput: raw Hyperscan scans of the full built-in database on benign text
//! (64 B, 1 KiB, 16 KiB), the same rules as a loop of `regex` patterns, the full pipeline
//! (decoding, extraction, confirmation) on benign JSON, and batched small messages.

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use frameguard_benches::{benign_text, corpus_lines, RegexLoop};
use frameguard_inspect::{
    Engine, InspectionPolicy, MessageDirection, MessageKind, MessageRef, Verdict,
};

const SIZES: [usize; 3] = [64, 1024, 16 * 1024];

fn engine() -> Engine {
    Engine::new(&[("default".to_owned(), InspectionPolicy::default())]).expect("engine")
}

fn text(payload: &[u8]) -> MessageRef<'_> {
    MessageRef {
        direction: MessageDirection::Inbound,
        kind: MessageKind::Text,
        compressed: false,
        payload,
        largest_frame: payload.len(),
    }
}

fn raw_scan(c: &mut Criterion) {
    let chat = corpus_lines("benign-chat.txt");
    let engine = engine();
    let scratch = engine.alloc_scratch().expect("scratch");
    let regexes = RegexLoop::new();
    let mut group = c.benchmark_group("raw-scan");
    for size in SIZES {
        let data = benign_text(&chat, size);
        group.throughput(Throughput::Bytes(data.len() as u64));
        group.bench_with_input(
            BenchmarkId::new("hyperscan", size),
            data.as_bytes(),
            |b, data| b.iter(|| engine.raw_scan(&scratch, black_box(data)).expect("scan")),
        );
        group.bench_with_input(
            BenchmarkId::new("regex-loop", size),
            data.as_bytes(),
            |b, data| b.iter(|| regexes.matching_rules(black_box(data))),
        );
    }
    group.finish();
}

fn pipeline(c: &mut Criterion) {
    let chat = corpus_lines("benign-chat.txt");
    let json = corpus_lines("benign-json.txt");
    let engine = engine();
    let policy = engine.policy("default").expect("policy");
    let mut scratch = engine.alloc_scratch().expect("scratch");
    let mut group = c.benchmark_group("inspect");
    for size in SIZES {
        let data = benign_text(&chat, size);
        group.throughput(Throughput::Bytes(data.len() as u64));
        group.bench_with_input(
            BenchmarkId::new("chat-text", size),
            data.as_bytes(),
            |b, data| {
                let mut conn = engine.new_connection(policy, None, 0);
                b.iter(|| {
                    let verdict = engine.inspect(
                        &mut conn,
                        &mut scratch,
                        Instant::now(),
                        text(black_box(data)),
                    );
                    assert_eq!(verdict, Verdict::Allow);
                })
            },
        );
    }
    let json_bytes: usize = json.iter().map(String::len).sum();
    group.throughput(Throughput::Bytes(json_bytes as u64));
    group.bench_function("json-corpus", |b| {
        let mut conn = engine.new_connection(policy, None, 0);
        b.iter(|| {
            for line in &json {
                black_box(engine.inspect(
                    &mut conn,
                    &mut scratch,
                    Instant::now(),
                    text(line.as_bytes()),
                ));
            }
        })
    });
    group.finish();
}

fn batches(c: &mut Criterion) {
    let chat = corpus_lines("benign-chat.txt");
    let engine = engine();
    let policy = engine.policy("default").expect("policy");
    let mut scratch = engine.alloc_scratch().expect("scratch");
    let messages: Vec<String> = chat
        .chunks(2)
        .take(32)
        .map(|pair| benign_text(pair, 64))
        .collect();
    let refs: Vec<MessageRef<'_>> = messages.iter().map(|m| text(m.as_bytes())).collect();
    let bytes: usize = messages.iter().map(String::len).sum();
    let mut group = c.benchmark_group("batch-32x64B");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("one-scan", |b| {
        let mut conn = engine.new_connection(policy, None, 0);
        b.iter_batched_ref(
            || Vec::with_capacity(refs.len()),
            |out| {
                engine.inspect_batch(
                    &mut conn,
                    &mut scratch,
                    Instant::now(),
                    black_box(&refs),
                    out,
                )
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("scan-per-message", |b| {
        let mut conn = engine.new_connection(policy, None, 0);
        b.iter(|| {
            for message in &refs {
                black_box(engine.inspect(&mut conn, &mut scratch, Instant::now(), *message));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, raw_scan, pipeline, batches);
criterion_main!(benches);
