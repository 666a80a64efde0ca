// The one recipe that builds the eBPF object, shared (via `include!`) by userspace/build.rs and
// `cargo xtask build-ebpf` so both produce the same file in the same place.

/// Where the eBPF object lands when ebpf/ is built with `target_dir` as its cargo target dir.
fn ebpf_object_path(target_dir: &std::path::Path) -> std::path::PathBuf {
    target_dir.join("bpfel-unknown-none/release/frameguard-ebpf")
}

/// Build ebpf/ (under `workspace`) with the nightly toolchain and bpf-linker into `target_dir`.
/// Returns the object's path, or why it could not be built.
fn build_ebpf_object(
    workspace: &std::path::Path,
    target_dir: &std::path::Path,
) -> Result<std::path::PathBuf, String> {
    use std::process::Command;

    // Nothing of the calling cargo (toolchain, flags, target dir) may leak into the nightly build.
    let scrub = |cmd: &mut Command| {
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy().into_owned();
            let cargo_setting = key.starts_with("CARGO")
                && key != "CARGO_HOME"
                && key != "CARGO_MAKEFLAGS"
                && key != "CARGO_NET_OFFLINE";
            if cargo_setting
                || key.starts_with("RUSTC")
                || key.starts_with("RUSTDOC")
                || key == "RUSTFLAGS"
                || key == "RUSTUP_TOOLCHAIN"
            {
                cmd.env_remove(&key);
            }
        }
    };
    let mut linker = Command::new("bpf-linker");
    scrub(&mut linker);
    match linker.arg("--version").output() {
        Ok(out) if out.status.success() => {}
        _ => return Err("bpf-linker is not installed (.ci/run shows how to build it)".into()),
    }
    let mut cargo = Command::new("rustup");
    scrub(&mut cargo);
    let output = cargo
        .args(["run", "nightly", "cargo", "build", "--release", "--target-dir"])
        .arg(target_dir)
        .current_dir(workspace.join("ebpf"))
        .output()
        .map_err(|err| format!("cannot run rustup: {err}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(12).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(format!(
            "the nightly eBPF build failed (needs `rustup toolchain install nightly` and \
             `rustup component add rust-src --toolchain nightly`):\n{}",
            tail.join("\n")
        ));
    }
    Ok(ebpf_object_path(target_dir))
}
