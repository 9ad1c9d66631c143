use std::time::Duration;

use vichain_inference::{
    Activation, ActivationData, Fingerprint, LayerRange, MANIFEST_FILE, ShardLayout, split_bert,
};
use vichain_split::{
    AllowList, ErrorCode, ForwardRequest, Keypair, Metrics, Node, Request, Response, ShardRef,
    encode_forward_request,
};

use crate::common::{minilm_dir, network, worker};

async fn ask(node: &Node, peer: vichain_split::PeerId, bytes: Vec<u8>) -> Response {
    let answer = node.request_unchecked(peer, bytes).await.unwrap();
    Response::decode(&answer, node.max_message_bytes()).unwrap()
}

fn code(r: &Response) -> Option<ErrorCode> {
    match r {
        Response::Error(e) => Some(e.code),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn misbehaving_peers_get_errors_and_the_worker_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let ranges = [LayerRange::new(0, 3), LayerRange::new(3, 6)];
    let manifest = split_bert(
        &minilm_dir(),
        dir.path(),
        "all-minilm-l6-v2",
        &ranges,
        ShardLayout::ClientKeepsEnds,
    )
    .unwrap();
    let path = dir.path().join(MANIFEST_FILE);
    let good_key = Keypair::generate_ed25519();
    let good_id = good_key.public().to_peer_id();
    let w = worker(&path, ranges[1], vec![], AllowList::all()).await;
    let addrs = w.listen_addrs().await.unwrap();
    let private = worker(&path, ranges[1], vec![], AllowList::only([good_id].into())).await;
    let private_addrs = private.listen_addrs().await.unwrap();

    let mut cfg = network(
        addrs.iter().chain(&private_addrs).cloned().collect(),
        AllowList::all(),
    );
    cfg.listen.clear();
    cfg.max_message_bytes = 64 * 1024 * 1024;
    let (rogue, _) = Node::start(
        Keypair::generate_ed25519(),
        cfg.clone(),
        false,
        Default::default(),
    )
    .await
    .unwrap();
    let (good, _) = Node::start(
        good_key,
        cfg,
        false,
        std::sync::Arc::new(Metrics::default()),
    )
    .await
    .unwrap();
    rogue
        .wait_for_peers(1, Duration::from_secs(10))
        .await
        .unwrap();

    let shard = ShardRef::from_entry(&manifest.shards[2]).unwrap();
    assert_eq!(shard.range, ranges[1]);
    let hidden = Activation::new(
        0,
        0,
        vec![1, 4, 384],
        ActivationData::F32((0..4 * 384).map(|i| (i % 7) as f32 * 0.1).collect()),
    )
    .unwrap();
    let peer = w.peer_id();

    let wrong_hash = encode_forward_request(
        "all-minilm-l6-v2",
        shard,
        0,
        0,
        &hidden.to_bytes(),
        &[9; 32],
    );
    assert_eq!(
        code(&ask(&rogue, peer, wrong_hash).await),
        Some(ErrorCode::HashMismatch)
    );
    let garbage = b"\x0a\xff\xff\xff\xff\x0f garbage".to_vec();
    assert_eq!(
        code(&ask(&rogue, peer, garbage).await),
        Some(ErrorCode::Malformed)
    );
    let other_shard = ShardRef {
        range: ranges[1],
        sha256: Fingerprint([1; 32]),
    };
    let not_ours = Request::Forward(ForwardRequest::new(
        "all-minilm-l6-v2",
        other_shard,
        hidden.clone(),
    ));
    assert_eq!(
        code(&ask(&rogue, peer, not_ours.encode()).await),
        Some(ErrorCode::NotServing)
    );
    let tokens = Request::Forward(ForwardRequest::new(
        "all-minilm-l6-v2",
        shard,
        Activation::tokens(0, 0, &[101, 102]).unwrap(),
    ));
    assert_eq!(
        code(&ask(&rogue, peer, tokens.encode()).await),
        Some(ErrorCode::BadActivation),
        "a middle stage refuses token ids"
    );
    let oversize = vec![0u8; vichain_split::MAX_MESSAGE_BYTES + 1024];
    assert!(
        rogue.request_unchecked(peer, oversize).await.is_err(),
        "an oversize frame is refused before it is read"
    );

    // Still serving, and its answer carries a checked commitment.
    let valid = Request::Forward(ForwardRequest::new(
        "all-minilm-l6-v2",
        shard,
        hidden.clone(),
    ));
    match ask(&rogue, peer, valid.encode()).await {
        Response::Forward(f) => {
            assert_eq!(f.input_sha256, hidden.sha256());
            assert_eq!(f.output_sha256, f.output.sha256());
            assert_eq!(f.output.shape(), [1, 4, 384]);
        }
        other => panic!("expected a forward answer, got {other:?}"),
    }
    let m = w.metrics();
    assert_eq!(m.requests_refused, 4);
    assert!(m.requests_served >= 1);

    // The allow-list: the rogue peer is refused, the allowed one served.
    let ping = Request::Ping { nonce: 3 }.encode();
    assert!(
        rogue
            .request(private.peer_id(), ping.clone())
            .await
            .is_err()
    );
    good.wait_for_peers(2, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(matches!(
        ask(&good, private.peer_id(), ping).await,
        Response::Pong(p) if p.nonce == 3 && p.shards == vec![("all-minilm-l6-v2".to_string(), shard)]
    ));
    assert!(private.metrics().connections_denied >= 1);

    rogue.shutdown().await;
    good.shutdown().await;
    w.shutdown().await;
    private.shutdown().await;
}
