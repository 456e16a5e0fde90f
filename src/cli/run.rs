//! `lootsync run`: the peer daemon in the foreground, and the logging every command sets up.
//!
//! Under systemd (stderr is the journal stream `$JOURNAL_STREAM` names) each line starts
//! with its syslog priority (`<3>` error, `<4>` warning, `<6>` info, `<7>` debug), which
//! journald takes as the entry's priority and strips, so `journalctl -p warning` shows
//! every warning and error; the journal stamps the time, so the line carries none, and no
//! colour. On a terminal the lines are coloured and timed; into a pipe or file, timed only.

use anyhow::{Context, Result};
use loot_sync::config::Config;
use loot_sync::daemon::{self, DaemonOptions, LogControl, LogControlError};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

/// Runs the daemon until SIGINT or SIGTERM; SIGHUP re-reads `config_file` (when the config
/// came from one).
pub fn daemon(config: Config, config_file: Option<PathBuf>) -> Result<()> {
    // Before any thread exists (arenas are made per thread).
    let tuned = daemon::allocator::tune_for_daemon();
    let log_control = init_logging(&config.log.level);
    if !tuned {
        tracing::warn!("the allocator refused its settings: large freed buffers may stay resident");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime
        .block_on(daemon::run_until_signal(
            config,
            DaemonOptions {
                log_control,
                config_file,
                ..DaemonOptions::default()
            },
        ))
        .context("daemon failed")?;
    Ok(())
}

type FilterHandle = reload::Handle<EnvFilter, Registry>;

/// Switches `sync=debug` on and off on top of the configured filter, and swaps the
/// configured filter on reload.
struct ReloadLogControl {
    /// The configured filter and whether SYNC debug lines are on.
    state: Mutex<(String, bool)>,
    /// `RUST_LOG` was set at start: it overrides `log.level`, on reload too.
    pinned: bool,
    handle: FilterHandle,
}

impl ReloadLogControl {
    fn apply(&self, base: &str, sync_debug: bool) -> Result<(), LogControlError> {
        let sync = if sync_debug { "debug" } else { "info" };
        let filter = EnvFilter::try_new(format!("{base},sync={sync}"))?;
        self.handle.reload(filter)?;
        Ok(())
    }
}

impl LogControl for ReloadLogControl {
    fn set_sync_debug(&self, enabled: bool) -> Result<(), LogControlError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.apply(&state.0, enabled)?;
        state.1 = enabled;
        Ok(())
    }

    fn set_level(&self, level: &str) -> Result<(), LogControlError> {
        if self.pinned {
            return Err("RUST_LOG is set and overrides log.level; unset it and restart".into());
        }
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.apply(level, state.1)?;
        state.0 = level.to_owned();
        Ok(())
    }
}

/// Installs the global subscriber (see the module doc for the line formats). Returns a
/// handle that switches SYNC debug lines and the filter at run time.
pub fn init_logging(default_filter: &str) -> Option<Arc<dyn LogControl>> {
    // RUST_LOG, when set, overrides the config so one run can be debugged without editing it.
    let from_env = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| EnvFilter::try_new(v).is_ok());
    let pinned = from_env.is_some();
    let base = from_env.unwrap_or_else(|| default_filter.to_string());
    let filter = EnvFilter::try_new(&base).unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let lines = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let lines = if stderr_is_journal() {
        lines
            .with_ansi(false)
            .event_format(SyslogPriority(
                tracing_subscriber::fmt::format().without_time(),
            ))
            .boxed()
    } else {
        lines.with_ansi(std::io::stderr().is_terminal()).boxed()
    };
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(lines)
        .try_init()
        .is_ok();
    installed.then(|| {
        Arc::new(ReloadLogControl {
            state: Mutex::new((base, false)),
            pinned,
            handle,
        }) as Arc<dyn LogControl>
    })
}

/// Whether stderr is the journal's stream: systemd sets `$JOURNAL_STREAM` to
/// `DEVICE:INODE` of the stream it connects, and a child whose stderr was redirected
/// elsewhere inherits the variable but not the stream, hence the comparison.
fn stderr_is_journal() -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(stderr) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    let Ok(meta) = std::fs::File::from(stderr).metadata() else {
        return false;
    };
    value.to_str() == Some(&format!("{}:{}", meta.dev(), meta.ino()))
}

/// `message` as the lines to print on stderr for a command's final error: under systemd
/// each line carries the error priority (`<3>`), as the log lines do, so `daemon failed`
/// shows in `journalctl -p err`.
pub fn error_lines(message: &str) -> String {
    journal_lines(
        message,
        stderr_is_journal().then_some(syslog_priority(Level::ERROR)),
    )
}

/// `text` line by line, each prefixed with `<priority>` when there is one.
fn journal_lines(text: &str, priority: Option<u8>) -> String {
    text.lines()
        .map(|line| match priority {
            Some(priority) => format!("<{priority}>{line}\n"),
            None => format!("{line}\n"),
        })
        .collect()
}

/// The syslog priority journald reads from a line's `<N>` prefix.
fn syslog_priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// An event format that puts the sd-daemon priority prefix before each line another format
/// writes.
struct SyslogPriority<F>(F);

impl<S, N, F> FormatEvent<S, N> for SyslogPriority<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        // Every line of a message that spans several (a TOML error quoting the file) is a
        // journal entry of its own: each carries the priority, or the rest would be info.
        let priority = syslog_priority(*event.metadata().level());
        writer.write_str(&journal_lines(&line, Some(priority)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::{error, info, warn};

    /// Collects what the formatter writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn journal_lines_carry_their_priority_and_no_time_or_colour() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .with_writer(move || writer.clone())
                .with_ansi(false)
                .event_format(SyslogPriority(
                    tracing_subscriber::fmt::format().without_time(),
                )),
        );
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("node", name = "alice");
            let _enter = span.enter();
            error!("daemon failed");
            warn!("NO GROUP KEY");
            info!("started");
            tracing::debug!("hidden? no: no filter here");
            warn!("reload failed:\n  unknown field `bogus`");
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 6, "{text}");
        assert!(
            lines[0].starts_with("<3>ERROR node{name=\"alice\"}: "),
            "{text}"
        );
        assert!(lines[1].starts_with("<4>"), "{text}");
        assert!(lines[1].ends_with("NO GROUP KEY"), "{text}");
        assert!(lines[2].starts_with("<6>"), "{text}");
        assert!(lines[3].starts_with("<7>"), "{text}");
        assert!(
            lines[4].starts_with("<4>") && lines[4].ends_with("reload failed:"),
            "{text}"
        );
        assert_eq!(lines[5], "<4>  unknown field `bogus`", "{text}");
        assert!(!text.contains('\x1b'), "colour in {text:?}");
        // No timestamp of our own: the journal stamps each entry.
        assert!(
            lines
                .iter()
                .all(|line| !line[3..].contains(char::is_numeric)),
            "{text}"
        );
    }

    #[test]
    fn journal_stream_must_be_this_stderr() {
        // The test harness's stderr is not the stream a bogus variable names.
        std::env::set_var("JOURNAL_STREAM", "1:1");
        assert!(!stderr_is_journal());
        std::env::remove_var("JOURNAL_STREAM");
        assert!(!stderr_is_journal());
    }
}
