//! The core thread: the only thread that touches the [`Peer`] and the [`LogStore`].
//!
//! Everything reaches it as an [`Event`] on one channel: datagrams from the receive loops,
//! control requests with their reply channel, the outcome of a group commit, stop and abort.
//! Between events it waits with `recv_timeout` until the peer's next timer or the batch
//! flush deadline. What the peer wants done comes out as actions: datagrams go to the send
//! task's queue, entries learned from peers are appended to the log here. Entry bodies are
//! read back from the log on this thread for answers, so however long that takes, the
//! sockets keep being served by their own tasks; a replay of the whole log after a roster
//! change, seconds on a large log, goes to the replay thread instead.

use super::commit::Committer;
use super::error::RequestError;
use super::event::Event;
use super::failure_streak::{FailureStreak, StreakLog};
use super::io::Outlet;
use super::options::DaemonOptions;
use super::replayer::Replayer;
use super::resolve::ListedUpdate;
use super::status::{self, DriverCounters};
use crate::config::{Config, FsyncPolicy};
use crate::control::{
    Adjust, Append, BatchResult, Command, DebugState, History, Outcome, Points, Refusal, Request,
    RosterQuery, Status, SwitchDebug, SwitchSync, SyncState,
};
use crate::core::ledger::Ledger;
use crate::core::rng::SeededRng;
use crate::core::sync::{Action, Now, Peer};
use crate::node::LedgerCommand;
use crate::proto::batch::EncodedBatch;
use crate::proto::keys::PublicKey;
use crate::store::LogStore;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::{oneshot, Semaphore};
use tracing::{error, info, warn};

/// Everything the core thread owns.
pub(super) struct Driver {
    pub config: Config,
    pub options: DaemonOptions,
    /// Before `store`: a checkpoint write in flight ends before the store's lock is dropped.
    pub checkpoints: super::checkpoint::Checkpoints,
    pub store: LogStore,
    pub peer: Peer,
    /// Shared with its receive loop; the core joins and leaves the group on it. `None`
    /// without multicast.
    pub group_socket: Option<Arc<UdpSocket>>,
    /// Where group datagrams are sent; `None` without multicast.
    pub group_addr: Option<SocketAddr>,
    /// The whisper socket's bound address (for status).
    pub whisper_addr: SocketAddr,
    /// The listed addresses last handed to the peer, and how each configured address
    /// resolved (for status).
    pub listed: ListedUpdate,
    /// Where datagrams go out (at once, or through the send task).
    pub outlet: Outlet,
    /// Room in the inbox; one slot comes back per datagram taken.
    pub inbox_slots: Arc<Semaphore>,
    pub committer: Committer,
    /// Runs the ledger's replays off this thread.
    pub replayer: Replayer,
    pub started: Instant,
    pub flush_at: Option<Instant>,
    /// Whether a group commit is running on the commit thread (one at a time).
    pub flushing: bool,
    pub counters: DriverCounters,
    /// Whether merged roster changes, none signed by this peer's root key, were warned
    /// about (once per run: usually this peer's root key is mistyped).
    pub warned_no_valid_roster: bool,
    /// Failed appends of merged entries in a row, so a full disk is not one error per batch.
    pub append_failures: FailureStreak,
    pub drop_rng: SeededRng,
    pub control_path: PathBuf,
    /// Whether the group socket is a member of the multicast group (not while sync is off).
    pub group_member: bool,
    /// The web page, for status (`None` when `[http]` turns it off).
    pub http: Option<crate::control::HttpStatus>,
}

/// How the event loop ended.
enum Ending {
    Graceful,
    Crash,
}

impl Driver {
    fn now(&self) -> Now {
        Now {
            mono_ms: self.started.elapsed().as_millis() as u64,
            unix_ms: self.options.clock.unix_ms(),
        }
    }

