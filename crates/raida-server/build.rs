//! Records the build date (UTC, YYYYMMDD) for the Version command.
//! Honours SOURCE_DATE_EPOCH for reproducible builds.

fn main() {
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    println!("cargo:rerun-if-changed=build.rs");
    let secs = std::env::var("SOURCE_DATE_EPOCH").ok().and_then(|s| s.parse::<u64>().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
    });
    let (year, month, day) = raida_proto::consts::civil_date((secs / 86_400) as i64);
    println!("cargo:rustc-env=RAIDA_BUILD_DATE={year:04}{month:02}{day:02}");
}
