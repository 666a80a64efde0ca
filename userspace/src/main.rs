use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use frameguard_config::{Config, Diagnostic, LogFormat};

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
    },
    /// Parse and validate a configuration file; print diagnostics as file:line:column.
    Check { file: PathBuf },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Check { file } => check(&file),
        Command::Run {
            config: config_path,
            listen,
            upstream,
            path: path_override,
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
            match frameguard::listener::run(config, reload) {
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

fn print_diagnostics(diagnostics: &[Diagnostic]) {
    for diagnostic in diagnostics {
        eprintln!("{diagnostic}");
    }
}

fn check(file: &std::path::Path) -> ExitCode {
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

fn load(path: Option<&std::path::Path>) -> Result<Config, ExitCode> {
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

fn init_logging(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let logging = &config.observability.logging;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&logging.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match logging.format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}
