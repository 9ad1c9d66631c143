//! A stalled stage: the only holder of the last stage known when the route is planned
//! answers after a delay longer than the client's request timeout. The client gives up on
//! it, looks for holders again, finds one that joined since, and finishes with the whole
//! model's exact embedding; the slow worker is not harmed and keeps serving.

use std::time::Duration;

use vichain_inference::{LayerRange, SentenceEmbedder};
use vichain_split::{AllowList, SplitClient, Worker, WorkerConfig};

use crate::common::{client_config, f32_bytes, minilm_dir, network, worker};

const SENTENCE: &str = "A slow stage is replaced, not waited for.";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stage_slower_than_the_timeout_is_replaced_with_an_identical_result() {
    let dir = tempfile::tempdir().unwrap();
    let ranges = [LayerRange::new(0, 3), LayerRange::new(3, 6)];
    let manifest = crate::common::split_minilm(dir.path(), &ranges);
    let first = worker(&manifest, ranges[0], vec![], AllowList::all()).await;
    let boot = first.listen_addrs().await.unwrap();

    // The slow holder: every forward pass waits 8 s (pings are not delayed).
    let mut cfg = WorkerConfig::new(
        tempfile::tempdir().unwrap().keep(),
        manifest.clone(),
        ranges[1],
    );
    cfg.network = network(boot.clone(), AllowList::all());
    cfg.delay = Duration::from_secs(8);
    let slow = Worker::start(cfg).await.unwrap();

    let mut config = client_config(boot.clone());
    config.network.request_timeout = Duration::from_secs(2);
    let mut client = SplitClient::connect(&manifest, config).await.unwrap();
    let route = client.discover().await.unwrap();
    assert_eq!(
        route.stages[1].peer,
        slow.peer_id(),
        "only the slow holder is known yet"
    );

    // A second holder joins after the route was planned.
    let fast = worker(&manifest, ranges[1], boot, AllowList::all()).await;
    let out = client.embed(SENTENCE).await.unwrap();

    let whole = SentenceEmbedder::from_dir(&minilm_dir()).unwrap();
    assert_eq!(
        f32_bytes(&out.embedding),
        f32_bytes(&whole.embed(SENTENCE).unwrap()),
        "bit-identical to the whole model"
    );
    assert_eq!(out.failovers.len(), 1, "{:?}", out.failovers);
    let f = &out.failovers[0];
    assert_eq!((f.stage, f.from, f.to), (1, slow.peer_id(), fast.peer_id()));
    assert_eq!(out.route[1].1, fast.peer_id());
    for (link, next) in out.trace.stages.iter().zip(out.trace.stages.iter().skip(1)) {
        assert_eq!(link.output_sha256, next.input_sha256, "the chain links");
    }
    // The slow worker still answers (it was only slow): its network task is alive.
    assert!(slow.node().snapshot().await.is_ok());
    for w in [first, slow, fast] {
        w.shutdown().await;
    }
}
