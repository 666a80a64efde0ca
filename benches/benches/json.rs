//! JSON extraction as the engine runs it on a text message: copy the body into a reused buffer
//! (simd-json parses in place), build the tape, walk every key and string value.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use frameguard_benches::{chat_json, MESSAGE_SIZES};
use frameguard_inspect::extract::json;

fn extract(c: &mut Criterion) {
    let mut group = c.benchmark_group("json-extract");
    for size in MESSAGE_SIZES {
        let doc = chat_json(size, 0);
        group.throughput(Throughput::Bytes(doc.len() as u64));
        group.bench_with_input(BenchmarkId::new("chat", size), doc.as_bytes(), |b, doc| {
            let mut buffers = simd_json::Buffers::default();
            let mut buf = Vec::new();
            b.iter(|| {
                buf.clear();
                buf.extend_from_slice(black_box(doc));
                let tape = json::parse(&mut buf, &mut buffers).expect("valid JSON");
                json::strings(&tape).map(str::len).sum::<usize>()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, extract);
criterion_main!(benches);
