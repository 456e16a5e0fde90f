//! The server side: accepts connections on the control socket, frames and parses request
//! lines, and hands each request to a dispatcher (the daemon's core thread) with a channel
//! for its reply. Every connection is bounded: in line length, in idle time, and in number.

use super::protocol::{
    parse_request, BadRequest, Outcome, Reply, Request, Response, MAX_REQUEST_BYTES,
};
use crate::core::ledger::HistoryRow;
use futures_util::StreamExt;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
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
    fn dispatch(&self, request: Request, reply: oneshot::Sender<Outcome>);

    /// Called once a history reply of `rows` rows has been written and its memory freed
    /// (the daemon hands large frees back to the system here). Does nothing by default.
    fn history_written(&self, rows: usize) {
        let _ = rows;
    }
}

impl<F> Dispatch for F
where
    F: Fn(Request, oneshot::Sender<Outcome>) + Send + Sync + 'static,
{
    fn dispatch(&self, request: Request, reply: oneshot::Sender<Outcome>) {
        self(request, reply)
    }
}

/// Refusals the server makes itself, before or instead of asking the dispatcher.
#[derive(Debug, Error)]
enum ServerRefusal {
    #[error("too many control connections ({MAX_CONNECTIONS} open); try again")]
    TooManyConnections,
    #[error("daemon is shutting down")]
    ShuttingDown,
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
    let reply = Reply::error(ServerRefusal::TooManyConnections.to_string());
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
                match reply_rx.await {
                    Ok(outcome) => Reply::from(outcome),
                    Err(_) => Reply::error(ServerRefusal::ShuttingDown.to_string()),
                }
            }
        };
        let written = write_reply(&mut write, &reply).await;
        if let Some(Response::History(rows)) = &reply.result {
            let rows = rows.len();
            drop(reply);
            dispatch.history_written(rows);
        }
        if written.is_err() || too_long {
            return;
        }
    }
}

