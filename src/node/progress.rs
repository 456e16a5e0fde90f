//! Progress bars for long log scans (verify, repair, start-up replay of a large log).
//!
//! Bars go to stderr and only when stderr is a terminal: under systemd, in tests and in
//! pipes there is no bar at all, not even a final line. The store reports progress through
//! a plain `FnMut(bytes_done, bytes_total)` so it stays free of any terminal code.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;

/// Start-up replays of logs smaller than this finish too fast for a bar to be useful.
pub const STARTUP_BAR_MIN_BYTES: u64 = 32 << 20;

/// A byte-counting bar labelled `what`, hidden unless stderr is a terminal.
pub fn bytes_bar(what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    let style = ProgressStyle::with_template(
        "{msg} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta} left)",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(what.to_string());
    bar
}

/// Adapts a bar to the store's progress callback.
pub fn reporter(bar: &ProgressBar) -> impl FnMut(u64, u64) + '_ {
    move |done, total| {
        if bar.length() != Some(total) {
            bar.set_length(total);
        }
        bar.set_position(done);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reporter_tracks_length_and_position_even_when_hidden() {
        let bar = ProgressBar::hidden();
        {
            let mut report = reporter(&bar);
            report(10, 100);
            report(60, 100);
        }
        assert_eq!(bar.length(), Some(100));
        assert_eq!(bar.position(), 60);
    }
}
