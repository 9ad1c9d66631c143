use vichain_inference::{Activation, KvCacheConfig, LayerRange, Pipeline, SentenceEmbedder};
use vichain_split::{AllowList, SplitClient};

use crate::common::{client_config, f32_bytes, minilm_dir, worker};

const SENTENCE: &str = "Split inference keeps the raw input on the client.";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_three_stage_minilm_pipeline_is_bit_identical_to_the_whole_model() {
    let dir = tempfile::tempdir().unwrap();
    let ranges = [
        LayerRange::new(0, 2),
        LayerRange::new(2, 4),
        LayerRange::new(4, 6),
    ];
    let manifest = crate::common::split_minilm(dir.path(), &ranges);
    let first = worker(&manifest, ranges[0], vec![], AllowList::all()).await;
    let boot = first.listen_addrs().await.unwrap();
    let mut workers = vec![first];
    for r in &ranges[1..] {
        workers.push(worker(&manifest, *r, boot.clone(), AllowList::all()).await);
    }

    let mut client = SplitClient::connect(&manifest, client_config(boot))
        .await
        .unwrap();
    let out = client.embed(SENTENCE).await.unwrap();

    let whole = SentenceEmbedder::from_dir(&minilm_dir()).unwrap();
    assert_eq!(
        f32_bytes(&out.embedding),
        f32_bytes(&whole.embed(SENTENCE).unwrap()),
        "bit-identical to the whole model"
    );
    let ids = whole.tokenize(SENTENCE).unwrap();
    let mut local = Pipeline::load(dir.path(), KvCacheConfig::default()).unwrap();
    let expected = local.run(&Activation::tokens(0, 0, &ids).unwrap()).unwrap();
    assert_eq!(
        out.trace.hashes(),
        expected.stage_hashes,
        "every stage commits to the activation the local pipeline computes"
    );
    let peers: Vec<_> = out.route.iter().map(|(_, p)| *p).collect();
    let expected_peers: Vec<_> = workers.iter().map(|w| w.peer_id()).collect();
    assert_eq!(peers, expected_peers);
    for (link, next) in out.trace.stages.iter().zip(out.trace.stages.iter().skip(1)) {
        assert_eq!(link.output_sha256, next.input_sha256, "the chain links");
    }
    assert!(out.failovers.is_empty());

    // Past the model's 256-token limit, the client truncates where the embedder does.
    let long = SENTENCE.repeat(40);
    let out = client.embed(&long).await.unwrap();
    assert_eq!(out.trace.tokens, whole.max_seq_length());
    assert_eq!(
        f32_bytes(&out.embedding),
        f32_bytes(&whole.embed(&long).unwrap())
    );
    let m = client.metrics();
    assert!(m.stage_calls >= 3 && m.bytes_sent > 0);
    for w in workers {
        assert!(w.metrics().requests_served >= 1);
        w.shutdown().await;
    }
}
