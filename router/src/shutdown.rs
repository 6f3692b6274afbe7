//! Graceful shutdown: the OS signals that start it, and the handle every
//! task watches to learn that it has started.
//!
//! One [`Trigger`] fires; any number of [`Shutdown`] handles (cheap clones)
//! observe it. Dropping the trigger counts as firing it, so a crashed owner
//! never leaves connection tasks running forever.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

/// What a trigger and its handles share.
#[derive(Debug, Default)]
struct State {
    fired: AtomicBool,
    notify: Notify,
}

/// Starts a shutdown: every [`Shutdown`] subscribed to it observes it.
#[derive(Debug)]
pub struct Trigger {
    state: Arc<State>,
}

/// Observes a [`Trigger`]. Clone one per task.
///
/// A flag and a [`Notify`] rather than a watch channel: every connection
/// task waits on one, and this wait is 96 bytes where a watch's is 176
/// (part of each idle connection's memory).
#[derive(Debug, Clone)]
pub struct Shutdown {
    state: Arc<State>,
}

/// A connected trigger and handle.
pub fn channel() -> (Trigger, Shutdown) {
    let state = Arc::new(State::default());
    (
        Trigger {
            state: state.clone(),
        },
        Shutdown { state },
    )
}

impl Trigger {
    /// Start the shutdown; idempotent.
    pub fn fire(&self) {
        self.state.fired.store(true, Ordering::SeqCst);
        self.state.notify.notify_waiters();
    }

    /// A new handle observing this trigger.
    pub fn subscribe(&self) -> Shutdown {
        Shutdown {
            state: self.state.clone(),
        }
    }
}

impl Drop for Trigger {
    /// Dropping the trigger counts as firing it.
    fn drop(&mut self) {
        self.fire();
    }
}

impl Shutdown {
    /// True once the shutdown has started (or its trigger was dropped).
    pub fn is_triggered(&self) -> bool {
        self.state.fired.load(Ordering::SeqCst)
    }

    /// Completes once the shutdown has started (or its trigger was dropped).
    /// Cancel-safe, so it fits a `tokio::select!` loop.
    pub async fn triggered(&self) {
        let notified = self.state.notify.notified();
        tokio::pin!(notified);
        // Registered before the flag is read, so a firing in between is
        // not missed (`notify_waiters` wakes only registered waiters).
        notified.as_mut().enable();
        if !self.is_triggered() {
            notified.await;
        }
    }
}

/// The operating-system signals that ask the router to stop: SIGTERM and
/// SIGINT (ctrl-c). Register them at start-up so that a failure to do so
/// stops start-up rather than leaving a router that cannot be stopped.
#[derive(Debug)]
pub struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    /// Register the handlers. Needs a tokio runtime.
    ///
    /// # Errors
    ///
    /// The operating system's error if a handler cannot be installed.
    pub fn register() -> io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    /// Completes at the next signal and names it (`SIGTERM` or `SIGINT`).
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn every_handle_sees_the_trigger() {
        let (trigger, shutdown) = channel();
        let late = trigger.subscribe();
        let clone = shutdown.clone();
        assert!(!shutdown.is_triggered());
        let waiter = tokio::spawn(async move { clone.triggered().await });
        trigger.fire();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("waiter finishes")
            .unwrap();
        assert!(shutdown.is_triggered() && late.is_triggered());
        // Already fired: completes at once.
        shutdown.triggered().await;
    }

    #[tokio::test]
    async fn dropping_the_trigger_counts_as_firing() {
        let (trigger, shutdown) = channel();
        drop(trigger);
        assert!(shutdown.is_triggered());
        tokio::time::timeout(Duration::from_secs(5), shutdown.triggered())
            .await
            .expect("completes");
    }
}
