//! The routes, and the headers every response carries.

use super::live::Live;
use super::trends::TrendCache;
use super::{api, assets, live, metrics, pages};
use crate::control::server::Dispatch;
use axum::extract::{Request, State};
use axum::http::header::{self, HeaderValue};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::Arc;

/// What every handler gets.
#[derive(Clone)]
pub(super) struct AppState {
    /// The core thread, asked as the control socket asks it.
    pub core: Arc<dyn Dispatch>,
    /// The ledger's changes, for live pages.
    pub live: Live,
    /// Served on a loopback address: requests must name a loopback host.
    pub loopback_only: bool,
    /// The standings' trends of the latest ledger state.
    pub trends: Arc<TrendCache>,
}

/// Only our own script and style run or apply; nothing loads from another site; the page
/// may not be framed. A name that slipped through escaping still could not run a script.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// Every route: `GET` (and `HEAD`) only, so no request can change anything; any other
/// method gets `405`, any other path `404`.
pub(super) fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(pages::standings))
        .route("/player/{name}", get(pages::player))
        .route("/peers", get(pages::peers))
        .route("/officers", get(pages::officers))
        .route("/api/points", get(api::points))
        .route("/api/history", get(api::history))
        .route("/api/status", get(api::status))
        .route("/metrics", get(metrics::metrics))
        .route("/events", get(live::events))
        .route(assets::CSS_PATH, get(assets::css))
        .route(assets::JS_PATH, get(assets::js))
        .fallback(pages::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            check_host,
        ))
        .layer(axum::middleware::map_response(secure_headers))
        .with_state(state)
}

/// On a loopback address, refuses requests whose `Host` is not a loopback name: a web site
/// that points its own name at 127.0.0.1 (DNS rebinding) could otherwise read the page
/// through a visitor's browser. A published page (any other address) answers to any name.
async fn check_host(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .map(|host| host.to_str().unwrap_or(""));
    match host {
        Some(host) if state.loopback_only && !is_loopback_host(host) => (
            StatusCode::FORBIDDEN,
            "this page answers only to localhost, 127.0.0.1 or [::1] (it is bound to \
             loopback); to publish it, set [http] bind to another address\n",
        )
            .into_response(),
        _ => next.run(request).await,
    }
}

/// Whether a `Host` header names this machine: `localhost` (or a name under it), or a
/// loopback IP, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _port)| name),
    };
    let name = name.to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

async fn secure_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::is_loopback_host;

    #[test]
    fn only_loopback_names_pass_on_a_loopback_page() {
        for host in [
            "localhost",
            "LOCALHOST:47680",
            "app.localhost:1",
            "127.0.0.1",
            "127.0.0.1:47680",
            "127.1.2.3:80",
            "[::1]:47680",
            "[::1]",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:47680",
            "localhost.evil.example",
            "192.0.2.1:47680",
            "[2001:db8::1]:80",
            "",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }
}
