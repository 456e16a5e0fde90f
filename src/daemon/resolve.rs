//! Resolving `[peers] addresses` off the core thread.
//!
//! A lookup can take seconds (a slow or absent DNS server), and the core thread must never
//! wait for one, so a tokio task resolves the listed names at start-up and again every
//! `resolve_interval` (a home's IP changes), and hands the core thread the resulting set of
//! addresses as an [`Event::Listed`]; the core thread passes it to
//! [`Peer::set_listed_peers`](crate::core::sync::Peer::set_listed_peers) when it changed.
//!
//! A name that does not resolve is not an error of the daemon: it is logged once as a
//! warning (again only if the reason changes), the addresses it last resolved to are kept
//! (a DNS hiccup must not cut off a hub that is still there), and it is retried sooner than
//! the interval until it resolves. IP literals are never looked up.

use super::event::Event;
use crate::config::PeerTarget;
use std::collections::BTreeSet;
use std::future::Future;
use std::net::{SocketAddr, SocketAddrV4};
use std::sync::mpsc;
use std::time::Duration;
use tokio::task::JoinSet;
use tracing::{info, warn};

/// Longest a single lookup may take before it counts as failed (and is retried).
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);
/// First retry after a failed lookup; doubled per failed round, up to `resolve_interval`.
const FIRST_RETRY: Duration = Duration::from_secs(5);

/// The resolution state of one listed address, as status shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct ListedName {
    /// The address as configured (`host:port` or `IP:port`).
    pub target: String,
    /// The addresses in use for it: the last successful resolution (kept across failures).
    pub resolved: Vec<SocketAddrV4>,
    /// Why the last lookup failed, if it did.
    pub error: Option<String>,
    /// Lookups failed in a row (0 once it resolves).
    pub failures: u64,
}

/// What the core thread is told after each round of lookups.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct ListedUpdate {
    /// Every address to contact: the union over all names, sorted, without duplicates.
    pub addresses: Vec<SocketAddr>,
    /// Each configured address and how it resolved, in configuration order.
    pub names: Vec<ListedName>,
}

/// What a lookup did to a name's state, so that each change is logged once.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Change {
    /// Nothing new to say (same addresses, or the same failure again).
    None,
    /// It resolved, for the first time or to other addresses than before.
    Resolved,
    /// It failed, for the first time or for another reason than last time.
    Failed,
}

impl ListedName {
    fn new(target: &PeerTarget) -> ListedName {
        ListedName {
            target: target.to_string(),
            resolved: match target {
                PeerTarget::Ip(addr) => vec![*addr],
                PeerTarget::Host { .. } => Vec::new(),
            },
            error: None,
            failures: 0,
        }
    }

    /// Records a lookup's outcome and says whether it is news.
    fn record(&mut self, outcome: Result<Vec<SocketAddrV4>, String>) -> Change {
        match outcome {
            Ok(mut addrs) => {
                addrs.sort();
                addrs.dedup();
                let news = addrs != self.resolved || self.error.is_some();
                self.resolved = addrs;
                self.error = None;
                self.failures = 0;
                if news {
                    Change::Resolved
                } else {
                    Change::None
                }
            }
            Err(error) => {
                self.failures += 1;
                let news = self.error.as_deref() != Some(error.as_str());
                self.error = Some(error);
                if news {
                    Change::Failed
                } else {
                    Change::None
                }
            }
        }
    }
}

/// Looks a host name up. A trait so unit tests can script the answers.
pub(super) trait Lookup: Send + Sync + 'static {
    /// The addresses `host:port` resolves to (any family; the caller keeps IPv4).
    fn lookup(
        &self,
        host: String,
        port: u16,
    ) -> impl Future<Output = std::io::Result<Vec<SocketAddr>>> + Send;
}

/// The system resolver (getaddrinfo, on tokio's blocking pool).
pub(super) struct SystemLookup;

