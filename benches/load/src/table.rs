//! `frameguard-load report`: the markdown tables of one benchmark run, from the JSON records
//! its `run` and `idle` calls printed. Ratios compare configurations measured in the same run.
//!
//! Configurations are told apart by the `config` tag; `direct`, `nginx`, `nginx-64k` and
//! `fg-on` are the names the ratios and the targets refer to. Open-loop runs (`--rate`) are
//! grouped by their `group` tag (`half-load` is the one the latency target is about) and
//! compared with the direct run of the same group.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use crate::report::{IdleReport, Record, RunReport, Unavailable};

pub const DIRECT: &str = "direct";
pub const NGINX: &str = "nginx";
pub const NGINX_64K: &str = "nginx-64k";
pub const INSPECTED: &str = "fg-on";
const HALF_LOAD_GROUP: &str = "half-load";
/// Closed-loop runs of the uninspected upstream -> client direction, compared with
/// `SPLICE_BASELINE` (the frame relay with the same inbound-only inspection).
const SPLICED_GROUP: &str = "spliced";
const SPLICE_BASELINE: &str = "fg-in";
const KERNEL: &str = "kernel";
/// The process whose CPU and memory are the proxy's.
const PROXY_WATCH: &str = "proxy";

/// The targets of the benchmark issue.
const TARGET_CASE: CaseKey = CaseKey {
    conns: 100,
    size: 64,
    reply_size: None,
    pipeline: 16,
    fanout: 1,
};
const TARGET_VS_NGINX: f64 = 1.0;
const TARGET_ADDED_P99_US: f64 = 50.0;
const TARGET_KIB_PER_IDLE_CONN: f64 = 8.0;
/// Kernel path: proxy CPU per message of the spliced direction against the frame relay.
const TARGET_KERNEL_CPU_RATIO: f64 = 0.5;

/// Result files larger than this are refused.
const MAX_INPUT_BYTES: u64 = 64 << 20;

#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// JSON lines printed by `run` and `idle` (and `unavailable` records).
    #[arg(long)]
    input: PathBuf,
}

pub fn run(args: &ReportArgs) -> Result<String> {
    let file = std::fs::File::open(&args.input)
        .with_context(|| format!("open {}", args.input.display()))?;
    let mut text = String::new();
    file.take(MAX_INPUT_BYTES + 1).read_to_string(&mut text)?;
    if text.len() as u64 > MAX_INPUT_BYTES {
        bail!(
            "{} is larger than {MAX_INPUT_BYTES} bytes",
            args.input.display()
        );
    }
    let records =
        parse_records(&text).with_context(|| format!("reading {}", args.input.display()))?;
    Ok(render(&records))
}

fn parse_records(text: &str) -> Result<Vec<Record>> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| {
            serde_json::from_str(line).with_context(|| format!("line {}", index + 1))
        })
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct CaseKey {
    conns: usize,
    size: usize,
    reply_size: Option<usize>,
    pipeline: u32,
    fanout: u32,
}

impl CaseKey {
    fn of(run: &RunReport) -> CaseKey {
        CaseKey {
            conns: run.conns,
            size: run.size,
            reply_size: run.reply_size,
            pipeline: run.pipeline,
            fanout: run.fanout,
        }
    }

    fn label(&self) -> String {
        let mut label = format!(
            "{} conns × {} × p{}",
            self.conns,
            size_label(self.size),
            self.pipeline
        );
        if self.fanout > 1 {
            let _ = write!(label, ", fan-out ×{}", self.fanout);
        }
        if let Some(reply) = self.reply_size {
            let _ = write!(label, ", {} replies", size_label(reply));
        }
        label
    }
}

fn size_label(size: usize) -> String {
    if size.is_multiple_of(1024) {
        format!("{} KiB", size / 1024)
    } else {
        format!("{size} B")
    }
}

fn config_of(tags: &BTreeMap<String, String>) -> &str {
    tags.get("config").map_or("?", String::as_str)
}

fn group_of(run: &RunReport) -> &str {
    run.tags.get("group").map_or("", String::as_str)
}

fn find<'r>(runs: &[&'r RunReport], config: &str) -> Option<&'r RunReport> {
    runs.iter().copied().find(|r| config_of(&r.tags) == config)
}

