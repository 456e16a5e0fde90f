//! Our stylesheet and script, compiled into the binary and served from the daemon itself:
//! no third-party code, nothing loaded from another site (the Content-Security-Policy
//! allows only these).
//!
//! The script does one thing: when `/events` says the ledger changed, it fetches the page
//! again and swaps its live part in place (the new markup is the server's, escaped there;
//! the script builds no markup of its own), so an open page follows the ledger without a
//! reload or a jump.

use axum::http::header;
use axum::response::IntoResponse;

/// Where the stylesheet is served.
pub(super) const CSS_PATH: &str = "/assets/app.css";
/// Where the script is served.
pub(super) const JS_PATH: &str = "/assets/app.js";

const CSS: &str = r#":root {
  color-scheme: light dark;
  --bg: #f7f7f5; --fg: #1d1f21; --muted: #6a6f75; --card: #ffffff; --line: #dcdde0;
  --accent: #2f6fb0; --neg: #b3261e; --pos: #1e6b34; --void: #8a8f95;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #16181b; --fg: #e6e6e3; --muted: #9aa0a6; --card: #1f2226; --line: #33373c;
    --accent: #7fb2e5; --neg: #ff8a80; --pos: #7bd88f; --void: #70757a;
  }
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg);
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
header { border-bottom: 1px solid var(--line); background: var(--card); }
header .bar, main, footer { max-width: 60rem; margin: 0 auto; padding: 0.6rem 1rem; }
header .bar { display: flex; flex-wrap: wrap; gap: 0.4rem 1.2rem; align-items: baseline; }
header .brand { font-weight: 700; }
nav a { margin-right: 0.9rem; }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
h1 { font-size: 1.35rem; margin: 0.8rem 0 0.4rem; overflow-wrap: anywhere; }
.summary { display: flex; flex-wrap: wrap; gap: 0.3rem 1.2rem; color: var(--muted); margin: 0 0 0.8rem; }
.summary b { color: var(--fg); font-weight: 600; }
.live-dot { display: inline-block; width: 0.55rem; height: 0.55rem; border-radius: 50%;
  background: var(--muted); margin-right: 0.3rem; }
.live-dot.on { background: var(--pos); }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; overflow-x: auto; }
table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { padding: 0.4rem 0.6rem; text-align: left; border-bottom: 1px solid var(--line);
  vertical-align: top; }
tr:last-child td { border-bottom: 0; }
th { color: var(--muted); font-weight: 600; font-size: 0.85rem; white-space: nowrap; }
td.num, th.num { text-align: right; white-space: nowrap; }
td.name, td.reason { overflow-wrap: anywhere; }
td.time { white-space: nowrap; color: var(--muted); font-size: 0.9rem; }
.neg { color: var(--neg); font-weight: 600; }
.pos { color: var(--pos); }
tr.void td { color: var(--void); }
tr.void td.delta { text-decoration: line-through; }
.tag { display: inline-block; font-size: 0.75rem; border: 1px solid var(--line);
  border-radius: 4px; padding: 0 0.3rem; color: var(--muted); }
.key { font-family: ui-monospace, monospace; font-size: 0.8rem; color: var(--muted);
  overflow-wrap: anywhere; }
svg.spark { display: block; width: 100px; height: 20px; }
svg.chart { display: block; width: 100%; height: auto; margin: 0.4rem 0 1rem; }
svg .line { fill: none; stroke: var(--accent); stroke-width: 1.6; }
svg .line.neg { stroke: var(--neg); }
svg .zero { stroke: var(--line); stroke-dasharray: 3 3; }
svg text.axis { fill: var(--muted); font-size: 13px; }
@media (max-width: 36rem) { svg text.axis { font-size: 22px; } }
.empty { color: var(--muted); padding: 1rem; }
footer { color: var(--muted); font-size: 0.85rem; }
@media (max-width: 36rem) {
  .hide-narrow { display: none; }
  th, td { padding: 0.35rem 0.4rem; }
  td.time { white-space: normal; min-width: 5.5rem; }
  td.reason { min-width: 7rem; }
  body { font-size: 14px; }
}
"#;

const JS: &str = r#""use strict";
(function () {
  var live = document.getElementById("live");
  if (!live || !window.EventSource) { return; }
  var dot = document.getElementById("live-dot");
  var busy = false, again = false;
  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    fetch(window.location.href, { cache: "no-store" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (text) {
        if (text === null) { return; }
        var next = new DOMParser().parseFromString(text, "text/html").getElementById("live");
        var current = document.getElementById("live");
        if (next && current) { current.replaceWith(next); }
      })
      .catch(function () {})
      .then(function () { busy = false; if (again) { again = false; refresh(); } });
  }
  var events = new EventSource("/events");
  events.addEventListener("open", function () { if (dot) { dot.classList.add("on"); } });
  events.addEventListener("error", function () { if (dot) { dot.classList.remove("on"); } });
  events.addEventListener("ledger", function (event) {
    var mark;
    try { mark = JSON.parse(event.data); } catch (e) { return; }
    var shown = document.getElementById("live");
    if (shown && shown.getAttribute("data-mark") !== JSON.stringify(mark)) { refresh(); }
  });
})();
"#;

/// The stylesheet.
pub(super) async fn css() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS)
}

/// The script.
pub(super) async fn js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        JS,
    )
}