impl Lookup for SystemLookup {
    async fn lookup(&self, host: String, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        Ok(tokio::net::lookup_host((host.as_str(), port))
            .await?
            .collect())
    }
}

/// Resolves `host` with `lookup`, keeping IPv4 addresses only (the whisper socket is IPv4).
async fn resolve_host<L: Lookup>(
    lookup: &L,
    host: &str,
    port: u16,
) -> Result<Vec<SocketAddrV4>, String> {
    // RFC 6761: `.invalid` names never resolve, and resolvers should say so at once rather
    // than ask DNS; doing it here keeps such a name off the network whatever the resolver.
    let name = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    if name == "invalid" || name.ends_with(".invalid") {
        return Err("a reserved .invalid name (RFC 6761) never resolves".to_owned());
    }
    let answer = tokio::time::timeout(LOOKUP_TIMEOUT, lookup.lookup(host.to_owned(), port)).await;
    let addrs = match answer {
        Err(_) => return Err(format!("no answer within {}s", LOOKUP_TIMEOUT.as_secs())),
        Ok(Err(err)) => return Err(err.to_string()),
        Ok(Ok(addrs)) => addrs,
    };
    let v4: Vec<SocketAddrV4> = addrs
        .into_iter()
        .filter_map(|addr| match addr {
            SocketAddr::V4(v4) => Some(v4),
            SocketAddr::V6(_) => None,
        })
        .collect();
    if v4.is_empty() {
        return Err("resolves to no IPv4 address".to_owned());
    }
    Ok(v4)
}

/// The update for the core thread from the names' current state.
fn update(names: &[ListedName]) -> ListedUpdate {
    let addresses: BTreeSet<SocketAddr> = names
        .iter()
        .flat_map(|name| name.resolved.iter().copied().map(SocketAddr::V4))
        .collect();
    ListedUpdate {
        addresses: addresses.into_iter().collect(),
        names: names.to_vec(),
    }
}

/// Resolves `targets` now and every `interval` (sooner after a failure), telling the core
/// thread after every round that changed anything. Returns once the core thread is gone,
/// or after the first round if every target is an IP literal.
pub(super) async fn resolve_loop<L: Lookup>(
    targets: Vec<PeerTarget>,
    interval: Duration,
    lookup: L,
    events: mpsc::Sender<Event>,
) {
    let lookup = std::sync::Arc::new(lookup);
    let mut names: Vec<ListedName> = targets.iter().map(ListedName::new).collect();
    let mut sent: Option<ListedUpdate> = None;
    let mut retry = FIRST_RETRY.min(interval);
    loop {
        // All names at once: one slow name must not hold up the others.
        let mut lookups = JoinSet::new();
        for (index, target) in targets.iter().enumerate() {
            if let PeerTarget::Host { host, port } = target {
                let (lookup, host, port) = (lookup.clone(), host.clone(), *port);
                lookups.spawn(async move { (index, resolve_host(&*lookup, &host, port).await) });
            }
        }
        let any_names = !lookups.is_empty();
        while let Some(joined) = lookups.join_next().await {
            let Ok((index, outcome)) = joined else {
                continue;
            };
            let name = &mut names[index];
            match name.record(outcome) {
                Change::None => {}
                Change::Resolved => info!(
                    "listed peer {} resolves to {}",
                    name.target,
                    join(&name.resolved)
                ),
                Change::Failed => warn!(
                    "listed peer {} does not resolve ({}); {}retrying, no later than every {}",
                    name.target,
                    name.error.as_deref().unwrap_or_default(),
                    match name.resolved.is_empty() {
                        true => String::new(),
                        false => format!("keeping {} meanwhile, ", join(&name.resolved)),
                    },
                    humantime::format_duration(interval)
                ),
            }
        }
        let current = update(&names);
        if sent.as_ref() != Some(&current) {
            if events.send(Event::Listed(current.clone())).is_err() {
                return;
            }
            sent = Some(current);
        }
        if !any_names {
            return;
        }
        let wait = if names.iter().any(|name| name.error.is_some()) {
            let wait = retry;
            retry = (retry * 2).min(interval);
            wait
        } else {
            retry = FIRST_RETRY.min(interval);
            interval
        };
        tokio::time::sleep(wait).await;
    }
}

