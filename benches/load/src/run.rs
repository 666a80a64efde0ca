//! `frameguard-load run`: drives load through a WebSocket endpoint and measures it.
//!
//! Phases: every connection is opened first; then all start sending at once, `--warmup` seconds
//! pass, the `--duration` window is measured, and for up to `--drain` seconds nothing new is
//! sent while answers still in flight arrive. Only what is received inside the window counts.
//!
//! Closed loop (default): each connection keeps `--pipeline` messages in flight and sends a new
//! one for each answered. Open loop (`--rate`): each connection sends its share of the rate on a
//! fixed, staggered schedule whatever the answers (woken by [`FineClock`]'s 100 µs ticks), with
//! at most `--pipeline` in flight. Latency is from the actual send; messages sent more than 1 ms
//! behind their schedule are counted as `sent_late`, so a generator that cannot keep up shows.
//!
//! Each generator thread runs its own single-threaded runtime with its share of the connections,
//! so the statistics of a thread need no locking and are merged once at the end.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use frameguard_codec::{
    close_payload, encode_control, encode_frame, CloseCode, Control, Decoder, DecoderConfig, Event,
    OpCode, Role,
};
use hdrhistogram::Histogram;
use tokio::time::Instant;

use crate::cli::{parse_seconds, thread_count, TargetArgs};
use crate::clock::{FineClock, SLACK};
use crate::connect::{connect_many, Connected};
use crate::net::{Progress, WsStream};
use crate::payload::{read_stamp, Stamp, Template, MIN_SIZE};
use crate::proc_stats::{
    machine_busy_ticks, sample_tree, ticks_per_second, Sample, Watch, WatchReport,
};
use crate::report::{Latency, RunReport};
use crate::target::Target;

const MAX_SIZE: usize = 16 << 20;
/// Latencies are recorded in nanoseconds up to a minute, at 3 significant digits.
const MAX_LATENCY_NS: u64 = 60_000_000_000;
/// Open loop: a message sent this much after its scheduled time counts as sent late.
const LATE: Duration = Duration::from_millis(1);
/// How long a connection may take to close cleanly after the run.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(clap::Args, Clone, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Connections.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub conns: u32,
    /// Message size in bytes (text messages holding a small JSON object).
    #[arg(long, default_value_t = 64, value_parser = parse_size)]
    pub size: usize,
    /// Messages in flight per connection (open loop: the cap).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub pipeline: u32,
    /// Seconds measured.
    #[arg(long, default_value = "5", value_parser = parse_seconds)]
    pub duration: Duration,
    /// Seconds of load before the measured window.
    #[arg(long, default_value = "1", value_parser = parse_seconds)]
    pub warmup: Duration,
    /// Seconds after the window for answers still in flight.
    #[arg(long, default_value = "2", value_parser = parse_seconds)]
    pub drain: Duration,
    /// Open loop: messages per second over all connections.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Copies of each message the server sends back (echo --fanout).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub expect_fanout: u32,
    /// Size of each reply when the server resizes them (echo --reply-size); default --size.
    #[arg(long, value_parser = parse_size)]
    pub expect_reply_size: Option<usize>,
}

fn parse_size(s: &str) -> Result<usize, String> {
    let size: usize = s
        .parse()
        .map_err(|_| format!("`{s}` is not a byte count"))?;
    if !(MIN_SIZE..=MAX_SIZE).contains(&size) {
        return Err(format!("size must be within {MIN_SIZE}..={MAX_SIZE}"));
    }
    Ok(size)
}

/// What every connection of a run does.
struct Plan {
    target: Arc<Target>,
    conns: usize,
    size: usize,
    /// Size of every reply (`size` unless the server resizes them).
    reply_size: usize,
    pipeline: u64,
    fanout: u32,
    /// Open loop: messages per second of one connection.
    rate_per_conn: Option<f64>,
    connect_concurrency: usize,
    /// Stamps are nanoseconds since this instant.
    epoch: Instant,
}

#[derive(Clone, Copy, Debug)]
struct Schedule {
    start: Instant,
    window_start: Instant,
    window_end: Instant,
    drain_end: Instant,
}

