use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use frameguard_config::{Config, DataPath, Diagnostic, LogFormat};

#[derive(Parser)]
#[command(name = "frameguard", version, about = "WebSocket security proxy")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy (on the embedded default config unless --config is given).
    Run {
        /// KDL configuration file.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Listen address of the first listener.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Upstream target (host:port) of the first WebSocket route.
        #[arg(long)]
        upstream: Option<String>,
        /// Path of the first WebSocket route.
        #[arg(long)]
        path: Option<String>,
        /// Data path of every WebSocket route's uninspected upstream -> client direction:
        /// auto | userspace | splice | kernel (default: each route's `data-path`).
        #[arg(long, value_parser = parse_data_path)]
        data_path: Option<DataPath>,
    },
    /// Parse and validate a configuration file; print diagnostics as file:line:column.
    Check { file: PathBuf },
    /// Show a running proxy's open WebSocket connections and their data paths (from its
    /// metrics listener's /status).
    Status {
        /// Read the metrics address from this config (default: the embedded default's).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// The metrics listener address (overrides --config).
        #[arg(long)]
        address: Option<SocketAddr>,
    },
    /// Run corpus files (one message per line) through an inspection policy and print, per
    /// file, the share of messages blocked.
    Eval {
        /// Corpus files or directories of *.txt files.
        #[arg(required = true)]
        corpus: Vec<PathBuf>,
        /// Take the policy from this config (default: the inspector defaults).
        #[arg(long)]
        config: Option<PathBuf>,
        /// The inspector agent of --config to use (default: its first inspector).
        #[arg(long)]
        agent: Option<String>,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Check { file } => check(&file),
        Command::Status { config, address } => match status(config.as_deref(), address) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("frameguard: {err:#}");
                ExitCode::FAILURE
            }
        },
        Command::Eval {
            corpus,
            config,
            agent,
        } => match eval(&corpus, config.as_deref(), agent.as_deref()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("frameguard: {err:#}");
                ExitCode::FAILURE
            }
        },
        Command::Run {
            config: config_path,
            listen,
            upstream,
            path: path_override,
            data_path,
        } => {
            let config = match load(config_path.as_deref()) {
                Ok(config) => config,
                Err(code) => return code,
            };
            let mut config = config;
            if let Err(err) =
                config.apply_overrides(listen, upstream.as_deref(), path_override.as_deref())
            {
                eprintln!("frameguard: {err}");
                return ExitCode::from(2);
            }
            init_logging(&config);
            let reload: frameguard::listener::Reload = Box::new(move || {
                let path = config_path.as_deref().ok_or("no --config file to reload")?;
                let mut config = frameguard_config::load_file(path)
                    .map_err(|errors| {
                        errors
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join("; ")
                    })?
                    .config;
                config.apply_overrides(listen, upstream.as_deref(), path_override.as_deref())?;
                Ok(config)
            });
            match frameguard::listener::run(config, reload, data_path) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    tracing::error!("{err:#}");
                    eprintln!("frameguard: {err:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn eval(corpus: &[PathBuf], config: Option<&Path>, agent: Option<&str>) -> anyhow::Result<()> {
    use anyhow::Context;
    use frameguard_config::{policy::InspectionPolicy, AgentKind};
    let policies: Vec<(String, InspectionPolicy)> = match config {
        None => vec![("default".to_owned(), InspectionPolicy::default())],
        Some(path) => {
            let loaded = frameguard_config::load_file(path).map_err(|errors| {
                print_diagnostics(&errors);
                anyhow::anyhow!("{} does not load", path.display())
            })?;
            loaded
                .config
                .agents
                .into_iter()
                .filter_map(|a| match a.kind {
                    AgentKind::Inspector(policy) => Some((a.name, policy)),
                    AgentKind::Unsupported { .. } => None,
                })
                .collect()
        }
    };
    let name = agent
        .map(str::to_owned)
        .or_else(|| policies.first().map(|p| p.0.clone()));
    let name = name.context("the config has no inspector agent")?;
    let engine = frameguard_inspect::Engine::new(&policies)?;
    let policy = engine
        .policy(&name)
        .with_context(|| format!("no inspector agent `{name}`"))?;
    let mut files = Vec::new();
    for path in corpus {
        if path.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(path)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "txt"))
                .collect();
            entries.sort();
            files.extend(entries);
        } else {
            files.push(path.clone());
        }
    }
    println!("| file | messages | blocked | share |");
    println!("|---|---:|---:|---:|");
    for file in files {
        let text =
            std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
        let lines = String::from_utf8_lossy(&text)
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect::<Vec<_>>();
        let result = frameguard_inspect::eval::blocked_share(&engine, policy, lines.into_iter());
        println!(
            "| {} | {} | {} | {:.2}% |",
            file.file_name().map_or_else(
                || file.display().to_string(),
                |n| n.to_string_lossy().into_owned()
            ),
            result.total,
            result.blocked,
            result.share() * 100.0
        );
    }
    Ok(())
}

