//! Codec stages on their own: frame header parsing, unmasking (each SIMD implementation against
//! the scalar ones), UTF-8 validation (the streaming validator against `std::str::from_utf8`) and
//! reassembly of fragmented messages.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use frameguard_benches::{chat_text, Script};
use frameguard_codec::mask::{apply_mask_by_definition, implementations};
use frameguard_codec::utf8::Utf8Validator;
use frameguard_codec::{
    encode_message, Decoder, DecoderConfig, Event, FrameHeader, Message, OpCode, Role,
};

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// Headers parsed per iteration, back to back, so the timer's own cost is amortized.
const HEADERS: usize = 1024;

fn frame_header(c: &mut Criterion) {
    let mut group = c.benchmark_group("frame-header");
    group.throughput(Throughput::Elements(HEADERS as u64));
    // One payload length per length encoding: 7-bit, 16-bit and 64-bit.
    for (form, payload_len) in [("small", 100), ("medium", 1000), ("large", 100_000)] {
        for (masking, mask) in [("unmasked", None), ("masked", Some(KEY))] {
            let header = FrameHeader {
                fin: true,
                rsv: 0,
                opcode: OpCode::Binary,
                mask,
                payload_len,
            };
            let mut headers = BytesMut::new();
            for _ in 0..HEADERS {
                header.encode(&mut headers);
            }
            group.bench_with_input(
                BenchmarkId::new(form, masking),
                &headers[..],
                |b, headers| {
                    b.iter(|| {
                        let mut at = 0;
                        while at < headers.len() {
                            let parsed = FrameHeader::parse(black_box(&headers[at..]));
                            let (header, len) = parsed.expect("valid").expect("complete");
                            black_box(header);
                            at += len;
                        }
                    })
                },
            );
        }
    }
    group.finish();
}

fn unmask(c: &mut Criterion) {
    let mut group = c.benchmark_group("unmask");
    let mut candidates = implementations();
    candidates.push(("by-definition", apply_mask_by_definition));
    for size in [64, 1024, 16 * 1024, 1 << 20] {
        group.throughput(Throughput::Bytes(size as u64));
        // XOR costs the same whatever the bytes; masking in place over and over is fine.
        let mut buf = vec![0u8; size];
        for (name, implementation) in &candidates {
            group.bench_function(BenchmarkId::new(*name, size), |b| {
                b.iter(|| implementation(black_box(&mut buf[..]), KEY, 0))
            });
        }
    }
    group.finish();
}

/// Fragments per message in the fragmented variants.
const FRAGMENTS: usize = 16;

fn utf8(c: &mut Criterion) {
    for script in [Script::Ascii, Script::Multibyte] {
        let mut group = c.benchmark_group(format!("utf8-{}", script.name()));
        for size in [1024, 64 * 1024] {
            let text = chat_text(script, size, 0).into_bytes();
            group.throughput(Throughput::Bytes(text.len() as u64));
            group.bench_with_input(BenchmarkId::new("std", size), &text, |b, text| {
                b.iter(|| std::str::from_utf8(black_box(text)).expect("UTF-8"))
            });
            // Chunk ends fall inside multibyte characters, so the carry path runs too.
            let chunk = text.len().div_ceil(FRAGMENTS);
            for (name, chunk) in [("validator", text.len()), ("validator-16-chunks", chunk)] {
                group.bench_with_input(BenchmarkId::new(name, size), &text, |b, text| {
                    b.iter(|| {
                        let mut validator = Utf8Validator::new();
                        for piece in black_box(text).chunks(chunk) {
                            validator.feed(piece).expect("UTF-8");
                        }
                        validator.finish().expect("complete")
                    })
                });
            }
        }
        group.finish();
    }
}

/// Decoding server frames: unmasked, so that the timings are the reassembly's alone (unmasking
/// and UTF-8 have their own groups) and Binary for the same reason.
fn decoder() -> Decoder {
    Decoder::new(DecoderConfig {
        role: Role::Client,
        allowed_rsv: 0,
        max_message_size: 1 << 20,
    })
}

/// Appends `payload` as one Binary message cut into `fragments` frames of (nearly) equal size.
fn encode_fragmented(wire: &mut BytesMut, payload: &[u8], fragments: usize) {
    let piece = payload.len().div_ceil(fragments);
    let message = Message {
        opcode: OpCode::Binary,
        rsv: 0,
        payload: Bytes::copy_from_slice(payload),
        fragments: payload.chunks(piece).map(<[u8]>::len).collect(),
    };
    encode_message(wire, &message, || None);
}

/// Decodes every message in `wire`, returning how many there were.
fn decode_all(wire: &mut BytesMut) -> usize {
    let mut decoder = decoder();
    let mut messages = 0;
    while let Some(event) = decoder.decode(wire).expect("valid frames") {
        if let Event::Message(message) = event {
            black_box(message);
            messages += 1;
        }
    }
    messages
}

fn reassembly(c: &mut Criterion) {
    let mut group = c.benchmark_group("reassembly-64KiB");
    let payload = chat_text(Script::Ascii, 64 * 1024, 0).into_bytes();
    group.throughput(Throughput::Bytes(payload.len() as u64));
    // One frame is the zero-copy baseline the fragmented forms are compared with.
    for fragments in [1, FRAGMENTS, 256] {
        let mut wire = BytesMut::new();
        encode_fragmented(&mut wire, &payload, fragments);
        group.bench_function(BenchmarkId::new("fragments", fragments), |b| {
            // Decoding consumes the buffer; the copy that restores it is not timed.
            b.iter_batched_ref(
                || wire.clone(),
                |wire| assert_eq!(decode_all(wire), 1),
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();

    const MESSAGES: usize = 1024;
    let mut group = c.benchmark_group("reassembly-small-messages");
    group.throughput(Throughput::Elements(MESSAGES as u64));
    for fragments in [1, 4] {
        let mut wire = BytesMut::new();
        for seed in 0..MESSAGES as u64 {
            encode_fragmented(
                &mut wire,
                chat_text(Script::Ascii, 64, seed).as_bytes(),
                fragments,
            );
        }
        group.bench_function(BenchmarkId::new("64B-fragments", fragments), |b| {
            b.iter_batched_ref(
                || wire.clone(),
                |wire| assert_eq!(decode_all(wire), MESSAGES),
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, frame_header, unmask, utf8, reassembly);
criterion_main!(benches);