pub fn render(records: &[Record]) -> String {
    let mut out = String::new();
    // The matrix is the closed-loop runs without a group.
    let cases = grouped(records, "");
    let unavailable: Vec<&Unavailable> = records
        .iter()
        .filter_map(|r| match r {
            Record::Unavailable(u) => Some(u),
            _ => None,
        })
        .collect();
    render_matrix(&mut out, &cases, &unavailable);
    let open_loop: Vec<&RunReport> = records
        .iter()
        .filter_map(|r| match r {
            Record::Run(run) if run.rate.is_some() => Some(run.as_ref()),
            _ => None,
        })
        .collect();
    render_open_loop(&mut out, &open_loop);
    let half_load: Vec<&RunReport> = open_loop
        .iter()
        .copied()
        .filter(|run| group_of(run) == HALF_LOAD_GROUP)
        .collect();
    let idle: Vec<&IdleReport> = records
        .iter()
        .filter_map(|r| match r {
            Record::Idle(idle) => Some(idle),
            _ => None,
        })
        .collect();
    render_idle(&mut out, &idle);
    let spliced: Vec<(CaseKey, Vec<&RunReport>)> = grouped(records, SPLICED_GROUP);
    render_spliced(&mut out, &spliced);
    render_targets(&mut out, &cases, &half_load, &idle, &spliced);
    out
}

/// Closed-loop runs of one group by case, cases in the order first measured, configurations
/// in run order.
fn grouped<'r>(records: &'r [Record], group: &str) -> Vec<(CaseKey, Vec<&'r RunReport>)> {
    let mut cases: Vec<(CaseKey, Vec<&RunReport>)> = Vec::new();
    for record in records {
        let Record::Run(run) = record else { continue };
        if run.rate.is_some() || group_of(run) != group {
            continue;
        }
        let key = CaseKey::of(run);
        match cases.iter_mut().find(|(k, _)| *k == key) {
            Some((_, runs)) => runs.push(run),
            None => cases.push((key, vec![run])),
        }
    }
    cases
}

/// GB (10^9 bytes) of payload the clients received in the window.
fn gb_to_clients(run: &RunReport) -> f64 {
    run.mb_per_sec_recv * run.window_s / 1000.0
}

/// Proxy and whole-machine CPU seconds per GB delivered to the clients.
fn cpu_per_gb(run: &RunReport) -> (Option<f64>, Option<f64>) {
    let gb = gb_to_clients(run);
    if gb <= 0.0 {
        return (None, None);
    }
    (
        run.watched(PROXY_WATCH).map(|w| w.cpu_s / gb),
        run.machine_cpu_s.map(|s| s / gb),
    )
}

fn render_spliced(out: &mut String, cases: &[(CaseKey, Vec<&RunReport>)]) {
    if cases.is_empty() {
        return;
    }
    out.push_str("\n## Uninspected upstream -> client direction\n\n");
    out.push_str(
        "Echo servers that answer each inbound message several times (fan-out), some with \
         larger replies, so that the upstream -> client direction carries most bytes; inbound \
         inspection on, \
         outbound not inspected: `fg-in` = the frame relay, `fg-splice` = splice(2), `kernel` = \
         the sockmap verdict program. GB = payload delivered to the clients; machine CPU = busy \
         time of all CPUs from /proc/stat (softirq and kernel threads included, and the \
         generator's and echo server's share, which is the same workload for every row).\n\n",
    );
    out.push_str(
        "| case | config | msgs/s | × fg-in | MB/s to clients | proxy CPU s/GB | machine CPU \
         s/GB | machine CPU × fg-in | errors |\n",
    );
    out.push_str("|---|---|--:|--:|--:|--:|--:|--:|--:|\n");
    let figure = |value: Option<f64>| value.map_or("–".to_owned(), |v| format!("{v:.2}"));
    let mut problems = Vec::new();
    for (key, runs) in cases {
        let baseline = find(runs, SPLICE_BASELINE);
        for run in runs {
            let config = config_of(&run.tags);
            let (proxy_cpu, machine_cpu) = cpu_per_gb(run);
            let throughput_ratio = baseline
                .filter(|b| b.recv_msgs_per_sec > 0.0)
                .map(|b| run.recv_msgs_per_sec / b.recv_msgs_per_sec);
            let machine_ratio = baseline
                .and_then(|b| cpu_per_gb(b).1)
                .zip(machine_cpu)
                .map(|(base, own)| own / base);
            let _ = writeln!(
                out,
                "| {} | {config} | {} | {} | {:.1} | {} | {} | {} | {} |",
                key.label(),
                group_thousands(run.recv_msgs_per_sec),
                figure(throughput_ratio),
                run.mb_per_sec_recv,
                figure(proxy_cpu),
                figure(machine_cpu),
                figure(machine_ratio),
                run.errors + run.connect_failures,
            );
            if let Some(error) = &run.first_error {
                problems.push(format!("{} / {config}: {error}", key.label()));
            }
        }
    }
    render_problems(out, &problems);
}

