//! What `gdp` prints: text for people by default, one JSON object per line
//! with `--json`, and progress bars on standard error when it is a
//! terminal.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use bytes::Bytes;
use gdp_client::VerifiedRecord;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};

/// Where results go.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Out {
    pub(crate) json: bool,
}

impl Out {
    /// Prints `human` (text mode) or `value` (JSON mode) as one line.
    pub(crate) fn emit(&self, human: impl std::fmt::Display, value: Value) -> anyhow::Result<()> {
        let mut out = std::io::stdout().lock();
        if self.json {
            writeln!(out, "{value}")?;
        } else {
            writeln!(out, "{human}")?;
        }
        Ok(())
    }

    /// Prints one record: `seqno  time  payload`, the payload alone with
    /// `raw`, or a JSON object.
    /// Prints `r` with `plaintext` as its payload when given (a record of
    /// an encrypted capsule, decrypted).
    pub(crate) fn record_with(
        &self,
        r: &VerifiedRecord,
        plaintext: Option<&Bytes>,
        raw: bool,
    ) -> anyhow::Result<()> {
        let payload = plaintext.unwrap_or(r.payload());
        let mut out = std::io::stdout().lock();
        if self.json {
            writeln!(out, "{}", record_json(r, payload))?;
        } else if raw {
            out.write_all(payload)?;
            out.write_all(b"\n")?;
        } else {
            writeln!(
                out,
                "{:>8}  {}  {}",
                r.seqno(),
                format_time(r.timestamp().0),
                display_payload(payload)
            )?;
        }
        Ok(())
    }
}

/// A record as JSON: the payload as text when it is UTF-8, and always as
/// hex.
pub(crate) fn record_json(r: &VerifiedRecord, payload: &[u8]) -> Value {
    json!({
        "capsule": r.capsule().to_string(),
        "seqno": r.seqno(),
        "timestamp_us": r.timestamp().0,
        "hash": r.hash().to_string(),
        "payload": std::str::from_utf8(payload).ok(),
        "payload_hex": data_encoding::HEXLOWER.encode(payload),
        "verified_by_heartbeat_at": r.heartbeat().seqno(),
    })
}

/// A payload for a terminal: the text when it is printable UTF-8, else hex.
pub(crate) fn display_payload(p: &[u8]) -> String {
    match std::str::from_utf8(p) {
        Ok(s) if !s.chars().any(|c| c.is_control() && c != '\t') => s.to_owned(),
        _ => {
            const SHOWN: usize = 64;
            let hex = data_encoding::HEXLOWER.encode(&p[..p.len().min(SHOWN)]);
            if p.len() > SHOWN {
                format!("0x{hex}… ({} bytes)", p.len())
            } else {
                format!("0x{hex}")
            }
        }
    }
}

/// Microseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC).
pub(crate) fn format_time(us: u64) -> String {
    /// 10000-01-01T00:00:00Z: RFC 3339 has four-digit years.
    const YEAR_10000_US: u64 = 253_402_300_800_000_000;
    if us >= YEAR_10000_US {
        return "never".to_owned();
    }
    let at = std::time::UNIX_EPOCH + Duration::from_micros(us);
    humantime::format_rfc3339_millis(at).to_string()
}

/// A progress bar of `len` steps on standard error, or a hidden one when
/// standard error is not a terminal or the output is JSON.
pub(crate) fn progress(len: Option<u64>, what: &str, out: Out) -> ProgressBar {
    let visible = !out.json && std::io::stderr().is_terminal();
    let bar = match len {
        Some(n) => ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr()),
        None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
    };
    if !visible {
        bar.set_draw_target(ProgressDrawTarget::hidden());
        return bar;
    }
    let template = if len.is_some() {
        "{msg} [{bar:40}] {pos}/{len} ({per_sec}, {eta})"
    } else {
        "{msg} {spinner} {pos} ({per_sec})"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_owned());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// `n` per second over `d`, for summaries.
pub(crate) fn rate(n: u64, d: Duration) -> f64 {
    let s = d.as_secs_f64();
    if s > 0.0 { n as f64 / s } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_format_as_utc() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_time(1_700_000_000_123_000),
            "2023-11-14T22:13:20.123Z"
        );
        assert_eq!(format_time(951_782_400_000_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn payloads_show_as_text_or_hex() {
        assert_eq!(display_payload(b"hello world"), "hello world");
        assert_eq!(display_payload(&[0, 1, 255]), "0x0001ff");
        assert_eq!(display_payload(b"a\nb"), "0x610a62");
        let long = vec![7u8; 100];
        assert!(display_payload(&long).ends_with("(100 bytes)"));
    }

    #[test]
    fn rates_do_not_divide_by_zero() {
        assert_eq!(rate(10, Duration::ZERO), 0.0);
        assert_eq!(rate(10, Duration::from_secs(2)), 5.0);
    }
}
