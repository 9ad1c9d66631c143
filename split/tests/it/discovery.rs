//! Discovery: a worker that joins after the client is found through the DHT and used.

use std::time::{Duration, Instant};

use vichain_inference::{LayerRange, SentenceEmbedder};
use vichain_split::{AllowList, SplitClient};

use crate::common::{client_config, f32_bytes, minilm_dir, worker};

const SENTENCE: &str = "A worker that joins late is found and used.";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_started_after_the_client_is_found_through_the_dht_and_used() {
    let dir = tempfile::tempdir().unwrap();
    let ranges = [LayerRange::new(0, 3), LayerRange::new(3, 6)];
    let manifest = crate::common::split_minilm(dir.path(), &ranges);
    let first = worker(&manifest, ranges[0], vec![], AllowList::all()).await;
    let boot = first.listen_addrs().await.unwrap();

    // The client joins while only the first stage is served.
    let mut client = SplitClient::connect(&manifest, client_config(boot.clone()))
        .await
        .unwrap();
    let second_key = client.stages()[1].provider_key();
    assert!(
        client
            .node()
            .find_providers(second_key.clone())
            .await
            .unwrap()
            .is_empty(),
        "nothing holds the second stage yet"
    );

    // The only holder of the second stage starts later, knowing only the first worker; the
    // client, which does not listen, is never told its address.
    let late = worker(&manifest, ranges[1], boot, AllowList::all()).await;
    let out = client.embed(SENTENCE).await.unwrap();
    let peers: Vec<_> = out.route.iter().map(|(_, p)| *p).collect();
    assert_eq!(peers, vec![first.peer_id(), late.peer_id()]);
    assert_eq!(out.trace.stages[1].peer, late.peer_id());
    let whole = SentenceEmbedder::from_dir(&minilm_dir()).unwrap();
    assert_eq!(
        f32_bytes(&out.embedding),
        f32_bytes(&whole.embed(SENTENCE).unwrap()),
        "bit-identical to the whole model"
    );
    assert!(late.metrics().requests_served >= 1);

    // The DHT lists it as the provider of the second shard.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let found = client
            .node()
            .find_providers(second_key.clone())
            .await
            .unwrap();
        if found.contains(&late.peer_id()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the late worker's provider record never appeared: {found:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    late.shutdown().await;
    first.shutdown().await;
}