/// The kernel path against the best userspace path of each spliced case: does it use less
/// whole-machine CPU per GB at no less throughput, and how does the proxy's own CPU compare?
fn render_kernel_targets(out: &mut String, cases: &[(CaseKey, Vec<&RunReport>)]) {
    let mut measured = false;
    for (key, runs) in cases {
        let Some(kernel) = find(runs, KERNEL) else {
            continue;
        };
        let userspace: Vec<&RunReport> = runs
            .iter()
            .copied()
            .filter(|r| config_of(&r.tags) != KERNEL)
            .collect();
        let best = userspace
            .iter()
            .filter_map(|r| Some((r, cpu_per_gb(r).1?)))
            .min_by(|a, b| a.1.total_cmp(&b.1));
        let (Some((best, best_cpu)), Some(kernel_cpu)) = (best, cpu_per_gb(kernel).1) else {
            continue;
        };
        measured = true;
        let throughput = if best.recv_msgs_per_sec > 0.0 {
            kernel.recv_msgs_per_sec / best.recv_msgs_per_sec
        } else {
            0.0
        };
        let wins = kernel_cpu < best_cpu && throughput >= 1.0;
        let _ = write!(
            out,
            "- Kernel path, {}: {kernel_cpu:.2} machine CPU s/GB vs {best_cpu:.2} for {} (the \
             best userspace path), at {throughput:.2}× its throughput: {}",
            key.label(),
            config_of(&best.tags),
            if wins {
                "the kernel path wins"
            } else {
                "userspace wins"
            }
        );
        let relay = find(runs, SPLICE_BASELINE).and_then(|r| cpu_per_gb(r).0);
        match (cpu_per_gb(kernel).0, relay) {
            (Some(own), Some(relay)) if relay > 0.0 => {
                let ratio = own / relay;
                let _ = writeln!(
                    out,
                    "; proxy CPU {ratio:.2}× the frame relay's (target ≤ \
                     {TARGET_KERNEL_CPU_RATIO:.1}×): {}",
                    verdict(ratio <= TARGET_KERNEL_CPU_RATIO)
                );
            }
            _ => out.push('\n'),
        }
    }
    if !measured {
        out.push_str("- Kernel path against userspace: not measured\n");
    }
}

fn render_matrix(
    out: &mut String,
    cases: &[(CaseKey, Vec<&RunReport>)],
    unavailable: &[&Unavailable],
) {
    out.push_str("## Throughput and latency\n\n");
    out.push_str(
        "msgs/s = data messages received by the clients per second (= round trips without \
         fan-out); MB/s = payload both ways; latency from send to echo; proxy CPU = utime + stime \
         of the proxy (all its processes) per million messages received.\n\n",
    );
    out.push_str(
        "| case | config | msgs/s | × nginx | × nginx-64k | × direct | MB/s | p50 µs | p99 µs \
         | p99.9 µs | proxy CPU s/M msgs | errors |\n",
    );
    out.push_str("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n");
    let mut problems = Vec::new();
    for (key, runs) in cases {
        let ratio = |run: &RunReport, baseline: &str| {
            find(runs, baseline)
                .filter(|b| b.recv_msgs_per_sec > 0.0)
                .map_or("–".to_owned(), |b| {
                    format!("{:.2}", run.recv_msgs_per_sec / b.recv_msgs_per_sec)
                })
        };
        for run in runs {
            let config = config_of(&run.tags);
            let cpu = run
                .watched(PROXY_WATCH)
                .and_then(|w| w.cpu_s_per_million_msgs)
                .map_or("–".to_owned(), |c| format!("{c:.2}"));
            let errors = run.errors + run.connect_failures;
            let _ = writeln!(
                out,
                "| {} | {config} | {} | {} | {} | {} | {:.1} | {:.0} | {:.0} | {:.0} | {cpu} | {errors} |",
                key.label(),
                group_thousands(run.recv_msgs_per_sec),
                ratio(run, NGINX),
                ratio(run, NGINX_64K),
                ratio(run, DIRECT),
                run.mb_per_sec_sent + run.mb_per_sec_recv,
                run.latency_us.p50,
                run.latency_us.p99,
                run.latency_us.p999,
            );
            if let Some(error) = &run.first_error {
                problems.push(format!("{} / {config}: {error}", key.label()));
            }
        }
    }
    for u in unavailable {
        let _ = writeln!(
            out,
            "| all | {} | {} | | | | | | | | | |",
            u.config, u.reason
        );
    }
    render_problems(out, &problems);
}

