//! `raida --version`: the commit (`RAIDA_BUILD_COMMIT` if set, else `git rev-parse` when
//! built from a git checkout, else "unknown", so a source tarball still builds) and the
//! build date (UTC; SOURCE_DATE_EPOCH honoured for reproducible builds).

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

fn main() {
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    println!("cargo:rerun-if-env-changed=RAIDA_BUILD_COMMIT");
    println!("cargo:rerun-if-changed=build.rs");
    // a new commit changes HEAD (a branch) or the ref it points to
    if let Some(head) = git(&["rev-parse", "--git-path", "HEAD"]) {
        println!("cargo:rerun-if-changed={head}");
    }
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        if let Some(path) = git(&["rev-parse", "--git-path", &branch]) {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    let commit = std::env::var("RAIDA_BUILD_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=RAIDA_BUILD_COMMIT={commit}");
    let secs = std::env::var("SOURCE_DATE_EPOCH").ok().and_then(|s| s.parse::<u64>().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
    });
    let (year, month, day) = raida_proto::consts::civil_date((secs / 86_400) as i64);
    println!("cargo:rustc-env=RAIDA_BUILD_DATE={year:04}-{month:02}-{day:02}");
}
