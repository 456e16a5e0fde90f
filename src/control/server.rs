//! The server side: accepts connections on the control socket, frames and parses request
//! lines, and hands each request to a dispatcher (the daemon's core thread) with a channel
//! for its reply. Every connection is bounded: in line length, in idle time, and in number.

use super::protocol::{parse_request, BadRequest, Reply, Request, MAX_REQUEST_BYTES};
use futures_util::StreamExt;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};
use tokio_util::bytes::BytesMut;
use tokio_util::codec::{Decoder, FramedRead, LinesCodec, LinesCodecError};
use tracing::{debug, warn, Instrument};

/// A connection that sends no complete request for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Connections served at once. One more gets a single error line and is closed, so idle
/// clients cannot pile up tasks and file descriptors without bound.
pub const MAX_CONNECTIONS: usize = 64;

/// Answers requests: the server calls it once per parsed request. Dropping `reply` unsent
/// tells the client that the daemon is shutting down.
pub trait Dispatch: Send + Sync + 'static {
    /// Starts answering `request`; the answer goes to `reply`.
    fn dispatch(&self, request: Request, reply: oneshot::Sender<Reply>);
}

impl<F> Dispatch for F
where
    F: Fn(Request, oneshot::Sender<Reply>) + Send + Sync + 'static,
{
    fn dispatch(&self, request: Request, reply: oneshot::Sender<Reply>) {
        self(request, reply)
    }
}

/// Serves the control socket until the task is dropped or aborted.
pub async fn serve(listener: UnixListener, dispatch: impl Dispatch) {
    let dispatch = Arc::new(dispatch);
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(err) => {
                warn!("control socket accept failed: {err}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        match limit.clone().try_acquire_owned() {
            Ok(permit) => {
                let served = serve_connection(stream, dispatch.clone(), permit);
                tokio::spawn(served.in_current_span());
            }
            Err(_) => {
                debug!("control connection refused: {MAX_CONNECTIONS} already open");
                tokio::spawn(refuse(stream).in_current_span());
            }
        }
    }
}

/// Tells a client over the connection limit why it is turned away, then hangs up.
async fn refuse(mut stream: UnixStream) {
    let reply = Reply::error(format!(
        "too many control connections ({MAX_CONNECTIONS} open); try again"
    ));
    let _ = write_reply(&mut stream, &reply).await;
}

/// One request line, or why it is not one.
enum Line {
    Text(String),
    Bad(BadRequest),
}

/// [`LinesCodec`] with its per-line failures turned into items, so a bad line gets an
/// error reply instead of ending the stream.
struct RequestLines(LinesCodec);

impl RequestLines {
    fn new() -> RequestLines {
        RequestLines(LinesCodec::new_with_max_length(MAX_REQUEST_BYTES))
    }

    fn lift(decoded: Result<Option<String>, LinesCodecError>) -> io::Result<Option<Line>> {
        match decoded {
            Ok(line) => Ok(line.map(Line::Text)),
            Err(LinesCodecError::MaxLineLengthExceeded) => {
                Ok(Some(Line::Bad(BadRequest::TooLong {
                    max: MAX_REQUEST_BYTES,
                })))
            }
            // The codec's only invalid-data error is a line that is not UTF-8; it has
            // consumed that line, so the next one decodes normally.
            Err(LinesCodecError::Io(err)) if err.kind() == io::ErrorKind::InvalidData => {
                Ok(Some(Line::Bad(BadRequest::NotUtf8)))
            }
            Err(LinesCodecError::Io(err)) => Err(err),
        }
    }
}

impl Decoder for RequestLines {
    type Item = Line;
    type Error = io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> io::Result<Option<Line>> {
        Self::lift(self.0.decode(buf))
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> io::Result<Option<Line>> {
        Self::lift(self.0.decode_eof(buf))
    }
}

async fn serve_connection(
    stream: UnixStream,
    dispatch: Arc<impl Dispatch>,
    _permit: OwnedSemaphorePermit,
) {
    let (read, mut write) = stream.into_split();
    let mut lines = FramedRead::new(read, RequestLines::new());
    loop {
        let line = match tokio::time::timeout(IDLE_TIMEOUT, lines.next()).await {
            Err(_) => {
                debug!("control connection idle for {IDLE_TIMEOUT:?}; closed");
                return;
            }
            Ok(None) => return,
            Ok(Some(Err(err))) => {
                debug!("control connection read failed: {err}");
                return;
            }
            Ok(Some(Ok(line))) => line,
        };
        let parsed = match line {
            Line::Text(text) => parse_request(&text),
            Line::Bad(bad) => Err(bad),
        };
        // The rest of an over-long line is still unread: close rather than parse its tail
        // as a new request.
        let too_long = matches!(parsed, Err(BadRequest::TooLong { .. }));
        let reply = match parsed {
            Err(bad) => {
                debug!("control request rejected: {bad}");
                Reply::error(bad.to_string())
            }
            Ok(request) => {
                let (reply_tx, reply_rx) = oneshot::channel();
                dispatch.dispatch(request, reply_tx);
                reply_rx
                    .await
                    .unwrap_or_else(|_| Reply::error("daemon is shutting down"))
            }
        };
        if write_reply(&mut write, &reply).await.is_err() || too_long {
            return;
        }
    }
}

async fn write_reply(
    write: &mut (impl tokio::io::AsyncWrite + Unpin),
    reply: &Reply,
) -> io::Result<()> {
    let mut out = serde_json::to_string(reply)
        .unwrap_or_else(|_| r#"{"ok":false,"error":"cannot encode reply"}"#.into());
    out.push('\n');
    write.write_all(out.as_bytes()).await
}