fn render_open_loop(out: &mut String, runs: &[&RunReport]) {
    if runs.is_empty() {
        return;
    }
    out.push_str("\n## Latency at a fixed rate\n\n");
    out.push_str(
        "Open loop: each connection sends its share of the offered rate on a fixed schedule, \
         whatever the answers; latency from the actual send. `half-load` = half of Frameguard's \
         full-inspection maximum of 100 conns × 64 B × p16 in this run; `tenth-load` = a tenth. \
         Sent late = messages sent over 1 ms behind schedule (the generator or the pipeline cap \
         held them back); a proxy that cannot keep up shows as seconds of latency.\n\n",
    );
    out.push_str(
        "| load | case | config | offered msgs/s | achieved msgs/s | p50 µs | p99 µs | p99.9 µs \
         | added p99 over direct µs | sent late | errors |\n",
    );
    out.push_str("|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|\n");
    let mut problems = Vec::new();
    for run in runs {
        let config = config_of(&run.tags);
        let group = group_of(run);
        let direct = runs
            .iter()
            .find(|r| config_of(&r.tags) == DIRECT && group_of(r) == group);
        let added = direct.map_or("–".to_owned(), |d| {
            format!("{:.0}", run.latency_us.p99 - d.latency_us.p99)
        });
        let _ = writeln!(
            out,
            "| {group} | {} | {config} | {} | {} | {:.0} | {:.0} | {:.0} | {added} | {} | {} |",
            CaseKey::of(run).label(),
            group_thousands(run.rate.unwrap_or(0.0)),
            group_thousands(run.recv_msgs_per_sec),
            run.latency_us.p50,
            run.latency_us.p99,
            run.latency_us.p999,
            run.sent_late,
            run.errors + run.connect_failures,
        );
        if let Some(error) = &run.first_error {
            problems.push(format!("{group} / {config}: {error}"));
        }
    }
    render_problems(out, &problems);
}

/// The proxy's watch, or else the first one (the echo server for the direct path).
fn idle_watch(idle: &IdleReport) -> Option<&crate::report::IdleWatch> {
    idle.watch
        .iter()
        .find(|w| w.name == PROXY_WATCH)
        .or_else(|| idle.watch.first())
}

fn render_idle(out: &mut String, idles: &[&IdleReport]) {
    if idles.is_empty() {
        return;
    }
    out.push_str("\n## Memory per idle connection\n\n");
    out.push_str(
        "VmRSS of the proxy (all its processes; the echo server for `direct`) before and after \
         opening the connections, which it holds together with one upstream connection each.\n\n",
    );
    out.push_str(
        "| config | process | connections | RSS before KiB | RSS after KiB | KiB per connection \
         | dropped | failed |\n",
    );
    out.push_str("|---|---|--:|--:|--:|--:|--:|--:|\n");
    let mut problems = Vec::new();
    for idle in idles {
        let config = config_of(&idle.tags);
        let Some(watch) = idle_watch(idle) else {
            continue;
        };
        let _ = writeln!(
            out,
            "| {config} | {} | {} | {} | {} | {} | {} | {} |",
            watch.name,
            idle.established,
            watch.rss_kib_before,
            watch.rss_kib_after,
            watch
                .kib_per_conn
                .map_or("–".to_owned(), |k| format!("{k:.1}")),
            idle.dropped,
            idle.connect_failures,
        );
        if let Some(error) = &idle.first_error {
            problems.push(format!("{config}: {error}"));
        }
    }
    render_problems(out, &problems);
}

fn render_problems(out: &mut String, problems: &[String]) {
    if problems.is_empty() {
        return;
    }
    out.push_str("\nFirst error of each run that had one:\n\n");
    for problem in problems {
        let _ = writeln!(out, "- {problem}");
    }
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "**missed**"
    }
}