async fn write_reply(
    write: &mut (impl tokio::io::AsyncWrite + Unpin),
    reply: &Reply<Response>,
) -> io::Result<()> {
    if let (true, None, Some(Response::History(rows))) = (reply.ok, &reply.error, &reply.result) {
        return write_history(write, rows).await;
    }
    let mut out = serde_json::to_string(reply)
        .unwrap_or_else(|_| r#"{"ok":false,"error":"cannot encode reply"}"#.into());
    out.push('\n');
    write.write_all(out.as_bytes()).await
}

/// History rows encoded per write of a history reply.
const HISTORY_ROWS_PER_WRITE: usize = 256;

/// Writes a successful history reply a few hundred rows at a time, the same line
/// `serde_json` makes of the whole [`Reply`]. Why: a whole log's history is about 800 bytes
/// of JSON per row (16 MiB at 20,000 entries), and encoding it into one string made every
/// full `history` cost the daemon that much memory on top of the rows (issue 16's soak).
async fn write_history(
    write: &mut (impl tokio::io::AsyncWrite + Unpin),
    rows: &[HistoryRow],
) -> io::Result<()> {
    let mut out = Vec::with_capacity(64 * 1024);
    out.extend_from_slice(br#"{"ok":true,"result":["#);
    for (n, chunk) in rows.chunks(HISTORY_ROWS_PER_WRITE).enumerate() {
        for (i, row) in chunk.iter().enumerate() {
            if n > 0 || i > 0 {
                out.push(b',');
            }
            // A row cannot fail to encode (no maps, no non-string keys); if one did, the
            // connection is closed mid-line and the client reports a reply it cannot read.
            serde_json::to_writer(&mut out, row)?;
        }
        write.write_all(&out).await?;
        out.clear();
    }
    out.extend_from_slice(b"]}\n");
    write.write_all(&out).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::{PointsResult, SwitchSync};
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::UnixStream as StdStream;
    use std::path::Path;

    /// Serves a control socket in `dir` whose dispatcher answers every request with empty
    /// totals; returns its path.
    fn serve_in(runtime: &tokio::runtime::Runtime, dir: &Path) -> std::path::PathBuf {
        let path = crate::control::socket_path(dir);
        let listener = crate::control::bind(&path, None).unwrap();
        runtime.spawn(async move {
            let listener = UnixListener::from_std(listener).unwrap();
            serve(listener, |_request, reply: oneshot::Sender<Outcome>| {
                let _ = reply.send(Ok(Response::Points(PointsResult::new())));
            })
            .await
        });
        path
    }

    fn connect(path: &Path) -> StdStream {
        let stream = StdStream::connect(path).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
    }

    /// Writes `bytes` and reads one reply line; `None` when the server hung up instead.
    fn converse(stream: &mut StdStream, bytes: &[u8]) -> Option<Reply<serde_json::Value>> {
        stream.write_all(bytes).unwrap();
        read_reply(stream)
    }

    fn read_reply(stream: &StdStream) -> Option<Reply<serde_json::Value>> {
        let mut line = String::new();
        match BufReader::new(stream).read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(serde_json::from_str(&line).expect("a JSON reply")),
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    }

    /// A history reply written in chunks is byte for byte the line the whole reply
    /// encodes to: empty, within one chunk, and over several.
    #[test]
    fn a_history_reply_written_in_chunks_is_the_whole_replys_line() {
        use crate::testing::EntryBuilder;
        for count in [0, 1, HISTORY_ROWS_PER_WRITE, 2 * HISTORY_ROWS_PER_WRITE + 3] {
            let rows: Vec<HistoryRow> = (0..count)
                .map(|i| HistoryRow {
                    entry: EntryBuilder::at_ms(1_700_000_000_000 + i as u64)
                        .target(format!("player \"{i}\""))
                        .delta(i as i64 - 3)
                        .reason(format!("row {i}\n"))
                        .build(),
                    total: i as i64,
                    rejected: (i % 3 == 0).then(|| "not an officer".to_owned()),
                    signed_by: (i % 2 == 0).then(|| "Aria".to_owned()),
                    reverts: None,
                    reverted_by: None,
                })
                .collect();
            let reply = Reply::ok(Response::History(rows.clone()));
            let whole = serde_json::to_string(&reply).unwrap() + "\n";
            let mut chunked = Vec::new();
            runtime()
                .block_on(write_reply(&mut chunked, &reply))
                .unwrap();
            assert_eq!(String::from_utf8(chunked).unwrap(), whole, "{count} rows");
        }
    }

    /// After a history reply is written the dispatcher hears how many rows it had (the
    /// daemon trims the allocator there); after other replies it hears nothing.
    #[test]
    fn the_dispatcher_hears_when_a_history_reply_is_written() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        struct Counting(Arc<AtomicUsize>);
        impl Dispatch for Counting {
            fn dispatch(&self, request: Request, reply: oneshot::Sender<Outcome>) {
                let response = match request {
                    Request::History(_) => Response::History(Vec::new()),
                    _ => Response::Points(PointsResult::new()),
                };
                let _ = reply.send(Ok(response));
            }
            fn history_written(&self, rows: usize) {
                self.0.fetch_add(rows + 1, Ordering::SeqCst);
            }
        }
        let runtime = runtime();
        let dir = tempfile::tempdir().unwrap();
        let path = crate::control::socket_path(dir.path());
        let listener = crate::control::bind(&path, None).unwrap();
        let heard = Arc::new(AtomicUsize::new(0));
        let counting = Counting(heard.clone());
        runtime
            .spawn(async move { serve(UnixListener::from_std(listener).unwrap(), counting).await });
        let mut stream = connect(&path);
        assert!(converse(&mut stream, b"{\"cmd\":\"points\"}\n").is_some());
        assert_eq!(heard.load(Ordering::SeqCst), 0);
        assert!(converse(&mut stream, b"{\"cmd\":\"history\"}\n").is_some());
        let start = std::time::Instant::now();
        while heard.load(Ordering::SeqCst) == 0 && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(heard.load(Ordering::SeqCst), 1, "one history of 0 rows");
    }

    #[test]
    fn over_the_connection_limit_a_client_gets_one_error_line_then_eof() {
        let runtime = runtime();
        let dir = tempfile::tempdir().unwrap();
        let path = serve_in(&runtime, dir.path());
        // Connections are accepted in the order they were made, so these hold every slot
        // by the time the next one is accepted. Each proves it is served.
        let mut held: Vec<StdStream> = (0..MAX_CONNECTIONS).map(|_| connect(&path)).collect();
        for stream in &mut held {
            let reply = converse(stream, b"{\"cmd\":\"points\"}\n").expect("served");
            assert!(reply.ok);
        }
        let turned_away = connect(&path);
        let reply = read_reply(&turned_away).expect("an error line");
        assert!(!reply.ok);
        assert!(
            reply
                .error
                .unwrap()
                .contains("too many control connections"),
            "says why"
        );
        assert!(read_reply(&turned_away).is_none(), "then hangs up");

        // The typed client reports the daemon's refusal, not a broken pipe.
        let err = crate::control::call(&path, SwitchSync { enabled: true }).unwrap_err();
        assert!(
            matches!(err, crate::control::ControlError::Refused { .. }),
            "{err:?}"
        );

        // A closed connection frees its slot (once its task has seen the hang-up).
        drop(held.pop());
        let started = std::time::Instant::now();
        loop {
            let mut stream = connect(&path);
            if let Some(reply) = converse(&mut stream, b"{\"cmd\":\"points\"}\n") {
                if reply.ok {
                    break;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "slot never freed"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn an_over_long_line_gets_an_error_and_the_connection_is_closed() {
        let runtime = runtime();
        let dir = tempfile::tempdir().unwrap();
        let path = serve_in(&runtime, dir.path());

        // Exactly the limit (not counting the newline) is still a request.
        let mut stream = connect(&path);
        let padded = {
            // Built by hand: format! widths stop at 65,535.
            let mut line = String::from(r#"{"cmd":"points"}"#);
            line.push_str(&" ".repeat(MAX_REQUEST_BYTES - line.len()));
            line.push('\n');
            line
        };
        let reply = converse(&mut stream, padded.as_bytes()).expect("served");
        assert!(reply.ok, "{reply:?}");

        // One byte more is not, even when it arrives in pieces, and a request following it
        // on the same connection is never parsed out of its tail.
        let mut stream = connect(&path);
        let mut long = String::from(r#"{"cmd":"points"}"#);
        long.push_str(&" ".repeat(MAX_REQUEST_BYTES + 1 - long.len()));
        let (head, tail) = long.as_bytes().split_at(MAX_REQUEST_BYTES / 2);
        stream.write_all(head).unwrap();
        // The rest in one write, taken whole into the socket buffer before the server can
        // hang up on it.
        let rest = [tail, b"\n{\"cmd\":\"points\"}\n"].concat();
        let reply = converse(&mut stream, &rest).expect("an error line");
        assert!(!reply.ok);
        assert_eq!(
            reply.error.as_deref(),
            Some(format!("request longer than {MAX_REQUEST_BYTES} bytes").as_str())
        );
        assert!(read_reply(&stream).is_none(), "closed after the error");
    }

    #[test]
    fn a_line_that_is_not_utf8_is_answered_and_the_connection_goes_on() {
        let runtime = runtime();
        let dir = tempfile::tempdir().unwrap();
        let path = serve_in(&runtime, dir.path());
        let mut stream = connect(&path);
        let reply = converse(&mut stream, b"\xff\xfe\n").expect("an error line");
        assert_eq!(reply.error.as_deref(), Some("bad request: not UTF-8"));
        let reply = converse(&mut stream, b"{\"cmd\":\"points\"}\n").expect("served");
        assert!(reply.ok);
    }
}
