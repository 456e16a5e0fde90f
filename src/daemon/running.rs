//! The handle to a running daemon.

use super::event::Event;
use crate::control::{self, Command, ControlError};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A daemon running in the current tokio runtime (its sockets and control server) and on
/// its own core thread. Dropping it without [`RunningDaemon::stop`] aborts it.
pub struct RunningDaemon {
    /// The daemon's whisper (unicast) address.
    pub whisper_addr: SocketAddr,
    /// Its control socket.
    pub control_path: PathBuf,
    pub(super) events: mpsc::Sender<Event>,
    /// Fires when the core thread has finished (the log flushed or not, the lock released).
    pub(super) finished: Option<oneshot::Receiver<()>>,
    /// Sends what the core thread queues; ends by itself once the core thread is gone.
    pub(super) sender: Option<JoinHandle<()>>,
    /// The receive loops and the control server: they run until aborted.
    pub(super) tasks: Vec<JoinHandle<()>>,
}

impl RunningDaemon {
    /// Graceful shutdown: stop, flush the log, remove the control socket, release the lock.
    pub async fn stop(mut self) {
        self.end(true).await;
    }

    /// Stops without flushing (closest to a crash an in-process test can get): the core
    /// thread drops the log and lock as they are, and the control socket file stays.
    pub async fn abort(mut self) {
        self.end(false).await;
    }

    async fn end(&mut self, graceful: bool) {
        if !graceful {
            // A crash sends nothing more either.
            if let Some(sender) = &self.sender {
                sender.abort();
            }
        }
        let _ = self
            .events
            .send(if graceful { Event::Stop } else { Event::Abort });
        if let Some(finished) = self.finished.take() {
            let _ = finished.await;
        }
        for task in self.tasks.drain(..) {
            task.abort();
            let _ = task.await;
        }
        // After a graceful stop this lets the last datagrams go out.
        if let Some(sender) = self.sender.take() {
            let _ = sender.await;
        }
    }

    /// Sends a control request the way the CLI would, over the control socket.
    pub async fn request<C: Command>(&self, command: C) -> Result<C::Output, ControlError> {
        let path = self.control_path.clone();
        tokio::task::spawn_blocking(move || control::call(&path, command))
            .await
            .map_err(ControlError::Task)?
    }
}

impl Drop for RunningDaemon {
    fn drop(&mut self) {
        if self.finished.is_some() {
            let _ = self.events.send(Event::Abort);
            for task in &self.tasks {
                task.abort();
            }
        }
    }
}
