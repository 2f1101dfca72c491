//! Build script: stamps the version with the git commit and tracks the files that are
//! embedded into the binary (the demo config, and CUDA kernels once they exist), so a
//! change to them rebuilds the crate.

use std::process::Command;

fn main() {
    let version = env!("CARGO_PKG_VERSION");
    let sha = Command::new("git")
        .args(["rev-parse", "--short=10", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty());
    let long = match sha {
        Some(sha) => format!("{version} ({sha})"),
        None => version.to_owned(),
    };
    println!("cargo:rustc-env=KVS_INFER_VERSION={long}");
    println!("cargo:rerun-if-changed=config/demo.toml");
    println!("cargo:rerun-if-changed=kernels");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
}