    /// Runs until told to stop or abort (dropping the daemon's handle aborts). The commit
    /// thread keeps a sender, so the channel cannot run dry before that; were it to, that
    /// would be a crash too.
    pub(super) fn run(mut self, events: mpsc::Receiver<Event>) {
        let now = self.now();
        self.peer.start(now);
        let ending = loop {
            self.execute_actions();
            let received = match self.next_deadline() {
                Some(at) => events.recv_timeout(at.saturating_duration_since(Instant::now())),
                None => events.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match received {
                Ok(Event::Stop) => break Ending::Graceful,
                Ok(Event::Abort) | Err(RecvTimeoutError::Disconnected) => break Ending::Crash,
                Ok(event) => self.handle(event),
                Err(RecvTimeoutError::Timeout) => {}
            }
            // Checked after every event, not only on a timeout: under steady traffic the
            // channel never times out, and heartbeats and commits must still happen.
            self.run_due_timers();
            self.hand_out_replay();
            self.checkpoints.tick(&mut self.store, self.peer.ledger());
        };
        if let Ending::Graceful = ending {
            self.shut_down(&events);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let timer = self
            .peer
            .poll_timeout()
            .map(|ms| self.started + Duration::from_millis(ms));
        // One group commit at a time; a due one waits for the one in flight.
        let flush = self.flush_at.filter(|_| !self.flushing);
        match (timer, flush) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Hands the replay the ledger wants, if any, to the replay thread (or runs it here if
    /// that thread is gone).
    fn hand_out_replay(&mut self) {
        let Some(job) = self.peer.poll_replay() else {
            return;
        };
        tracing::debug!(
            target: "sync",
            "SYNC a roster change sorts before held entries: replaying {} entries on the replay thread",
            job.entries()
        );
        self.counters.replays += 1;
        if let Err(job) = self.replayer.replay(job) {
            if !self.peer.handle_replay(job.run()) {
                self.counters.replays_stale += 1;
            }
        }
    }

    fn run_due_timers(&mut self) {
        let now = Instant::now();
        let timer_due = self
            .peer
            .poll_timeout()
            .is_some_and(|ms| self.started + Duration::from_millis(ms) <= now);
        if timer_due {
            let now = self.now();
            self.peer.handle_timeout(now);
        }
        if !self.flushing && self.flush_at.is_some_and(|at| at <= now) {
            self.start_flush();
        }
    }

    fn handle(&mut self, event: Event) {
        let now = self.now();
        match event {
            Event::Datagram {
                channel,
                from,
                bytes,
            } => {
                self.inbox_slots.add_permits(1);
                if self.options.receive_drop_rate > 0.0
                    && self.drop_rng.chance(self.options.receive_drop_rate)
                {
                    self.counters.hook_drops += 1;
                    return;
                }
                self.peer.handle_datagram(now, channel, from, &bytes);
            }
            Event::Control(request, reply) => self.serve(now, request, reply),
            Event::Listed(update) => {
                // Only a changed set goes to the peer: it contacts new addresses at once.
                if update.addresses != self.listed.addresses {
                    self.warn_if_unreachable(&update.addresses);
                    self.peer.set_listed_peers(now, update.addresses.clone());
                }
                self.listed = update;
            }
            Event::Flushed(outcome) => {
                self.flushing = false;
                self.finish_flush(outcome);
            }
            Event::Replayed { result, failed } => {
                if failed {
                    // A bug; replaying here from now on (as before replays were handed
                    // out) keeps the totals right, or fails loudly on this thread.
                    error!(
                        "the replay after a roster change failed on the replay thread: replaying on the core thread from now on"
                    );
                    self.counters.replay_failures += 1;
                    self.peer.handle_replay(result);
                    self.peer.defer_replays(false);
                } else if !self.peer.handle_replay(result) {
                    self.counters.replays_stale += 1;
                }
            }
            Event::Reload(reload, reply) => {
                let _ = reply.send(self.reload(*reload));
            }
            Event::Stop | Event::Abort => unreachable!("handled by the event loop"),
        }
    }

    /// The graceful end: send what the peer still wants sent, let the group commit in
    /// flight finish, flush, remove the control socket; the lock goes with the store when
    /// the driver is dropped.
    fn shut_down(&mut self, events: &mpsc::Receiver<Event>) {
        // A replay still running would hold up nothing but the checkpoint, which the next
        // start can do without: stop it reading the log.
        self.peer.abandon_replay();
        self.execute_actions();
        while self.flushing {
            match events.recv() {
                Ok(Event::Flushed(outcome)) => {
                    self.flushing = false;
                    self.finish_flush(outcome);
                }
                Ok(event) => self.take_finished_replay(event),
                Err(_) => break,
            }
        }
        while let Ok(event) = events.try_recv() {
            self.take_finished_replay(event);
        }
        self.flush();
        self.checkpoints
            .at_shutdown(&mut self.store, self.peer.ledger());
        let _ = std::fs::remove_file(&self.control_path);
        info!("stopped; log flushed");
    }

    /// While shutting down: a replay that finished before the stop still counts (its
    /// totals make the shutdown checkpoint possible). Nothing else is served any more; a
    /// dropped reply tells its client that the daemon is shutting down.
    fn take_finished_replay(&mut self, event: Event) {
        if let Event::Replayed {
            result,
            failed: false,
        } = event
        {
            self.peer.handle_replay(result);
        }
    }

    /// Synchronous flush, for shutdown and the `always` policy.
    fn flush(&mut self) {
        self.flush_at = None;
        if let Err(err) = self.store.sync() {
            error!("cannot flush log: {}", err.describe());
        }
    }

    fn finish_flush(&mut self, outcome: std::io::Result<()>) {
        if let Err(err) = self.store.finish_background_sync(outcome) {
            error!("cannot flush log: {}", err.describe());
        }
    }

    /// Warns when a listed name resolved to another machine while the whisper socket is
    /// bound to loopback, from which no datagram can reach it (config validation catches
    /// IP literals; names are only known now). Once per new set of addresses.
    fn warn_if_unreachable(&self, addresses: &[SocketAddr]) {
        if !self.whisper_addr.ip().is_loopback() {
            return;
        }
        let elsewhere: Vec<String> = addresses
            .iter()
            .filter(|addr| !addr.ip().is_loopback())
            .map(ToString::to_string)
            .collect();
        if !elsewhere.is_empty() {
            warn!(
                "listed peers {} are on other machines, but whisper.bind {} only reaches this \
                 one: nothing will reach them; set whisper.bind to \"0.0.0.0:0\" (or a fixed \
                 port)",
                elsewhere.join(", "),
                self.whisper_addr
            );
        }
    }

    /// Starts a group commit of merged remote entries on the commit thread.
    fn start_flush(&mut self) {
        self.flush_at = None;
        match self.store.begin_background_sync() {
            Ok(Some(pending)) => match self.committer.commit(pending) {
                Ok(()) => self.flushing = true,
                // The commit thread is gone (it only ends with the driver): sync here.
                Err(pending) => {
                    let outcome = pending.run();
                    self.finish_flush(outcome);
                }
            },
            Ok(None) => {}
            Err(err) => error!("cannot flush log: {}", err.describe()),
        }
    }

    fn execute_actions(&mut self) {
        for action in self.peer.drain_actions() {
            let (to, bytes) = match action {
                Action::SendGroup(bytes) => match self.group_addr {
                    Some(group) => (group, bytes),
                    // The peer is told it has no multicast and sends none; were it to,
                    // there is no group to send to.
                    None => continue,
                },
                Action::SendTo(addr, bytes) => (addr, bytes),
                Action::Persist(batch) => {
                    self.persist(batch);
                    continue;
                }
            };
            self.outlet.send(to, bytes);
        }
    }

    /// Appends entries learned from peers to the log (they are already in the ledger).
    fn persist(&mut self, batch: EncodedBatch) {
        // Everything not yet in the log: this batch, plus any batch whose append failed
        // before. Those are already counted in our fingerprint, so peers will not send them
        // again: they must reach the disk from here.
        let earlier_failed = self.peer.ledger().resident_len() > batch.len();
        let pending = match earlier_failed {
            true => {
                match self.peer.ledger().unstored() {
                    // Encoded again: rare, and the ledger holds them decoded.
                    Some((entries, _)) => match EncodedBatch::of(&entries) {
                        Ok(pending) => pending,
                        // Unreachable while every resident entry was checked on the way in;
                        // counted and logged as a failed append (once per streak), so a bad
                        // entry cannot flood the log with an error per merge.
                        Err(err) => {
                            self.counters.append_failures += 1;
                            let now_ms = self.started.elapsed().as_millis() as u64;
                            if let StreakLog::First = self.append_failures.failed(now_ms) {
                                error!("cannot store entries learned from peers: one is invalid: {err}");
                            }
                            return;
                        }
                    },
                    None => batch,
                }
            }
            // The common case: only this batch is waiting, encoded as it arrived.
            false => batch,
        };
        if pending.is_empty() {
            return;
        }
        match self.store.append_encoded(&pending) {
            Ok(offsets) => {
                self.counters.remote_appends += 1;
                if let StreakLog::Recovered { failures } = self.append_failures.succeeded() {
                    info!(
                        "storing entries learned from peers works again ({failures} failed appends before; {} entries now stored)",
                        pending.len()
                    );
                }
                for (key, offset) in pending.keys().iter().zip(offsets) {
                    self.peer.mark_stored(key, offset);
                }
                if let Some(observer) = &self.options.observer {
                    // Decoded again only for an observer (a measurement hook).
                    match pending.decode() {
                        Ok(entries) => observer.merged(&entries),
                        Err(err) => error!("cannot decode merged entries for the observer: {err}"),
                    }
                }
                self.warn_once_if_no_valid_roster(pending.has_roster_changes());
            }
            Err(err) => {
                self.counters.append_failures += 1;
                let now_ms = self.started.elapsed().as_millis() as u64;
                match self.append_failures.failed(now_ms) {
                    StreakLog::First => error!(
                        "cannot store {} entries learned from peers (kept in memory and retried with the next batch): {}",
                        pending.len(),
                        err.describe()
                    ),
                    StreakLog::Ongoing { suppressed } => warn!(
                        "still cannot store entries learned from peers ({} waiting in memory; {suppressed} more failed appends not logged): {}",
                        pending.len(),
                        err.describe()
                    ),
                    StreakLog::Quiet | StreakLog::Recovered { .. } => {}
                }
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
    }

    /// Warns, once, when merged roster changes leave this peer with no valid roster at all:
    /// with a mistyped `root_public_key` every roster change is rejected here while the sets
    /// still match, and nothing else would say why. (It names no key to adopt: anyone in the
    /// group can sign roster changes with a key of their own.)
    fn warn_once_if_no_valid_roster(&mut self, roster_changes: bool) {
        if self.warned_no_valid_roster || !roster_changes {
            return;
        }
        if let Some(root) = self.peer.ledger().root() {
            self.warned_no_valid_roster = warn_if_no_valid_roster(self.peer.ledger(), root);
        }
    }

    /// Answers a control request; the ledger's own requests go to [`crate::node::apply`].
    fn serve(&mut self, now: Now, request: Request, reply: oneshot::Sender<Outcome>) {
        let outcome = match request {
            Request::Adjust(adjust) => {
                let adjusted = self.apply(now, adjust);
                if let (Ok(adjusted), Some(observer)) = (&adjusted, &self.options.observer) {
                    observer.acknowledged(&adjusted.entry);
                }
                adjusted.map(Adjust::respond)
            }
            Request::Append(append) => self.apply(now, append).map(Append::respond),
            Request::Award(award) => self.apply_batch(now, award),
            Request::Decay(decay) => self.apply_batch(now, decay),
            Request::Revert(revert) => self.apply_batch(now, revert),
            Request::Import(import) => self.apply_batch(now, import),
            Request::Points(points) => self.apply(now, points).map(Points::respond),
            Request::History(history) => return self.build_history(history, reply),
            Request::Roster(query) => return self.build_roster_view(query, reply),
            Request::Status(Status {}) => Ok(Status::respond(status::status(
                &self.config,
                &self.peer,
                &self.store,
                &self.counters,
                self.whisper_addr,
                &self.listed,
                self.http.as_ref(),
                now,
            ))),
            Request::Sync(SwitchSync { enabled }) => {
                self.switch_sync(now, enabled);
                Ok(SwitchSync::respond(SyncState {
                    sync_enabled: enabled,
                }))
            }
            Request::Debug(SwitchDebug { enabled }) => self.switch_debug(enabled).map(|()| {
                SwitchDebug::respond(DebugState {
                    sync_debug: enabled,
                })
            }),
        };
        let _ = reply.send(outcome);
    }

    /// Runs a batch (award, decay, revert, import) and tells the observer of every entry
    /// it acknowledged.
    fn apply_batch<C: LedgerCommand<Output = BatchResult>>(
        &mut self,
        now: Now,
        command: C,
    ) -> Outcome {
        let done = self.apply(now, command)?;
        if let Some(observer) = &self.options.observer {
            for entry in done.changes.iter().filter_map(|c| c.entry.as_ref()) {
                observer.acknowledged(entry);
            }
        }
        Ok(C::respond(done))
    }

    fn apply<C: LedgerCommand>(&mut self, now: Now, command: C) -> Result<C::Output, Refusal> {
        let node = &self.config.node;
        Ok(crate::node::apply(
            &mut self.peer,
            &mut self.store,
            node,
            now,
            command,
        )?)
    }

    /// Reading a large log back takes a while: the history is built on a thread of its own
    /// from a snapshot of the index, so sync carries on meanwhile.
    fn build_history(&self, history: History, reply: oneshot::Sender<Outcome>) {
        let source = self.peer.ledger().history_source();
        // Names match in any case and Unicode form, as they do for adjust.
        let player = history.player.map(|name| {
            self.peer
                .ledger()
                .resolve_player(name.trim())
                .unwrap_or(name)
        });
        answer_on_thread("history", reply, move || {
            Ok(History::respond(source.history(player.as_deref())))
        });
    }

    /// The roster query of `officer add`/`officer remove` reads back the entries after the
    /// officer's first key was added: like a history, from a snapshot on a thread of its
    /// own. Refused at once when the ledger is not judged under the change's root key.
    fn build_roster_view(&self, query: RosterQuery, reply: oneshot::Sender<Outcome>) {
        if let Err(err) = crate::node::judged_under(self.peer.ledger(), query.root_public_key) {
            let _ = reply.send(Err(err.into()));
            return;
        }
        let source = self.peer.ledger().history_source();
        answer_on_thread("roster", reply, move || {
            Ok(RosterQuery::respond(source.roster_view(&query.name)))
        });
    }

    fn switch_sync(&mut self, now: Now, enabled: bool) {
        // Join before the peer's rejoin HELLO and SYNC_REQUEST go out, so the answers are
        // heard; leave only after the peer has stopped sending.
        if enabled {
            self.set_group_membership(true);
        }
        self.peer.set_sync_enabled(now, enabled);
        if !enabled {
            self.set_group_membership(false);
        }
    }

    fn switch_debug(&self, enabled: bool) -> Result<(), Refusal> {
        let control = self
            .options
            .log_control
            .as_ref()
            .ok_or(RequestError::LoggingFixed)?;
        control
            .set_sync_debug(enabled)
            .map_err(RequestError::LoggingSwitch)?;
        info!(
            "SYNC debug logging switched {}",
            if enabled { "on" } else { "off" }
        );
        Ok(())
    }

    /// Leaves the multicast group while sync is off, so not even group datagrams reach
    /// this host's socket for us (the peer sends none either); joins again when it is on.
    /// Without multicast there is no group to join or leave: nothing to do.
    fn set_group_membership(&mut self, member: bool) {
        if member == self.group_member {
            return;
        }
        let (Some(socket), Some(group)) = (&self.group_socket, self.config.group.address) else {
            return;
        };
        let interface = self.config.group.interface;
        let result = if member {
            socket.join_multicast_v4(group, interface)
        } else {
            socket.leave_multicast_v4(group, interface)
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
}

/// Warns loudly when the log holds roster changes but none signed by `root`: then nobody is
/// an officer here, every entry counts for nothing, and the root key is probably mistyped.
pub(super) fn warn_if_no_valid_roster(ledger: &Ledger, root: PublicKey) -> bool {
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

/// Answers a request with `answer`, run on a short-lived thread named after `what` so the
/// core thread carries on with sync meanwhile.
fn answer_on_thread(
    what: &'static str,
    reply: oneshot::Sender<Outcome>,
    answer: impl FnOnce() -> Outcome + Send + 'static,
) {
    let (tx, rx) = std::sync::mpsc::sync_channel::<oneshot::Sender<Outcome>>(1);
    let spawned = std::thread::Builder::new()
        .name(format!("lootsync-{what}"))
        .spawn(move || {
            let outcome = answer();
            if let Ok(reply) = rx.recv() {
                let _ = reply.send(outcome);
            }
        });
    match spawned {
        Ok(_) => {
            let _ = tx.send(reply);
        }
        Err(error) => {
            let _ = reply.send(Err(RequestError::Thread { what, error }.into()));
        }
    }
}