impl Schedule {
    fn in_window(&self, at: Instant) -> bool {
        at >= self.window_start && at < self.window_end
    }
}

/// One generator thread's figures.
struct Stats {
    latency_ns: Histogram<u64>,
    round_trips: u64,
    recv_msgs: u64,
    sent_msgs: u64,
    recv_bytes: u64,
    sent_bytes: u64,
    errors: u64,
    first_error: Option<String>,
    unanswered_at_end: u64,
    sent_late: u64,
}

impl Stats {
    fn new() -> Stats {
        Stats {
            latency_ns: Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3)
                .expect("static histogram bounds are valid"),
            round_trips: 0,
            recv_msgs: 0,
            sent_msgs: 0,
            recv_bytes: 0,
            sent_bytes: 0,
            errors: 0,
            first_error: None,
            unanswered_at_end: 0,
            sent_late: 0,
        }
    }

    fn merge(&mut self, other: Stats) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.latency_ns.add(&other.latency_ns);
        self.round_trips += other.round_trips;
        self.recv_msgs += other.recv_msgs;
        self.sent_msgs += other.sent_msgs;
        self.recv_bytes += other.recv_bytes;
        self.sent_bytes += other.sent_bytes;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.unanswered_at_end += other.unanswered_at_end;
        self.sent_late += other.sent_late;
    }
}

/// What a generator thread reports once its connections are open.
struct ConnectOutcome {
    connected: usize,
    failures: u64,
    first_error: Option<String>,
}

pub fn run(args: &RunArgs) -> Result<RunReport> {
    let conns = args.conns as usize;
    if let Some(rate) = args.rate {
        if !(rate.is_finite() && rate > 0.0) {
            bail!("--rate must be a positive number of messages per second");
        }
    }
    if args.duration.is_zero() {
        bail!("--duration must be more than 0 s");
    }
    let target = Arc::new(Target::parse(&args.target.url)?);
    let threads = thread_count(args.target.threads).min(conns);
    let plan = Arc::new(Plan {
        target,
        conns,
        size: args.size,
        reply_size: args.expect_reply_size.unwrap_or(args.size),
        pipeline: u64::from(args.pipeline),
        fanout: args.expect_fanout,
        rate_per_conn: args.rate.map(|rate| rate / conns as f64),
        connect_concurrency: (args.target.connect_concurrency as usize).div_ceil(threads),
        epoch: Instant::now(),
    });

    let (connected_tx, connected_rx) = mpsc::channel();
    let mut workers = Vec::with_capacity(threads);
    for thread_index in 0..threads {
        let (schedule_tx, schedule_rx) = mpsc::channel();
        // Connection i belongs to thread i % threads; its index staggers open-loop schedules.
        let indices: Vec<usize> = (thread_index..conns).step_by(threads).collect();
        let plan = Arc::clone(&plan);
        let connected_tx = connected_tx.clone();
        let handle = std::thread::Builder::new()
            .name(format!("load-{thread_index}"))
            .spawn(move || generator_thread(&plan, &indices, &connected_tx, &schedule_rx))?;
        workers.push((handle, schedule_tx));
    }
    drop(connected_tx);

    let mut connected = 0;
    let mut connect_failures = 0;
    let mut first_error = None;
    // Ends early if a thread died: its sender is gone.
    for outcome in connected_rx.iter().take(threads) {
        connected += outcome.connected;
        connect_failures += outcome.failures;
        if first_error.is_none() {
            first_error = outcome.first_error;
        }
    }

    let start = Instant::now();
    let window_start = start + args.warmup;
    let window_end = window_start + args.duration;
    let schedule = Schedule {
        start,
        window_start,
        window_end,
        drain_end: window_end + args.drain,
    };
    for (_, schedule_tx) in &workers {
        // A thread that already failed has dropped its receiver; its error surfaces at join.
        let _ = schedule_tx.send(schedule);
    }

    let generator = Watch {
        name: "generator".to_owned(),
        pid: std::process::id(),
    };
    std::thread::sleep(window_start.saturating_duration_since(Instant::now()));
    let watch_start = sample_all(&args.target.watches)?;
    let generator_start = sample_tree(generator.pid)?;
    let machine_start = machine_busy_ticks()?;
    std::thread::sleep(window_end.saturating_duration_since(Instant::now()));
    let watch_end = sample_all(&args.target.watches)?;
    let generator_end = sample_tree(generator.pid)?;
    let machine_end = machine_busy_ticks()?;

    let mut stats = Stats::new();
    for (handle, _) in workers {
        let thread_stats = handle
            .join()
            .map_err(|_| anyhow!("a generator thread panicked"))??;
        stats.merge(thread_stats);
    }

    let window_s = args.duration.as_secs_f64();
    let per_second = |count: u64| count as f64 / window_s;
    let watch = args
        .target
        .watches
        .iter()
        .zip(watch_start.iter().zip(&watch_end))
        .map(|(w, (&start, &end))| WatchReport::new(w, start, end, window_s, stats.recv_msgs))
        .collect();
    Ok(RunReport {
        tags: args.target.tag_map(),
        url: args.target.url.clone(),
        conns,
        connected,
        size: args.size,
        reply_size: args.expect_reply_size,
        pipeline: args.pipeline,
        fanout: args.expect_fanout,
        rate: args.rate,
        window_s,
        round_trips: stats.round_trips,
        msgs_per_sec: per_second(stats.round_trips),
        recv_msgs: stats.recv_msgs,
        recv_msgs_per_sec: per_second(stats.recv_msgs),
        sent_msgs: stats.sent_msgs,
        mb_per_sec_sent: per_second(stats.sent_bytes) / 1e6,
        mb_per_sec_recv: per_second(stats.recv_bytes) / 1e6,
        latency_us: Latency::from_nanos(&stats.latency_ns),
        connect_failures,
        errors: stats.errors,
        first_error: first_error.or(stats.first_error),
        unanswered_at_end: stats.unanswered_at_end,
        sent_late: stats.sent_late,
        watch,
        generator: WatchReport::new(
            &generator,
            generator_start,
            generator_end,
            window_s,
            stats.recv_msgs,
        ),
        machine_cpu_s: Some(machine_end.saturating_sub(machine_start) as f64 / ticks_per_second()),
    })
}

