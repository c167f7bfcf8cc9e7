//! Secrets (ANs, token and RAIDA secrets) from a file or standard input instead of the
//! command line: an argument is visible to every local user in /proc/PID/cmdline (and
//! `ps`) while the command runs, a file only its owner can read or a pipe is not.
//!
//! A file is refused, the way ssh refuses a private key file, when another user owns it
//! or its mode lets the group or others read or write it: its secret may already be known
//! (or replaced), and saying so once beats a warning nobody reads.

use std::io::Read;
use std::path::Path;

use anyhow::Context;
use zeroize::Zeroizing;

/// Most bytes read from a secret file: a handful of lines of hex.
const MAX_BYTES: u64 = 64 * 1024;

/// The lines of `path` (`-`: standard input), trimmed, without empty lines and `#` comments;
/// wiped on drop. `flag` names the option in errors (e.g. `--an-file`).
pub(crate) fn read_lines(path: &Path, flag: &str) -> anyhow::Result<Zeroizing<Vec<String>>> {
    let shown = path.display();
    let mut text = Zeroizing::new(String::new());
    if path == Path::new("-") {
        std::io::stdin()
            .take(MAX_BYTES)
            .read_to_string(&mut text)
            .with_context(|| format!("{flag} -: cannot read standard input"))?;
    } else {
        let mut f = std::fs::File::open(path).with_context(|| format!("{flag} {shown}: cannot open"))?;
        check_private(&f, path, flag)?;
        (&mut f)
            .take(MAX_BYTES)
            .read_to_string(&mut text)
            .with_context(|| format!("{flag} {shown}: cannot read (expected lines of hex)"))?;
    }
    let lines: Vec<String> =
        text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_string).collect();
    Ok(Zeroizing::new(lines))
}

/// [`read_lines`], exactly `n` lines of `what` expected (the error names the count found,
/// never the contents).
pub(crate) fn read_exactly(path: &Path, flag: &str, n: usize, what: &str) -> anyhow::Result<Zeroizing<Vec<String>>> {
    let lines = read_lines(path, flag)?;
    anyhow::ensure!(
        lines.len() == n,
        "{flag} {}: expected {n} line{} ({what}), found {}",
        path.display(),
        if n == 1 { "" } else { "s" },
        lines.len()
    );
    Ok(lines)
}

/// Refuse a file another user owns or that the group or others may read or write (what
/// ssh requires of a private key file); a regular file or a pipe (`<(...)`) only.
#[cfg(unix)]
fn check_private(f: &std::fs::File, path: &Path, flag: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let shown = path.display();
    let m = f.metadata().with_context(|| format!("{flag} {shown}: cannot read its metadata"))?;
    let kind = m.file_type();
    anyhow::ensure!(kind.is_file() || kind.is_fifo(), "{flag} {shown}: not a regular file or a pipe");
    // SAFETY: getuid has no preconditions and cannot fail
    let me = unsafe { libc::getuid() };
    anyhow::ensure!(
        m.uid() == me,
        "{flag} {shown}: owned by another user (uid {}), so its secret may be known: use a file of your own",
        m.uid()
    );
    let mode = m.mode() & 0o777;
    anyhow::ensure!(
        mode & 0o077 == 0,
        "{flag} {shown}: mode {mode:04o} lets other users read or change it: run `chmod 600 {shown}`"
    );
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_: &std::fs::File, _: &Path, _: &str) -> anyhow::Result<()> {
    Ok(())
}
