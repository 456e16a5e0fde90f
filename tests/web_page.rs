//! The web page and metrics of a real daemon, over real TCP on loopback: every route's
//! status and content type, the JSON routes against the CLI's JSON, `/metrics` parsed as
//! Prometheus text and moving with datagrams, hostile names escaped, bad requests refused
//! without disturbing sync, live updates on the event stream, and a taken port.

mod common;
mod web;

use common::{adjust, free_port, wait_until};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;
use web::{cli, get, request, HOSTILE};

/// Samples of `/metrics`, checked to parse: every line is a comment the format knows or a
/// sample the parser read.
fn metrics(text: &str) -> prometheus_parse::Scrape {
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    for line in &lines {
        if let Some(comment) = line.strip_prefix("# ") {
            let word = comment.split(' ').next().unwrap_or("");
            assert!(
                ["HELP", "TYPE", "UNIT", "EOF"].contains(&word),
                "unknown comment {line:?}"
            );
        }
    }
    // The parser folds a histogram's bucket lines into one sample (its sum and count are
    // one each).
    let histograms: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" histogram"))
        .collect();
    let samples = lines
        .iter()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| !histograms.iter().any(|h| l.starts_with(h)))
        .count()
        + 3 * histograms.len();
    let scrape =
        prometheus_parse::Scrape::parse(lines.into_iter().map(Ok)).expect("Prometheus text");
    assert_eq!(
        scrape.samples.len(),
        samples,
        "every sample line parsed:\n{text}"
    );
    assert_eq!(text.lines().last(), Some("# EOF"));
    scrape
}

fn sample(scrape: &prometheus_parse::Scrape, name: &str, label: Option<(&str, &str)>) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .find(|s| label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
        .unwrap_or_else(|| panic!("no sample {name} {label:?} in {:?}", scrape.samples))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_answer_with_their_types_and_the_json_is_the_clis() {
    common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let web = web::start(dir.path(), "alice", free_port()).await;
    let (d, addr) = (&web.daemon, web.addr);
    adjust(d, "Aria", 10, "boss kill").await;
    adjust(d, "Bob", -3, "late").await;
    adjust(d, HOSTILE[0], 5, HOSTILE[1]).await;
    adjust(d, HOSTILE[1], 2, HOSTILE[2]).await;

    let html = "text/html; charset=utf-8";
    for (path, code, kind) in [
        ("/", 200, html),
        ("/player/Aria", 200, html),
        ("/player/%3Cscript%3Ealert(1)%3C%2Fscript%3E", 200, html),
        ("/player/Nobody", 404, html),
        ("/peers", 200, html),
        ("/officers", 200, html),
        ("/nowhere", 404, html),
        ("/api/points", 200, "application/json"),
        ("/api/history", 200, "application/json"),
        ("/api/history?player=Aria", 200, "application/json"),
        ("/api/status", 200, "application/json"),
        ("/assets/app.css", 200, "text/css; charset=utf-8"),
        ("/assets/app.js", 200, "text/javascript; charset=utf-8"),
        (
            "/metrics",
            200,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
    ] {
        let reply = get(addr, path).await;
        assert_eq!(reply.code, code, "{path}: {reply:?}");
        assert_eq!(reply.header("content-type"), kind, "{path}");
        assert_eq!(reply.header("x-content-type-options"), "nosniff", "{path}");
        assert!(
            reply
                .header("content-security-policy")
                .contains("script-src 'self'"),
            "{path}"
        );
    }

    // The page shows the standings, ranked, negative totals marked, hostile names as text.
    let page = get(addr, "/").await.body;
    let aria = page.find(">Aria</a>").expect("Aria listed");
    let bob = page.find(">Bob</a>").expect("Bob listed");
    assert!(aria < bob, "ranked by points");
    assert!(page.contains("class=\"num neg\">-3<"), "{page}");
    assert!(
        !page.contains("<script>alert") && !page.contains("<img"),
        "{page}"
    );
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{page}"
    );
    let player = get(addr, "/player/%3Cscript%3Ealert(1)%3C%2Fscript%3E")
        .await
        .body;
    assert!(
        player.contains("&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"),
        "{player}"
    );
    assert!(!player.contains("<img"), "{player}");

    // The JSON routes print what the CLI prints, byte for byte.
    let config = &web.config_file;
    assert_eq!(
        get(addr, "/api/points").await.body,
        cli(config, &["points", "--json"]).await
    );
    assert_eq!(
        get(addr, "/api/history").await.body,
        cli(config, &["history", "--json"]).await
    );
    assert_eq!(
        get(
            addr,
            "/api/history?player=%3Cscript%3Ealert(1)%3C%2Fscript%3E"
        )
        .await
        .body,
        cli(config, &["history", "--player", HOSTILE[0], "--json"]).await
    );
    // Status has clocks and counters in it that move between two calls: compare the rest.
    let steady = |text: &str| {
        let mut value: serde_json::Value = serde_json::from_str(text).unwrap();
        let object = value.as_object_mut().unwrap();
        for moving in ["counters", "histograms", "peers"] {
            assert!(object.remove(moving).is_some(), "{moving} in {text}");
        }
        value
    };
    let api = get(addr, "/api/status").await.body;
    let printed = cli(config, &["status", "--json"]).await;
    assert_eq!(steady(&api), steady(&printed));
    let url = format!("http://{addr}/");
    assert_eq!(steady(&api)["http"]["url"], url.as_str());
    let human = cli(config, &["status"]).await;
    assert!(human.contains(&format!("web page:    {url}")), "{human}");

    // A loopback page answers only to loopback names (no DNS rebinding).
    let rebound = web::raw(
        addr,
        b"GET /api/points HTTP/1.0\r\nHost: evil.example:47680\r\n\r\n",
    );
    assert_eq!(rebound.code, 403, "{rebound:?}");
    let named = web::raw(addr, b"GET /api/points HTTP/1.0\r\nHost: localhost\r\n\r\n");
    assert_eq!(named.code, 200);

    // Read-only: no method but GET (and HEAD) is served, and nothing changed.
    for method in ["POST", "PUT", "DELETE"] {
        assert_eq!(request(addr, method, "/").await.code, 405, "{method}");
    }
    assert_eq!(request(addr, "HEAD", "/api/points").await.code, 200);
    assert_eq!(get(addr, "/api/history?colour=red").await.code, 400);
    assert_eq!(common::points(d).await.len(), 4);

    let scrape = metrics(&get(addr, "/metrics").await.body);
    assert_eq!(sample(&scrape, "lootsync_entries", None), 4.0);
    assert_eq!(sample(&scrape, "lootsync_players", None), 4.0);
    assert!(sample(&scrape, "lootsync_log_fsyncs_total", None) >= 4.0);
    assert!(sample(&scrape, "lootsync_log_bytes", None) > 0.0);
    assert!(
        sample(&scrape, "lootsync_fsync_duration_seconds_count", None) >= 4.0,
        "each adjust's fsync timed"
    );
    web.daemon.stop().await;
}

/// The row of `player` in the standings page.
fn standings_row<'a>(page: &'a str, player: &str) -> &'a str {
    let at = page
        .find(&format!(">{player}</a>"))
        .unwrap_or_else(|| panic!("{player} listed: {page}"));
    let start = page[..at].rfind("<tr").expect("row start");
    let end = at + page[at..].find("</tr>").expect("row end");
    &page[start..end]
}