fn sample_all(watches: &[Watch]) -> Result<Vec<Sample>> {
    watches
        .iter()
        .map(|w| sample_tree(w.pid).with_context(|| format!("sample {}={}", w.name, w.pid)))
        .collect()
}

fn generator_thread(
    plan: &Arc<Plan>,
    indices: &[usize],
    connected_tx: &mpsc::Sender<ConnectOutcome>,
    schedule_rx: &mpsc::Receiver<Schedule>,
) -> Result<Stats> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let Connected {
        streams,
        failures,
        first_error,
    } = runtime.block_on(connect_many(
        &plan.target,
        indices.len(),
        plan.connect_concurrency,
    ));
    let _ = connected_tx.send(ConnectOutcome {
        connected: streams.len(),
        failures,
        first_error,
    });
    // The sockets simply buffer while the other threads finish connecting.
    let Ok(schedule) = schedule_rx.recv() else {
        return Ok(Stats::new());
    };
    let stats = Rc::new(RefCell::new(Stats::new()));
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        let clock = plan.rate_per_conn.map(|_| {
            let clock = Rc::new(FineClock::default());
            // Runs until the LocalSet drops it; a failing timerfd leaves the senders asleep
            // until the drain deadline, which the report shows as missing traffic.
            tokio::task::spawn_local(Rc::clone(&clock).run());
            clock
        });
        let tasks: Vec<_> = streams
            .into_iter()
            .zip(indices)
            .map(|(ws, &index)| {
                let plan = Arc::clone(plan);
                let stats = Rc::clone(&stats);
                let clock = clock.clone();
                tokio::task::spawn_local(async move {
                    let mut connection = Connection::new(ws, &plan, index);
                    let outcome = connection
                        .exchange(&plan, schedule, clock.as_ref(), &stats)
                        .await;
                    if let Err(error) = outcome {
                        let mut stats = stats.borrow_mut();
                        stats.errors += 1;
                        stats.first_error.get_or_insert(format!("{error:#}"));
                    }
                    connection.close().await;
                })
            })
            .collect();
        for task in tasks {
            // A panicking connection task is a bug; it shows as a missing connection's traffic.
            let _ = task.await;
        }
    });
    Rc::try_unwrap(stats)
        .map(RefCell::into_inner)
        .map_err(|_| anyhow!("connection tasks outlived the run"))
}

