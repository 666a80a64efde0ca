//! CPU time and resident memory of a watched process and its descendants (nginx's master and
//! workers), read from /proc.

use std::fs;
use std::io;
use std::str::FromStr;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

/// A process tree bigger than this is not walked further.
const MAX_TREE: usize = 1024;

/// `NAME=PID` from the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watch {
    pub name: String,
    pub pid: u32,
}

impl FromStr for Watch {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Watch> {
        let (name, pid) = s.split_once('=').context("expected NAME=PID")?;
        if name.is_empty() {
            bail!("empty name in `{s}`");
        }
        Ok(Watch {
            name: name.to_owned(),
            pid: pid.parse().with_context(|| format!("bad pid in `{s}`"))?,
        })
    }
}

/// One reading of a process tree.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sample {
    /// utime + stime of every process in the tree, in clock ticks.
    pub cpu_ticks: u64,
    /// VmRSS summed over the tree (shared pages count once per process).
    pub rss_kib: u64,
}

/// A watched process over a measured window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WatchReport {
    pub name: String,
    pub pid: u32,
    pub cpu_s: f64,
    pub cpu_pct_of_core: f64,
    /// CPU seconds per million messages received by the clients.
    pub cpu_s_per_million_msgs: Option<f64>,
    pub rss_kib_start: u64,
    pub rss_kib_end: u64,
}

impl WatchReport {
    pub fn new(
        watch: &Watch,
        start: Sample,
        end: Sample,
        window_s: f64,
        messages: u64,
    ) -> WatchReport {
        let cpu_s = end.cpu_ticks.saturating_sub(start.cpu_ticks) as f64 / ticks_per_second();
        WatchReport {
            name: watch.name.clone(),
            pid: watch.pid,
            cpu_s,
            cpu_pct_of_core: if window_s > 0.0 {
                100.0 * cpu_s / window_s
            } else {
                0.0
            },
            cpu_s_per_million_msgs: (messages > 0).then(|| cpu_s * 1e6 / messages as f64),
            rss_kib_start: start.rss_kib,
            rss_kib_end: end.rss_kib,
        }
    }
}

/// Busy clock ticks of the whole machine (all CPUs) from the first line of `/proc/stat`:
/// everything but idle and iowait, so softirq and kernel threads count. The kernel data path
/// moves work out of the proxy process into softirq and kworkers, which only this sees.
pub fn machine_busy_ticks() -> io::Result<u64> {
    let stat = fs::read_to_string("/proc/stat")?;
    parse_machine_busy_ticks(&stat)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unreadable /proc/stat"))
}

/// `cpu  user nice system idle iowait irq softirq steal ...`: guest time is already in user.
fn parse_machine_busy_ticks(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_ascii_whitespace()
        .skip(1)
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    let &[user, nice, system, _idle, _iowait, irq, softirq, steal] = fields.as_slice() else {
        return None;
    };
    Some(user + nice + system + irq + softirq + steal)
}

/// Reads `pid` and its descendants.
pub fn sample_tree(pid: u32) -> io::Result<Sample> {
    let mut sample = sample_process(pid)?;
    let mut pending = children(pid);
    let mut seen = 1;
    while let Some(child) = pending.pop() {
        if seen >= MAX_TREE {
            break;
        }
        seen += 1;
        // A child that exited between listing and reading simply no longer counts.
        if let Ok(child_sample) = sample_process(child) {
            sample.cpu_ticks += child_sample.cpu_ticks;
            sample.rss_kib += child_sample.rss_kib;
            pending.extend(children(child));
        }
    }
    Ok(sample)
}

/// Clock ticks per second of the `/proc/PID/stat` times.
pub fn ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

fn sample_process(pid: u32) -> io::Result<Sample> {
    let invalid = |what| io::Error::new(io::ErrorKind::InvalidData, what);
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    Ok(Sample {
        cpu_ticks: parse_cpu_ticks(&stat).ok_or_else(|| invalid("unreadable /proc/PID/stat"))?,
        // Kernel threads and zombies have no VmRSS line.
        rss_kib: parse_rss_kib(&status).unwrap_or(0),
    })
}

fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| {
            list.split_ascii_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// utime + stime (fields 14 and 15) of a `/proc/PID/stat` line. The command name (field 2) may
/// hold spaces and parentheses, so fields are counted after its closing parenthesis.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The VmRSS line of `/proc/PID/status`, in KiB.
fn parse_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line["VmRSS:".len()..]
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_busy_ticks_leave_out_idle_and_iowait() {
        let stat = "cpu  10 1 5 1000 7 2 3 4 9 0\ncpu0 5 0 2 500 3 1 1 2 0 0\nintr 1\n";
        assert_eq!(parse_machine_busy_ticks(stat), Some(10 + 1 + 5 + 2 + 3 + 4));
        assert_eq!(parse_machine_busy_ticks("cpu  1 2 3\n"), None);
        assert_eq!(parse_machine_busy_ticks("intr 1\n"), None);
    }

    #[test]
    fn cpu_ticks_are_counted_after_the_command_name() {
        let stat = "4242 (tokio (rt) x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 \
                    123 45 0 0 20 0 3 0 100 2000000 500 18446744073709551615";
        assert_eq!(parse_cpu_ticks(stat), Some(168));
        assert_eq!(parse_cpu_ticks("4242 (x) S 1 2"), None);
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[test]
    fn rss_line_is_read_in_kib() {
        let status = "Name:\tnginx\nVmPeak:\t  9999 kB\nVmRSS:\t    5120 kB\nThreads:\t1\n";
        assert_eq!(parse_rss_kib(status), Some(5120));
        assert_eq!(parse_rss_kib("Name:\tkthreadd\n"), None);
    }

    #[test]
    fn watch_is_name_equals_pid() {
        assert_eq!(
            "proxy=12".parse::<Watch>().unwrap(),
            Watch {
                name: "proxy".into(),
                pid: 12
            }
        );
        assert!("proxy".parse::<Watch>().is_err());
        assert!("=12".parse::<Watch>().is_err());
        assert!("proxy=x".parse::<Watch>().is_err());
    }

    #[test]
    fn own_process_tree_includes_a_spawned_child() {
        let own = sample_tree(std::process::id()).unwrap();
        assert!(own.rss_kib > 0);
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let children_now = children(std::process::id());
        let child_alone = sample_process(child.id());
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(children_now.contains(&child.id()), "{children_now:?}");
        assert!(child_alone.is_ok());
    }

    #[test]
    fn window_report_divides_by_messages_and_window() {
        let watch = Watch {
            name: "proxy".into(),
            pid: 1,
        };
        let ticks = ticks_per_second() as u64;
        let start = Sample {
            cpu_ticks: 10,
            rss_kib: 100,
        };
        let end = Sample {
            cpu_ticks: 10 + 2 * ticks,
            rss_kib: 150,
        };
        let report = WatchReport::new(&watch, start, end, 4.0, 1_000_000);
        assert!((report.cpu_s - 2.0).abs() < 1e-9);
        assert!((report.cpu_pct_of_core - 50.0).abs() < 1e-9);
        assert_eq!(report.cpu_s_per_million_msgs, Some(report.cpu_s));
        assert_eq!(
            WatchReport::new(&watch, start, end, 4.0, 0).cpu_s_per_million_msgs,
            None
        );
    }
}
