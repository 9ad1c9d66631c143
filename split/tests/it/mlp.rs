//! The digits MLP bundled with the repository, split into a pipeline of integer stages: no
//! downloaded model, so these run everywhere.

use std::time::Duration;

use vichain_inference::{
    Activation, ActivationData, DIGITS_MODEL, DigitsDataset, KvCacheConfig, LayerRange, PIXELS,
    Pipeline, quantize_input,
};
use vichain_split::{
    AllowList, Error, InboundTap, InferOutput, InferProgress, InferReport, MAX_MESSAGE_BYTES,
    Request, SplitClient, Worker, WorkerConfig,
};
use vichain_zk::QuantizedMlp;

use crate::common::{client_config, network, split_digits, worker};

fn digits_mlp() -> QuantizedMlp {
    let mlp = QuantizedMlp::from_bytes(DIGITS_MODEL).unwrap();
    assert_eq!(mlp.layers.len(), 2, "the bundled digits MLP is 64-32-10");
    mlp
}

/// Held-out images, as jobs carry them: one int8 (two's complement) byte per pixel.
fn test_inputs(n: usize) -> Vec<Vec<u8>> {
    let (_, test) = DigitsDataset::bundled().unwrap().split();
    test.images
        .iter()
        .take(n)
        .map(|img| quantize_input(img).iter().map(|&v| v as u8).collect())
        .collect()
}

/// What the whole model, run in this process, outputs for `input`.
fn whole_model(mlp: &QuantizedMlp, input: &[u8]) -> InferOutput {
    let int8: Vec<i8> = input.iter().map(|&b| b as i8).collect();
    let out = mlp.forward(&int8).unwrap();
    InferOutput::Logits {
        values: out.logits,
        argmax: out.argmax,
    }
}

async fn shutdown(workers: Vec<Option<Worker>>) {
    for w in workers.into_iter().flatten() {
        w.shutdown().await;
    }
}

/// Layer 0 on one worker, layer 1 (the logits) on two; the holder the route used for
/// layer 1 is shut down between jobs, and the next job fails over to the other with the
/// same logits, bit for bit, and the same commitments.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_digits_pipeline_fails_over_to_another_holder_with_identical_logits() {
    let mlp = digits_mlp();
    let dir = tempfile::tempdir().unwrap();
    let ranges = LayerRange::even(mlp.layers.len(), 2).unwrap();
    let manifest = split_digits(dir.path(), &ranges);
    let first = worker(&manifest, ranges[0], vec![], AllowList::all()).await;
    let boot = first.listen_addrs().await.unwrap();
    let mut workers = vec![Some(first)];
    for _ in 0..2 {
        workers.push(Some(
            worker(&manifest, ranges[1], boot.clone(), AllowList::all()).await,
        ));
    }
    let inputs = test_inputs(4);
    let input = &inputs[0];

    let mut client = SplitClient::connect(&manifest, client_config(boot))
        .await
        .unwrap();
    let before = client.run_bytes(input, |_| {}).await.unwrap();
    assert_eq!(
        before.output,
        whole_model(&mlp, input),
        "as the whole model"
    );
    assert!(before.failovers.is_empty());
    assert_eq!(before.steps.len(), 1);
    let step = &before.steps[0];
    let sent = Activation::new(
        0,
        0,
        vec![1, PIXELS],
        ActivationData::I64(input.iter().map(|&b| i64::from(b as i8)).collect()),
    )
    .unwrap();
    let local = Pipeline::load(dir.path(), KvCacheConfig::default())
        .unwrap()
        .run(&sent)
        .unwrap();
    assert_eq!(
        step.stages
            .iter()
            .map(|s| s.output_sha256)
            .collect::<Vec<_>>(),
        local.stage_hashes,
        "every stage commits to the activation the local pipeline computes"
    );
    assert_eq!(
        step.embedding_sha256,
        sent.sha256(),
        "the chain starts at the input"
    );
    assert_eq!(step.stages[0].input_sha256, sent.sha256());
    assert_eq!(step.stages[1].input_sha256, step.stages[0].output_sha256);
    assert_eq!(step.head_sha256, step.stages[1].output_sha256);
    let peer_of = |w: &Option<Worker>| w.as_ref().map(|w| w.peer_id().to_string());
    assert_eq!(Some(before.route[0].peer.clone()), peer_of(&workers[0]));

    // The client plans the next job from the holders it already measured, so it picks
    // the same worker for layer 1, finds it gone and moves to the other holder.
    let victim = before.route[1].peer.clone();
    let slot = workers
        .iter()
        .position(|w| peer_of(w).as_ref() == Some(&victim))
        .unwrap();
    let survivor = peer_of(&workers[if slot == 1 { 2 } else { 1 }]).unwrap();
    workers[slot].take().unwrap().shutdown().await;

    let mut heard = Vec::new();
    let after = client
        .run_bytes(input, |p| {
            if let InferProgress::Failover(f) = p {
                heard.push(f);
            }
        })
        .await
        .unwrap();
    assert_eq!(after.output, before.output, "identical after failover");
    let commitments = |r: &InferReport| {
        r.steps[0]
            .stages
            .iter()
            .map(|s| (s.input_sha256, s.output_sha256))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        commitments(&after),
        commitments(&before),
        "the same commitments, stage by stage"
    );
    assert_eq!(after.failovers.len(), 1, "{:?}", after.failovers);
    let f = &after.failovers[0];
    assert_eq!((f.layers, &f.from, &f.to), (ranges[1], &victim, &survivor));
    assert_eq!(f.replayed_steps, 0, "stateless stages replay nothing");
    assert_eq!(heard, after.failovers, "progress heard of the failover");
    assert_eq!(after.route[1].peer, survivor);
    assert_eq!(after.steps[0].stages[1].peer, survivor);
    assert_eq!(client.metrics().failovers, 1);
    assert!(
        client
            .failed_peers()
            .iter()
            .any(|p| p.to_string() == victim)
    );

    // Later jobs keep to the survivor, without another failover.
    for input in &inputs {
        let r = client.run_bytes(input, |_| {}).await.unwrap();
        assert_eq!(r.output, whole_model(&mlp, input));
        assert!(r.failovers.is_empty());
        assert_eq!(r.route[1].peer, survivor);
    }
    assert_eq!(client.metrics().failovers, 1);
    client.node().shutdown().await;
    shutdown(workers).await;
}

