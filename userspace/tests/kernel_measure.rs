//! Measurement, not a regression test (ignored by default): the uninspected upstream -> client
//! direction carried by a plain userspace copy, by the splice(2) relay and by the sockmap
//! program, at 64-byte and 16 KiB frames and with a fan-out of many connections. Reports
//! throughput, whole-machine CPU seconds per GB (busy time from /proc/stat, softirq included)
//! and the relay thread's own CPU seconds per GB. Every run checks the byte count.
//!
//!     cargo test --release -p frameguard --test kernel_measure -- --ignored --nocapture
//!
//! FRAMEGUARD_MEASURE_SECS sets the length of one run (default 5), FRAMEGUARD_MEASURE_REPEAT
//! the runs per cell (default 3; the median is reported).

mod kernel_rig;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use frameguard::kernel::KernelPath;
use frameguard::splice::{Ended, SpliceRelay};
use kernel_rig::{rig, Frames, Rig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    Copy,
    Splice,
    Sockmap,
}

struct Workload {
    name: &'static str,
    payload: usize,
    /// Frames per write: 1 writes each frame with its own syscall.
    frames_per_write: usize,
    connections: usize,
}

const WORKLOADS: [Workload; 4] = [
    Workload {
        name: "64 B frames, one write each",
        payload: 62,
        frames_per_write: 1,
        connections: 1,
    },
    Workload {
        name: "16 KiB frames",
        payload: 16 * 1024 - 4,
        frames_per_write: 1,
        connections: 1,
    },
    Workload {
        name: "256 KiB frames",
        payload: 256 * 1024 - 10,
        frames_per_write: 1,
        connections: 1,
    },
    Workload {
        name: "fan-out: 64 connections, 1 KiB frames, 16 per write",
        payload: 1020,
        frames_per_write: 16,
        connections: 64,
    },
];

/// Busy jiffies of the whole machine (everything but idle and iowait; softirq included).
fn machine_busy() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap())
        .collect();
    let total: u64 = fields.iter().take(8).sum();
    total - fields[3] - fields[4]
}

fn jiffies_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

fn thread_cpu() -> Duration {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_THREAD, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

async fn copy(client: &TcpStream, upstream: &TcpStream) -> u64 {
    let mut buf = vec![0u8; 64 * 1024];
    let mut moved = 0;
    loop {
        upstream.readable().await.unwrap();
        let n = match upstream.try_read(&mut buf) {
            Ok(0) => return moved,
            Ok(n) => n,
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(err) => panic!("{err}"),
        };
        let mut at = 0;
        while at < n {
            client.writable().await.unwrap();
            match client.try_write(&buf[at..n]) {
                Ok(k) => at += k,
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(err) => panic!("{err}"),
            }
        }
        moved += n as u64;
    }
}

struct Sample {
    mb_per_s: f64,
    machine_cpu_s_per_gb: f64,
    relay_cpu_s_per_gb: f64,
    evictions: u64,
    failures: u64,
}

/// Relay the proxy sides of `pairs` on this thread; returns the bytes moved, the thread's CPU
/// and the evictions.
fn relay_thread(
    path: Path,
    kernel: Option<KernelPath>,
    pairs: Vec<(std::net::TcpStream, std::net::TcpStream)>,
) -> (u64, Duration, u64, u64) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let pairs: Vec<(TcpStream, TcpStream)> = pairs
            .into_iter()
            .map(|(c, u)| {
                (
                    TcpStream::from_std(c).unwrap(),
                    TcpStream::from_std(u).unwrap(),
                )
            })
            .collect();
        let cpu_before = thread_cpu();
        let runs = pairs.iter().map(|(client, upstream)| {
            let kernel = kernel.clone();
            async move {
                match path {
                    Path::Copy => (copy(client, upstream).await, 0, 0),
                    Path::Splice => {
                        let mut relay = SpliceRelay::new(client, upstream, Bytes::new()).unwrap();
                        let ended = relay.run(std::future::pending()).await.unwrap();
                        assert!(matches!(ended, Ended::UpstreamEnded { .. }));
                        (relay.totals().bytes(), 0, 0)
                    }
                    Path::Sockmap => {
                        let kernel = kernel.unwrap();
                        let mut spliced = kernel.splice(client, upstream, Bytes::new()).unwrap();
                        // A connection the kernel path had to fail (see kernel.rs on the drop
                        // while leaving the map) is counted, not hidden.
                        let failed = match spliced.run(std::future::pending()).await {
                            Ok(ended) => {
                                assert!(matches!(ended, Ended::UpstreamEnded { .. }));
                                0
                            }
                            Err(err) => {
                                eprintln!("sockmap connection failed: {err}");
                                1
                            }
                        };
                        (spliced.totals().bytes(), spliced.totals().evictions, failed)
                    }
                }
            }
        });
        let results = futures_util::future::join_all(runs).await;
        let cpu = thread_cpu() - cpu_before;
        let moved = results.iter().map(|r| r.0).sum();
        let evictions = results.iter().map(|r| r.1).sum();
        let failures = results.iter().map(|r| r.2).sum();
        (moved, cpu, evictions, failures)
    })
}