/// The standings' trends are built from the whole history once per ledger state, however
/// many views ask, and rebuilt when an entry arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standings_read_the_history_once_per_ledger_state() {
    common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let web = web::start(dir.path(), "alice", free_port()).await;
    let (d, addr) = (&web.daemon, web.addr);
    adjust(d, "Aria", 10, "boss kill").await;
    let builds = |scrape: &prometheus_parse::Scrape| {
        sample(scrape, "lootsync_http_standings_builds_total", None)
    };
    let before = metrics(&get(addr, "/metrics").await.body);
    assert_eq!(builds(&before), 0.0, "nothing built before a view");

    let (a, b, c, e) = tokio::join!(
        get(addr, "/"),
        get(addr, "/"),
        get(addr, "/"),
        get(addr, "/")
    );
    let views = [a, b, c, e];
    let first = views[0].body.clone();
    for view in &views {
        assert_eq!(view.code, 200);
        assert_eq!(
            standings_row(&view.body, "Aria"),
            standings_row(&first, "Aria")
        );
    }
    assert_eq!(get(addr, "/").await.code, 200);
    assert_eq!(
        builds(&metrics(&get(addr, "/metrics").await.body)),
        1.0,
        "five views, one build"
    );

    adjust(d, "Aria", 5, "second kill").await;
    let after = get(addr, "/").await.body;
    assert_eq!(
        builds(&metrics(&get(addr, "/metrics").await.body)),
        2.0,
        "a new entry, a new build"
    );
    assert_ne!(
        standings_row(&after, "Aria"),
        standings_row(&first, "Aria"),
        "the trend shows the new entry"
    );
    assert!(standings_row(&after, "Aria").contains(">15<"), "{after}");
    web.daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_when_datagrams_arrive_and_peers_catch_up() {
    common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // A peer with an entry alice lacks when she starts: she catches up in a session.
    let bob_config = common::config(dir.path(), "bob", port);
    let bob = common::start(&bob_config, Default::default()).await;
    adjust(&bob, "Cara", 7, "from bob").await;
    let web = web::start(dir.path(), "alice", port).await;
    let addr = web.addr;
    let before = metrics(&get(addr, "/metrics").await.body);
    let received = sample(&before, "lootsync_datagrams_received_total", None);

    // Junk to the whisper socket: received, and dropped with a reason.
    let junk = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..3 {
        junk.send_to(b"not a datagram", web.daemon.whisper_addr)
            .unwrap();
    }
    wait_until(Duration::from_secs(20), "alice catches up", || async {
        let scrape = metrics(&get(addr, "/metrics").await.body);
        sample(&scrape, "lootsync_entries", None) == 1.0
            && sample(&scrape, "lootsync_catch_up_duration_seconds_count", None) >= 1.0
    })
    .await;
    let after = metrics(&get(addr, "/metrics").await.body);
    assert!(sample(&after, "lootsync_datagrams_received_total", None) >= received + 3.0);
    let dropped: f64 = after
        .samples
        .iter()
        .filter(|s| s.metric == "lootsync_datagrams_dropped_total")
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum();
    assert!(dropped >= 3.0, "junk counted as dropped");
    assert!(sample(&after, "lootsync_peers", Some(("state", "in_sync"))) >= 1.0);
    assert!(sample(&after, "lootsync_sync_enabled", None) == 1.0);
    bob.stop().await;
    web.daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_and_sync_goes_on() {
    common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let web = web::start(dir.path(), "alice", port).await;
    let addr = web.addr;
    let bob = common::start(&common::config(dir.path(), "bob", port), Default::default()).await;

    let oversized = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let big_uri = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(64 * 1024));
    for (what, bytes, code) in [
        ("oversized head", oversized.into_bytes(), 431),
        ("oversized path", big_uri.into_bytes(), 431),
        ("garbage", b"\x00\x01\x02 nonsense\r\n\r\n".to_vec(), 400),
        ("bad version", b"GET / HTTP/9.9\r\n\r\n".to_vec(), 400),
    ] {
        let reply = tokio::task::spawn_blocking(move || web::raw(addr, &bytes))
            .await
            .unwrap();
        assert_eq!(reply.code, code, "{what}: {reply:?}");
    }

    // Every connection slot taken (by clients that never finish a request): one more is
    // told so at once, and a slot comes back when a client leaves.
    let max = loot_sync::http::MAX_CONNECTIONS;
    let held = tokio::task::spawn_blocking(move || {
        let held: Vec<TcpStream> = (0..max)
            .map(|_| {
                let mut s = TcpStream::connect(addr).unwrap();
                s.write_all(b"GET / HTTP/1.1\r\n").unwrap();
                s
            })
            .collect();
        held
    })
    .await
    .unwrap();
    wait_until(
        Duration::from_secs(10),
        "an extra connection refused",
        || async { get(addr, "/api/points").await.code == 503 },
    )
    .await;
    drop(held);
    wait_until(Duration::from_secs(10), "slots freed", || async {
        get(addr, "/api/points").await.code == 200
    })
    .await;

    // Through all of it, sync went on: bob's adjust reaches alice and her page.
    adjust(&bob, "Dana", 4, "still syncing").await;
    wait_until(
        Duration::from_secs(20),
        "alice's page shows bob's entry",
        || async { get(addr, "/api/points").await.body.contains("\"Dana\":4") },
    )
    .await;
    bob.stop().await;
    web.daemon.stop().await;
}

