//! Helpers for the web page tests: a daemon serving its page on a free port, and a plain
//! HTTP/1.0 client (each request its own connection, the body read to the end).
#![allow(dead_code)]

use crate::common;
use loot_sync::config::Config;
use loot_sync::daemon::{DaemonOptions, RunningDaemon};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Names an attacker would pick: markup, an attribute break-out, a script that would
/// retitle the page.
pub const HOSTILE: [&str; 3] = [
    "<script>alert(1)</script>",
    "\"><img src=x onerror=alert(1)>",
    "<script>document.title='pwned'</script>",
];

/// A daemon with its page on a port of its own, its config file for the CLI, and the
/// page's address.
pub struct WebDaemon {
    pub daemon: RunningDaemon,
    pub config_file: PathBuf,
    pub addr: SocketAddr,
}

/// Starts a daemon (node `node`, group port `port`) serving its page on a free port.
pub async fn start(dir: &Path, node: &str, port: u16) -> WebDaemon {
    let home = dir.join(node);
    std::fs::create_dir_all(&home).unwrap();
    let config_file = common::write_config_file(&home, node, port);
    let mut config = Config::load(&config_file).unwrap();
    config.http.enabled = true;
    config.http.bind = "127.0.0.1:0".into();
    let daemon = common::start(&config, DaemonOptions::default()).await;
    let status = common::status(&daemon).await;
    let url = status.http.and_then(|h| h.url).expect("the page is served");
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    WebDaemon {
        daemon,
        config_file,
        addr,
    }
}

/// A reply: status code, header lines (lower-case names), body.
#[derive(Debug)]
pub struct Reply {
    pub code: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    /// The first header named `name` (lower case).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

/// Sends `request` as it is and reads the reply to its end.
pub fn raw(addr: SocketAddr, request: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    // The server may answer and close before taking the whole of a refused request.
    let _ = stream.write_all(request);
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    parse(&bytes)
}

fn parse(bytes: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let code = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Reply {
        code,
        headers,
        body: body.to_owned(),
    }
}

/// `method path` over HTTP/1.0, from a blocking thread.
pub async fn request(addr: SocketAddr, method: &str, path: &str) -> Reply {
    let request = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    tokio::task::spawn_blocking(move || raw(addr, request.as_bytes()))
        .await
        .unwrap()
}

/// `GET path`.
pub async fn get(addr: SocketAddr, path: &str) -> Reply {
    request(addr, "GET", path).await
}

/// Runs the CLI against the daemon and returns its stdout, checking it succeeded.
pub async fn cli(config: &Path, args: &[&str]) -> String {
    let config = config.to_path_buf();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let output = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        common::run_cli(&config, &args)
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}