fn status(config: Option<&Path>, address: Option<SocketAddr>) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let address = match address {
        Some(address) => address,
        None => {
            let config = load(config).map_err(|_| anyhow::anyhow!("the config does not load"))?;
            let metrics = config.observability.metrics.as_ref();
            metrics
                .map(|m| m.address)
                .ok_or_else(|| anyhow::anyhow!("the config has no metrics listener"))?
        }
    };
    let mut stream =
        std::net::TcpStream::connect_timeout(&address, std::time::Duration::from_secs(3))
            .map_err(|err| anyhow::anyhow!("cannot reach {address}: {err}"))?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    write!(
        stream,
        "GET /status HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.take(16 << 20).read_to_end(&mut response)?;
    let body = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| &response[at + 4..])
        .ok_or_else(|| anyhow::anyhow!("malformed answer from {address}"))?;
    let status: serde_json::Value = serde_json::from_slice(body)?;
    println!(
        "uptime {}s, {} open connections",
        status["uptime_secs"], status["open_connections"]
    );
    match status["kernel_path"].as_object() {
        Some(kernel) => println!(
            "kernel path: loaded {}",
            serde_json::Value::Object(kernel.clone())
        ),
        None => println!("kernel path: not loaded"),
    }
    println!(
        "{:<8} {:<22} {:<16} {:<22} {:<10}",
        "id", "client", "route", "upstream", "data path"
    );
    for ws in status["websockets"].as_array().into_iter().flatten() {
        println!(
            "{:<8} {:<22} {:<16} {:<22} {:<10}",
            ws["id"],
            ws["client"].as_str().unwrap_or(""),
            ws["route"].as_str().unwrap_or(""),
            ws["upstream"].as_str().unwrap_or(""),
            ws["data_path"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

fn parse_data_path(value: &str) -> Result<DataPath, String> {
    match value {
        "auto" => Ok(DataPath::Auto),
        "userspace" => Ok(DataPath::Userspace),
        "splice" => Ok(DataPath::Splice),
        "kernel" => Ok(DataPath::Kernel),
        other => Err(format!(
            "unknown data path `{other}` (auto, userspace, splice, kernel)"
        )),
    }
}

fn print_diagnostics(diagnostics: &[Diagnostic]) {
    for diagnostic in diagnostics {
        eprintln!("{diagnostic}");
    }
}

fn check(file: &Path) -> ExitCode {
    match frameguard_config::load_file(file) {
        Ok(loaded) => {
            print_diagnostics(&loaded.warnings);
            println!("{}: ok", file.display());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            print_diagnostics(&errors);
            ExitCode::FAILURE
        }
    }
}

fn load(path: Option<&Path>) -> Result<Config, ExitCode> {
    let Some(path) = path else {
        return Ok(frameguard_config::default_config());
    };
    match frameguard_config::load_file(path) {
        Ok(loaded) => {
            print_diagnostics(&loaded.warnings);
            Ok(loaded.config)
        }
        Err(errors) => {
            print_diagnostics(&errors);
            Err(ExitCode::FAILURE)
        }
    }
}

/// Logs go to stderr in the configured format; audit events (target `frameguard::audit`) are
/// always one JSON object per line, whatever that format.
fn init_logging(config: &Config) {
    use tracing_subscriber::filter::{filter_fn, EnvFilter, LevelFilter};
    use tracing_subscriber::prelude::*;
    let logging = &config.observability.logging;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&logging.level));
    let not_audit = filter_fn(|meta| meta.target() != AUDIT_TARGET);
    let main_layer = match logging.format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let audit_layer = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_writer(std::io::stderr)
        .with_filter(filter_fn(|meta| meta.target() == AUDIT_TARGET))
        .with_filter(LevelFilter::INFO);
    tracing_subscriber::registry()
        .with(main_layer.with_filter(not_audit).with_filter(filter))
        .with(audit_layer)
        .init();
}

const AUDIT_TARGET: &str = "frameguard::audit";
