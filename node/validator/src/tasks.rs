//! Named, supervised tasks (after reth's `TaskManager`): a critical task that
//! fails or panics brings the node down with a message naming it; SIGINT/SIGTERM
//! start a graceful shutdown that every task observes through [`Shutdown`].
//!
//! The shutdown signal is a [`CancellationToken`] and the tasks are tracked by a
//! [`TaskTracker`]; the manager adds the names and the "first exit stops the node" rule.

use std::future::Future;

use anyhow::{Result, anyhow};
use tokio::sync::mpsc;
use tokio_util::{
    sync::{CancellationToken, DropGuard},
    task::TaskTracker,
};
use tracing::{Instrument, error, info};

/// A clonable shutdown signal.
#[derive(Debug, Clone, Default)]
pub struct Shutdown(CancellationToken);

impl Shutdown {
    /// The underlying token, for code that takes one (the ABCI server).
    pub fn token(&self) -> CancellationToken {
        self.0.clone()
    }

    pub fn is_triggered(&self) -> bool {
        self.0.is_cancelled()
    }

    /// Resolves once shutdown has been requested.
    pub async fn wait(&self) {
        self.0.cancelled().await
    }
}

impl From<CancellationToken> for Shutdown {
    fn from(token: CancellationToken) -> Self {
        Self(token)
    }
}

/// How a critical task ended.
#[derive(Debug)]
enum Outcome {
    Finished,
    Failed(anyhow::Error),
    Panicked(String),
}

/// Owns the node's long-lived tasks.
#[derive(Debug)]
pub struct TaskManager {
    token: CancellationToken,
    tracker: TaskTracker,
    exits: mpsc::UnboundedSender<(String, Outcome)>,
    exited: mpsc::UnboundedReceiver<(String, Outcome)>,
    /// A manager dropped without [`TaskManager::run`] still stops its tasks.
    _stop_on_drop: DropGuard,
}

impl Default for TaskManager {
    fn default() -> Self {
        Self::new()
    }
}

impl TaskManager {
    pub fn new() -> Self {
        let (exits, exited) = mpsc::unbounded_channel();
        let token = CancellationToken::new();
        Self {
            _stop_on_drop: token.clone().drop_guard(),
            token,
            tracker: TaskTracker::new(),
            exits,
            exited,
        }
    }

    pub fn shutdown(&self) -> Shutdown {
        Shutdown(self.token.clone())
    }

    /// Spawns a task whose end (other than by shutdown) stops the node.
    pub fn spawn_critical<F>(&mut self, name: &str, fut: F)
    where
        F: Future<Output = Result<()>> + Send + 'static,
    {
        let name = name.to_owned();
        // The task logs inside the spawner's span (`vichaind start` names the node).
        let task = self.tracker.spawn(fut.instrument(tracing::Span::current()));
        let exits = self.exits.clone();
        // Awaiting the task's handle turns a panic into an outcome that names the task.
        self.tracker.spawn(async move {
            let outcome = match task.await {
                Ok(Ok(())) => Outcome::Finished,
                Ok(Err(e)) => Outcome::Failed(e),
                Err(e) => Outcome::Panicked(e.to_string()),
            };
            let _ = exits.send((name, outcome));
        });
    }

    /// Runs until a signal arrives or a critical task ends, then shuts every task
    /// down and waits for them. Returns the first failure, if any.
    pub async fn run(self) -> Result<()> {
        let Self {
            token,
            tracker,
            exits,
            mut exited,
            _stop_on_drop,
        } = self;
        // Only the tasks hold senders now: with none spawned, `recv` ends at once.
        drop(exits);
        let mut failure = None;
        tokio::select! {
            _ = signal() => info!("shutdown signal received"),
            exit = exited.recv() => match exit {
                Some((name, Outcome::Finished)) => info!(task = %name, "task finished"),
                Some((name, Outcome::Failed(e))) => {
                    error!(task = %name, "critical task failed: {e:#}");
                    failure = Some(anyhow!("task {name} failed: {e:#}"));
                }
                Some((name, Outcome::Panicked(e))) => {
                    error!(task = %name, "critical task panicked: {e}");
                    failure = Some(anyhow!("task {name} panicked: {e}"));
                }
                None => {}
            },
        }
        token.cancel();
        tracker.close();
        tracker.wait().await;
        while let Ok((name, outcome)) = exited.try_recv() {
            match outcome {
                Outcome::Finished => {}
                Outcome::Failed(e) => {
                    error!(task = %name, "task failed during shutdown: {e:#}");
                    failure.get_or_insert_with(|| anyhow!("task {name} failed: {e:#}"));
                }
                Outcome::Panicked(e) => {
                    error!(task = %name, "task panicked during shutdown: {e}");
                    failure.get_or_insert_with(|| anyhow!("task {name} panicked: {e}"));
                }
            }
        }
        info!("all tasks stopped");
        failure.map_or(Ok(()), Err)
    }
}

async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failing_task_stops_the_others_and_is_named() {
        let mut tasks = TaskManager::new();
        let shutdown = tasks.shutdown();
        tasks.spawn_critical("waiter", async move {
            shutdown.wait().await;
            Ok(())
        });
        tasks.spawn_critical("broken", async { Err(anyhow!("boom")) });
        let err = tasks.run().await.unwrap_err().to_string();
        assert!(err.contains("task broken failed: boom"), "{err}");
    }

    #[tokio::test]
    async fn a_panicking_task_is_named() {
        let mut tasks = TaskManager::new();
        let shutdown = tasks.shutdown();
        tasks.spawn_critical("waiter", async move {
            shutdown.wait().await;
            Ok(())
        });
        tasks.spawn_critical("panicky", async { panic!("oops") });
        let err = tasks.run().await.unwrap_err().to_string();
        assert!(err.contains("task panicky panicked"), "{err}");
    }

    #[tokio::test]
    async fn with_no_tasks_run_returns() {
        TaskManager::new().run().await.unwrap();
    }
}
