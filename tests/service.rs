//! Running as a service: reload (in process, and SIGHUP to the real binary), the journal's
//! priority prefixes, `config check` on key files and the service user's access, and OS
//! errors said once. The boot under a real systemd is `scripts/boot-test`.

mod common;

use common::{config, free_port, run_cli, start, write_config_file};
use loot_sync::control::{Append, History, Points, Status};
use loot_sync::daemon::DaemonOptions;
use loot_sync::proto::entry::{Entry, EntryKind};
use loot_sync::proto::signature::SecretKey;
use loot_sync::testing::EntryBuilder;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn random_key() -> SecretKey {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).unwrap();
    SecretKey::from_seed(seed)
}

/// `officer add boss OFFICER` signed by `root`, as `lootsync officer add` makes it.
fn officer_add(root: &SecretKey, officer: &SecretKey) -> Entry {
    let mut id = [0u8; 10];
    getrandom::fill(&mut id).unwrap();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    EntryBuilder::at_ms(now.as_millis() as u64)
        .id_random(id)
        .reason("officer add")
        .actor("root")
        .target("boss")
        .delta(0)
        .kind(EntryKind::OfficerAdd {
            public_key: officer.public(),
        })
        .signed(root)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_applies_the_root_key_keeps_the_ledger_and_names_what_needs_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), "alice", free_port());
    let daemon = start(&config, DaemonOptions::default()).await;
    common::adjust(&daemon, "carol", 10, "before the root key").await;
    let (root, officer) = (random_key(), random_key());

    // The config gained a root key, the daemon has not been told: say "reload".
    let refused = daemon
        .request(Append {
            entry: Box::new(officer_add(&root, &officer)),
        })
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("reload the daemon"), "{refused}");

    let mut new = config.clone();
    new.security.root_public_key = Some(root.public().to_string());
    new.node = "renamed".to_owned();
    let reloaded = daemon.reload(new.clone()).await.unwrap();
    assert!(
        reloaded
            .applied
            .iter()
            .any(|line| line.contains(&format!("root key {}", root.public()))),
        "{reloaded:?}"
    );
    assert_eq!(reloaded.restart_needed, ["node"]);
    daemon
        .request(Append {
            entry: Box::new(officer_add(&root, &officer)),
        })
        .await
        .expect("officer add after the reload");
    // Same ledger, judged again: the unsigned entry is kept but no longer counts.
    let history = daemon.request(History { player: None }).await.unwrap();
    assert_eq!(history.len(), 2);
    assert!(daemon.request(Points {}).await.unwrap().is_empty());

    // A change signed by another root key than the daemon's names the key and the fix.
    let other = daemon
        .request(Append {
            entry: Box::new(officer_add(&random_key(), &officer)),
        })
        .await
        .unwrap_err()
        .to_string();
    assert!(other.contains(&root.public().to_string()), "{other}");
    assert!(other.contains("reload the daemon"), "{other}");

    // A reload that cannot read a key file changes nothing, and says the OS error once.
    let mut broken = new.clone();
    broken.security.group_key_file = Some(dir.path().join("missing.key"));
    let err = daemon.reload(broken).await.unwrap_err();
    let chain = format!("{:#}", anyhow::Error::new(err));
    assert!(chain.contains("missing.key"), "{chain}");
    assert_eq!(chain.matches("os error 2").count(), 1, "{chain}");
    let status = daemon.request(Status {}).await.unwrap();
    assert_eq!(status.entries, 2, "{status:?}");
    daemon.stop().await;
}

/// Waits for `child` to exit (up to 20 s), killing it if it does not.
fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("lootsync did not exit");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn signal(child: &Child, signal: libc::c_int) {
    // SAFETY: kill(2) on our own child's pid; no memory is involved.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, signal) }, 0);
}