async fn sender(mut stream: TcpStream, workload: &Workload, stop: Arc<AtomicBool>) -> u64 {
    let mut frames = Frames::new(workload.payload);
    let mut buf = vec![0u8; frames.frame_len() * workload.frames_per_write];
    frames.fill(&mut buf);
    let mut sent = 0;
    while !stop.load(Ordering::Relaxed) {
        if stream.write_all(&buf).await.is_err() {
            // The relay failed this connection (reported by the relay thread).
            return sent;
        }
        sent += buf.len() as u64;
    }
    let _ = stream.shutdown().await;
    sent
}

async fn sink(mut stream: TcpStream, received: Arc<AtomicU64>) {
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        // An error: the relay failed this connection (reported by the relay thread).
        let n = stream.read(&mut buf).await.unwrap_or(0);
        if n == 0 {
            return;
        }
        received.fetch_add(n as u64, Ordering::Relaxed);
    }
}

fn measure(path: Path, workload: &Workload, kernel: Option<&KernelPath>, secs: u64) -> Sample {
    let peers = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let rigs: Vec<Rig> = peers.block_on(futures_util::future::join_all(
        (0..workload.connections).map(|_| rig()),
    ));
    let mut pairs = Vec::new();
    let mut ends = Vec::new();
    for rig in rigs {
        pairs.push((
            rig.client.into_std().unwrap(),
            rig.upstream.into_std().unwrap(),
        ));
        ends.push((rig.upstream_peer, rig.client_peer));
    }
    let kernel = kernel.cloned();
    let busy_before = machine_busy();
    let started = Instant::now();
    let relay = std::thread::spawn(move || relay_thread(path, kernel, pairs));
    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let sent: u64 = peers.block_on(async {
        let mut senders = Vec::new();
        let mut sinks = Vec::new();
        for (upstream_peer, client_peer) in ends {
            senders.push(sender(upstream_peer, workload, stop.clone()));
            sinks.push(sink(client_peer, received.clone()));
        }
        let timer = async {
            tokio::time::sleep(Duration::from_secs(secs)).await;
            stop.store(true, Ordering::Relaxed);
        };
        let (sent, _, ()) = tokio::join!(
            futures_util::future::join_all(senders),
            futures_util::future::join_all(sinks),
            timer
        );
        sent.iter().sum()
    });
    let elapsed = started.elapsed().as_secs_f64();
    let (moved, relay_cpu, evictions, failures) = relay.join().unwrap();
    let busy_after = machine_busy();
    if failures == 0 {
        assert_eq!(moved, sent, "{path:?}: the relay lost or added bytes");
        let got = received.load(Ordering::Relaxed);
        assert_eq!(got, sent, "{path:?}: the client missed bytes");
    }
    let gb = sent as f64 / 1e9;
    let machine = (busy_after - busy_before) as f64 / jiffies_per_second();
    Sample {
        mb_per_s: sent as f64 / 1e6 / elapsed,
        machine_cpu_s_per_gb: machine / gb,
        relay_cpu_s_per_gb: relay_cpu.as_secs_f64() / gb,
        evictions,
        failures,
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    values[values.len() / 2]
}

#[test]
#[ignore = "measurement: cargo test --release -p frameguard --test kernel_measure -- --ignored --nocapture"]
fn measure_copy_splice_and_sockmap() {
    let secs: u64 = std::env::var("FRAMEGUARD_MEASURE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let repeat: usize = std::env::var("FRAMEGUARD_MEASURE_REPEAT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let kernel = kernel_rig::kernel_or_skip();
    println!(
        "| workload | path | MB/s | machine CPU s/GB | relay thread CPU s/GB | evictions | failed |"
    );
    println!("|---|---|---|---|---|---|---|");
    for workload in &WORKLOADS {
        for path in [Path::Copy, Path::Splice, Path::Sockmap] {
            if path == Path::Sockmap && kernel.is_none() {
                continue;
            }
            let samples: Vec<Sample> = (0..repeat)
                .map(|_| measure(path, workload, kernel.as_ref(), secs))
                .collect();
            println!(
                "| {} | {:?} | {:.0} | {:.2} | {:.3} | {} | {} |",
                workload.name,
                path,
                median(samples.iter().map(|s| s.mb_per_s).collect()),
                median(samples.iter().map(|s| s.machine_cpu_s_per_gb).collect()),
                median(samples.iter().map(|s| s.relay_cpu_s_per_gb).collect()),
                samples.iter().map(|s| s.evictions).sum::<u64>(),
                samples.iter().map(|s| s.failures).sum::<u64>(),
            );
        }
    }
}
