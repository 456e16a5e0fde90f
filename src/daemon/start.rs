//! Start-up: keys, log, sockets and control socket are opened here, in this order, and every
//! failure is returned before anything runs; then the threads and tasks are started.

use super::allocator;
use super::commit::Committer;
use super::driver::{warn_if_no_valid_roster, Driver};
use super::error::DaemonError;
use super::event::Event;
use super::failure_streak::{FailureStreak, REMINDER_INTERVAL_MS};
use super::io::{self, Inbox, INBOX_DATAGRAMS};
use super::net;
use super::options::DaemonOptions;
use super::replayer::Replayer;
use super::resolve::{self, ListedUpdate};
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
    config.validate()?;
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
    // Before the daemon runs: a taken port is a warning here, and status shows the URL.
    let web = {
        let _enter = span.enter();
        crate::http::bind(&config.http)
    };
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
        let multicast = match sockets.group_addr {
            Some(group) => format!("multicast {group} on {}", config.group.interface),
            None => "no multicast".to_owned(),
        };
        info!(
            "lootsync {} node {} group {} ({multicast}, whisper {}, {} listed peers): {} \
             entries, {} players, log {}",
            env!("CARGO_PKG_VERSION"),
            config.node,
            config.group.name,
            sockets.whisper_addr,
            config.peers.addresses.len(),
            report.entries,
            peer.ledger().totals().len(),
            store.path().display()
        );
        if sockets.group_addr.is_none() && config.peers.addresses.is_empty() {
            // Right for a hub; on a LAN it is a forgotten `[group] address`, which used to
            // have a default: say so rather than sit silent.
            info!(
                "no [group] address and no [peers] addresses: this daemon only talks to peers \
                 that contact it at {} (fine for a hub; on a LAN set [group] address)",
                sockets.whisper_addr
            );
        }
        warned
    };

    let (events, core_events) = mpsc::channel::<Event>();
    let committer = Committer::spawn(events.clone()).map_err(DaemonError::CoreThread)?;
    let replayer =
        Replayer::spawn(events.clone(), span.clone()).map_err(DaemonError::CoreThread)?;
    // Replays after a merged roster change run on the replay thread, not the core thread.
    peer.defer_replays(true);
    let group_socket = sockets.group.map(Arc::new);
    let whisper_socket = Arc::new(sockets.whisper);
    let inbox_slots = Arc::new(Semaphore::new(INBOX_DATAGRAMS));
    let send_errors = Arc::new(AtomicU64::new(0));
    let (outlet, send_task) = io::Outlet::new(whisper_socket.clone(), send_errors.clone());
    let drop_rng = SeededRng::new(options.seed.unwrap_or(0) ^ 0x5eed);
    // `net::open` joins the group only when sync starts on (and only if there is one).
    let group_member = config.sync.enabled && group_socket.is_some();
    // Already checked by `validate` above; the error is kept rather than unwrapped.
    let listed_targets = config.peers.targets().map_err(|err| {
        DaemonError::Config(crate::config::ConfigError::Invalid {
            key: "peers.addresses",
            message: err.to_string(),
        })
    })?;
    let resolve_interval = config.peers.resolve_interval;
    let observer = options.observer.clone();
    let driver = Driver {
        config,
        options,
        checkpoints: Default::default(),
        store,
        peer,
        group_socket: group_socket.clone(),
        group_addr: sockets.group_addr,
        whisper_addr: sockets.whisper_addr,
        listed: ListedUpdate::default(),
        outlet,
        inbox_slots: inbox_slots.clone(),
        committer,
        replayer,
        started,
        flush_at: None,
        flushing: false,
        counters: DriverCounters {
            send_errors: send_errors.clone(),
            ..DriverCounters::default()
        },
        warned_no_valid_roster,
        append_failures: FailureStreak::new(REMINDER_INTERVAL_MS),
        drop_rng,
        control_path: control_path.clone(),
        group_member,
        http: web.status(),
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
    // The control socket and the web page hand requests to the core thread alike.
    let to_core = |events: mpsc::Sender<Event>| {
        move |request, reply| {
            // A send error means the core thread is gone; dropping `reply` tells the client.
            let _ = events.send(Event::Control(request, reply));
        }
    };
    let dispatch = allocator::ReleaseAfterHistory(to_core(events.clone()));
    let mut tasks = vec![
        tokio::spawn(
            io::receive_loop(whisper_socket.clone(), Channel::Whisper, receivers.clone())
                .instrument(span.clone()),
        ),
        tokio::spawn(control::server::serve(listener, dispatch).instrument(span.clone())),
    ];
    if let Some(serving) = web.serve(to_core(events.clone())) {
        tasks.push(tokio::spawn(serving.instrument(span.clone())));
    }
    if let Some(group_socket) = group_socket {
        tasks.push(tokio::spawn(
            io::receive_loop(group_socket, Channel::Group, receivers).instrument(span.clone()),
        ));
    }
    if !listed_targets.is_empty() {
        let resolving = resolve::resolve_loop(
            listed_targets,
            resolve_interval,
            resolve::SystemLookup,
            events.clone(),
        );
        tasks.push(tokio::spawn(resolving.instrument(span.clone())));
    }
    let sender = tokio::spawn(send_task.instrument(span));
    Ok(RunningDaemon {
        whisper_addr: sockets.whisper_addr,
        control_path,
        events,
        finished: Some(finished),
        sender: Some(sender),
        tasks,
    })
}

/// Loads the group key(s) named in `[security]`, or warns loudly that traffic is in the clear
/// (at start-up and on reload).
pub(super) fn security(config: &Config) -> Result<Sealer, GroupKeyError> {
    let Some(current) = &config.security.group_key_file else {
        let reach = match config.group.multicast() {
            Some(group) => format!("group {group} or this daemon"),
            None => "this daemon".to_owned(),
        };
        warn!(
            "NO GROUP KEY: datagrams are sent in the clear and anyone who can reach {reach} \
             can read the ledger and add entries. Fine for a loopback trial; on a LAN or the \
             internet set [security] group_key_file (make one with `lootsync keygen group \
             FILE`)"
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
