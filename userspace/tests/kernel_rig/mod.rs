//! Shared by the kernel_* and splice_* tests: four connected sockets standing for the upstream
//! server, the proxy's two sides and the client, a deterministic frame stream and its checker,
//! and the host measurements the tests assert on. Each test binary uses a different part.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use frameguard::kernel::KernelPath;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Bound of every wait that should finish quickly.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// The kernel tests run one at a time: they measure CPU and memory of the whole process.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The loaded kernel path, or None when FRAMEGUARD_SKIP_EBPF_TESTS=1. Anything else that keeps
/// it from loading fails the test.
pub fn kernel_or_skip() -> Option<KernelPath> {
    if std::env::var("FRAMEGUARD_SKIP_EBPF_TESTS").as_deref() == Ok("1") {
        eprintln!("FRAMEGUARD_SKIP_EBPF_TESTS=1: skipping an eBPF test");
        return None;
    }
    match KernelPath::load() {
        Ok(kernel) => Some(kernel),
        Err(reason) => panic!(
            "eBPF unavailable: {reason} (run as root on Linux 6.x with the nightly toolchain and \
             bpf-linker installed, or set FRAMEGUARD_SKIP_EBPF_TESTS=1 to skip)"
        ),
    }
}

/// The start of a kernel test: the turn to run (one at a time), the loaded kernel path, and
/// where the kernel log stood. None when FRAMEGUARD_SKIP_EBPF_TESTS=1.
pub async fn kernel_test() -> Option<(tokio::sync::MutexGuard<'static, ()>, KernelPath, Dmesg)> {
    let serial = SERIAL.lock().await;
    let kernel = kernel_or_skip()?;
    Some((serial, kernel, Dmesg::start()))
}

/// upstream_peer -> [upstream | proxy | client] -> client_peer
pub struct Rig {
    pub upstream_peer: TcpStream,
    pub upstream: TcpStream,
    pub client: TcpStream,
    pub client_peer: TcpStream,
}

async fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (a, b) = tokio::join!(TcpStream::connect(addr), listener.accept());
    let (a, b) = (a.unwrap(), b.unwrap().0);
    a.set_nodelay(true).unwrap();
    b.set_nodelay(true).unwrap();
    (a, b)
}

pub async fn rig() -> Rig {
    let (upstream_peer, upstream) = pair().await;
    let (client, client_peer) = pair().await;
    Rig {
        upstream_peer,
        upstream,
        client,
        client_peer,
    }
}

/// An endless stream of binary frames of `payload` bytes each, whose payload bytes depend on
/// the frame number, so a lost, doubled or reordered byte shows.
#[derive(Clone)]
pub struct Frames {
    payload: usize,
    frame: u64,
    /// Position inside the current frame's encoding (header then payload).
    at: usize,
    header: Vec<u8>,
}

impl Frames {
    pub fn new(payload: usize) -> Frames {
        let mut header = vec![0x82];
        match payload {
            n if n < 126 => header.push(n as u8),
            n if n <= 0xffff => {
                header.push(126);
                header.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                header.push(127);
                header.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        Frames {
            payload,
            frame: 0,
            at: 0,
            header,
        }
    }

    /// Bytes of one whole frame.
    pub fn frame_len(&self) -> usize {
        self.header.len() + self.payload
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for byte in buf {
            *byte = if self.at < self.header.len() {
                self.header[self.at]
            } else {
                let j = (self.at - self.header.len()) as u64;
                (self.frame.wrapping_mul(31).wrapping_add(j * 7)) as u8
            };
            self.at += 1;
            if self.at == self.frame_len() {
                self.at = 0;
                self.frame += 1;
            }
        }
    }
}

/// Write `total` bytes of `frames` (whole frames when `total` is a multiple of a frame).
pub async fn send(stream: &mut TcpStream, frames: &mut Frames, total: u64) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = total;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        frames.fill(&mut buf[..n]);
        stream.write_all(&buf[..n]).await.unwrap();
        left -= n as u64;
    }
}

/// Like `send`, but never more than `window` bytes ahead of what the reader reported in
/// `received`: a client that keeps up, as far as the sender is concerned.
pub async fn send_paced(
    stream: &mut TcpStream,
    frames: &mut Frames,
    total: u64,
    received: &AtomicU64,
    window: u64,
) {
    let chunk = 64 * 1024;
    let mut sent = 0;
    while sent < total {
        while sent > received.load(Ordering::Relaxed) + window {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let n = (total - sent).min(chunk);
        send(stream, frames, n).await;
        sent += n;
    }
}

/// Read exactly `total` bytes and compare them with `frames`; panics at the first difference.
pub async fn receive(stream: &mut TcpStream, frames: &mut Frames, total: u64) {
    receive_counting(stream, frames, total, &AtomicU64::new(0)).await
}

/// `receive`, adding every byte read to `received`.
pub async fn receive_counting(
    stream: &mut TcpStream,
    frames: &mut Frames,
    total: u64,
    received: &AtomicU64,
) {
    let mut got = vec![0u8; 64 * 1024];
    let mut want = vec![0u8; 64 * 1024];
    let mut offset = 0u64;
    while offset < total {
        let max = (total - offset).min(got.len() as u64) as usize;
        let n = tokio::time::timeout(IO_TIMEOUT, stream.read(&mut got[..max]))
            .await
            .unwrap_or_else(|_| panic!("no data for {IO_TIMEOUT:?} at byte {offset} of {total}"))
            .unwrap();
        assert!(n > 0, "stream ended at byte {offset} of {total}");
        frames.fill(&mut want[..n]);
        if got[..n] != want[..n] {
            let at = (0..n).find(|&i| got[i] != want[i]).unwrap();
            panic!("byte {} differs", offset + at as u64);
        }
        offset += n as u64;
        received.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// New kernel log lines since `start` that report a kernel warning or bug.
pub struct Dmesg {
    lines: usize,
}

fn dmesg() -> Vec<String> {
    let out = std::process::Command::new("dmesg")
        .output()
        .expect("dmesg runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

impl Dmesg {
    pub fn start() -> Dmesg {
        Dmesg {
            lines: dmesg().len(),
        }
    }

    /// Panics when the kernel logged a WARNING or BUG since `start`.
    pub fn check(self) {
        let lines = dmesg();
        let new = lines.get(self.lines..).unwrap_or(&lines[..]);
        let bad: Vec<&String> = new
            .iter()
            .filter(|line| line.contains("WARNING:") || line.contains("BUG:"))
            .collect();
        assert!(bad.is_empty(), "the kernel logged: {bad:#?}");
    }
}

fn proc_field(path: &str, name: &str) -> u64 {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from {path}"))
}

pub fn mem_available_bytes() -> u64 {
    proc_field("/proc/meminfo", "MemAvailable:") * 1024
}

pub fn rss_bytes() -> u64 {
    proc_field("/proc/self/status", "VmRSS:") * 1024
}

/// The largest socket buffers TCP autotuning may grow to: (receive, send).
pub fn tcp_buffer_max() -> (u64, u64) {
    let max = |path: &str| -> u64 {
        std::fs::read_to_string(path)
            .unwrap()
            .split_whitespace()
            .nth(2)
            .unwrap()
            .parse()
            .unwrap()
    };
    (
        max("/proc/sys/net/ipv4/tcp_rmem"),
        max("/proc/sys/net/ipv4/tcp_wmem"),
    )
}

/// CPU time (user + system, all threads) this process has used.
pub fn cpu_time() -> Duration {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}
