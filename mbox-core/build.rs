//! Build script: records the commit mbox is built from (`mbox --version`, the metrics'
//! `build_info`), as `git rev-parse --short=12 HEAD` names it; "unknown" outside a git
//! checkout (a source tarball). Reruns when the checkout's HEAD moves, so a commit rebuilds
//! mbox-core once (uncommitted changes are not marked: watching the index would rebuild it
//! after every `git add`).

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=MBOX_COMMIT={commit}");
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
        if let Some(head) = git(&["symbolic-ref", "-q", "HEAD"]) {
            println!("cargo:rerun-if-changed={dir}/{head}");
        }
        // A ref packed away (git gc) moves there.
        println!("cargo:rerun-if-changed={dir}/packed-refs");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
