//! `frameguard-load`: the WebSocket echo upstream and the load generator of `scripts/bench.sh`.
//!
//! ```text
//! frameguard-load echo --listen 127.0.0.1:0 [--fanout 10]
//! frameguard-load run --url ws://127.0.0.1:8080/ws --conns 100 --size 64 --pipeline 16 \
//!     --duration 5 --warmup 1 [--rate 50000] [--watch proxy=PID] [--tag config=fg-on]
//! frameguard-load idle --url ws://127.0.0.1:8080/ws --conns 10000 --watch proxy=PID
//! frameguard-load report --input results.jsonl
//! ```
//!
//! `run` and `idle` print one JSON line each; `report` turns a file of them into markdown.

mod cli;
mod clock;
mod connect;
mod echo;
mod handshake;
mod idle;
mod net;
mod payload;
mod proc_stats;
mod report;
mod run;
mod table;
mod target;

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use report::Record;

#[derive(Parser)]
#[command(
    name = "frameguard-load",
    version,
    about = "WebSocket echo upstream and load generator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Echo server: the upstream of the benchmark.
    Echo(echo::EchoArgs),
    /// Drive load through a WebSocket endpoint; prints one JSON line of results.
    Run(run::RunArgs),
    /// Open idle connections and report memory per connection; prints one JSON line.
    Idle(idle::IdleArgs),
    /// Markdown tables from a file of JSON results.
    Report(table::ReportArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    raise_open_file_limit();
    let outcome = match cli.command {
        Command::Echo(args) => echo::run(args),
        Command::Run(args) => run::run(&args).and_then(|r| print_record(&Record::Run(Box::new(r)))),
        Command::Idle(args) => idle::run(&args).and_then(|r| print_record(&Record::Idle(r))),
        Command::Report(args) => table::run(&args).and_then(|markdown| {
            std::io::stdout().write_all(markdown.as_bytes())?;
            Ok(())
        }),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("frameguard-load: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn print_record(record: &Record) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer(&mut stdout, record)?;
    writeln!(stdout)?;
    Ok(())
}

/// Thousands of connections need thousands of descriptors: take the hard limit.
fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
