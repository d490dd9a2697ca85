//! Progress reporting: a bar on a terminal, nothing otherwise (schedulers
//! capture stderr, where redraws would only be noise).

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A spinner counting records, visible only when stderr is a terminal and
/// `enabled` is set.
pub fn records_spinner(enabled: bool, what: &str) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    if !enabled || !std::io::stderr().is_terminal() {
        pb.set_draw_target(ProgressDrawTarget::hidden());
    }
    let style =
        ProgressStyle::with_template("{spinner} {msg} {human_pos} records ({per_sec}) [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
    pb.set_style(style);
    pb.set_message(what.to_string());
    pb.enable_steady_tick(std::time::Duration::from_millis(200));
    pb
}
