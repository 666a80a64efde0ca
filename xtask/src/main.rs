//! Developer tasks: `cargo xtask run [-- ARGS]` builds Frameguard and starts it.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Build the proxy in release mode and run it; ARGS go to `frameguard run`
    /// (none: the embedded default config).
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn run_proxy(args: &[String]) -> anyhow::Result<()> {
    let root = workspace_root();
    let status = cargo()
        .current_dir(&root)
        .args([
            "build",
            "--release",
            "--package",
            "frameguard",
            "--bin",
            "frameguard",
        ])
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!("building frameguard failed");
    }
    let target_dir =
        std::env::var_os("CARGO_TARGET_DIR").map_or(root.join("target"), PathBuf::from);
    let binary = target_dir.join("release").join("frameguard");
    let status = Command::new(&binary)
        .arg("run")
        .args(args)
        .status()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    if !status.success() {
        bail!("frameguard exited with {status}");
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().task {
        Task::Run { args } => run_proxy(&args),
    }
}
