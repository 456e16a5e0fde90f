//! The web page in a real browser: headless Chromium (Debian's `chromium`, which
//! `scripts/test` installs when missing) loads the standings and a player's page from a
//! daemon with data, and the test reads the DOM the browser built: the standings are
//! there, hostile names are text, and no injected script ran. Screenshots at phone and
//! desktop widths go to `target/tmp/web-screenshots/` for a person to look at.
//!
//! Without Chromium the test says SKIP, except under `CI=true`, where a missing browser is
//! a failure (CI installs it through `scripts/test`).

mod common;
mod web;

use common::{adjust, free_port};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use web::HOSTILE;

/// The browser's command, if one is installed.
fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// Runs headless Chromium with `args` (its profile in `profile`), waiting at most a minute;
/// returns its stdout.
fn run_browser(browser: &Path, profile: &Path, args: &[String]) -> String {
    let mut child = Command::new(browser)
        .args([
            "--headless",
            // Root in CI and containers: Chromium's sandbox needs user namespaces there.
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--no-first-run",
            "--disable-extensions",
            "--disable-background-networking",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let stdout = child.stdout.take().unwrap();
    let reading = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap_or_default());
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("chromium {args:?} did not finish within a minute");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    reading.join().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_renders_the_standings_and_runs_no_injected_script() {
    common::init_tracing();
    let Some(browser) = chromium() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but no chromium on PATH: scripts/test installs it (apt-get install chromium)"
        );
        eprintln!("SKIP: no chromium on PATH (scripts/test installs it as root)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let web = web::start(dir.path(), "raid-hub", free_port()).await;
    let d = &web.daemon;
    for (player, delta, reason) in [
        ("Aria", 120, "Onyxia kill"),
        ("Bram", 85, "Ragnaros kill"),
        ("Cara", 40, "on time"),
        ("Dorn", -15, "left early"),
        ("Aria", -30, "Bracers of Might"),
        ("Bram", 25, "bench bonus"),
        ("Aria", 45, "Nefarian kill"),
        (HOSTILE[0], 5, HOSTILE[1]),
        (HOSTILE[2], 3, HOSTILE[0]),
    ] {
        adjust(d, player, delta, reason).await;
    }
    let base = format!("http://{}", web.addr);
    let screenshots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("web-screenshots");
    std::fs::create_dir_all(&screenshots).unwrap();

    let pages = [
        ("standings", format!("{base}/")),
        ("player", format!("{base}/player/Aria")),
        (
            "hostile",
            format!("{base}/player/%3Cscript%3Edocument.title%3D'pwned'%3C%2Fscript%3E"),
        ),
    ];
    let browser_dir = dir.path().join("chromium");
    let jobs = pages.clone();
    let (doms, shots) = tokio::task::spawn_blocking(move || {
        let mut doms = Vec::new();
        let mut shots = Vec::new();
        for (name, url) in &jobs {
            let dom = run_browser(&browser, &browser_dir, &["--dump-dom".into(), url.clone()]);
            doms.push(dom);
            if *name == "hostile" {
                // Its DOM is what matters; two screenshots are enough to look at.
                continue;
            }
            for (width, height, size) in [(390, 844, "phone"), (1280, 800, "desktop")] {
                let shot = screenshots.join(format!("{name}-{size}.png"));
                let _ = std::fs::remove_file(&shot);
                run_browser(
                    &browser,
                    &browser_dir,
                    &[
                        format!("--window-size={width},{height}"),
                        format!("--screenshot={}", shot.display()),
                        url.clone(),
                    ],
                );
                shots.push(shot);
            }
        }
        (doms, shots)
    })
    .await
    .unwrap();

    for ((name, url), dom) in pages.iter().zip(&doms) {
        assert!(dom.contains("<main id=\"live\""), "{name} {url}: {dom}");
        // Injected markup stayed text: no element it tried to make, no script that ran.
        assert!(!dom.contains("<img"), "{name}: {dom}");
        assert!(
            !dom.contains("pwned</title>"),
            "{name}: injected script ran: {dom}"
        );
        assert!(!dom.contains("<script>alert"), "{name}: {dom}");
        assert_eq!(
            dom.matches("<script").count(),
            1,
            "{name}: only our own script: {dom}"
        );
    }
    let standings = &doms[0];
    assert!(
        standings.contains("<title>Standings · Loot Sync</title>"),
        "{standings}"
    );
    for (player, total) in [
        ("Aria", "135"),
        ("Bram", "110"),
        ("Cara", "40"),
        ("Dorn", "-15"),
    ] {
        assert!(
            standings.contains(&format!(">{player}</a></td><td class=\"num")),
            "{player} in {standings}"
        );
        assert!(
            standings.contains(&format!(">{total}</td>")),
            "{total} in {standings}"
        );
    }
    let aria = standings.find(">Aria<").unwrap();
    let dorn = standings.find(">Dorn<").unwrap();
    assert!(aria < dorn, "ranked");
    assert!(
        standings.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{standings}"
    );
    assert!(doms[1].contains("Bracers of Might") && doms[1].contains("<svg class=\"chart\""));
    assert!(
        doms[2].contains("&lt;script&gt;document.title='pwned'&lt;/script&gt;"),
        "{}",
        doms[2]
    );
    for shot in &shots {
        let bytes = std::fs::read(shot).unwrap_or_else(|_| panic!("no {}", shot.display()));
        assert!(
            bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
            "{} is a PNG",
            shot.display()
        );
        println!("screenshot: {}", shot.display());
    }
    web.daemon.stop().await;
}