fn render_targets(
    out: &mut String,
    cases: &[(CaseKey, Vec<&RunReport>)],
    half_load: &[&RunReport],
    idles: &[&IdleReport],
    spliced: &[(CaseKey, Vec<&RunReport>)],
) {
    out.push_str("\n## Targets\n\n");
    let target_runs = cases
        .iter()
        .find(|(key, _)| *key == TARGET_CASE)
        .map(|(_, runs)| runs.as_slice())
        .unwrap_or_default();
    match (find(target_runs, INSPECTED), find(target_runs, NGINX)) {
        (Some(fg), Some(nginx)) if nginx.recv_msgs_per_sec > 0.0 => {
            let ratio = fg.recv_msgs_per_sec / nginx.recv_msgs_per_sec;
            let _ = writeln!(
                out,
                "- Full inspection, {}: {} msgs/s = {ratio:.2}× nginx's {} (target ≥ \
                 {TARGET_VS_NGINX:.1}×): {}",
                TARGET_CASE.label(),
                group_thousands(fg.recv_msgs_per_sec),
                group_thousands(nginx.recv_msgs_per_sec),
                verdict(ratio >= TARGET_VS_NGINX)
            );
        }
        _ => {
            let _ = writeln!(
                out,
                "- Full inspection vs nginx, {}: not measured",
                TARGET_CASE.label()
            );
        }
    }
    match (find(half_load, INSPECTED), find(half_load, DIRECT)) {
        (Some(fg), Some(direct)) => {
            let added = fg.latency_us.p99 - direct.latency_us.p99;
            let _ = writeln!(
                out,
                "- Added p99 latency over direct at half load ({} msgs/s offered): {added:.0} µs \
                 ({:.0} vs {:.0} µs; target ≤ {TARGET_ADDED_P99_US:.0} µs): {}",
                group_thousands(fg.rate.unwrap_or(0.0)),
                fg.latency_us.p99,
                direct.latency_us.p99,
                verdict(added <= TARGET_ADDED_P99_US)
            );
        }
        _ => out.push_str("- Added p99 latency over direct at half load: not measured\n"),
    }
    let inspected_idle = idles
        .iter()
        .find(|i| config_of(&i.tags) == INSPECTED)
        .and_then(|i| Some((i, idle_watch(i)?.kib_per_conn?)));
    match inspected_idle {
        Some((idle, kib)) => {
            let _ = writeln!(
                out,
                "- RSS per idle connection, full inspection, {} connections: {kib:.1} KiB \
                 (target ≤ {TARGET_KIB_PER_IDLE_CONN:.0} KiB): {}",
                idle.established,
                verdict(kib <= TARGET_KIB_PER_IDLE_CONN)
            );
        }
        None => out.push_str("- RSS per idle connection, full inspection: not measured\n"),
    }
    render_kernel_targets(out, spliced);
}

