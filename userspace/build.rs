//! Builds the eBPF object (ebpf/, nightly + bpf-linker) and embeds it; without that toolchain
//! the binary still builds and its kernel data path reports itself unavailable.

use std::path::{Path, PathBuf};

include!("../ebpf/build_object.rs");

/// The cargo target dir this build writes into, found from OUT_DIR
/// (`<target>/<profile>/build/<package>/out`).
fn target_dir(out_dir: &Path) -> PathBuf {
    out_dir
        .ancestors()
        .find(|dir| dir.file_name().is_some_and(|name| name == "build"))
        .and_then(|build| build.parent()?.parent())
        .unwrap_or(out_dir)
        .to_path_buf()
}

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let workspace = manifest_dir
        .parent()
        .expect("userspace/ is inside the workspace");
    for input in [
        "ebpf/src",
        "ebpf/Cargo.toml",
        "ebpf/Cargo.lock",
        "ebpf/.cargo/config.toml",
        "ebpf/build_object.rs",
        "common/src",
        "common/Cargo.toml",
    ] {
        println!("cargo:rerun-if-changed={}", workspace.join(input).display());
    }
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo"));
    let embedded = out_dir.join("frameguard-ebpf.o");
    let status = build_ebpf_object(workspace, &target_dir(&out_dir).join("frameguard-ebpf"))
        .and_then(|object| {
            std::fs::copy(&object, &embedded)
                .map_err(|err| format!("cannot copy {}: {err}", object.display()))
        });
    match status {
        Ok(_) => println!("cargo:rustc-env=FRAMEGUARD_EBPF_BUILD=built"),
        Err(reason) => {
            std::fs::write(&embedded, b"").expect("OUT_DIR is writable");
            let first_line = reason.lines().next().unwrap_or_default();
            println!("cargo:warning=building without the eBPF object: {first_line}");
            println!(
                "cargo:rustc-env=FRAMEGUARD_EBPF_BUILD={}",
                first_line.replace('\n', " ")
            );
        }
    }
}
