//! The daemon: wires the sans-IO [`Peer`] to real sockets, the log file, the control socket
//! and time. This module only moves bytes and time; every protocol decision is the peer's.

pub mod net;
pub mod notify;

use crate::config::{Config, FsyncPolicy};
use crate::control::{self, AdjustResult, PeerStatus, Reply, Request, StatusResult};
use crate::core::rng::SeededRng;
use crate::core::sync::{Action, Channel, Now, Peer};
use crate::node;
use crate::proto::entry::{Entry, EntryKind};
use crate::proto::seal::{KeyError, Keyring, NoncePrefix, Sealer};
use crate::store::{LogStore, StoreError};
use net::{NetError, Sockets};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, error, info, warn, Instrument};

/// A control connection that sends no complete request for this long is closed.
const CONTROL_IDLE: Duration = Duration::from_secs(60);
/// Largest datagram we read; anything longer is cut and then rejected by the codec.
const RECV_BUFFER: usize = 2048;

/// Where the daemon reads wall-clock time. Tests inject a skewed clock through this.
pub trait Clock: Send + Sync + 'static {
    /// Current wall-clock time in Unix milliseconds.
    fn unix_ms(&self) -> u64;
}

/// The system clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn unix_ms(&self) -> u64 {
        node::system_unix_ms()
    }
}

/// The system clock shifted by an adjustable offset (a wrong clock, for tests and demos).
#[derive(Debug, Default)]
pub struct OffsetClock {
    offset_ms: AtomicI64,
}

impl OffsetClock {
    /// A clock `offset_ms` ahead of the system clock (negative: behind).
    pub fn new(offset_ms: i64) -> OffsetClock {
        OffsetClock {
            offset_ms: AtomicI64::new(offset_ms),
        }
    }

    /// Changes the offset.
    pub fn set_offset_ms(&self, offset_ms: i64) {
        self.offset_ms.store(offset_ms, Ordering::Relaxed);
    }
}

impl Clock for OffsetClock {
    fn unix_ms(&self) -> u64 {
        let now = node::system_unix_ms() as i64;
        now.saturating_add(self.offset_ms.load(Ordering::Relaxed))
            .max(0) as u64
    }
}

/// Switches the `sync` target's debug logging at run time (the CLI installs one backed by a
/// tracing reload handle; tests can install their own).
pub trait LogControl: Send + Sync + 'static {
    /// Turns SYNC debug lines on or off.
    fn set_sync_debug(&self, enabled: bool) -> Result<(), String>;
}

/// Sees entries enter a daemon's ledger the moment they do (a measurement hook: the
/// benchmarks time propagation with it, where polling the control socket would add
/// its own round trip and quantisation). Called on the daemon's task, so keep it quick.
pub trait LedgerObserver: Send + Sync + 'static {
    /// A local adjust is durable and applied; called just before its success reply is sent.
    fn acknowledged(&self, _entry: &Entry) {}
    /// Entries learned from peers were applied to the ledger and appended to the log.
    fn merged(&self, _entries: &[Entry]) {}
}

/// How a daemon is run beyond its config: hooks for tests and tools.
#[derive(Clone)]
pub struct DaemonOptions {
    /// Run-time control of debug logging; `None` when logging is not ours to change.
    pub log_control: Option<Arc<dyn LogControl>>,
    /// Wall clock for entry timestamps.
    pub clock: Arc<dyn Clock>,
    /// Fraction of received datagrams to drop on purpose (test hook for lossy networks).
    pub receive_drop_rate: f64,
    /// Seed for the peer's RNG; random when `None`.
    pub seed: Option<u64>,
    /// Told about every entry entering the ledger; `None` in normal runs.
    pub observer: Option<Arc<dyn LedgerObserver>>,
}

impl Default for DaemonOptions {
    fn default() -> DaemonOptions {
        DaemonOptions {
            log_control: None,
            clock: Arc::new(SystemClock),
            receive_drop_rate: 0.0,
            seed: None,
            observer: None,
        }
    }
}

