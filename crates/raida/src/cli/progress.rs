//! What `raida send` and `raida receive` show: lines and progress bars (indicatif, only on
//! a terminal) on stderr, nothing with `--quiet`, or one JSON object per event with
//! `--json` (on stdout, or on stderr when stdout carries the data).

use std::io::Write;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use raida_client::rke::{KeyProgress, ProgressHook};
use raida_client::transfer::{escape, is_forbidden_char, Event};

/// The key exchange's progress ("posting key parts: 12/16 RAIDAs answered, waiting for 4
/// (ids ...)"), so that RAIDAs that are down do not mean seconds of silence: on a progress
/// line when stderr is a terminal, as plain lines with `-v` otherwise; never with `--json`
/// or `--quiet`. Cleared once the key is exchanged (or on drop).
pub(crate) struct KeyLine {
    bar: Option<ProgressBar>,
}

impl KeyLine {
    /// The line and the hook to hand to `rke::SendOptions::progress` (None: nothing shown).
    pub(crate) fn new(quiet: bool, json: bool) -> (KeyLine, Option<ProgressHook>) {
        use std::io::IsTerminal;
        if quiet || json {
            return (KeyLine { bar: None }, None);
        }
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{spinner} {msg}").unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            let shown = bar.clone();
            let hook = ProgressHook::new(move |p: &KeyProgress| shown.set_message(p.to_string()));
            return (KeyLine { bar: Some(bar) }, Some(hook));
        }
        if super::verbose() {
            // one line per change, not one per attempt round
            let last = std::sync::Mutex::new(String::new());
            let hook = ProgressHook::new(move |p: &KeyProgress| {
                let line = p.to_string();
                let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
                if *last != line {
                    eprintln!("{line}");
                    *last = line;
                }
            });
            return (KeyLine { bar: None }, Some(hook));
        }
        (KeyLine { bar: None }, None)
    }

    /// The key is exchanged (or the exchange failed): the line goes.
    pub(crate) fn done(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

impl Drop for KeyLine {
    fn drop(&mut self) {
        self.done();
    }
}

/// JSON progress events at most this often (the others are skipped; `completed` follows).
const JSON_PROGRESS_EVERY: Duration = Duration::from_millis(200);

pub(crate) struct Reporter {
    quiet: bool,
    json: bool,
    json_to_stderr: bool,
    /// "sent" or "received".
    verb: &'static str,
    bar: Option<ProgressBar>,
    last_json_progress: Option<Instant>,
    /// The key exchange's line, until the key is exchanged.
    key_line: Option<KeyLine>,
}

impl Reporter {
    pub(crate) fn new(quiet: bool, json: bool, data_on_stdout: bool, verb: &'static str) -> Reporter {
        Reporter {
            quiet,
            json,
            json_to_stderr: data_on_stdout,
            verb,
            bar: None,
            last_json_progress: None,
            key_line: None,
        }
    }

    /// The hook for the key exchange's progress (None when nothing is to be shown); the
    /// line is cleared at the `key_exchanged` event.
    pub(crate) fn key_progress(&mut self) -> Option<ProgressHook> {
        let (line, hook) = KeyLine::new(self.quiet, self.json);
        self.key_line = Some(line);
        hook
    }

    pub(crate) fn event(&mut self, e: &Event) {
        if let (Event::KeyExchanged { .. }, Some(mut line)) = (e, self.key_line.take()) {
            line.done();
        }
        if self.json {
            self.json_event(e);
        } else if !self.quiet {
            self.text_event(e);
        }
    }

    fn json_event(&mut self, e: &Event) {
        if let Event::Progress { .. } = e {
            let now = Instant::now();
            if self.last_json_progress.is_some_and(|t| now.duration_since(t) < JSON_PROGRESS_EVERY) {
                return;
            }
            self.last_json_progress = Some(now);
        }
        let Ok(line) = serde_json::to_string(e) else { return };
        let line = json_safe(&line);
        if self.json_to_stderr {
            eprintln!("{line}");
        } else {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }

    fn text_event(&mut self, e: &Event) {
        match e {
            Event::Listening { coin, address } => eprintln!("receiving as coin {coin} on {address}; waiting for a key"),
            Event::KeyRefused { from, reason } => eprintln!("refused a Key Alert from {from}: {reason}; still waiting"),
            Event::KeyExchanged { peer } => eprintln!("key exchanged through the RAIDA with coin {peer}"),
            Event::Connected { peer, address, phrase, path, .. } => {
                eprintln!("peer coin {peer} at {address} ({path} path)");
                eprintln!("verification phrase: {phrase}  (the other side must show the same words)");
            }
            Event::Manifest { names, count, bytes, streams } => {
                let streams =
                    if *streams > 0 { format!(", {streams} stream(s) of unknown size") } else { String::new() };
                let first = names.iter().take(5).map(|n| escape(n)).collect::<Vec<_>>().join(", ");
                let more = if names.len() > 5 { ", ..." } else { "" };
                eprintln!("offered: {count} item(s), {bytes} bytes{streams}: {first}{more}");
            }
            Event::Accepted { count } => eprintln!("accepted {count} item(s)"),
            Event::Started { name, size, resume_from } => {
                let name = &escape(name);
                if *resume_from > 0 {
                    eprintln!("{name}: resuming after {resume_from} bytes already there");
                }
                let bar = match size {
                    Some(s) => ProgressBar::new(*s).with_style(
                        ProgressStyle::with_template(
                            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                    ),
                    None => ProgressBar::new_spinner().with_style(
                        ProgressStyle::with_template("{msg} {spinner} {bytes} {bytes_per_sec}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    ),
                };
                bar.set_message(name.clone());
                bar.set_position(*resume_from);
                bar.reset_eta();
                self.bar = Some(bar);
            }
            Event::Progress { bytes, .. } => {
                if let Some(b) = &self.bar {
                    b.set_position(*bytes);
                }
            }
            Event::Completed { name, bytes, sha256, path } => {
                let name = escape(name);
                if let Some(b) = self.bar.take() {
                    b.finish_and_clear();
                }
                let what = match path {
                    Some(p) => format!("verified -> {}", escape(p)),
                    None if self.verb == "received" => "verified (written to stdout)".to_string(),
                    None => "confirmed by the receiver".to_string(),
                };
                eprintln!("{name}: {} {bytes} bytes, SHA-256 {sha256} {what}", self.verb);
            }
            Event::Folder { name, path } => match path {
                Some(p) => eprintln!("{}/: folder -> {}", escape(name), escape(p)),
                None => eprintln!("{}/: folder created by the receiver", escape(name)),
            },
            Event::Refused { name, reason } => {
                if let Some(b) = self.bar.take() {
                    b.abandon();
                }
                // the reason is already escaped where it came from the peer
                eprintln!("{}: refused: {reason}", escape(name));
            }
            Event::Finished { items, bytes, seconds } => {
                let rate = if *seconds > 0.0 { *bytes as f64 / seconds / 1e6 } else { 0.0 };
                eprintln!("done: {items} item(s), {bytes} bytes in {seconds:.2} s ({rate:.1} MB/s)");
            }
        }
    }
}

/// A JSON line with every character [`is_forbidden_char`] holds for written as `\uXXXX`
/// (serde_json leaves U+202E, U+2028 and the like raw): the same JSON value, and nothing a
/// terminal would act on. Such characters only occur inside strings.
fn json_safe(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    for c in line.chars() {
        if is_forbidden_char(c) {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl Drop for Reporter {
    fn drop(&mut self) {
        if let Some(mut line) = self.key_line.take() {
            line.done();
        }
        if let Some(b) = self.bar.take() {
            b.abandon();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_keep_their_value_and_lose_every_forbidden_character() {
        let e = Event::Refused { name: "a\u{202E}b\u{2028}c\u{85}\u{E0001}".into(), reason: "x".into() };
        let line = json_safe(&serde_json::to_string(&e).expect("json"));
        assert!(!line.chars().any(is_forbidden_char), "{line}");
        let back: serde_json::Value = serde_json::from_str(&line).expect("still JSON");
        assert_eq!(back["name"], "a\u{202E}b\u{2028}c\u{85}\u{E0001}");
    }
}
