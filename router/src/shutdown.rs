//! Graceful shutdown: the OS signals that start it, and the handle every
//! task watches to learn that it has started.
//!
//! One [`Trigger`] fires; any number of [`Shutdown`] handles (cheap clones)
//! observe it. Dropping the trigger counts as firing it, so a crashed owner
//! never leaves connection tasks running forever.

use std::io;

use tokio::sync::watch;

/// Starts a shutdown: every [`Shutdown`] subscribed to it observes it.
#[derive(Debug)]
pub struct Trigger {
    tx: watch::Sender<bool>,
}

/// Observes a [`Trigger`]. Clone one per task.
#[derive(Debug, Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

/// A connected trigger and handle.
pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger { tx }, Shutdown { rx })
}

impl Trigger {
    /// Start the shutdown; idempotent.
    pub fn fire(&self) {
        self.tx.send_replace(true);
    }

    /// A new handle observing this trigger.
    pub fn subscribe(&self) -> Shutdown {
        Shutdown {
            rx: self.tx.subscribe(),
        }
    }
}

impl Shutdown {
    /// True once the shutdown has started (or its trigger was dropped).
    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow() || self.rx.has_changed().is_err()
    }

    /// Completes once the shutdown has started (or its trigger was dropped).
    /// Cancel-safe, so it fits a `tokio::select!` loop.
    pub async fn triggered(&self) {
        let mut rx = self.rx.clone();
        // An error means the trigger was dropped: that counts as firing.
        let _ = rx.wait_for(|&fired| fired).await;
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
