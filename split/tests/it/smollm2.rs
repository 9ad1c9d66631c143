use vichain_inference::{GenerationParams, KvCacheConfig, LayerRange, TextGenerator};
use vichain_split::{AllowList, SplitClient};

use crate::common::{client_config, worker};

const TOKENS: usize = 6;

/// Stages 0..10, 10..20 (held twice), 20..30; generation through the network equals local
/// generation token for token, with and without the middle stage dying mid-session.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn generation_survives_a_middle_stage_dying_with_identical_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let ranges = [
        LayerRange::new(0, 10),
        LayerRange::new(10, 20),
        LayerRange::new(20, 30),
    ];
    let manifest = crate::common::split_smollm2(dir.path(), &ranges);
    let first = worker(&manifest, ranges[0], vec![], AllowList::all()).await;
    let boot = first.listen_addrs().await.unwrap();
    let mut workers = vec![Some(first)];
    for r in [ranges[1], ranges[2], ranges[1]] {
        workers.push(Some(
            worker(&manifest, r, boot.clone(), AllowList::all()).await,
        ));
    }

    let mut local = TextGenerator::from_shards(dir.path(), KvCacheConfig::default()).unwrap();
    let prompt = local
        .encode(&TextGenerator::chat_prompt("What is a blockchain?"))
        .unwrap();
    let params = GenerationParams {
        max_new_tokens: TOKENS,
        ..GenerationParams::default()
    };
    let expected = local.generate(7, &prompt, &params).unwrap();
    let (_, local_trace) = local.step_traced(7, 0, &prompt).unwrap();
    local.end_session(7);

    let mut client = SplitClient::connect(&manifest, client_config(boot))
        .await
        .unwrap();
    assert_eq!(client.chat_tokens("What is a blockchain?").unwrap(), prompt);

    // Uninterrupted.
    let mut s = client
        .start_generation_in(7, &prompt, params)
        .await
        .unwrap();
    while s.next_token().await.unwrap().is_some() {}
    let out = s.finish().await.unwrap();
    assert_eq!(out.tokens, expected.tokens);
    assert_eq!(out.text, expected.text);
    assert_eq!(out.traces.len(), TOKENS);
    assert_eq!(
        out.traces[0].hashes(),
        local_trace,
        "commitments match the local run"
    );
    assert!(out.failovers.is_empty());

    // The middle stage dies after three tokens.
    let mut s = client
        .start_generation_in(8, &prompt, params)
        .await
        .unwrap();
    for _ in 0..3 {
        s.next_token().await.unwrap();
    }
    let victim = s.route()[1].1;
    let slot = workers
        .iter()
        .position(|w| w.as_ref().is_some_and(|w| w.peer_id() == victim))
        .unwrap();
    workers[slot].take().unwrap().shutdown().await;
    while s.next_token().await.unwrap().is_some() {}
    let out = s.finish().await.unwrap();
    assert_eq!(out.tokens, expected.tokens, "identical after failover");
    assert_eq!(out.failovers.len(), 1);
    let f = &out.failovers[0];
    assert_eq!((f.stage, f.from), (1, victim));
    assert_eq!(
        f.replayed_steps, 3,
        "the prompt and two tokens were replayed"
    );
    assert_ne!(out.route[1].1, victim);
    assert_eq!(client.metrics().failovers, 1);
    assert!(client.failed_peers().contains(&victim));
    for w in workers.into_iter().flatten() {
        w.shutdown().await;
    }
}

/// A stage that loses its KV cache mid-session (here: evicted after 3 s idle, as after
/// a restart) refuses the next step; the client replays the session into the same worker
/// and the generation goes on with identical tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stage_that_lost_its_cache_is_replayed_and_generation_is_identical() {
    use std::time::Duration;

    use vichain_split::{Worker, WorkerConfig};

    use crate::common::network;

    let dir = tempfile::tempdir().unwrap();
    let ranges = [
        LayerRange::new(0, 10),
        LayerRange::new(10, 20),
        LayerRange::new(20, 30),
    ];
    let manifest = crate::common::split_smollm2(dir.path(), &ranges);
    let first = worker(&manifest, ranges[0], vec![], AllowList::all()).await;
    let boot = first.listen_addrs().await.unwrap();
    let mut cfg = WorkerConfig::new(
        tempfile::tempdir().unwrap().keep(),
        manifest.clone(),
        ranges[1],
    );
    cfg.network = network(boot.clone(), AllowList::all());
    cfg.kv = KvCacheConfig {
        idle_timeout: Duration::from_secs(3),
        ..KvCacheConfig::default()
    };
    let forgetful = Worker::start(cfg).await.unwrap();
    let last = worker(&manifest, ranges[2], boot.clone(), AllowList::all()).await;

    let mut local = TextGenerator::from_shards(dir.path(), KvCacheConfig::default()).unwrap();
    let prompt = local
        .encode(&TextGenerator::chat_prompt("Name a fruit."))
        .unwrap();
    let params = GenerationParams {
        max_new_tokens: TOKENS,
        ..GenerationParams::default()
    };
    let expected = local.generate(3, &prompt, &params).unwrap();

    let mut client = SplitClient::connect(&manifest, client_config(boot))
        .await
        .unwrap();
    let mut s = client
        .start_generation_in(3, &prompt, params)
        .await
        .unwrap();
    for _ in 0..2 {
        s.next_token().await.unwrap();
    }
    // Idle long enough for the middle stage to evict the session (checked every 300 ms).
    tokio::time::sleep(Duration::from_millis(6500)).await;
    while s.next_token().await.unwrap().is_some() {}
    let out = s.finish().await.unwrap();
    assert_eq!(
        out.tokens, expected.tokens,
        "identical after the cache was rebuilt"
    );
    assert_eq!(out.failovers.len(), 1, "{:?}", out.failovers);
    let f = &out.failovers[0];
    assert_eq!(
        (f.stage, f.from, f.to),
        (1, forgetful.peer_id(), forgetful.peer_id())
    );
    assert!(f.reason.contains("cache rebuilt"), "{}", f.reason);
    assert_eq!(
        f.replayed_steps, 2,
        "the prompt and one token were replayed"
    );
    for w in [first, forgetful, last] {
        w.shutdown().await;
    }
}