/// Open loop: when the next message of a connection is due.
struct Pacer {
    next_due: Instant,
    interval: Duration,
}

struct Connection {
    ws: WsStream,
    decoder: Decoder,
    template: Template,
    epoch: Instant,
    /// Sequence number of the next message to send.
    sent: u64,
    /// Sequence number of the oldest message not fully answered.
    answered: u64,
    /// Copies of `answered` received so far.
    copies: u32,
    /// Position among all connections, to stagger open-loop schedules.
    index: usize,
    pacer: Option<Pacer>,
}

impl Connection {
    fn new(ws: WsStream, plan: &Plan, index: usize) -> Connection {
        Connection {
            ws,
            decoder: Decoder::new(DecoderConfig {
                role: Role::Client,
                allowed_rsv: 0,
                // Room for a wrong-sized echo to be reported as a mismatch, not a protocol error.
                max_message_size: plan.reply_size.saturating_mul(2).max(4096),
            }),
            template: Template::new(plan.size),
            epoch: plan.epoch,
            sent: 0,
            answered: 0,
            copies: 0,
            index,
            pacer: None,
        }
    }

    /// `clock` paces the open loop (None for the closed loop).
    async fn exchange(
        &mut self,
        plan: &Plan,
        schedule: Schedule,
        clock: Option<&Rc<FineClock>>,
        stats: &RefCell<Stats>,
    ) -> Result<()> {
        match plan.rate_per_conn {
            Some(rate) => {
                self.pacer = Some(Pacer::new(schedule.start, rate, self.index, plan.conns));
            }
            None => {
                for _ in 0..plan.pipeline {
                    self.send(schedule, stats);
                }
            }
        }
        loop {
            let now = Instant::now();
            let in_flight = self.sent - self.answered;
            if now >= schedule.drain_end {
                stats.borrow_mut().unanswered_at_end += in_flight;
                return Ok(());
            }
            if now >= schedule.window_end && in_flight == 0 {
                return Ok(());
            }
            let wake_at = if now < schedule.window_end {
                self.send_due(now, plan.pipeline, schedule, stats)
                    .map(|next_due| next_due.min(schedule.window_end))
            } else {
                None
            };
            let progress = match (clock, wake_at) {
                (Some(clock), Some(wake_at)) => tokio::select! {
                    // pump is cancel-safe: it only awaits readiness, then reads and writes
                    // without waiting.
                    progress = self.ws.pump(true, Some(schedule.drain_end)) => progress?,
                    () = clock.sleep_until(wake_at) => Progress::default(),
                },
                _ => self.ws.pump(true, Some(schedule.drain_end)).await?,
            };
            if progress.eof {
                bail!("connection closed by the server without a close frame");
            }
            if progress.read > 0 {
                self.receive(plan, schedule, stats)?;
            }
        }
    }

    /// Open loop: sends what has fallen due, up to the pipeline cap. Returns when to wake up
    /// for the next one (None when closed loop, or when the cap holds it back).
    fn send_due(
        &mut self,
        now: Instant,
        cap: u64,
        schedule: Schedule,
        stats: &RefCell<Stats>,
    ) -> Option<Instant> {
        let pacer = self.pacer.as_mut()?;
        let mut due = 0;
        let mut late = 0;
        while pacer.next_due <= now + SLACK && self.sent + due - self.answered < cap {
            if now > pacer.next_due + LATE {
                late += 1;
            }
            due += 1;
            pacer.next_due += pacer.interval;
        }
        let next_due = pacer.next_due;
        for _ in 0..due {
            self.send(schedule, stats);
        }
        stats.borrow_mut().sent_late += late;
        (next_due > now + SLACK).then_some(next_due)
    }