/// The next event's data holding `wanted`.
async fn next_mark(
    events: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    wanted: &str,
) -> String {
    let waiting = async {
        loop {
            let line = events.recv().await.expect("stream open");
            if let Some(data) = line.strip_prefix("data: ") {
                if data.contains(wanted) {
                    return data.to_owned();
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(15), waiting)
        .await
        .unwrap_or_else(|_| panic!("no event with {wanted}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adjust_made_through_the_cli_reaches_an_open_event_stream() {
    common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let web = web::start(dir.path(), "alice", free_port()).await;
    let addr = web.addr;
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .write_all(b"GET /events HTTP/1.0\r\nAccept: text/event-stream\r\n\r\n")
            .unwrap();
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { return };
            if events_tx.send(line).is_err() {
                return;
            }
        }
    });
    next_mark(&mut events, "\"entries\":0").await;
    cli(
        &web.config_file,
        &[
            "adjust", "--player", "Aria", "--delta", "5", "--reason", "live",
        ],
    )
    .await;
    let mark = next_mark(&mut events, "\"entries\":1").await;
    // The page's own mark is what the script compares the event with.
    let page = get(addr, "/").await.body;
    let shown = mark.replace('"', "&quot;");
    assert!(
        page.contains(&format!("data-mark=\"{shown}\"")),
        "{mark} in {page}"
    );
    web.daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_port_leaves_the_daemon_running_without_a_page() {
    common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = holder.local_addr().unwrap();
    let mut config = common::config(dir.path(), "alice", free_port());
    config.http.enabled = true;
    config.http.bind = taken.to_string();
    let d = common::start(&config, Default::default()).await;
    let status = common::status(&d).await;
    let http = status.http.expect("page configured");
    assert_eq!(http.url, None);
    assert!(http.error.unwrap().contains(&taken.to_string()));
    adjust(&d, "Aria", 1, "still works").await;
    d.stop().await;
}
