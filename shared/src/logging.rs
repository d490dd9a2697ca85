//! The binaries' logs: to stderr, human (compact) or JSON per `log.format`,
//! filtered by `CVM_LOG` (default `info`, or `warn` when quiet).

use tracing_subscriber::fmt::format::FmtSpan;

/// Starts the process-wide subscriber. With `span_close`, each span's end is
/// logged with its fields and duration (the portal's per-request access log).
pub fn init(format: &str, quiet: bool, span_close: bool) {
    let default = if quiet { "warn" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("CVM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colour only on a terminal (cron mails and journald keep escape codes
    // verbatim), and not there either when NO_COLOR asks (no-color.org).
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(if span_close {
            FmtSpan::CLOSE
        } else {
            FmtSpan::NONE
        })
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    if format == "json" {
        b.json().init();
    } else {
        b.compact().init();
    }
}
