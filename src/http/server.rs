//! Binding the web page's port and serving connections, each one bounded.
//!
//! Several daemons on one machine (the README's scenarios, the tests) each want the page:
//! the first to start gets `http.bind`; for the others a taken port is a warning and the
//! daemon runs on without a page (never a failed start over an optional feature). Port 0
//! takes any free port; `lootsync status` shows the URL either way.
//!
//! Bounds: at most [`MAX_CONNECTIONS`] connections at once (one more gets a `503` and is
//! closed), request heads up to [`MAX_HEAD_BYTES`] (longer ones get `431`), a head must
//! arrive within [`HEAD_TIMEOUT`], and no connection lives longer than
//! [`CONNECTION_LIFETIME`] (the live-update stream ends before that; browsers reconnect).

use super::live::Live;
use super::router::{router, AppState};
use crate::config::HttpConfig;
use crate::control::server::Dispatch;
use crate::control::HttpStatus;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, info, warn, Instrument};

/// Connections served at once; one more is answered `503` and closed.
pub const MAX_CONNECTIONS: usize = 64;
/// Longest request head (request line and headers) read, in bytes.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// A request head must arrive within this long of the connection (or of the last reply).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// No connection is kept longer than this, however busy.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(15 * 60);

/// The web page's socket, bound (or not) at start-up, before the daemon runs.
#[derive(Debug)]
pub struct Binding {
    status: Option<HttpStatus>,
    listener: Option<std::net::TcpListener>,
}

/// Binds `config`'s address. A taken port (or any other bind error) is logged as a warning
/// and leaves the daemon without a page; a non-loopback address is logged as a warning
/// too, since it publishes the page to whoever can reach it.
pub fn bind(config: &HttpConfig) -> Binding {
    let Some(addr) = config.address() else {
        return Binding {
            status: None,
            listener: None,
        };
    };
    let bound = std::net::TcpListener::bind(addr).and_then(|listener| {
        listener.set_nonblocking(true)?;
        let local = listener.local_addr()?;
        Ok((listener, local))
    });
    match bound {
        Ok((listener, local)) => {
            let url = url_of(local);
            if local.ip().is_loopback() {
                info!("web page and metrics at {url}");
            } else {
                warn!(
                    "web page and metrics published on {local} ({url}): anyone who can \
                     reach this address can read the standings, history, roster and peer \
                     table (read-only); set [http] bind = \"127.0.0.1:47680\" to keep them on \
                     this machine"
                );
            }
            Binding {
                status: Some(HttpStatus {
                    bind: config.bind.clone(),
                    url: Some(url),
                    error: None,
                }),
                listener: Some(listener),
            }
        }
        Err(err) => {
            let error = format!("cannot listen on {addr}: {err}");
            warn!(
                "no web page: {error} (another daemon on this machine may have the port; set \
                 [http] bind to another port, or port 0 for any free one); running without it"
            );
            Binding {
                status: Some(HttpStatus {
                    bind: config.bind.clone(),
                    url: None,
                    error: Some(error),
                }),
                listener: None,
            }
        }
    }
}

impl Binding {
    /// What `status` shows of the page: `None` when `[http]` turns it off.
    pub fn status(&self) -> Option<HttpStatus> {
        self.status.clone()
    }

    /// The task serving the page, reading through `core` (the dispatcher the control
    /// socket uses); `None` when nothing is bound. Call in the daemon's tokio runtime.
    pub fn serve(self, core: impl Dispatch) -> Option<impl Future<Output = ()> + Send> {
        let listener = TcpListener::from_std(self.listener?)
            .map_err(|err| warn!("no web page: {err}"))
            .ok()?;
        // A page on loopback answers only to loopback names (see `router::check_host`).
        let loopback_only = listener
            .local_addr()
            .is_ok_and(|local| local.ip().is_loopback());
        let core: Arc<dyn Dispatch> = Arc::new(core);
        let live = Live::new();
        let watching = live.watch(core.clone());
        let app = router(AppState {
            core,
            live,
            loopback_only,
            trends: Default::default(),
        });
        Some(async move {
            let watching = tokio::spawn(watching.in_current_span());
            accept_loop(listener, app).await;
            watching.abort();
        })
    }
}

/// The URL a browser on this machine opens: a wildcard address becomes loopback.
fn url_of(local: SocketAddr) -> String {
    let ip = match local.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}/", SocketAddr::new(ip, local.port()))
}

async fn accept_loop(listener: TcpListener, app: axum::Router) {
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(err) => {
                // Out of file descriptors and the like: wait rather than spin.
                warn!("web page accept failed: {err}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        match limit.clone().try_acquire_owned() {
            Ok(permit) => {
                tokio::spawn(connection(stream, app.clone(), permit).in_current_span());
            }
            Err(_) => {
                debug!("web connection refused: {MAX_CONNECTIONS} already open");
                tokio::spawn(refuse(stream));
            }
        }
    }
}

async fn connection(stream: TcpStream, app: axum::Router, _permit: OwnedSemaphorePermit) {
    let service = TowerToHyperService::new(app);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES);
    let serving = builder.serve_connection(TokioIo::new(stream), service);
    match tokio::time::timeout(CONNECTION_LIFETIME, serving).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => debug!("web connection ended: {err}"),
        Err(_) => debug!("web connection closed after {CONNECTION_LIFETIME:?}"),
    }
}

/// Tells a client over the connection limit to come back later, then hangs up.
async fn refuse(mut stream: TcpStream) {
    const BODY: &str = "too many connections; try again\n";
    let reply = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n\
         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = stream.write_all(reply.as_bytes()).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_port_is_a_status_note_not_a_failure() {
        let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let taken = holder.local_addr().unwrap();
        let config = HttpConfig {
            enabled: true,
            bind: taken.to_string(),
        };
        let binding = bind(&config);
        let status = binding.status().expect("on");
        assert_eq!(status.url, None);
        assert!(
            status
                .error
                .as_deref()
                .unwrap()
                .contains(&taken.to_string()),
            "{status:?}"
        );

        let config = HttpConfig {
            enabled: true,
            bind: "127.0.0.1:0".into(),
        };
        let url = bind(&config).status().unwrap().url.unwrap();
        assert!(
            url.starts_with("http://127.0.0.1:") && !url.ends_with(":0/"),
            "{url}"
        );
        let off = HttpConfig {
            enabled: false,
            ..config
        };
        assert!(bind(&off).status().is_none());
    }

    #[test]
    fn a_wildcard_bind_is_opened_on_loopback() {
        assert_eq!(
            url_of("0.0.0.0:8080".parse().unwrap()),
            "http://127.0.0.1:8080/"
        );
        assert_eq!(url_of("[::]:8080".parse().unwrap()), "http://[::1]:8080/");
        assert_eq!(
            url_of("192.0.2.7:80".parse().unwrap()),
            "http://192.0.2.7:80/"
        );
    }
}
