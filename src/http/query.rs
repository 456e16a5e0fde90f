//! Asking the core thread, exactly as a control-socket client does: the same typed
//! command, handed to the same dispatcher, its reply decoded through JSON into the
//! command's output type (what the CLI reads off the socket).

use crate::control::server::Dispatch;
use crate::control::Command;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::sync::oneshot;

/// The longest a page waits for the core thread (busy replaying a big log, say).
pub(super) const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the core thread gave no answer a page can use.
#[derive(Debug, Error)]
pub(super) enum QueryError {
    /// The core thread is gone: the daemon is stopping.
    #[error("the daemon is shutting down")]
    ShuttingDown,
    /// No answer within [`ANSWER_TIMEOUT`].
    #[error("the daemon did not answer within {ANSWER_TIMEOUT:?}")]
    Timeout,
    /// The daemon refused the request.
    #[error("{0}")]
    Refused(String),
    /// The answer is not the command's output type (a bug: the dispatcher answered
    /// another command).
    #[error("cannot read the daemon's answer: {0}")]
    Decode(#[from] serde_json::Error),
}

impl IntoResponse for QueryError {
    fn into_response(self) -> Response {
        // Plain text (and `nosniff` on every response), so nothing in it is markup.
        (StatusCode::SERVICE_UNAVAILABLE, format!("{self}\n")).into_response()
    }
}

/// Sends `command` to the core thread and waits for its typed answer.
pub(super) async fn ask<C: Command>(
    core: &Arc<dyn Dispatch>,
    command: C,
) -> Result<C::Output, QueryError> {
    let (reply, answer) = oneshot::channel();
    core.dispatch(command.into(), reply);
    let outcome = tokio::time::timeout(ANSWER_TIMEOUT, answer)
        .await
        .map_err(|_| QueryError::Timeout)?
        .map_err(|_| QueryError::ShuttingDown)?;
    let response = outcome.map_err(|refusal| QueryError::Refused(refusal.to_string()))?;
    Ok(serde_json::from_value(serde_json::to_value(response)?)?)
}