    fn send(&mut self, schedule: Schedule, stats: &RefCell<Stats>) {
        let now = Instant::now();
        let stamp = Stamp {
            seq: self.sent,
            sent_ns: nanos_since(self.epoch, now),
        };
        let payload = self.template.stamped(stamp);
        let mask = fastrand::u32(..).to_ne_bytes();
        encode_frame(
            &mut self.ws.write_buf,
            true,
            0,
            OpCode::Text,
            Some(mask),
            payload,
        );
        self.sent += 1;
        if schedule.in_window(now) {
            let mut stats = stats.borrow_mut();
            stats.sent_msgs += 1;
            stats.sent_bytes += payload.len() as u64;
        }
    }

    /// Handles every complete frame received; a closed loop sends one message per answer.
    fn receive(&mut self, plan: &Plan, schedule: Schedule, stats: &RefCell<Stats>) -> Result<()> {
        let now = Instant::now();
        let now_ns = nanos_since(self.epoch, now);
        let in_window = schedule.in_window(now);
        let mut answers = 0;
        while let Some(event) = self
            .decoder
            .decode(&mut self.ws.read_buf)
            .map_err(|e| anyhow!("protocol error from the server: {e}"))?
        {
            match event {
                Event::Message(message) => {
                    let stamp = read_stamp(&message.payload)
                        .filter(|s| {
                            s.seq == self.answered && message.payload.len() == plan.reply_size
                        })
                        .ok_or_else(|| {
                            anyhow!(
                                "echo of {} bytes does not match message {} ({} bytes)",
                                message.payload.len(),
                                self.answered,
                                plan.reply_size
                            )
                        })?;
                    if in_window {
                        let mut stats = stats.borrow_mut();
                        stats
                            .latency_ns
                            .saturating_record(now_ns.saturating_sub(stamp.sent_ns).max(1));
                        stats.recv_msgs += 1;
                        stats.recv_bytes += message.payload.len() as u64;
                    }
                    self.copies += 1;
                    if self.copies == plan.fanout {
                        self.copies = 0;
                        self.answered += 1;
                        answers += 1;
                    }
                }
                Event::Control(control) => match control.opcode {
                    OpCode::Ping => {
                        let pong = Control {
                            opcode: OpCode::Pong,
                            payload: control.payload,
                        };
                        let mask = fastrand::u32(..).to_ne_bytes();
                        encode_control(&mut self.ws.write_buf, &pong, Some(mask));
                    }
                    OpCode::Close => match control.close_code_reason() {
                        Some((code, reason)) => {
                            bail!("closed by the server: {} {reason}", code.0)
                        }
                        None => bail!("closed by the server without a status"),
                    },
                    _ => {}
                },
            }
        }
        if in_window {
            stats.borrow_mut().round_trips += answers;
        }
        if self.pacer.is_none() && now < schedule.window_end {
            for _ in 0..answers {
                self.send(schedule, stats);
            }
        }
        Ok(())
    }

    /// Sends a Close and waits, briefly, for the server's, so runs end without resets.
    async fn close(&mut self) {
        let deadline = Instant::now() + CLOSE_TIMEOUT;
        let close = Control {
            opcode: OpCode::Close,
            payload: close_payload(CloseCode::NORMAL, ""),
        };
        encode_control(
            &mut self.ws.write_buf,
            &close,
            Some(fastrand::u32(..).to_ne_bytes()),
        );
        if self.ws.flush(deadline).await.is_err() {
            return;
        }
        loop {
            match self.decoder.decode(&mut self.ws.read_buf) {
                Ok(Some(Event::Control(control))) if control.opcode == OpCode::Close => return,
                Ok(Some(_)) => continue,
                Ok(None) => {}
                Err(_) => return,
            }
            match self.ws.pump(true, Some(deadline)).await {
                Ok(progress) if progress.read > 0 => {}
                _ => return,
            }
        }
    }
}

impl Pacer {
    /// `rate` messages per second from `start`; the connections' first sends are spread evenly
    /// over one interval.
    fn new(start: Instant, rate: f64, index: usize, conns: usize) -> Pacer {
        let interval = Duration::from_secs_f64(1.0 / rate);
        Pacer {
            next_due: start + interval.mul_f64(index as f64 / conns as f64),
            interval,
        }
    }
}

fn nanos_since(epoch: Instant, at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(epoch).as_nanos()).unwrap_or(u64::MAX)
}
