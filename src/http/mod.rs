//! The daemon's read-only web page and Prometheus metrics (`[http]`).
//!
//! Served on the daemon's own tokio runtime. Every page reads the ledger through the very
//! requests the CLI sends over the control socket (`points`, `history`, `status`), handed to
//! the core thread by the same dispatcher, so the page, `/api/*` and the CLI never
//! disagree. No request changes state: there are only `GET` routes.
//!
//! Names and reasons are written by other peers and are hostile input: pages are built with
//! maud, which escapes every value, and served with a Content-Security-Policy that allows
//! only our own script and style, so even a missed escape could not run a script.
//!
//! * [`server`]: binding (a taken port is a warning, not a failure), the accept loop, and
//!   the bounds: connection limit, header size, timeouts.
//! * `router`: the routes and the headers every response carries.
//! * `query`: asking the core thread, as the CLI does.
//! * `pages`: the HTML pages (standings, a player's history, peers, officers).
//! * `chart`: the SVG sparklines and the points-over-time chart, drawn server-side.
//! * `api`: `/api/points`, `/api/history`, `/api/status`: the CLI's JSON.
//! * `metrics`: `/metrics` in Prometheus text format.
//! * `live`: `/events`, server-sent events when the ledger changes.
//! * `trends`: the standings' trend column, built once per ledger state for every view.
//! * `assets`: our stylesheet and script (no third-party code, nothing from other sites).

mod api;
mod assets;
mod chart;
mod live;
mod metrics;
mod pages;
mod query;
mod router;
pub mod server;
mod trends;

pub use server::{bind, Binding, MAX_CONNECTIONS};
