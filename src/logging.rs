//! Log set-up: text for people, JSON lines for machines.
//!
//! Log lines carry strings that come from job messages and disk images (an unreadable
//! job id, a rejection message quoting a field, a guest path in an error). JSON escapes
//! them by itself; the text format does not, so a newline in such a string could forge a
//! whole log line. Text logs therefore pass through [`OneLine`], which escapes every
//! control character of an event but its final newline.

use std::io::{self, Write};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. Logs go to stderr so `submit` and `inspect` can
/// print their results on stdout.
pub fn init(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    // The HTTP client logs request URLs (with a pre-signed URL's query) at trace level:
    // its own lines are capped at warn, whatever the level asked.
    let filter = ["ureq=warn", "ureq_proto=warn", "rustls=warn"]
        .iter()
        .filter_map(|d| d.parse().ok())
        .fold(filter, |f, d| f.add_directive(d));
    use std::io::IsTerminal;
    let ansi = io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(OneLine)
        .with_ansi(ansi);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        // Colours are escape sequences: on a terminal (a person watching) they stay, and
        // tracing-subscriber already escapes escape sequences inside field values.
        LogFormat::Text if ansi => builder.with_writer(io::stderr).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Makes one [`OneLineWriter`] per log event (tracing-subscriber formats an event
/// completely, then writes it through a fresh writer).
#[derive(Debug, Clone, Copy)]
pub struct OneLine;

impl<'a> MakeWriter<'a> for OneLine {
    type Writer = OneLineWriter<io::Stderr>;
    fn make_writer(&'a self) -> Self::Writer {
        OneLineWriter::new(io::stderr())
    }
}

/// Gathers one formatted event and writes it to `out` on drop as exactly one line:
/// control characters (newlines, carriage returns, escape sequences, NULs) inside it
/// are written as `\n`, `\r`, `\u{1b}`, ...
pub struct OneLineWriter<W: Write> {
    out: W,
    buf: Vec<u8>,
}

impl<W: Write> OneLineWriter<W> {
    pub fn new(out: W) -> OneLineWriter<W> {
        OneLineWriter {
            out,
            buf: Vec::with_capacity(256),
        }
    }
}

impl<W: Write> Write for OneLineWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write> Drop for OneLineWriter<W> {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.buf);
        let body = text.strip_suffix('\n').unwrap_or(&text);
        let mut line = String::with_capacity(body.len() + 1);
        for c in body.chars() {
            if c.is_control() {
                line.extend(c.escape_default());
            } else {
                line.push(c);
            }
        }
        line.push('\n');
        let _ = self.out.write_all(line.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_line(input: &str) -> String {
        let mut out = Vec::new();
        {
            let mut w = OneLineWriter::new(&mut out);
            w.write_all(input.as_bytes()).unwrap();
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn an_event_with_injected_lines_stays_one_line() {
        let forged = "WARN message rejected job_id=x\n2026-01-01T00:00:00Z INFO job finished status=completed\r\u{1b}[2K\0\n";
        let got = one_line(forged);
        assert_eq!(got.matches('\n').count(), 1, "{got:?}");
        assert!(got.ends_with('\n'));
        assert!(got.contains(r"job_id=x\n2026"), "{got:?}");
        assert!(got.contains(r"\r\u{1b}[2K\u{0}"), "{got:?}");
    }

    #[test]
    fn plain_text_and_unicode_pass_unchanged() {
        assert_eq!(
            one_line("INFO job started ü 日本\n"),
            "INFO job started ü 日本\n"
        );
        assert_eq!(one_line("no newline"), "no newline\n");
    }
}
