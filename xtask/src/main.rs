//! Developer tasks: `cargo xtask run [-- ARGS]` builds Frameguard and starts it;
//! `cargo xtask build-ebpf` builds the sockmap verdict program (nightly + bpf-linker).

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
    /// Build the eBPF object (ebpf/) with the nightly toolchain and bpf-linker.
    BuildEbpf,
}

include!("../../ebpf/build_object.rs");

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or(root.join("target"), PathBuf::from)
}

/// The same place userspace/build.rs builds it, so the proxy build finds it done.
fn build_ebpf(root: &Path) -> Result<PathBuf, String> {
    build_ebpf_object(root, &target_dir(root).join("frameguard-ebpf"))
}

fn run_proxy(args: &[String]) -> anyhow::Result<()> {
    let root = workspace_root();
    if let Err(reason) = build_ebpf(&root) {
        eprintln!(
            "warning: the eBPF object was not built, so `--data-path kernel` will be \
             unavailable: {reason}"
        );
    }
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
    let binary = target_dir(&root).join("release").join("frameguard");
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
        Task::BuildEbpf => {
            let object = build_ebpf(&workspace_root()).map_err(anyhow::Error::msg)?;
            println!("{}", object.display());
            Ok(())
        }
    }
}
