//! The JobService streams follow the ledger's commits: an update about a block is
//! sent once that block is committed, before the next one, with no timer involved.
//! Blocks are produced by hand (a dev chain whose block time never comes), so the
//! test counts commits rather than time.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;
use tonic::{Code, Request, Status};
use vichain_config::{DevConfig, MempoolConfig};
use vichain_consensus::{App, StateReadExt, Storage, sign_tx};
use vichain_proto::v1::{self as pb, job_service_server::JobService, tx_body::Action};
use vichain_tests::{CHAIN_ID, init_chain_request, key};
use vichain_validator::{
    dev::DevChain,
    grpc::{self, NodeServer, TxSink},
    job_service::JobServer,
};

/// A guard against a hung stream, not a timing assertion.
const HANG: Duration = Duration::from_secs(30);

struct Node {
    _dir: tempfile::TempDir,
    store: Arc<Storage>,
    chain: Arc<DevChain>,
    jobs: JobServer,
    shutdown: CancellationToken,
}

fn node() -> Node {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Storage::open(&dir.path().join("state.redb")).unwrap());
    let (mut app, commits) = grpc::announce_commits(App::new(store.clone())).unwrap();
    app.init_chain(init_chain_request(&[key(0)], &[key(0)]))
        .unwrap();
    let chain = Arc::new(DevChain::new(
        Arc::new(Mutex::new(app)),
        DevConfig {
            block_time: Duration::from_secs(24 * 3600),
            ..DevConfig::default()
        },
        MempoolConfig::default(),
        vec![0; 20],
    ));
    let shutdown = CancellationToken::new();
    let jobs = JobServer::new(
        NodeServer::new(store.clone(), TxSink::Dev(chain.clone())),
        store.clone(),
        commits,
        shutdown.clone().into(),
    );
    Node {
        _dir: dir,
        store,
        chain,
        jobs,
        shutdown,
    }
}

impl Node {
    /// Commits one block; returns its height.
    async fn commit(&self) -> u64 {
        let chain = self.chain.clone();
        tokio::task::spawn_blocking(move || chain.produce_block())
            .await
            .unwrap()
            .unwrap()
            .height
    }
}

/// A split-mode job: it needs no workers, and fails at its reveal deadline unless
/// its client records a pipeline.
fn split_job(nonce: u64) -> Vec<u8> {
    sign_tx(
        &key(0),
        CHAIN_ID,
        nonce,
        1,
        Action::SubmitJob(pb::SubmitJob {
            model_id: "m1".into(),
            payload: Some(pb::submit_job::Payload::InputHash(vec![7; 32])),
            k: 0,
            max_fee: 1000,
            privacy: pb::PrivacyMode::Split as i32,
        }),
    )
}

async fn next<T>(stream: &mut (impl Stream<Item = Result<T, Status>> + Unpin)) -> Option<T> {
    tokio::time::timeout(HANG, stream.next())
        .await
        .expect("the stream neither sent nor ended")
        .map(|r| r.unwrap())
}

#[tokio::test]
async fn a_watched_job_is_updated_by_the_commit_that_changes_it() {
    let node = node();
    // SubmitJob answers once the block with the job is committed.
    let submit = tokio::spawn({
        let jobs = node.jobs.clone();
        async move {
            jobs.submit_job(Request::new(pb::SubmitJobRequest {
                tx: split_job(0),
                wait_ms: HANG.as_millis() as u64,
            }))
            .await
        }
    });
    while node.chain.mempool_size() == 0 {
        assert!(!submit.is_finished(), "{:?}", submit.await);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(node.commit().await, 1);
    let submitted = submit.await.unwrap().unwrap().into_inner();
    assert_eq!((submitted.job_id, submitted.height), (1, 1));

    let mut updates = node
        .jobs
        .watch_job(Request::new(pb::WatchJobRequest { job_id: 1 }))
        .await
        .unwrap()
        .into_inner();
    let first = next(&mut updates).await.unwrap();
    assert_eq!(first.height, 1);
    let mut seen = first.job.unwrap();
    assert_eq!(seen.status, pb::JobStatus::Pending as i32);
    let deadline = seen.reveal_deadline;
    assert!(deadline > 2, "the job stays open a few blocks");

    // Each block is committed only once the previous one's update (if any) is in: an
    // update carrying the height of the block just committed arrived after that
    // commit and before the next.
    loop {
        let height = node.commit().await;
        let now = node.store.job(1).unwrap().unwrap();
        if now == seen {
            assert!(height < deadline, "the job did not fail at its deadline");
            continue;
        }
        let update = next(&mut updates).await.expect("an update for the change");
        assert_eq!(update.height, height);
        assert_eq!(update.job.as_ref(), Some(&now));
        seen = now;
        if seen.status == pb::JobStatus::Failed as i32 {
            break;
        }
    }
    assert_eq!(seen.finalized_height, deadline, "{seen:?}");
    assert!(
        next(&mut updates).await.is_none(),
        "the stream ends with the job"
    );
}

#[tokio::test]
async fn assignments_are_sent_at_every_commit_until_shutdown() {
    let node = node();
    let mut updates = node
        .jobs
        .watch_assignments(Request::new(pb::ListJobsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next(&mut updates).await.unwrap().height, 0);
    for expected in 1..=3 {
        assert_eq!(node.commit().await, expected);
        let update = next(&mut updates).await.unwrap();
        assert_eq!(update.height, expected);
    }
    node.shutdown.cancel();
    assert!(
        next(&mut updates).await.is_none(),
        "shutdown ends the stream"
    );
}

#[tokio::test]
async fn submit_job_gives_up_when_no_block_includes_the_job() {
    let node = node();
    let e = node
        .jobs
        .submit_job(Request::new(pb::SubmitJobRequest {
            tx: split_job(0),
            wait_ms: 50,
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::DeadlineExceeded, "{e}");
    assert!(
        e.message().contains("not in a block after 50 ms"),
        "{}",
        e.message()
    );
}
