//! Start-up: keys, log, sockets and control socket are opened here, in this order, and every
//! failure is returned before anything runs; then the threads and tasks are started.

use super::commit::Committer;
use super::driver::{warn_if_no_valid_roster, Driver};
use super::error::DaemonError;
use super::event::Event;
use super::io::{self, Inbox, INBOX_DATAGRAMS, OUTBOX_DATAGRAMS};
use super::net;
use super::options::DaemonOptions;
use super::running::RunningDaemon;
use super::status::DriverCounters;
use crate::config::Config;
use crate::control;
use crate::core::rng::SeededRng;
use crate::core::sync::{Channel, Now, Peer};
use crate::node;
use crate::proto::seal::Sealer;
use crate::store::keys::{
    load_keyring, nonce_prefix_from_os, random_bytes, rng_seed_from_os, GroupKeyError,
};
use std::sync::atomic::AtomicU64;
use std::sync::{mpsc, Arc};
use std::time::Instant;
use tokio::net::UnixListener;
use tokio::sync::{oneshot, Semaphore};
use tracing::{info, warn, Instrument};

/// Opens the log, sockets and control socket, then starts the daemon: its core thread, and
/// its socket tasks and control server in the current tokio runtime. Errors in set-up are
/// returned here; once running, the daemon only stops when told to.
pub async fn start(config: Config, options: DaemonOptions) -> Result<RunningDaemon, DaemonError> {
    let span = tracing::info_span!("node", name = %config.node);
    // Keys first: a key file others can read must stop the daemon before it touches anything.
    let sealer = {
        let _enter = span.enter();
        security(&config)?
    };
    let officer_key = config.officer_key()?;
    // Waiting for the lock and replaying a big log take a while: not on a runtime thread,
    // which may be serving other daemons' sockets (tests run several in one runtime).
    let opening = {
        let (config, span) = (config.clone(), span.clone());
        tokio::task::spawn_blocking(move || {
            let _enter = span.enter();
            node::open_log_indexed(&config, node::DAEMON_LOCK_WAIT)
        })
    };
    let (store, ledger, report) = match opening.await {
        Ok(opened) => opened?,
        Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
        Err(join) => return Err(DaemonError::Interrupted(join)),
    };
    let sockets = net::open(&config)?;
    let control_path = control::socket_path(&config.state_dir);
    // We hold the state-directory lock, so a socket file left here is from a dead daemon.
    let _ = std::fs::remove_file(&control_path);
    let control_error = |source| DaemonError::Control {
        path: control_path.clone(),
        source,
    };
    let listener =
        control::bind(&control_path, config.control.group.as_deref()).map_err(control_error)?;
    let listener = UnixListener::from_std(listener)
        .map_err(|err| control_error(control::SocketError::Io(err)))?;
    let rng = match options.seed {
        Some(seed) => SeededRng::new(seed),
        None => SeededRng::new(rng_seed_from_os()),
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
    let cookie_key: [u8; 32] = random_bytes().map_err(GroupKeyError::Entropy)?;
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

    let (events, core_events) = mpsc::channel::<Event>();
    let committer = Committer::spawn(events.clone()).map_err(DaemonError::CoreThread)?;
    let group_socket = Arc::new(sockets.group);
    let whisper_socket = Arc::new(sockets.whisper);
    let inbox_slots = Arc::new(Semaphore::new(INBOX_DATAGRAMS));
    let (outbox, outgoing) = tokio::sync::mpsc::channel(OUTBOX_DATAGRAMS);
    let send_errors = Arc::new(AtomicU64::new(0));
    let drop_rng = SeededRng::new(options.seed.unwrap_or(0) ^ 0x5eed);
    // `net::open` joins the group only when sync starts on.
    let group_member = config.sync.enabled;
    let observer = options.observer.clone();
    let driver = Driver {
        config,
        options,
        checkpoints: Default::default(),
        store,
        peer,
        group_socket: group_socket.clone(),
        group_addr: sockets.group_addr,
        outbox,
        inbox_slots: inbox_slots.clone(),
        committer,
        started,
        flush_at: None,
        flushing: false,
        counters: DriverCounters {
            send_errors: send_errors.clone(),
            ..DriverCounters::default()
        },
        warned_no_valid_roster,
        drop_rng,
        control_path: control_path.clone(),
        group_member,
    };
    let (finished_tx, finished) = oneshot::channel();
    let core_span = span.clone();
    std::thread::Builder::new()
        .name("lootsync-core".into())
        .spawn(move || {
            let _enter = core_span.enter();
            driver.run(core_events);
            let _ = finished_tx.send(());
        })
        .map_err(DaemonError::CoreThread)?;

    let receivers = Inbox {
        events: events.clone(),
        slots: inbox_slots,
        observer,
    };
    let control_events = events.clone();
    let dispatch = move |request, reply| {
        // A send error means the core thread is gone; dropping `reply` tells the client.
        let _ = control_events.send(Event::Control(request, reply));
    };
    let tasks = vec![
        tokio::spawn(
            io::receive_loop(group_socket, Channel::Group, receivers.clone())
                .instrument(span.clone()),
        ),
        tokio::spawn(
            io::receive_loop(whisper_socket.clone(), Channel::Whisper, receivers)
                .instrument(span.clone()),
        ),
        tokio::spawn(control::server::serve(listener, dispatch).instrument(span.clone())),
    ];
    let sender =
        tokio::spawn(io::send_loop(whisper_socket, outgoing, send_errors).instrument(span));
    Ok(RunningDaemon {
        whisper_addr: sockets.whisper_addr,
        control_path,
        events,
        finished: Some(finished),
        sender: Some(sender),
        tasks,
    })
}

/// Loads the group key(s) named in `[security]`, or warns loudly that traffic is in the clear.
fn security(config: &Config) -> Result<Sealer, GroupKeyError> {
    let Some(current) = &config.security.group_key_file else {
        warn!(
            "NO GROUP KEY: datagrams are sent in the clear and anyone who can reach group {}:{} \
             can read the ledger and add entries. Fine for a loopback trial; on a LAN set \
             [security] group_key_file (make one with `lootsync keygen group FILE`)",
            config.group.address, config.group.port
        );
        return Ok(Sealer::clear());
    };
    let keyring = load_keyring(current, &config.security.previous_key_files)?;
    info!(
        "group key {} from {} ({} previous key(s) accepted)",
        keyring.current_id(),
        current.display(),
        config.security.previous_key_files.len()
    );
    Ok(Sealer::new(keyring, nonce_prefix_from_os()?))
}