/// The daemon could not start.
#[derive(Debug, Error)]
pub enum DaemonError {
    /// The log could not be opened (locked, damaged, unreadable).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The sockets could not be set up.
    #[error(transparent)]
    Net(#[from] NetError),
    /// The officer key file is missing, unreadable, malformed or readable by others.
    #[error("security.officer_key_file: {0}")]
    OfficerKey(#[from] crate::proto::signature::KeyError),
    /// A group key file is missing, malformed or readable by others.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The control socket could not be created.
    #[error("cannot create control socket {path}")]
    Control {
        /// Socket path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

type ControlMessage = (Request, oneshot::Sender<Reply>);

/// A daemon running as a task in the current tokio runtime.
pub struct RunningDaemon {
    /// The daemon's whisper (unicast) address.
    pub whisper_addr: SocketAddr,
    /// Its control socket.
    pub control_path: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningDaemon {
    /// Graceful shutdown: stop, flush the log, remove the control socket, release the lock.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }

    /// Stops the task without flushing (closest to a crash an in-process test can get; the
    /// lock and files are released as the task's state is dropped).
    pub async fn abort(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    /// Sends a control request the way the CLI would, over the control socket.
    pub async fn request(
        &self,
        request: Request,
    ) -> Result<serde_json::Value, control::ControlError> {
        let path = self.control_path.clone();
        tokio::task::spawn_blocking(move || control::call(&path, &request))
            .await
            .unwrap_or_else(|join| {
                Err(control::ControlError::Refused(format!(
                    "client task failed: {join}"
                )))
            })
    }
}

/// Opens the log, sockets and control socket, then runs the daemon as a task. Errors in
/// set-up are returned here; once running, the daemon only stops when told to.
pub async fn start(config: Config, options: DaemonOptions) -> Result<RunningDaemon, DaemonError> {
    let span = tracing::info_span!("node", name = %config.node);
    // Keys first: a key file others can read must stop the daemon before it touches anything.
    let sealer = {
        let _enter = span.enter();
        security(&config)?
    };
    let officer_key = config.officer_key()?;
    let (store, ledger, report) = {
        let _enter = span.enter();
        node::open_log_indexed(&config, node::DAEMON_LOCK_WAIT)?
    };
    let sockets = net::open(&config)?;
    let control_path = control::socket_path(&config.state_dir);
    // We hold the state-directory lock, so a socket file left here is from a dead daemon.
    let _ = std::fs::remove_file(&control_path);
    let listener = control::bind(&control_path, config.control.group.as_deref())
        .and_then(UnixListener::from_std)
        .map_err(|source| DaemonError::Control {
            path: control_path.clone(),
            source,
        })?;
    let rng = match options.seed {
        Some(seed) => SeededRng::new(seed),
        None => SeededRng::from_os(),
    };
    let started = Instant::now();
    let now = Now {
        mono_ms: 0,
        unix_ms: options.clock.unix_ms(),
    };
    let mut peer = Peer::with_ledger(
        node::peer_config(&config, sockets.whisper_addr.port()),
        ledger,
        rng,
        now,
    );
    peer.set_roster(config.root_public_key(), officer_key);
    // OS entropy, not the peer's seeded RNG (whose state its broadcast node id reveals).
    let mut cookie_key = [0u8; 32];
    getrandom::fill(&mut cookie_key).map_err(|e| KeyError::Entropy(e.into()))?;
    peer.set_group_key(sealer, cookie_key);
    let warned_no_valid_roster = {
        let _enter = span.enter();
        let warned = match config.root_public_key() {
            None => {
                warn!(
                    "OPEN ROSTER: no security.root_public_key configured, so ANY peer may \
                     write entries that count; set a root key (lootsync keygen root) for a \
                     real group"
                );
                false
            }
            Some(root) => {
                info!(
                    "officer roster: root key {root}, {} officers, {} entries rejected",
                    peer.ledger().officers().len(),
                    peer.ledger().rejected()
                );
                warn_if_no_valid_roster(peer.ledger(), root)
            }
        };
        info!(
            "lootsync {} node {} group {} on {} (whisper {}): {} entries, {} players, log {}",
            env!("CARGO_PKG_VERSION"),
            config.node,
            config.group.name,
            sockets.group_addr,
            sockets.whisper_addr,
            report.entries,
            peer.ledger().totals().len(),
            store.path().display()
        );
        warned
    };
    let (control_tx, control_rx) = mpsc::channel::<ControlMessage>(64);
    tokio::spawn(accept_control(listener, control_tx).instrument(span.clone()));
    let (stop_tx, stop_rx) = oneshot::channel();
    let whisper_addr = sockets.whisper_addr;
    let drop_rng = SeededRng::new(options.seed.unwrap_or(0) ^ 0x5eed);
    // `net::open` joins the group only when sync starts on.
    let group_member = config.sync.enabled;
    let driver = Driver {
        config,
        options,
        store,
        peer,
        sockets,
        started,
        flush_at: None,
        flushing: None,
        remote_appends: 0,
        append_failures: 0,
        warned_no_valid_roster,
        send_errors: 0,
        drop_rng,
        hook_drops: 0,
        control_path: control_path.clone(),
        group_member,
    };
    let task = tokio::spawn(driver.run(control_rx, stop_rx).instrument(span));
    Ok(RunningDaemon {
        whisper_addr,
        control_path,
        stop: Some(stop_tx),
        task,
    })
}

/// Loads the group key(s) named in `[security]`, or warns loudly that traffic is in the clear.
fn security(config: &Config) -> Result<Sealer, KeyError> {
    let Some(current) = &config.security.group_key_file else {
        warn!(
            "NO GROUP KEY: datagrams are sent in the clear and anyone who can reach group {}:{} \
             can read the ledger and add entries. Fine for a loopback trial; on a LAN set \
             [security] group_key_file (make one with `lootsync keygen group FILE`)",
            config.group.address, config.group.port
        );
        return Ok(Sealer::clear());
    };
    let keyring = Keyring::load(current, &config.security.previous_key_files)?;
    info!(
        "group key {} from {} ({} previous key(s) accepted)",
        keyring.current_id(),
        current.display(),
        config.security.previous_key_files.len()
    );
    Ok(Sealer::new(keyring, NoncePrefix::from_os()?))
}

/// Runs a daemon until SIGINT or SIGTERM, then shuts it down gracefully.
pub async fn run_until_signal(config: Config, options: DaemonOptions) -> Result<(), DaemonError> {
    let daemon = start(config, options).await?;
    // `start` returns once the log is replayed and every socket is bound: that is ready.
    notify_systemd("READY=1\nSTATUS=log replayed, sockets up");
    wait_for_signal().await;
    info!("shutting down");
    notify_systemd("STOPPING=1");
    daemon.stop().await;
    Ok(())
}

/// Tells systemd about a state change; a failure only costs the notification, so it is
/// logged rather than stopping the daemon.
fn notify_systemd(state: &str) {
    match crate::daemon::notify::notify(state) {
        Ok(true) => debug!("notified systemd: {}", state.replace('\n', " ")),
        Ok(false) => {}
        Err(err) => warn!("{err}"),
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(err) => {
            warn!("cannot watch SIGTERM ({err}); stopping on Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

async fn accept_control(listener: UnixListener, tx: mpsc::Sender<ControlMessage>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve_control(stream, tx.clone()).in_current_span());
            }
            Err(err) => {
                warn!("control socket accept failed: {err}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        if tx.is_closed() {
            return;
        }
    }
}

async fn serve_control(stream: tokio::net::UnixStream, tx: mpsc::Sender<ControlMessage>) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    loop {
        let mut bytes = Vec::new();
        // Bounded read: a client cannot make us buffer an endless line, nor hold a
        // connection open forever without sending one.
        let limit = control::MAX_REQUEST_BYTES as u64 + 1;
        let mut bounded = (&mut reader).take(limit);
        let read = bounded.read_until(b'\n', &mut bytes);
        match tokio::time::timeout(CONTROL_IDLE, read).await {
            Ok(Ok(0)) => return,
            Ok(Ok(_)) => {}
            Ok(Err(err)) => {
                debug!("control connection read failed: {err}");
                return;
            }
            Err(_) => {
                debug!("control connection idle for {CONTROL_IDLE:?}; closed");
                return;
            }
        }
        // The read stops one byte past the limit, so a longer line shows as limit + 1 bytes
        // without its newline.
        let content = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
        let too_long = content.len() > control::MAX_REQUEST_BYTES;
        let parsed = if too_long {
            Err(format!(
                "request longer than {} bytes",
                control::MAX_REQUEST_BYTES
            ))
        } else {
            match String::from_utf8(bytes) {
                Ok(line) => control::parse_request(&line),
                Err(_) => Err("bad request: not UTF-8".to_string()),
            }
        };
        let reply = match parsed {
            Err(message) => {
                debug!("control request rejected: {message}");
                Reply::error(message)
            }
            Ok(request) => {
                let (reply_tx, reply_rx) = oneshot::channel();
                if tx.send((request, reply_tx)).await.is_err() {
                    Reply::error("daemon is shutting down")
                } else {
                    reply_rx
                        .await
                        .unwrap_or_else(|_| Reply::error("daemon is shutting down"))
                }
            }
        };
        let mut out = serde_json::to_string(&reply)
            .unwrap_or_else(|_| r#"{"ok":false,"error":"cannot encode reply"}"#.into());
        out.push('\n');
        // After an over-long line the rest of it is still unread: close rather than parse
        // its tail as a new request.
        if write.write_all(out.as_bytes()).await.is_err() || too_long {
            return;
        }
    }
}

struct Driver {
    config: Config,
    options: DaemonOptions,
    store: LogStore,
    peer: Peer,
    sockets: Sockets,
    started: Instant,
    flush_at: Option<Instant>,
    /// A group commit running on a blocking thread, so a slow fdatasync never stalls sync.
    flushing: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    /// Batches of entries merged from peers appended to the log.
    remote_appends: u64,
    /// Appends of merged entries that failed (the entries wait in memory for the next).
    append_failures: u64,
    /// Whether merged roster changes, none signed by this peer's root key, were warned
    /// about (once per run: usually this peer's root key is mistyped).
    warned_no_valid_roster: bool,
    send_errors: u64,
    drop_rng: SeededRng,
    hook_drops: u64,
    control_path: PathBuf,
    /// Whether the group socket is a member of the multicast group (not while sync is off).
    group_member: bool,
}

enum Event {
    Datagram(Channel, SocketAddr, usize),
    Control(Request, oneshot::Sender<Reply>),
    Timer,
    Flush,
    Flushed(std::io::Result<()>),
    Stop,
}

/// Waits for the group commit in flight, if any (never resolves when there is none).
async fn wait_flushed(
    flushing: &mut Option<tokio::task::JoinHandle<std::io::Result<()>>>,
) -> std::io::Result<()> {
    match flushing {
        Some(handle) => handle
            .await
            .unwrap_or_else(|err| Err(std::io::Error::other(err))),
        None => std::future::pending().await,
    }
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Driver {
    fn now(&self) -> Now {
        Now {
            mono_ms: self.started.elapsed().as_millis() as u64,
            unix_ms: self.options.clock.unix_ms(),
        }
    }

    async fn run(
        mut self,
        mut control_rx: mpsc::Receiver<ControlMessage>,
        mut stop_rx: oneshot::Receiver<()>,
    ) {
        let now = self.now();
        self.peer.start(now);
        let mut group_buf = vec![0u8; RECV_BUFFER];
        let mut whisper_buf = vec![0u8; RECV_BUFFER];
        loop {
            self.execute_actions().await;
            let timer = self
                .peer
                .poll_timeout()
                .map(|ms| self.started + Duration::from_millis(ms));
            let event = tokio::select! {
                received = self.sockets.group.recv_from(&mut group_buf) => match received {
                    Ok((len, from)) => Event::Datagram(Channel::Group, from, len),
                    Err(err) => { debug!(target: "sync", "SYNC group receive failed: {err}"); continue; }
                },
                received = self.sockets.whisper.recv_from(&mut whisper_buf) => match received {
                    Ok((len, from)) => Event::Datagram(Channel::Whisper, from, len),
                    Err(err) => { debug!(target: "sync", "SYNC whisper receive failed: {err}"); continue; }
                },
                Some((request, reply)) = control_rx.recv() => Event::Control(request, reply),
                _ = sleep_until_some(timer) => Event::Timer,
                // One group commit at a time; a due one waits for the one in flight.
                _ = sleep_until_some(self.flush_at), if self.flushing.is_none() => Event::Flush,
                outcome = wait_flushed(&mut self.flushing) => Event::Flushed(outcome),
                _ = &mut stop_rx => Event::Stop,
            };
            let now = self.now();
            match event {
                Event::Datagram(channel, from, len) => {
                    if self.options.receive_drop_rate > 0.0
                        && self.drop_rng.chance(self.options.receive_drop_rate)
                    {
                        self.hook_drops += 1;
                        continue;
                    }
                    let buf = match channel {
                        Channel::Group => &group_buf[..len],
                        Channel::Whisper => &whisper_buf[..len],
                    };
                    self.peer.handle_datagram(now, channel, from, buf);
                }
                Event::Control(Request::History { player }, reply) => {
                    // Reading a large log back takes a while: do it on a blocking thread from
                    // a snapshot of the index, so sync carries on meanwhile.
                    let source = self.peer.ledger().history_source();
                    tokio::spawn(async move {
                        let rows = tokio::task::spawn_blocking(move || {
                            Reply::ok(&source.history(player.as_deref()))
                        })
                        .await;
                        let _ =
                            reply.send(rows.unwrap_or_else(|err| {
                                Reply::error(format!("history failed: {err}"))
                            }));
                    });
                }
                Event::Control(request, reply) => {
                    let is_adjust = matches!(request, Request::Adjust { .. });
                    let answer = self.handle_control(now, request);
                    if is_adjust {
                        self.observe_acknowledged(&answer);
                    }
                    let _ = reply.send(answer);
                }
                Event::Timer => self.peer.handle_timeout(now),
                Event::Flush => self.start_flush(),
                Event::Flushed(outcome) => {
                    self.flushing = None;
                    self.finish_flush(outcome);
                }
                Event::Stop => break,
            }
        }
        self.execute_actions().await;
        if let Some(handle) = self.flushing.take() {
            // Let the group commit in flight finish before the final synchronous one.
            let outcome = handle
                .await
                .unwrap_or_else(|err| Err(std::io::Error::other(err)));
            self.finish_flush(outcome);
        }
        self.flush();
        let _ = std::fs::remove_file(&self.control_path);
        info!("stopped; log flushed");
    }

    /// Synchronous flush, for shutdown.
    fn flush(&mut self) {
        self.flush_at = None;
        if let Err(err) = self.store.sync() {
            error!("cannot flush log: {err:#}");
        }
    }

    fn finish_flush(&mut self, outcome: std::io::Result<()>) {
        if let Err(err) = self.store.finish_background_sync(outcome) {
            error!("cannot flush log: {err:#}");
        }
    }

    /// Starts a group commit of merged remote entries on a blocking thread.
    fn start_flush(&mut self) {
        self.flush_at = None;
        match self.store.begin_background_sync() {
            Ok(Some(pending)) => {
                self.flushing = Some(tokio::task::spawn_blocking(move || pending.run()));
            }
            Ok(None) => {}
            Err(err) => error!("cannot flush log: {err:#}"),
        }
    }

    async fn execute_actions(&mut self) {
        for action in self.peer.drain_actions() {
            let (bytes, to) = match action {
                Action::SendGroup(bytes) => (bytes, self.sockets.group_addr),
                Action::SendTo(addr, bytes) => (bytes, addr),
                Action::Persist { entries, keys } => {
                    // Everything not yet in the log: this batch, plus any batch whose append
                    // failed before. Those are already counted in our fingerprint, so peers
                    // will not send them again: they must reach the disk from here.
                    let earlier_failed = self.peer.ledger().resident_len() > entries.len();
                    let (pending, keys) = match earlier_failed {
                        true => self.peer.ledger().unstored().unwrap_or((entries, keys)),
                        // The common case: only this batch is waiting (no copy needed).
                        false => (entries, keys),
                    };
                    if pending.is_empty() {
                        continue;
                    }
                    match self.store.append_located(&pending) {
                        Ok(offsets) => {
                            self.remote_appends += 1;
                            for (key, offset) in keys.iter().zip(offsets) {
                                self.peer.mark_stored(key, offset);
                            }
                            if let Some(observer) = &self.options.observer {
                                observer.merged(&pending);
                            }
                            self.warn_once_if_no_valid_roster(&pending);
                        }
                        Err(err) => {
                            self.append_failures += 1;
                            error!(
                                "cannot store {} entries learned from peers (kept in memory and retried with the next batch): {err:#}",
                                pending.len()
                            );
                        }
                    }
                    match self.config.storage.fsync {
                        FsyncPolicy::Always => self.flush(),
                        FsyncPolicy::Batch => {
                            let interval = self.config.storage.batch_interval;
                            self.flush_at
                                .get_or_insert_with(|| Instant::now() + interval);
                        }
                    }
                    continue;
                }
            };
            if let Err(err) = self.sockets.whisper.send_to(&bytes, to).await {
                self.send_errors += 1;
                debug!(target: "sync", "SYNC send to {to} failed: {err}");
            }
        }
    }

    /// Tells the observer, if any, about the entry a successful adjust reply carries.
    fn observe_acknowledged(&self, answer: &Reply) {
        let Some(observer) = &self.options.observer else {
            return;
        };
        let adjusted = answer
            .result
            .as_ref()
            .filter(|_| answer.ok)
            .and_then(|value| serde_json::from_value::<AdjustResult>(value.clone()).ok());
        if let Some(adjusted) = adjusted {
            observer.acknowledged(&adjusted.entry);
        }
    }

    /// Warns, once, when merged roster changes leave this peer with no valid roster at all:
    /// with a mistyped `root_public_key` every roster change is rejected here while the sets
    /// still match, and nothing else would say why. (It names no key to adopt: anyone in the
    /// group can sign roster changes with a key of their own.)
    fn warn_once_if_no_valid_roster(&mut self, entries: &[Entry]) {
        if self.warned_no_valid_roster || entries.iter().all(|e| e.kind == EntryKind::Points) {
            return;
        }
        if let Some(root) = self.peer.ledger().root() {
            self.warned_no_valid_roster = warn_if_no_valid_roster(self.peer.ledger(), root);
        }
    }

    fn handle_control(&mut self, now: Now, request: Request) -> Reply {
        let node = self.config.node.clone();
        let request =
            match node::apply(&mut self.peer, &mut self.store, &node, now, request.clone()) {
                Some(reply) => return reply,
                None => request,
            };
        match request {
            Request::Sync { enabled } => {
                // Join before the peer's rejoin HELLO and SYNC_REQUEST go out, so the
                // answers are heard; leave only after the peer has stopped sending.
                if enabled {
                    self.set_group_membership(true);
                }
                self.peer.set_sync_enabled(now, enabled);
                if !enabled {
                    self.set_group_membership(false);
                }
                Reply::ok(&serde_json::json!({ "sync_enabled": enabled }))
            }
            Request::Status {} => Reply::ok(&self.status(now)),
            Request::Debug { enabled } => match &self.options.log_control {
                Some(control) => match control.set_sync_debug(enabled) {
                    Ok(()) => {
                        info!(
                            "SYNC debug logging switched {}",
                            if enabled { "on" } else { "off" }
                        );
                        Reply::ok(&serde_json::json!({ "sync_debug": enabled }))
                    }
                    Err(err) => Reply::error(format!("cannot switch debug logging: {err}")),
                },
                None => Reply::error("this daemon's logging cannot be switched at run time"),
            },
            other => Reply::error(format!("unsupported request {other:?}")),
        }
    }

    /// Leaves the multicast group while sync is off, so not even group datagrams reach
    /// this host's socket for us (the peer sends none either); joins again when it is on.
    fn set_group_membership(&mut self, member: bool) {
        if member == self.group_member {
            return;
        }
        let (group, interface) = (self.config.group.address, self.config.group.interface);
        let result = if member {
            self.sockets.group.join_multicast_v4(group, interface)
        } else {
            self.sockets.group.leave_multicast_v4(group, interface)
        };
        match result {
            Ok(()) => {
                self.group_member = member;
                info!(
                    "{} multicast group {group} on {interface}",
                    if member { "joined" } else { "left" }
                );
            }
            Err(err) => warn!(
                "cannot {} multicast group {group} on {interface}: {err}",
                if member { "join" } else { "leave" }
            ),
        }
    }

    fn status(&self, now: Now) -> StatusResult {
        let ours = self.peer.ledger().fingerprint();
        let stats = self.peer.stats();
        let mut counters = BTreeMap::new();
        counters.insert("datagrams_sent".to_string(), stats.datagrams_sent);
        counters.insert("bytes_sent".to_string(), stats.bytes_sent);
        counters.insert("datagrams_received".to_string(), stats.datagrams_received);
        counters.insert("bytes_received".to_string(), stats.bytes_received);
        counters.insert("entries_merged".to_string(), stats.entries_merged);
        counters.insert("entries_pushed".to_string(), stats.entries_pushed);
        counters.insert("sessions_started".to_string(), stats.sessions_started);
        counters.insert("sessions_completed".to_string(), stats.sessions_completed);
        counters.insert("sessions_aborted".to_string(), stats.sessions_aborted);
        counters.insert("send_errors".to_string(), self.send_errors);
        counters.insert("log_fsyncs".to_string(), self.store.fsyncs());
        counters.insert("log_remote_appends".to_string(), self.remote_appends);
        if self.append_failures > 0 {
            counters.insert("log_append_failures".to_string(), self.append_failures);
        }
        counters.insert(
            "log_unstored".to_string(),
            self.peer.ledger().resident_len() as u64,
        );
        counters.insert("encode_failures".to_string(), stats.encode_failures);
        counters.insert(
            "entries_rejected".to_string(),
            self.peer.ledger().rejected(),
        );
        counters.insert("peers_evicted".to_string(), stats.peers_evicted);
        counters.insert("answers_limited".to_string(), stats.answers_limited);
        if self.hook_drops > 0 {
            // Only a test hook drops on purpose; keep the counter out of normal status.
            counters.insert("dropped_by_test_hook".to_string(), self.hook_drops);
        }
        for (reason, count) in &stats.dropped {
            counters.insert(format!("dropped_{reason}"), *count);
        }
        StatusResult {
            node: self.config.node.clone(),
            group: self.config.group.name.clone(),
            sync_enabled: self.peer.sync_enabled(),
            entries: self.peer.ledger().len(),
            fingerprint: ours.short(),
            peers: self
                .peer
                .peers()
                .map(|p| PeerStatus {
                    name: p.name.clone(),
                    address: p.whisper.to_string(),
                    last_heard_ms_ago: now.mono_ms.saturating_sub(p.last_heard_ms),
                    in_sync: p.fingerprint == Some(ours),
                })
                .collect(),
            counters,
        }
    }
}

/// Warns loudly when the log holds roster changes but none signed by `root`: then nobody is
/// an officer here, every entry counts for nothing, and the root key is probably mistyped.
fn warn_if_no_valid_roster(
    ledger: &crate::core::ledger::Ledger,
    root: crate::proto::signature::PublicKey,
) -> bool {
    let (roster_entries, valid) = ledger.roster_entries();
    let none_valid = roster_entries > 0 && valid == 0;
    if none_valid {
        warn!(
            "NO VALID ROSTER: the log holds {roster_entries} roster changes and none is signed \
             by the configured root key {root}, so no entry counts on this peer: check \
             security.root_public_key against the output of `lootsync keygen root`"
        );
    }
    none_valid
}
