//! `/api/points`, `/api/history` and `/api/status`: the JSON `points --json`,
//! `history --json` and `status --json` print, byte for byte (each with its newline).

use super::query::{ask, QueryError};
use super::router::AppState;
use crate::control::export::{json_array, HistoryRecord};
use crate::control::{History, Points, Status};
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

/// The query string of `/api/history`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HistoryQuery {
    /// Only this player's entries.
    player: Option<String>,
}

/// Current totals, as `points --json`.
pub(super) async fn points(State(state): State<AppState>) -> Result<Response, QueryError> {
    let totals = ask(&state.core, Points {}).await?;
    json(serde_json::to_string(&totals)?)
}

/// The audit trail (or one player's), as `history --json [PLAYER]`.
pub(super) async fn history(
    State(state): State<AppState>,
    Query(query): Query<HistoryQuery>,
) -> Result<Response, QueryError> {
    let rows = ask(
        &state.core,
        History {
            player: query.player,
        },
    )
    .await?;
    let text = json_array(rows.iter().map(HistoryRecord::of))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], text).into_response())
}

/// Node, sync state, peers and counters, as `status --json` (keys sorted).
pub(super) async fn status(State(state): State<AppState>) -> Result<Response, QueryError> {
    let status = ask(&state.core, Status {}).await?;
    json(serde_json::to_value(&status)?.to_string())
}

fn json(mut text: String) -> Result<Response, QueryError> {
    text.push('\n');
    Ok(([(header::CONTENT_TYPE, "application/json")], text).into_response())
}