#[test]
fn sighup_reloads_the_config_file_and_journal_lines_carry_priorities() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config_file(dir.path(), "alice", free_port());
    let log_path = dir.path().join("stderr.log");
    let log = std::fs::File::create(&log_path).unwrap();
    // What systemd sets when stderr is the journal: that stream's device and inode.
    let meta = log.metadata().unwrap();
    // systemd's notify socket, played by the test.
    let notify_path = dir.path().join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let next_notification = || {
        let mut buf = [0u8; 512];
        let len = notify.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..len]).into_owned()
    };
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_lootsync"))
        .arg("--config")
        .arg(&config)
        .arg("run")
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .env("NOTIFY_SOCKET", &notify_path)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let read_log = || std::fs::read_to_string(&log_path).unwrap();
    wait_for("the daemon to start", || {
        run_cli(&config, &["status"]).status.success()
    });

    let root_key = dir.path().join("root.key");
    let root_file = root_key.to_str().unwrap();
    let keygen = run_cli(&config, &["keygen", "root", root_file]);
    let root_public = String::from_utf8(keygen.stdout).unwrap().trim().to_owned();
    let keygen = run_cli(
        &config,
        &[
            "keygen",
            "officer",
            dir.path().join("o.key").to_str().unwrap(),
        ],
    );
    let officer_public = String::from_utf8(keygen.stdout).unwrap().trim().to_owned();
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "[security]\nroot_public_key = \"{root_public}\"\n"
    ));
    std::fs::write(&config, text).unwrap();
    let add = [
        "officer",
        "add",
        "boss",
        &officer_public,
        "--root-key",
        root_file,
    ];
    let before = run_cli(&config, &add);
    assert!(!before.status.success());
    let said = String::from_utf8_lossy(&before.stderr);
    assert!(said.contains("reload the daemon"), "{said}");

    assert!(next_notification().starts_with("READY=1"));
    signal(&daemon, libc::SIGHUP);
    let reloading = next_notification();
    let usec = reloading
        .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
        .unwrap_or_else(|| panic!("{reloading:?}"));
    assert!(usec.parse::<u64>().unwrap() > 0, "{reloading:?}");
    assert!(next_notification().starts_with("READY=1"));
    wait_for("the reload", || read_log().contains("reloaded"));
    let after = run_cli(&config, &add);
    assert!(
        after.status.success(),
        "{}",
        String::from_utf8_lossy(&after.stderr)
    );

    signal(&daemon, libc::SIGTERM);
    assert!(wait_exit(&mut daemon).success());
    assert_eq!(next_notification(), "STOPPING=1");
    let text = read_log();
    for line in text.lines() {
        let priority = line.get(..3).unwrap_or_default();
        assert!(
            ["<3>", "<4>", "<6>", "<7>"].contains(&priority),
            "line without a priority: {line:?}"
        );
        assert!(!line.contains('\x1b'), "colour: {line:?}");
        // The journal stamps entries; a line starting with a date would be stamped twice.
        assert!(!line[3..].starts_with("20"), "own timestamp: {line:?}");
    }
    let open_roster = text.lines().find(|l| l.contains("OPEN ROSTER")).unwrap();
    assert!(open_roster.starts_with("<4>"), "{open_roster}");
    let reloaded = text.lines().find(|l| l.contains("reloaded")).unwrap();
    assert!(reloaded.starts_with("<6>"), "{reloaded}");
    assert!(reloaded.contains(&root_public), "{reloaded}");
    assert!(text.contains("stopped; log flushed"), "{text}");
}

#[test]
fn config_check_checks_key_files_as_run_will_and_the_service_users_access() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config_file(dir.path(), "alice", free_port());
    let key = dir.path().join("group.key");
    assert!(
        run_cli(&config, &["keygen", "group", key.to_str().unwrap()])
            .status
            .success()
    );
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "[security]\ngroup_key_file = \"{}\"\n",
        key.display()
    ));
    std::fs::write(&config, text).unwrap();
    let check = |extra: &[&str]| {
        let mut args = vec!["config", "check", config.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = Command::new(env!("CARGO_BIN_EXE_lootsync"))
            .args(&args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (ok, said) = check(&[]);
    assert!(ok, "{said}");
    assert!(
        said.contains("security.group_key_file") && said.contains("a group key, private"),
        "{said}"
    );

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let (ok, said) = check(&[]);
    assert!(!ok, "{said}");
    assert!(
        said.contains("chmod 600") && said.contains("would refuse to start"),
        "{said}"
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();

    // `nobody` owns nothing here: it may not read the key, and the fix is named.
    let (ok, said) = check(&["--user", "nobody"]);
    assert!(!ok, "{said}");
    assert!(said.contains("nobody cannot read"), "{said}");
    assert!(said.contains("/etc/lootsync/keys/"), "{said}");
    let (ok, said) = check(&["--user", "no-such-user-lootsync-test"]);
    assert!(!ok && said.contains("no such user"), "{said}");

    // The daemon refuses what `config check` refuses, and says the OS error once.
    std::fs::remove_file(&key).unwrap();
    let (ok, said) = check(&[]);
    assert!(!ok && said.contains("group.key"), "{said}");
    let log_path = dir.path().join("stderr.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let meta = log.metadata().unwrap();
    let mut run = Command::new(env!("CARGO_BIN_EXE_lootsync"))
        .arg("--config")
        .arg(&config)
        .arg("run")
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .stderr(log)
        .spawn()
        .unwrap();
    let status = wait_exit(&mut run);
    let said = std::fs::read_to_string(&log_path).unwrap();
    assert!(!status.success());
    assert_eq!(said.matches("os error 2").count(), 1, "{said}");
    // Under systemd the final error is at error priority, like the log lines.
    let failed = said.lines().find(|l| l.contains("daemon failed")).unwrap();
    assert!(
        failed.starts_with("<3>lootsync: error: daemon failed"),
        "{said}"
    );
}

#[test]
fn init_makes_a_private_key_directory() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("etc");
    let out = Command::new(env!("CARGO_BIN_EXE_lootsync"))
        .arg("init")
        .arg(&target)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let keys = target.join("keys");
    let mode = std::fs::metadata(&keys).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    assert!(Path::new(&target.join("lootsync.toml")).exists());
}
