//! The `JobService` gRPC server: clients submit jobs and follow them to a verified
//! result; workers list the open jobs assigned to them. Rejections are gRPC status
//! codes whose message is the ledger's reason.
//!
//! Nothing here polls: SubmitJob, WatchJob and WatchAssignments wait on a watch
//! channel of the last committed height, which the ledger's commit hook
//! ([`vichain_consensus::App::on_commit`]) updates, and look at the committed state
//! again after each commit.

use std::{pin::Pin, sync::Arc, time::Duration};

use futures::Stream;
use prost::Message;
use tokio::sync::{mpsc, watch};
use tonic::{Request, Response, Status};
use vichain_consensus::{
    Address, QueryTarget, SignedTx, StateReadExt, Storage, TxError, query, state_key,
};
use vichain_proto::v1::{
    self as pb, job_service_server::JobService, node_service_server::NodeService, tx_body::Action,
};

use crate::{
    dev::{CODE_DUPLICATE, CODE_MEMPOOL_FULL},
    grpc::{MAX_BROADCAST_BYTES, NodeServer},
    tasks::Shutdown,
};

/// Longest SubmitJob wait.
const MAX_WAIT: Duration = Duration::from_secs(30);
const DEFAULT_WAIT: Duration = Duration::from_secs(10);
/// Most jobs one ListJobs returns.
pub const MAX_LIST_JOBS: usize = 1000;

#[derive(Debug, Clone)]
pub struct JobServer {
    node: NodeServer,
    store: Arc<Storage>,
    /// The height of the last block committed, updated at each commit.
    commits: watch::Receiver<u64>,
    /// Ends the streams when the node stops.
    shutdown: Shutdown,
}

impl JobServer {
    /// `commits` must be updated after every commit of the ledger that writes `store`
    /// (the sending half goes to [`vichain_consensus::App::on_commit`]).
    pub fn new(
        node: NodeServer,
        store: Arc<Storage>,
        commits: watch::Receiver<u64>,
        shutdown: Shutdown,
    ) -> Self {
        Self {
            node,
            store,
            commits,
            shutdown,
        }
    }

    /// A receiver of the commits to come: take it before reading the state, so that
    /// a commit between the read and the wait is not missed.
    fn follow(&self) -> watch::Receiver<u64> {
        let mut commits = self.commits.clone();
        commits.mark_unchanged();
        commits
    }

    /// Waits for the next commit. `false` when the stream feeding `out` should end
    /// instead: its client went away, the node is stopping, or the ledger is gone.
    async fn next_commit<T>(
        &self,
        commits: &mut watch::Receiver<u64>,
        out: &mpsc::Sender<T>,
    ) -> bool {
        tokio::select! {
            changed = commits.changed() => changed.is_ok(),
            () = out.closed() => false,
            () = self.shutdown.wait() => false,
        }
    }

    fn job(&self, id: u64) -> Result<Option<pb::Job>, Status> {
        let store: &Storage = &self.store;
        store.job(id).map_err(|e| Status::internal(e.to_string()))
    }

    /// Open jobs, all or those assigned to `req.worker` in their current round.
    fn open_jobs(&self, req: &pb::ListJobsRequest) -> Result<pb::ListJobsResponse, Status> {
        let worker = if req.worker.is_empty() {
            None
        } else {
            Some(
                req.worker
                    .parse::<Address>()
                    .map_err(|e| Status::invalid_argument(format!("worker: {e}")))?,
            )
        };
        let limit = match req.limit {
            0 => 100,
            n => (n as usize).min(MAX_LIST_JOBS),
        };
        let height = self.height()?;
        let open = self
            .store
            .prefix(state_key::OPEN_JOBS.as_bytes(), usize::MAX)
            .map_err(|e| Status::internal(e.to_string()))?;
        let mut jobs = Vec::new();
        for (_, id) in open {
            let Ok(id) = <[u8; 8]>::try_from(id.as_slice()) else {
                continue;
            };
            let Some(job) = self.job(u64::from_be_bytes(id))? else {
                continue;
            };
            let mine = worker.is_none_or(|w| {
                job.assignments
                    .iter()
                    .any(|a| a.round == job.round && a.operator == w.as_bytes())
            });
            if mine {
                jobs.push(job);
                if jobs.len() >= limit {
                    break;
                }
            }
        }
        Ok(pb::ListJobsResponse { jobs, height })
    }

