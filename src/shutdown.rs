//! The one signal every long-running task listens to, in the style of mini-redis.

use tokio::sync::watch;

/// Tells tasks that the process is draining. Cloneable: each task keeps its own copy
/// and awaits [`Shutdown::recv`] beside its work.
#[derive(Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

/// The sending half, held by whoever decides that the process stops (the signal
/// handler, or a test).
pub struct ShutdownTrigger {
    tx: watch::Sender<bool>,
}

impl Shutdown {
    /// A new trigger and its first listener.
    pub fn new() -> (ShutdownTrigger, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (ShutdownTrigger { tx }, Shutdown { rx })
    }

    /// Completes when shutdown is triggered (at once if it already was). A dropped
    /// trigger counts as a shutdown, so no task can wait forever.
    pub async fn recv(&mut self) {
        let _ = self.rx.wait_for(|stop| *stop).await;
    }
}

impl ShutdownTrigger {
    /// Starts the drain. Idempotent.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }
}

/// Resolves on the first SIGTERM or SIGINT: the ways Kubernetes and a person at a
/// terminal ask a process to stop.
pub async fn termination_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received, draining"),
        _ = int.recv() => tracing::info!("SIGINT received, draining"),
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;

    use super::*;

    #[tokio::test]
    async fn recv_completes_after_trigger_and_on_drop() {
        let (trigger, mut s) = Shutdown::new();
        assert!(s.clone().recv().now_or_never().is_none());
        trigger.trigger();
        s.recv().await;
        assert!(s.clone().recv().now_or_never().is_some());

        let (trigger, mut s) = Shutdown::new();
        drop(trigger);
        s.recv().await;
    }
}
