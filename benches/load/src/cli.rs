//! Command-line pieces shared by the subcommands.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::proc_stats::Watch;

/// Longest duration any option accepts: every phase of a run is bounded.
const MAX_SECONDS: f64 = 24.0 * 3600.0;

/// Options of the subcommands that open connections to a target.
#[derive(clap::Args, Clone, Debug)]
pub struct TargetArgs {
    /// ws:// URL on a loopback address, e.g. ws://127.0.0.1:8080/ws
    #[arg(long)]
    pub url: String,
    /// Load generator threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Handshakes in progress at once.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub connect_concurrency: u32,
    /// A process to sample: CPU time and RSS of PID and its descendants (repeatable).
    #[arg(long = "watch", value_name = "NAME=PID")]
    pub watches: Vec<Watch>,
    /// A label copied into the JSON result (repeatable), e.g. --tag config=nginx
    #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = parse_tag)]
    pub tags: Vec<(String, String)>,
}

impl TargetArgs {
    pub fn tag_map(&self) -> BTreeMap<String, String> {
        self.tags.iter().cloned().collect()
    }
}

/// `--threads`, or one per core.
pub fn thread_count(requested: Option<usize>) -> usize {
    requested
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, 256)
}

/// Seconds, fractions allowed, between 0 and a day.
pub fn parse_seconds(s: &str) -> Result<Duration, String> {
    let seconds: f64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if !(0.0..=MAX_SECONDS).contains(&seconds) {
        return Err(format!("{s} s is outside 0..={MAX_SECONDS}"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

pub fn parse_tag(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_take_fractions_and_refuse_out_of_range() {
        assert_eq!(parse_seconds("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_seconds("0"), Ok(Duration::ZERO));
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("1e9").is_err());
        assert!(parse_seconds("NaN").is_err());
        assert!(parse_seconds("soon").is_err());
    }

    #[test]
    fn tags_split_at_the_first_equals_sign() {
        assert_eq!(
            parse_tag("case=a=b"),
            Ok(("case".to_owned(), "a=b".to_owned()))
        );
        assert!(parse_tag("=x").is_err());
        assert!(parse_tag("novalue").is_err());
    }

    #[test]
    fn thread_count_is_at_least_one() {
        assert_eq!(thread_count(Some(0)), 1);
        assert_eq!(thread_count(Some(3)), 3);
        assert!(thread_count(None) >= 1);
    }
}
