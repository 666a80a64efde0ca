//! End to end: the real binary's echo server under its own load generator, for about a second
//! per case.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_frameguard-load");

/// A running `frameguard-load echo`, killed when dropped.
struct Echo {
    child: Child,
    addr: String,
}

impl Echo {
    fn start(fanout: u32) -> Echo {
        Echo::start_with(fanout, &[])
    }

    fn start_with(fanout: u32, extra: &[&str]) -> Echo {
        let mut child = Command::new(BIN)
            .args(["echo", "--listen", "127.0.0.1:0", "--threads", "1"])
            .args(["--fanout", &fanout.to_string(), "--exit-after", "60"])
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn echo");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the listening line");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Echo { child, addr }
    }

    fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the binary and parses its one JSON line.
fn json_of(args: &[&str]) -> Value {
    let output = Command::new(BIN).args(args).output().expect("run");
    assert!(
        output.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("one JSON line")
}

fn short_run(url: &str, extra: &[&str]) -> Value {
    let mut args = vec![
        "run",
        "--url",
        url,
        "--threads",
        "1",
        "--warmup",
        "0.2",
        "--duration",
        "0.8",
        "--drain",
        "1",
    ];
    args.extend_from_slice(extra);
    json_of(&args)
}

fn count(run: &Value, key: &str) -> u64 {
    run[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} in {run}"))
}

#[test]
fn closed_loop_counts_every_echo_and_watches_the_server() {
    let echo = Echo::start(1);
    let pid = format!("echo={}", echo.child.id());
    let run = short_run(
        &echo.url(),
        &[
            "--conns",
            "4",
            "--pipeline",
            "4",
            "--watch",
            &pid,
            "--tag",
            "config=direct",
        ],
    );
    assert_eq!(run["kind"], "run");
    assert_eq!(run["tags"]["config"], "direct");
    assert_eq!(count(&run, "connected"), 4);
    assert_eq!(count(&run, "errors"), 0, "{run}");
    assert_eq!(count(&run, "unanswered_at_end"), 0, "{run}");
    let round_trips = count(&run, "round_trips");
    assert!(round_trips > 100, "{run}");
    assert_eq!(count(&run, "recv_msgs"), round_trips);
    let p50 = run["latency_us"]["p50"].as_f64().unwrap();
    let p99 = run["latency_us"]["p99"].as_f64().unwrap();
    assert!(p50 > 0.0 && p50 <= p99, "{run}");
    let watch = &run["watch"][0];
    assert_eq!(watch["name"], "echo");
    assert!(count(watch, "rss_kib_end") > 0, "{run}");
}

#[test]
fn fan_out_answers_count_once_per_message() {
    let echo = Echo::start(3);
    let run = short_run(
        &echo.url(),
        &[
            "--conns",
            "2",
            "--pipeline",
            "2",
            "--size",
            "4096",
            "--expect-fanout",
            "3",
        ],
    );
    assert_eq!(count(&run, "errors"), 0, "{run}");
    let round_trips = count(&run, "round_trips");
    assert!(round_trips > 10, "{run}");
    let recv = count(&run, "recv_msgs");
    // At each edge of the window at most one message per connection is partly received.
    assert!(
        recv + 12 >= 3 * round_trips && recv <= 3 * round_trips + 12,
        "{run}"
    );
}

#[test]
fn resized_replies_keep_their_stamp_and_are_counted_in_bytes() {
    let echo = Echo::start_with(2, &["--reply-size", "16384"]);
    let args = [
        "--conns",
        "2",
        "--size",
        "64",
        "--expect-fanout",
        "2",
        "--expect-reply-size",
        "16384",
    ];
    let run = short_run(&echo.url(), &args);
    assert_eq!(count(&run, "errors"), 0, "{run}");
    assert_eq!(run["reply_size"].as_u64(), Some(16384), "{run}");
    let recv = run["mb_per_sec_recv"].as_f64().unwrap();
    let sent = run["mb_per_sec_sent"].as_f64().unwrap();
    // Two replies of 16 KiB for every 64-byte message, give or take the window's edges.
    assert!(recv > 400.0 * sent && recv < 600.0 * sent, "{run}");
    // Without the matching expectation every reply is a mismatch.
    let run = short_run(&echo.url(), &args[..6]);
    assert_eq!(count(&run, "errors"), 2, "{run}");
}

#[test]
fn wrong_fan_out_expectation_is_reported_as_an_error() {
    let echo = Echo::start(2);
    let run = short_run(&echo.url(), &["--conns", "1"]);
    assert_eq!(count(&run, "errors"), 1, "{run}");
    assert!(
        run["first_error"]
            .as_str()
            .is_some_and(|e| e.contains("does not match")),
        "{run}"
    );
}

#[test]
fn open_loop_keeps_the_offered_rate() {
    let echo = Echo::start(1);
    let run = short_run(
        &echo.url(),
        &["--conns", "4", "--rate", "2000", "--pipeline", "64"],
    );
    assert_eq!(count(&run, "errors"), 0, "{run}");
    let rate = run["msgs_per_sec"].as_f64().unwrap();
    assert!((1600.0..=2400.0).contains(&rate), "{run}");
}

#[test]
fn idle_connections_are_counted_and_memory_sampled() {
    let echo = Echo::start(1);
    let pid = format!("echo={}", echo.child.id());
    let idle = json_of(&[
        "idle",
        "--url",
        &echo.url(),
        "--conns",
        "50",
        "--settle",
        "0.2",
        "--watch",
        &pid,
    ]);
    assert_eq!(idle["kind"], "idle");
    assert_eq!(count(&idle, "established"), 50, "{idle}");
    assert_eq!(count(&idle, "dropped"), 0, "{idle}");
    assert!(idle["watch"][0]["kib_per_conn"].is_number(), "{idle}");
}

#[test]
fn nothing_listening_is_a_connect_failure_per_connection() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let run = short_run(&format!("ws://127.0.0.1:{port}/ws"), &["--conns", "3"]);
    assert_eq!(count(&run, "connect_failures"), 3, "{run}");
    assert_eq!(count(&run, "round_trips"), 0);
}

#[test]
fn non_loopback_targets_are_refused() {
    let output = Command::new(BIN)
        .args(["run", "--url", "ws://192.0.2.1:80/ws", "--duration", "1"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("loopback"));
}

#[test]
fn report_renders_the_records_of_a_run() {
    let echo = Echo::start(1);
    let direct = short_run(&echo.url(), &["--conns", "2", "--tag", "config=direct"]);
    let mut file = tempfile_in_target();
    writeln!(file.1, "{direct}").unwrap();
    writeln!(
        file.1,
        r#"{{"kind":"unavailable","config":"kernel","reason":"kernel data path: not available in this build"}}"#
    )
    .unwrap();
    let output = Command::new(BIN)
        .args(["report", "--input", &file.0])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let markdown = String::from_utf8(output.stdout).unwrap();
    assert!(
        markdown.contains("| 2 conns × 64 B × p1 | direct |"),
        "{markdown}"
    );
    assert!(
        markdown.contains("kernel data path: not available in this build"),
        "{markdown}"
    );
    std::fs::remove_file(&file.0).unwrap();
}

/// A fresh file under the target directory (no tempfile dependency for one file).
fn tempfile_in_target() -> (String, std::fs::File) {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join(format!("report-{}.jsonl", std::process::id()));
    let file = std::fs::File::create(&path).unwrap();
    (path.display().to_string(), file)
}
