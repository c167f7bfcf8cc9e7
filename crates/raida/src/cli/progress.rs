//! What `raida send` and `raida receive` show: lines and progress bars (indicatif, only on
//! a terminal) on stderr, nothing with `--quiet`, or one JSON object per event with
//! `--json` (on stdout, or on stderr when stdout carries the data).

use std::io::Write;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use raida_client::transfer::Event;

/// JSON progress events at most this often (the others are skipped; `completed` follows).
const JSON_PROGRESS_EVERY: Duration = Duration::from_millis(200);

pub struct Reporter {
    quiet: bool,
    json: bool,
    json_to_stderr: bool,
    /// "sent" or "received".
    verb: &'static str,
    bar: Option<ProgressBar>,
    last_json_progress: Option<Instant>,
}

impl Reporter {
    pub fn new(quiet: bool, json: bool, data_on_stdout: bool, verb: &'static str) -> Reporter {
        Reporter { quiet, json, json_to_stderr: data_on_stdout, verb, bar: None, last_json_progress: None }
    }

    pub fn event(&mut self, e: &Event) {
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
            Event::Listening { coin, address } => {
                eprintln!("receiving as coin {coin} on {address} (udp, tcp); waiting for a key")
            }
            Event::KeyRefused { from, reason } => eprintln!("refused a Key Alert from {from}: {reason}; still waiting"),
            Event::KeyExchanged { peer } => eprintln!("key exchanged through the RAIDA with coin {peer}"),
            Event::Connected { peer, address, phrase, .. } => {
                eprintln!("peer coin {peer} at {address}");
                eprintln!("verification phrase: {phrase}  (the other side must show the same words)");
            }
            Event::Started { name, size, resume_from } => {
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
                if let Some(b) = self.bar.take() {
                    b.finish_and_clear();
                }
                let what = match path {
                    Some(p) => format!("verified -> {p}"),
                    None if self.verb == "received" => "verified (written to stdout)".to_string(),
                    None => "confirmed by the receiver".to_string(),
                };
                eprintln!("{name}: {} {bytes} bytes, SHA-256 {sha256} {what}", self.verb);
            }
            Event::Refused { name, reason } => {
                if let Some(b) = self.bar.take() {
                    b.abandon();
                }
                eprintln!("{name}: refused: {reason}");
            }
            Event::Finished { items, bytes, seconds } => {
                let rate = if *seconds > 0.0 { *bytes as f64 / seconds / 1e6 } else { 0.0 };
                eprintln!("done: {items} item(s), {bytes} bytes in {seconds:.2} s ({rate:.1} MB/s)");
            }
        }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        if let Some(b) = self.bar.take() {
            b.abandon();
        }
    }
}
