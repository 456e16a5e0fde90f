//! The routes, and the headers every response carries.

use super::live::Live;
use super::{api, assets, live, metrics, pages};
use crate::control::server::Dispatch;
use axum::http::header::{self, HeaderValue};
use axum::response::Response;
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
        .layer(axum::middleware::map_response(secure_headers))
        .with_state(state)
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