/// The only holder of layer 1 known when the route is planned dies while it computes a
/// job (it is shut down once the job's request reached it); the client looks for holders
/// again, finds one that joined since and finishes the job with the whole model's logits.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_digits_stage_that_dies_mid_job_is_replaced_with_identical_logits() {
    let mlp = digits_mlp();
    let dir = tempfile::tempdir().unwrap();
    let ranges = LayerRange::even(mlp.layers.len(), 2).unwrap();
    let manifest = split_digits(dir.path(), &ranges);
    let first = worker(&manifest, ranges[0], vec![], AllowList::all()).await;
    let boot = first.listen_addrs().await.unwrap();

    // The doomed holder holds every forward pass for 5 s and says when one arrives.
    let (arrived, mut forwards) = tokio::sync::mpsc::unbounded_channel();
    let mut cfg = WorkerConfig::new(
        tempfile::tempdir().unwrap().keep(),
        manifest.clone(),
        ranges[1],
    );
    cfg.network = network(boot.clone(), AllowList::all());
    cfg.network.inbound_tap = Some(InboundTap::new(move |_, bytes| {
        if let Ok(Request::Forward(_)) = Request::decode(bytes, MAX_MESSAGE_BYTES) {
            let _ = arrived.send(());
        }
    }));
    cfg.delay = Duration::from_secs(5);
    let doomed = Worker::start(cfg).await.unwrap();
    let doomed_id = doomed.peer_id();

    let mut client = SplitClient::connect(&manifest, client_config(boot.clone()))
        .await
        .unwrap();
    let route = client.discover().await.unwrap();
    assert_eq!(route.stages[1].peer, doomed_id, "only it is known yet");
    let spare = worker(&manifest, ranges[1], boot, AllowList::all()).await;

    let input = test_inputs(1).remove(0);
    let job = {
        let input = input.clone();
        tokio::spawn(async move {
            let report = client.run_bytes(&input, |_| {}).await;
            (client, report)
        })
    };
    tokio::time::timeout(Duration::from_secs(60), forwards.recv())
        .await
        .unwrap()
        .unwrap();
    doomed.shutdown().await;
    let (client, report) = job.await.unwrap();
    let report = report.unwrap();

    assert_eq!(
        report.output,
        whole_model(&mlp, &input),
        "as the whole model"
    );
    assert_eq!(report.failovers.len(), 1, "{:?}", report.failovers);
    let f = &report.failovers[0];
    assert_eq!(
        (f.layers, &f.from, &f.to),
        (
            ranges[1],
            &doomed_id.to_string(),
            &spare.peer_id().to_string()
        )
    );
    assert_eq!(report.route[1].peer, spare.peer_id().to_string());
    let step = &report.steps[0];
    assert_eq!(step.stages[1].input_sha256, step.stages[0].output_sha256);
    assert!(client.failed_peers().contains(&doomed_id));
    client.node().shutdown().await;
    for w in [first, spare] {
        w.shutdown().await;
    }
}

/// An input of the wrong length is refused by the client with both lengths; no worker sees
/// it, none is blamed, and the next job runs as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_length_input_is_refused_and_the_workers_keep_serving() {
    let mlp = digits_mlp();
    let dir = tempfile::tempdir().unwrap();
    let ranges = LayerRange::even(mlp.layers.len(), 2).unwrap();
    let manifest = split_digits(dir.path(), &ranges);
    let first = worker(&manifest, ranges[0], vec![], AllowList::all()).await;
    let boot = first.listen_addrs().await.unwrap();
    let second = worker(&manifest, ranges[1], boot.clone(), AllowList::all()).await;

    let mut client = SplitClient::connect(&manifest, client_config(boot))
        .await
        .unwrap();
    for len in [0, PIXELS - 1, PIXELS + 1] {
        let err = client.run_bytes(&vec![0; len], |_| {}).await.unwrap_err();
        assert!(
            matches!(err, Error::InputLength { expected: PIXELS, got, .. } if got == len),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("input is {len} bytes, expected {PIXELS}")),
            "{msg}"
        );
    }
    let err = client.run("seven", 1, |_| {}).await.unwrap_err();
    assert!(err.to_string().contains("run_bytes"), "{err}");

    let input = &test_inputs(1)[0];
    let report = client.run_bytes(input, |_| {}).await.unwrap();
    assert_eq!(report.output, whole_model(&mlp, input));
    assert!(report.failovers.is_empty());
    assert!(client.failed_peers().is_empty(), "no worker was blamed");
    for w in [&first, &second] {
        let m = w.metrics();
        assert_eq!(m.requests_refused, 0, "no worker saw the bad inputs");
        assert!(m.requests_served >= 1);
    }
    client.node().shutdown().await;
    shutdown(vec![Some(first), Some(second)]).await;
}
