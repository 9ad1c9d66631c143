//! Named, supervised tasks (after reth's `TaskManager`): a critical task that
//! fails or panics brings the node down with a message naming it; SIGINT/SIGTERM
//! start a graceful shutdown that every task observes through [`Shutdown`].

use std::future::Future;

use anyhow::{Result, anyhow};
use tokio::{sync::watch, task::JoinSet};
use tracing::{error, info};

/// A clonable shutdown signal.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    pub fn receiver(&self) -> watch::Receiver<bool> {
        self.0.clone()
    }

    pub fn is_triggered(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once shutdown has been requested.
    pub async fn wait(&mut self) {
        while !*self.0.borrow() {
            if self.0.changed().await.is_err() {
                return;
            }
        }
    }
}

/// Owns the node's long-lived tasks.
#[derive(Debug)]
pub struct TaskManager {
    trigger: watch::Sender<bool>,
    tasks: JoinSet<(String, Result<()>)>,
}

impl Default for TaskManager {
    fn default() -> Self {
        Self::new()
    }
}

impl TaskManager {
    pub fn new() -> Self {
        let (trigger, _) = watch::channel(false);
        Self {
            trigger,
            tasks: JoinSet::new(),
        }
    }

    pub fn shutdown(&self) -> Shutdown {
        Shutdown(self.trigger.subscribe())
    }

    /// Spawns a task whose end (other than by shutdown) stops the node.
    pub fn spawn_critical<F>(&mut self, name: &str, fut: F)
    where
        F: Future<Output = Result<()>> + Send + 'static,
    {
        let name = name.to_owned();
        // The task logs inside the spawner's span (`vichaind start` names the node).
        let span = tracing::Span::current();
        self.tasks.spawn(tracing::Instrument::instrument(
            async move { (name, fut.await) },
            span,
        ));
    }

    /// Runs until a signal arrives or a critical task ends, then shuts every task
    /// down and waits for them. Returns the first failure, if any.
    pub async fn run(mut self) -> Result<()> {
        let mut failure = None;
        tokio::select! {
            _ = signal() => info!("shutdown signal received"),
            joined = self.tasks.join_next() => match joined {
                Some(Ok((name, Ok(())))) => info!(task = %name, "task finished"),
                Some(Ok((name, Err(e)))) => {
                    error!(task = %name, "critical task failed: {e:#}");
                    failure = Some(anyhow!("task {name} failed: {e:#}"));
                }
                Some(Err(e)) => {
                    error!("critical task panicked: {e}");
                    failure = Some(anyhow!("a critical task panicked: {e}"));
                }
                None => {}
            },
        }
        let _ = self.trigger.send(true);
        while let Some(joined) = self.tasks.join_next().await {
            match joined {
                Ok((name, Err(e))) => {
                    error!(task = %name, "task failed during shutdown: {e:#}");
                    failure.get_or_insert_with(|| anyhow!("task {name} failed: {e:#}"));
                }
                Err(e) if e.is_panic() => {
                    failure.get_or_insert_with(|| anyhow!("a task panicked: {e}"));
                }
                _ => {}
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
