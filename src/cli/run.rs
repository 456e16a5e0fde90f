//! `lootsync run`: the peer daemon in the foreground, and the logging every command sets up.

use anyhow::{Context, Result};
use loot_sync::config::Config;
use loot_sync::daemon::{self, DaemonOptions, LogControl, LogControlError};
use std::io::IsTerminal;
use std::sync::Arc;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

/// Runs the daemon until SIGINT or SIGTERM.
pub fn daemon(config: Config) -> Result<()> {
    let log_control = init_logging(&config.log.level);
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
                ..DaemonOptions::default()
            },
        ))
        .context("daemon failed")?;
    Ok(())
}

type FilterHandle = reload::Handle<EnvFilter, Registry>;

/// Switches `sync=debug` on and off on top of the configured filter.
struct ReloadLogControl {
    base: String,
    handle: FilterHandle,
}

impl LogControl for ReloadLogControl {
    fn set_sync_debug(&self, enabled: bool) -> Result<(), LogControlError> {
        let directives = if enabled {
            format!("{},sync=debug", self.base)
        } else {
            format!("{},sync=info", self.base)
        };
        let filter = EnvFilter::try_new(directives)?;
        self.handle.reload(filter)?;
        Ok(())
    }
}

/// Installs the global subscriber: plain lines without colour when stderr is not a terminal
/// (journald). Returns a handle that switches SYNC debug lines at run time.
pub fn init_logging(default_filter: &str) -> Option<Arc<dyn LogControl>> {
    // RUST_LOG, when set, overrides the config so one run can be debugged without editing it.
    let base = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| EnvFilter::try_new(v).is_ok())
        .unwrap_or_else(|| default_filter.to_string());
    let filter = EnvFilter::try_new(&base).unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal()),
        )
        .try_init()
        .is_ok();
    installed.then(|| Arc::new(ReloadLogControl { base, handle }) as Arc<dyn LogControl>)
}