fn join(addrs: &[SocketAddrV4]) -> String {
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Mutex;

    /// A scripted lookup answer: addresses, or why the lookup failed.
    type Answer = Result<Vec<&'static str>, &'static str>;

    /// Answers from a script: each call for a host takes the next answer (the last one
    /// repeats), and every call is counted.
    struct Scripted {
        answers: Mutex<HashMap<String, Vec<std::io::Result<Vec<SocketAddr>>>>>,
        calls: Mutex<HashMap<String, usize>>,
        at: Mutex<Vec<(String, tokio::time::Instant)>>,
    }

    impl Scripted {
        fn new(script: Vec<(&str, Vec<Answer>)>) -> Scripted {
            let answers = script
                .into_iter()
                .map(|(host, answers)| {
                    let answers = answers
                        .into_iter()
                        .map(|answer| match answer {
                            Ok(addrs) => Ok(addrs.iter().map(|a| a.parse().unwrap()).collect()),
                            Err(why) => Err(std::io::Error::other(why)),
                        })
                        .collect();
                    (host.to_owned(), answers)
                })
                .collect();
            Scripted {
                answers: Mutex::new(answers),
                calls: Mutex::new(HashMap::new()),
                at: Mutex::new(Vec::new()),
            }
        }
    }

    impl Lookup for std::sync::Arc<Scripted> {
        async fn lookup(&self, host: String, _port: u16) -> std::io::Result<Vec<SocketAddr>> {
            *self.calls.lock().unwrap().entry(host.clone()).or_default() += 1;
            self.at
                .lock()
                .unwrap()
                .push((host.clone(), tokio::time::Instant::now()));
            let mut answers = self.answers.lock().unwrap();
            let queue = answers.get_mut(&host).expect("scripted host");
            if queue.len() > 1 {
                queue.remove(0)
            } else {
                match &queue[0] {
                    Ok(addrs) => Ok(addrs.clone()),
                    Err(err) => Err(std::io::Error::other(err.to_string())),
                }
            }
        }
    }

    fn host(name: &str, port: u16) -> PeerTarget {
        PeerTarget::Host {
            host: name.into(),
            port,
        }
    }

    fn v4(text: &str) -> SocketAddrV4 {
        text.parse().unwrap()
    }

    #[test]
    fn a_name_reports_each_change_once() {
        let mut name = ListedName::new(&host("hub.example", 1));
        assert_eq!(name.record(Err("no such host".into())), Change::Failed);
        assert_eq!(name.record(Err("no such host".into())), Change::None);
        assert_eq!(name.failures, 2);
        assert_eq!(name.record(Err("timed out".into())), Change::Failed);
        assert_eq!(name.record(Ok(vec![v4("10.0.0.1:1")])), Change::Resolved);
        assert_eq!(name.failures, 0);
        assert_eq!(name.record(Ok(vec![v4("10.0.0.1:1")])), Change::None);
        // A failure keeps the last good addresses.
        assert_eq!(name.record(Err("no such host".into())), Change::Failed);
        assert_eq!(name.resolved, vec![v4("10.0.0.1:1")]);
        // Resolving to the same addresses after a failure is news: the failure is over.
        assert_eq!(name.record(Ok(vec![v4("10.0.0.1:1")])), Change::Resolved);
        assert_eq!(name.record(Ok(vec![v4("10.0.0.2:1")])), Change::Resolved);
        assert_eq!(name.error, None);
    }

    #[test]
    fn ip_literals_need_no_lookup() {
        let name = ListedName::new(&PeerTarget::Ip(v4("198.51.100.7:47684")));
        assert_eq!(name.resolved, vec![v4("198.51.100.7:47684")]);
        assert_eq!(name.target, "198.51.100.7:47684");
    }

    #[tokio::test(start_paused = true)]
    async fn literals_alone_are_sent_once_and_the_task_ends() {
        let (tx, rx) = mpsc::channel();
        let targets = vec![
            PeerTarget::Ip(v4("127.0.0.1:5")),
            PeerTarget::Ip(v4("127.0.0.1:4")),
        ];
        let lookup = std::sync::Arc::new(Scripted::new(vec![]));
        resolve_loop(targets, Duration::from_secs(60), lookup, tx).await;
        let Ok(Event::Listed(update)) = rx.try_recv() else {
            panic!("no update")
        };
        assert_eq!(
            update.addresses,
            vec![
                "127.0.0.1:4".parse().unwrap(),
                "127.0.0.1:5".parse().unwrap()
            ]
        );
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn names_are_resolved_again_and_failures_retried_sooner() {
        let (tx, rx) = mpsc::channel();
        let lookup = std::sync::Arc::new(Scripted::new(vec![
            (
                "hub.example",
                vec![
                    Err("temporary failure"),
                    Ok(vec!["10.0.0.1:7", "[::1]:7", "10.0.0.1:7"]),
                    Ok(vec!["10.0.0.1:7"]),
                    Ok(vec!["10.0.0.9:7"]),
                ],
            ),
            ("v6only.example", vec![Ok(vec!["[::1]:7"])]),
        ]));
        let targets = vec![
            host("hub.example", 7),
            host("v6only.example", 7),
            host("gone.invalid", 7),
            PeerTarget::Ip(v4("127.0.0.1:9")),
        ];
        let started = tokio::time::Instant::now();
        let task = tokio::spawn(resolve_loop(
            targets,
            Duration::from_secs(60),
            lookup.clone(),
            tx,
        ));
        // Paused time: the clock jumps to each timer as soon as every task waits.
        tokio::time::sleep(Duration::from_secs(200)).await;
        task.abort();
        let updates: Vec<ListedUpdate> = rx
            .try_iter()
            .map(|event| match event {
                Event::Listed(update) => update,
                _ => panic!("unexpected event"),
            })
            .collect();
        let first = &updates[0];
        assert_eq!(first.addresses, vec!["127.0.0.1:9".parse().unwrap()]);
        assert_eq!(first.names[0].error.as_deref(), Some("temporary failure"));
        assert_eq!(
            first.names[1].error.as_deref(),
            Some("resolves to no IPv4 address")
        );
        assert!(first.names[2]
            .error
            .as_deref()
            .unwrap()
            .contains("RFC 6761"));
        assert_eq!(first.names[3].resolved, vec![v4("127.0.0.1:9")]);
        // The `.invalid` name never reached the resolver.
        assert!(!lookup.calls.lock().unwrap().contains_key("gone.invalid"));
        // The failed name was retried after 5 s, not after the 60 s interval, resolved,
        // and IPv6 answers were left out.
        let second = &updates[1];
        assert_eq!(second.names[0].error, None);
        assert_eq!(
            second.addresses,
            vec![
                "10.0.0.1:7".parse().unwrap(),
                "127.0.0.1:9".parse().unwrap()
            ]
        );
        let calls = lookup.at.lock().unwrap().clone();
        let hub: Vec<u64> = calls
            .iter()
            .filter(|(host, _)| host == "hub.example")
            .map(|(_, at)| (*at - started).as_secs())
            .collect();
        // Failures elsewhere keep the retries short (5, 10, 20, 40, then the interval).
        assert_eq!(hub, vec![0, 5, 15, 35, 75, 135, 195]);
        // A changed address is picked up by a later round.
        let last = updates.last().unwrap();
        assert_eq!(last.names[0].resolved, vec![v4("10.0.0.9:7")]);
        assert!(last.addresses.contains(&"10.0.0.9:7".parse().unwrap()));
        assert!(!last.addresses.contains(&"10.0.0.1:7".parse().unwrap()));
        assert_eq!(last.names[1].failures, 7);
    }
}