/// 1234567.8 -> "1,234,568".
fn group_thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proc_stats::WatchReport;
    use crate::report::{IdleWatch, Latency};

    fn watch(name: &str, cpu_per_million: f64) -> WatchReport {
        WatchReport {
            name: name.into(),
            pid: 1,
            cpu_s: 1.0,
            cpu_pct_of_core: 20.0,
            cpu_s_per_million_msgs: Some(cpu_per_million),
            rss_kib_start: 1000,
            rss_kib_end: 1000,
        }
    }

    fn run(config: &str, conns: usize, msgs_per_sec: f64, p99: f64) -> RunReport {
        RunReport {
            tags: [("config".to_owned(), config.to_owned())].into(),
            url: "ws://127.0.0.1:1/ws".into(),
            conns,
            connected: conns,
            size: 64,
            reply_size: None,
            pipeline: 16,
            fanout: 1,
            rate: None,
            window_s: 5.0,
            round_trips: (msgs_per_sec * 5.0) as u64,
            msgs_per_sec,
            recv_msgs: (msgs_per_sec * 5.0) as u64,
            recv_msgs_per_sec: msgs_per_sec,
            sent_msgs: (msgs_per_sec * 5.0) as u64,
            mb_per_sec_sent: msgs_per_sec * 64.0 / 1e6,
            mb_per_sec_recv: msgs_per_sec * 64.0 / 1e6,
            latency_us: Latency {
                p50: p99 / 2.0,
                p90: p99 * 0.8,
                p99,
                p999: p99 * 2.0,
                max: p99 * 3.0,
                mean: p99 / 2.0,
            },
            connect_failures: 0,
            errors: 0,
            first_error: None,
            unanswered_at_end: 0,
            sent_late: 0,
            watch: if config == DIRECT {
                vec![watch("echo", 1.0)]
            } else {
                vec![watch("proxy", 2.5), watch("echo", 1.0)]
            },
            generator: watch("generator", 1.0),
            machine_cpu_s: Some(2.0),
        }
    }

    fn half_load(mut run: RunReport, rate: f64) -> RunReport {
        run.tags.insert("group".into(), HALF_LOAD_GROUP.into());
        run.rate = Some(rate);
        run
    }

    fn idle(config: &str, before: u64, after: u64) -> IdleReport {
        IdleReport {
            tags: [("config".to_owned(), config.to_owned())].into(),
            url: "ws://127.0.0.1:1/ws".into(),
            conns: 1000,
            established: 1000,
            connect_failures: 0,
            first_error: None,
            dropped: 0,
            connect_s: 0.5,
            watch: vec![IdleWatch {
                name: "proxy".into(),
                pid: 1,
                rss_kib_before: before,
                rss_kib_after: after,
                kib_per_conn: Some((after - before) as f64 / 1000.0),
            }],
        }
    }

    fn line_with<'a>(markdown: &'a str, needle: &str) -> &'a str {
        markdown
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in\n{markdown}"))
    }

    #[test]
    fn ratios_compare_configs_of_the_same_case() {
        let records = vec![
            Record::Run(Box::new(run(DIRECT, 100, 400_000.0, 900.0))),
            Record::Run(Box::new(run(NGINX, 100, 200_000.0, 1500.0))),
            Record::Run(Box::new(run(INSPECTED, 100, 100_000.0, 3000.0))),
            Record::Run(Box::new(run(DIRECT, 1, 50_000.0, 40.0))),
        ];
        let markdown = render(&records);
        let fg = line_with(&markdown, "| 100 conns × 64 B × p16 | fg-on |");
        assert!(
            fg.contains("| 100,000 | 0.50 | – | 0.25 | 12.8 | 1500 | 3000 | 6000 | 2.50 | 0 |"),
            "{fg}"
        );
        let direct_one = line_with(&markdown, "| 1 conns × 64 B × p16 | direct |");
        assert!(
            direct_one.contains("| 50,000 | – | – | 1.00 |"),
            "{direct_one}"
        );
        assert!(line_with(&markdown, "Full inspection").contains("0.50× nginx's 200,000"));
        assert!(line_with(&markdown, "Full inspection").contains("**missed**"));
    }

    #[test]
    fn open_loop_groups_compare_with_their_own_direct_run() {
        let mut tenth_direct = run(DIRECT, 100, 10_000.0, 60.0);
        tenth_direct
            .tags
            .insert("group".into(), "tenth-load".into());
        tenth_direct.rate = Some(10_000.0);
        let mut tenth_fg = run(INSPECTED, 100, 10_000.0, 75.0);
        tenth_fg.tags.insert("group".into(), "tenth-load".into());
        tenth_fg.rate = Some(10_000.0);
        let records = vec![
            Record::Run(Box::new(half_load(
                run(DIRECT, 100, 50_000.0, 100.0),
                50_000.0,
            ))),
            Record::Run(Box::new(tenth_direct)),
            Record::Run(Box::new(tenth_fg)),
        ];
        let markdown = render(&records);
        let tenth = line_with(&markdown, "| tenth-load | 100 conns × 64 B × p16 | fg-on |");
        assert!(
            tenth.contains("| 10,000 | 10,000 | 38 | 75 | 150 | 15 |"),
            "{tenth}"
        );
        // Only half-load runs count for the target.
        assert!(line_with(&markdown, "Added p99").contains("not measured"));
    }

    #[test]
    fn half_load_reports_added_p99_and_the_target() {
        let records = vec![
            Record::Run(Box::new(half_load(
                run(DIRECT, 100, 50_000.0, 100.0),
                50_000.0,
            ))),
            Record::Run(Box::new(half_load(
                run(INSPECTED, 100, 50_000.0, 140.0),
                50_000.0,
            ))),
        ];
        let markdown = render(&records);
        let fg = line_with(
            &markdown,
            "| half-load | 100 conns × 64 B × p16 | fg-on | 50,000 | 50,000 |",
        );
        assert!(fg.contains("| 40 |"), "{fg}");
        let target = line_with(&markdown, "Added p99");
        assert!(
            target.contains("40 µs") && target.ends_with("met"),
            "{target}"
        );
        // Open-loop runs are not rows of the throughput table.
        assert_eq!(markdown.matches("| fg-on |").count(), 1, "{markdown}");
    }

    #[test]
    fn idle_memory_per_connection_and_target() {
        let markdown = render(&[
            Record::Idle(idle("fg-off", 10_000, 16_000)),
            Record::Idle(idle(INSPECTED, 10_000, 22_000)),
        ]);
        assert!(line_with(&markdown, "| fg-off | proxy | 1000 |").contains("| 6.0 |"));
        let target = line_with(&markdown, "RSS per idle connection");
        assert!(
            target.contains("12.0 KiB") && target.contains("**missed**"),
            "{target}"
        );
    }

    #[test]
    fn unavailable_configs_get_a_row_and_missing_targets_say_so() {
        let markdown = render(&[Record::Unavailable(Unavailable {
            config: "kernel".into(),
            reason: "kernel data path: not available in this build".into(),
        })]);
        assert!(
            markdown.contains("| all | kernel | kernel data path: not available in this build |")
        );
        assert_eq!(markdown.matches("not measured").count(), 4, "{markdown}");
    }

    fn spliced(config: &str, msgs_per_sec: f64, proxy_cpu_s: f64, machine_cpu_s: f64) -> Record {
        let mut run = run(config, 10, msgs_per_sec, 100.0);
        run.tags.insert("group".into(), SPLICED_GROUP.into());
        run.fanout = 10;
        run.watch[0].cpu_s = proxy_cpu_s;
        run.machine_cpu_s = Some(machine_cpu_s);
        Record::Run(Box::new(run))
    }

    #[test]
    fn spliced_runs_get_their_own_table_and_the_kernel_verdict() {
        // 100,000 msgs/s x 64 B x 5 s = 0.032 GB to the clients.
        let records = [
            spliced(SPLICE_BASELINE, 100_000.0, 0.32, 0.64),
            spliced("fg-splice", 100_000.0, 0.16, 0.48),
            spliced(KERNEL, 110_000.0, 0.0352, 0.704),
        ];
        let markdown = render(&records);
        // Grouped runs stay out of the matrix, whose rows carry the nginx ratios.
        assert!(!markdown.contains("| fg-in | 100,000 | – |"), "{markdown}");
        let row = line_with(&markdown, "| fg-splice | 100,000 |");
        assert!(
            row.contains("| 1.00 | 6.4 | 5.00 | 15.00 | 0.75 |"),
            "{row}"
        );
        let row = line_with(&markdown, "| kernel | 110,000 |");
        assert!(row.contains("| 1.10 |"), "{row}");
        let target = line_with(&markdown, "- Kernel path,");
        assert!(target.contains("vs 15.00 for fg-splice"), "{target}");
        assert!(target.contains("userspace wins"), "{target}");
        assert!(
            target.contains("proxy CPU 0.10× the frame relay's"),
            "{target}"
        );
        assert!(target.contains(": met"), "{target}");
    }

    #[test]
    fn first_errors_are_listed_under_the_table() {
        let mut failed = run(INSPECTED, 100, 10.0, 1.0);
        failed.errors = 3;
        failed.first_error = Some("closed by the server: 1008 policy".into());
        let markdown = render(&[Record::Run(Box::new(failed))]);
        assert!(markdown
            .contains("- 100 conns × 64 B × p16 / fg-on: closed by the server: 1008 policy"));
    }

    #[test]
    fn records_parse_line_by_line_with_line_numbers_in_errors() {
        let good = serde_json::to_string(&Record::Idle(idle(INSPECTED, 1, 2))).unwrap();
        assert_eq!(
            parse_records(&format!("{good}\n\n{good}\n")).unwrap().len(),
            2
        );
        let err = parse_records(&format!("{good}\nnot json\n")).unwrap_err();
        assert!(format!("{err:#}").contains("line 2"), "{err:#}");
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(group_thousands(0.4), "0");
        assert_eq!(group_thousands(999.0), "999");
        assert_eq!(group_thousands(1000.0), "1,000");
        assert_eq!(group_thousands(1_234_567.8), "1,234,568");
    }
}