    fn height(&self) -> Result<u64, Status> {
        Ok(self
            .store
            .committed()
            .map_err(|e| Status::internal(e.to_string()))?
            .map_or(0, |c| c.height))
    }
}

/// The gRPC status for a CheckTx rejection `code`.
pub fn status_for_code(code: u32, log: String) -> Status {
    let invalid = |e: TxError| e.code();
    let not_found = [
        invalid(TxError::UnknownModel {
            model_id: String::new(),
        }),
        invalid(TxError::UnknownAccount {
            address: String::new(),
        }),
        invalid(TxError::UnknownJob { job_id: 0 }),
    ];
    let precondition = [
        invalid(TxError::InsufficientFunds {
            address: String::new(),
            balance: 0,
            needed: 0,
        }),
        invalid(TxError::FeeTooLow { fee: 0, min_fee: 0 }),
        invalid(TxError::NonceReplayed {
            address: String::new(),
            expected: 0,
            got: 0,
        }),
        invalid(TxError::NonceGap {
            address: String::new(),
            expected: 0,
            got: 0,
        }),
    ];
    if not_found.contains(&code) {
        Status::not_found(log)
    } else if precondition.contains(&code) {
        Status::failed_precondition(log)
    } else if code == CODE_MEMPOOL_FULL {
        Status::resource_exhausted(log)
    } else if code == CODE_DUPLICATE {
        Status::already_exists(log)
    } else {
        Status::invalid_argument(log)
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::JobUpdate, Status>> + Send>>;

fn terminal(job: &pb::Job) -> bool {
    job.status == pb::JobStatus::Finalized as i32 || job.status == pb::JobStatus::Failed as i32
}

#[tonic::async_trait]
impl JobService for JobServer {
    async fn submit_job(
        &self,
        req: Request<pb::SubmitJobRequest>,
    ) -> Result<Response<pb::SubmitJobResponse>, Status> {
        let req = req.into_inner();
        if req.tx.len() > MAX_BROADCAST_BYTES {
            return Err(Status::invalid_argument(format!(
                "tx of {} bytes exceeds {MAX_BROADCAST_BYTES}",
                req.tx.len()
            )));
        }
        let decoded = SignedTx::decode(&req.tx, MAX_BROADCAST_BYTES as u64)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        if !matches!(decoded.action, Action::SubmitJob(_)) {
            return Err(Status::invalid_argument(format!(
                "the transaction is a {}, not a submit_job",
                decoded.kind()
            )));
        }
        let wait = match req.wait_ms {
            0 => DEFAULT_WAIT,
            ms => Duration::from_millis(ms).min(MAX_WAIT),
        };
        let r = self
            .node
            .broadcast_tx(Request::new(pb::BroadcastTxRequest { tx: req.tx }))
            .await?
            .into_inner();
        if r.code != 0 {
            return Err(status_for_code(r.code, r.log));
        }
        let key = state_key::job_by_tx(&r.tx_hash);
        let deadline = tokio::time::Instant::now() + wait;
        let mut commits = self.follow();
        loop {
            if let Some(id) = self
                .store
                .get(key.as_bytes())
                .map_err(|e| Status::internal(e.to_string()))?
            {
                let id = u64::from_be_bytes(
                    id.as_slice()
                        .try_into()
                        .map_err(|_| Status::internal(format!("corrupt job index at {key}")))?,
                );
                return Ok(Response::new(pb::SubmitJobResponse {
                    job_id: id,
                    tx_hash: r.tx_hash,
                    height: self.height()?,
                }));
            }
            let stopping = || Status::unavailable("the node is shutting down");
            tokio::select! {
                biased;
                changed = commits.changed() => changed.map_err(|_| stopping())?,
                () = self.shutdown.wait() => return Err(stopping()),
                () = tokio::time::sleep_until(deadline) => {
                    return Err(Status::deadline_exceeded(format!(
                        "transaction {} accepted but not in a block after {} ms (it may still be included)",
                        hex::encode(&r.tx_hash),
                        wait.as_millis()
                    )));
                }
            }
        }
    }

    async fn get_job(
        &self,
        req: Request<pb::GetJobRequest>,
    ) -> Result<Response<pb::GetJobResponse>, Status> {
        let id = req.into_inner().job_id;
        let store = self.store.clone();
        let key = QueryTarget::Job(id).key();
        let r = tokio::task::spawn_blocking(move || query::get(&store, &key, 0))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::internal(e.to_string()))?;
        let Some(value) = r.value.clone() else {
            return Err(Status::not_found(format!("job {id} does not exist")));
        };
        let job = pb::Job::decode(value.as_slice())
            .map_err(|e| Status::internal(format!("corrupt job {id}: {e}")))?;
        Ok(Response::new(pb::GetJobResponse {
            job: Some(job),
            proof: Some(pb::QueryResponse {
                key: r.key,
                found: true,
                value,
                height: r.height,
                app_hash: r.app_hash.to_vec(),
                proof: r.proof,
            }),
        }))
    }

    type WatchJobStream = WatchStream;

    async fn watch_job(
        &self,
        req: Request<pb::WatchJobRequest>,
    ) -> Result<Response<Self::WatchJobStream>, Status> {
        let id = req.into_inner().job_id;
        let mut commits = self.follow();
        let Some(first) = self.job(id)? else {
            return Err(Status::not_found(format!("job {id} does not exist")));
        };
        let (tx, rx) = mpsc::channel(16);
        let this = self.clone();
        tokio::spawn(async move {
            let mut last: Option<pb::Job> = None;
            let mut job = first;
            loop {
                if last.as_ref() != Some(&job) {
                    let height = this.height().unwrap_or(0);
                    let done = terminal(&job);
                    let update = pb::JobUpdate {
                        job: Some(job.clone()),
                        height,
                    };
                    if tx.send(Ok(update)).await.is_err() || done {
                        return;
                    }
                    last = Some(job.clone());
                }
                if !this.next_commit(&mut commits, &tx).await {
                    return;
                }
                job = match this.job(id) {
                    Ok(Some(j)) => j,
                    Ok(None) => return,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    type WatchAssignmentsStream =
        Pin<Box<dyn Stream<Item = Result<pb::ListJobsResponse, Status>> + Send>>;

    async fn watch_assignments(
        &self,
        req: Request<pb::ListJobsRequest>,
    ) -> Result<Response<Self::WatchAssignmentsStream>, Status> {
        let req = req.into_inner();
        // Validate once, up front.
        self.open_jobs(&req)?;
        let mut commits = self.follow();
        let (tx, rx) = mpsc::channel(4);
        let this = self.clone();
        tokio::spawn(async move {
            let mut last_height = None;
            loop {
                let height = this.height().unwrap_or(0);
                if last_height != Some(height) {
                    let update = this.open_jobs(&req);
                    let failed = update.is_err();
                    if tx.send(update).await.is_err() || failed {
                        return;
                    }
                    last_height = Some(height);
                }
                if !this.next_commit(&mut commits, &tx).await {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn list_jobs(
        &self,
        req: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        Ok(Response::new(self.open_jobs(&req.into_inner())?))
    }

    async fn list_models(
        &self,
        req: Request<pb::ListModelsRequest>,
    ) -> Result<Response<pb::ListModelsResponse>, Status> {
        self.node.list_models(req).await
    }

    async fn list_workers(
        &self,
        req: Request<pb::ListWorkersRequest>,
    ) -> Result<Response<pb::ListWorkersResponse>, Status> {
        self.node.list_workers(req).await
    }
}
