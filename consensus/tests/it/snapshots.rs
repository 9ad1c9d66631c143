//! State sync: a node takes snapshots as it commits, and a fresh node restores one
//! through OfferSnapshot/ApplySnapshotChunk and goes on with the same app hashes.

use std::sync::Arc;

use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};
use tendermint_proto::v0_38::abci::{
    self, response_apply_snapshot_chunk::Result as Apply, response_offer_snapshot::Result as Offer,
};
use vichain_config::StateSyncConfig;
use vichain_consensus::{
    App, SNAPSHOT_FORMAT, SnapshotMetadata, SnapshotStore, Storage, encode_chunk, verify_membership,
};
use vichain_tests_support::{Harness, Instance, TxGen, funded_keys, init_chain_request, key};

fn config(interval: u64) -> StateSyncConfig {
    StateSyncConfig {
        snapshot_interval: interval,
        snapshot_keep_recent: 2,
        // The smallest chunks allowed, so that a small state takes several.
        chunk_bytes: 4096,
    }
}

/// A one-node chain of 60 funded accounts whose node snapshots every `interval`
/// blocks into `dir`.
fn chain(interval: u64, dir: &std::path::Path) -> (Harness, TxGen) {
    let keys = funded_keys(60);
    let mut h = Harness::new(1, &init_chain_request(&keys, &[key(200)])).unwrap();
    let inst = h.instances[0].as_mut().unwrap();
    let store = inst.app.store().clone();
    inst.app = App::new(store).with_snapshots(SnapshotStore::new(dir, config(interval)).unwrap());
    (h, TxGen::new(7, keys))
}

/// Runs `blocks` blocks, waiting for each snapshot to be written before the next
/// block (a snapshot due while the previous one is still being written is skipped,
/// and these blocks come faster than any real chain's).
fn advance(h: &mut Harness, txgen: &mut TxGen, blocks: u64) {
    for _ in 0..blocks {
        let txs = txgen.block(h.any().app.store(), 30);
        h.step(txs).unwrap();
        for inst in h.instances.iter().flatten() {
            if let Some(s) = inst.app.snapshots() {
                s.wait();
            }
        }
    }
}

fn fresh_app(dir: &std::path::Path) -> App {
    App::new(Arc::new(Storage::open(&dir.join("state.redb")).unwrap()))
}

fn offer(app: &mut App, snapshot: &abci::Snapshot, app_hash: &[u8]) -> Offer {
    let r = app
        .offer_snapshot(&abci::RequestOfferSnapshot {
            snapshot: Some(snapshot.clone()),
            app_hash: app_hash.to_vec().into(),
        })
        .unwrap();
    Offer::try_from(r.result).unwrap()
}

fn apply(
    app: &mut App,
    index: u32,
    chunk: &[u8],
    sender: &str,
) -> abci::ResponseApplySnapshotChunk {
    app.apply_snapshot_chunk(&abci::RequestApplySnapshotChunk {
        index,
        chunk: chunk.to_vec().into(),
        sender: sender.into(),
    })
    .unwrap()
}

fn load(app: &App, s: &abci::Snapshot, index: u32) -> Vec<u8> {
    app.load_snapshot_chunk(&abci::RequestLoadSnapshotChunk {
        height: s.height,
        format: s.format,
        chunk: index,
    })
    .chunk
    .to_vec()
}

fn result(r: &abci::ResponseApplySnapshotChunk) -> Apply {
    Apply::try_from(r.result).unwrap()
}

#[test]
fn a_fresh_node_restores_a_snapshot_and_follows_the_chain() {
    let snaps = tempfile::tempdir().unwrap();
    let (mut h, mut txgen) = chain(4, snaps.path());
    advance(&mut h, &mut txgen, 8);
    let source = &h.instances[0].as_ref().unwrap().app;
    let listed = source.list_snapshots().snapshots;
    assert_eq!(
        listed.iter().map(|s| s.height).collect::<Vec<_>>(),
        [8, 4],
        "newest first"
    );
    let snapshot = listed[0].clone();
    assert_eq!(snapshot.format, SNAPSHOT_FORMAT);
    assert!(snapshot.chunks >= 3, "{} chunks", snapshot.chunks);
    let app_hash = h.blocks[7].app_hash.clone();
    let chunks: Vec<Vec<u8>> = (0..snapshot.chunks)
        .map(|i| load(source, &snapshot, i))
        .collect();
    assert!(chunks.iter().all(|c| !c.is_empty() && c.len() <= 4096));
    // Unknown chunks are empty.
    assert!(load(source, &snapshot, snapshot.chunks).is_empty());
    let mut other = snapshot.clone();
    other.height = 5;
    assert!(load(source, &other, 0).is_empty());
    other.height = 8;
    other.format = 2;
    assert!(load(source, &other, 0).is_empty());

    let joiner_dir = tempfile::tempdir().unwrap();
    let mut joiner = fresh_app(joiner_dir.path());
    assert_eq!(offer(&mut joiner, &snapshot, &app_hash), Offer::Accept);
    let mut order: Vec<u32> = (0..snapshot.chunks).collect();
    order.shuffle(&mut StdRng::seed_from_u64(3));
    if order.is_sorted() {
        order.reverse();
    }
    for (n, &i) in order.iter().enumerate() {
        if n == 1 {
            // A peer serving a corrupted chunk is named, the chunk refetched, and
            // nothing applied.
            let mut bad = chunks[i as usize].clone();
            bad[10] ^= 1;
            let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            let r =
                ::metrics::with_local_recorder(&recorder, || apply(&mut joiner, i, &bad, "liar"));
            assert_eq!(result(&r), Apply::Retry);
            assert_eq!(r.refetch_chunks, [i]);
            assert_eq!(r.reject_senders, ["liar"]);
            assert!(
                handle
                    .render()
                    .contains("vichain_statesync_chunks_rejected_total 1"),
                "{}",
                handle.render()
            );
            assert!(joiner.store().committed().unwrap().is_none());
        }
        let r = apply(&mut joiner, i, &chunks[i as usize], "honest");
        assert_eq!(result(&r), Apply::Accept, "chunk {i}");
        assert!(r.refetch_chunks.is_empty() && r.reject_senders.is_empty());
        let restored = joiner.store().committed().unwrap();
        assert_eq!(restored.is_some(), n + 1 == order.len(), "after chunk {n}");
    }

    // Info reports the snapshot's height and app hash, as CometBFT checks.
    let info = joiner.info(&abci::RequestInfo::default()).unwrap();
    assert_eq!(info.last_block_height, 8);
    assert_eq!(info.last_block_app_hash.to_vec(), app_hash);
    // The same values, and proofs at that height against that app hash.
    let all = |s: &Storage| s.prefix(b"", usize::MAX).unwrap();
    assert_eq!(all(joiner.store()), all(source.store()));
    let root: [u8; 32] = app_hash.clone().try_into().unwrap();
    for (k, v) in all(joiner.store()).iter().step_by(7) {
        let (value, proof, at) = joiner.store().get_with_proof(k, 8).unwrap();
        assert_eq!(at, root);
        assert_eq!(value.as_ref(), Some(v));
        assert!(verify_membership(&proof, &root, k, v));
    }
    let below = joiner
        .store()
        .get_with_proof(b"chain/height", 7)
        .unwrap_err();
    assert!(below.to_string().contains("snapshot"), "{below}");
    // A second offer is refused: the node has state now.
    assert_eq!(offer(&mut joiner, &snapshot, &app_hash), Offer::Abort);

    // The joiner takes its place in the chain: every next block gives both nodes
    // the same app hash (Harness::step checks), and the joiner's own snapshot of
    // height 12 is byte for byte the source's.
    let joiner = joiner.with_snapshots(
        SnapshotStore::new(joiner_dir.path().join("snapshots"), config(4)).unwrap(),
    );
    h.instances.push(Some(Instance {
        dir: joiner_dir.path().to_path_buf(),
        app: joiner,
    }));
    advance(&mut h, &mut txgen, 4);
    let hashes = h.app_hashes();
    assert_eq!(hashes[0], hashes[1]);
    let s0 = h.instances[0]
        .as_ref()
        .unwrap()
        .app
        .list_snapshots()
        .snapshots;
    let s1 = h.instances[1]
        .as_ref()
        .unwrap()
        .app
        .list_snapshots()
        .snapshots;
    assert_eq!(s0.iter().map(|s| s.height).collect::<Vec<_>>(), [12, 8]);
    assert_eq!(s1.iter().map(|s| s.height).collect::<Vec<_>>(), [12]);
    assert_eq!(s0[0], s1[0]);
}

#[test]
fn snapshots_are_pruned_to_the_newest_and_half_written_ones_are_never_listed() {
    let snaps = tempfile::tempdir().unwrap();
    let (mut h, mut txgen) = chain(2, snaps.path());
    advance(&mut h, &mut txgen, 9);
    let app = &h.instances[0].as_ref().unwrap().app;
    let heights = |app: &App| {
        app.list_snapshots()
            .snapshots
            .iter()
            .map(|s| s.height)
            .collect::<Vec<_>>()
    };
    assert_eq!(heights(app), [8, 6]);
    let mut dirs: Vec<String> = std::fs::read_dir(snaps.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    assert_eq!(dirs, [format!("{:020}", 6), format!("{:020}", 8)]);

    // A crash while writing height 10 leaves its temporary directory; one while
    // pruning, a renamed one; and a directory holding no or bad metadata is not a
    // snapshot either.
    let crash = snaps.path().join(format!(".tmp-{:020}", 10));
    std::fs::create_dir(&crash).unwrap();
    std::fs::copy(
        snaps.path().join(format!("{:020}/metadata", 8)),
        crash.join("metadata"),
    )
    .unwrap();
    std::fs::create_dir(snaps.path().join(format!(".tmp-pruned-{:020}", 4))).unwrap();
    std::fs::create_dir(snaps.path().join(format!("{:020}", 12))).unwrap();
    let bad = snaps.path().join(format!("{:020}", 14));
    std::fs::create_dir(&bad).unwrap();
    std::fs::write(bad.join("metadata"), b"not metadata").unwrap();
    // Metadata of another height, copied into the wrong directory.
    let moved = snaps.path().join(format!("{:020}", 16));
    std::fs::create_dir(&moved).unwrap();
    std::fs::copy(
        snaps.path().join(format!("{:020}/metadata", 8)),
        moved.join("metadata"),
    )
    .unwrap();
    assert_eq!(heights(app), [8, 6]);

    // Reopening clears the leftovers of a crash.
    let store = app.store().clone();
    let reopened =
        App::new(store).with_snapshots(SnapshotStore::new(snaps.path(), config(2)).unwrap());
    assert!(!crash.exists());
    assert!(!snaps.path().join(format!(".tmp-pruned-{:020}", 4)).exists());
    assert_eq!(heights(&reopened), [8, 6]);
    h.instances[0].as_mut().unwrap().app = reopened;

    // The next snapshot prunes the bad directories, which never count as newest.
    advance(&mut h, &mut txgen, 1);
    let app = &h.instances[0].as_ref().unwrap().app;
    assert_eq!(heights(app), [10, 8]);
    assert!(!bad.exists() && !moved.exists());
    assert!(!snaps.path().join(format!("{:020}", 12)).exists());

    // A node without snapshots lists none and serves nothing.
    let plain = App::new(app.store().clone());
    assert!(plain.list_snapshots().snapshots.is_empty());
    let r = plain.load_snapshot_chunk(&abci::RequestLoadSnapshotChunk {
        height: 8,
        format: SNAPSHOT_FORMAT,
        chunk: 0,
    });
    assert!(r.chunk.is_empty());
}

#[test]
fn bad_offers_are_refused_without_touching_the_store() {
    let snaps = tempfile::tempdir().unwrap();
    let (mut h, mut txgen) = chain(3, snaps.path());
    advance(&mut h, &mut txgen, 3);
    let source = &h.instances[0].as_ref().unwrap().app;
    let snapshot = source.list_snapshots().snapshots[0].clone();
    let app_hash = h.blocks[2].app_hash.clone();
    let dir = tempfile::tempdir().unwrap();
    let mut joiner = fresh_app(dir.path());

    // A chunk before any accepted snapshot aborts.
    let r = apply(&mut joiner, 0, &load(source, &snapshot, 0), "p");
    assert_eq!(result(&r), Apply::Abort);

    let mut wrong_hash = snapshot.clone();
    wrong_hash.hash = vec![1; 32].into();
    assert_eq!(offer(&mut joiner, &wrong_hash, &app_hash), Offer::Reject);
    assert_eq!(offer(&mut joiner, &snapshot, &[9; 32]), Offer::Reject);
    assert_eq!(offer(&mut joiner, &snapshot, &[]), Offer::Reject);
    let mut wrong_height = snapshot.clone();
    wrong_height.height += 1;
    assert_eq!(offer(&mut joiner, &wrong_height, &app_hash), Offer::Reject);
    let mut wrong_count = snapshot.clone();
    wrong_count.chunks += 1;
    assert_eq!(offer(&mut joiner, &wrong_count, &app_hash), Offer::Reject);
    let mut format2 = snapshot.clone();
    format2.format = 2;
    assert_eq!(offer(&mut joiner, &format2, &app_hash), Offer::RejectFormat);
    // Metadata that says format 2 under format 1.
    let mut m = SnapshotMetadata::decode(&snapshot.metadata).unwrap();
    m.format = 2;
    let bytes = m.encode();
    let inner2 = abci::Snapshot {
        hash: sha256(&bytes).to_vec().into(),
        metadata: bytes.into(),
        ..snapshot.clone()
    };
    // The outer format is 1: a bad inner one is this snapshot's fault, not format
    // 1's, so REJECT (REJECT_FORMAT would make CometBFT drop all of format 1).
    assert_eq!(offer(&mut joiner, &inner2, &app_hash), Offer::Reject);
    for metadata in [
        Vec::new(),
        b"garbage".to_vec(),
        vec![0xff; 5 * 1024 * 1024],
        [snapshot.metadata.to_vec(), vec![0]].concat(),
    ] {
        let s = abci::Snapshot {
            hash: sha256(&metadata).to_vec().into(),
            metadata: metadata.into(),
            ..snapshot.clone()
        };
        assert_eq!(offer(&mut joiner, &s, &app_hash), Offer::Reject);
    }
    let r = joiner
        .offer_snapshot(&abci::RequestOfferSnapshot {
            snapshot: None,
            app_hash: app_hash.clone().into(),
        })
        .unwrap();
    assert_eq!(r.result, Offer::Reject as i32);
    assert!(joiner.store().committed().unwrap().is_none());

    // Garbage and oversize chunks for an accepted snapshot are refetched; an index
    // beyond the snapshot rejects it.
    assert_eq!(offer(&mut joiner, &snapshot, &app_hash), Offer::Accept);
    for chunk in [Vec::new(), b"garbage".to_vec(), vec![0; 17 * 1024 * 1024]] {
        let r = apply(&mut joiner, 0, &chunk, "p");
        assert_eq!(result(&r), Apply::Retry);
        assert_eq!(r.refetch_chunks, [0]);
    }
    let r = apply(
        &mut joiner,
        snapshot.chunks,
        &load(source, &snapshot, 0),
        "p",
    );
    assert_eq!(result(&r), Apply::RejectSnapshot);
    let r = apply(&mut joiner, 0, &load(source, &snapshot, 0), "p");
    assert_eq!(result(&r), Apply::Abort, "the rejected snapshot is dropped");
    assert!(joiner.store().committed().unwrap().is_none());

    // A node that has state refuses every snapshot.
    let mut full = App::new(source.store().clone());
    assert_eq!(offer(&mut full, &snapshot, &app_hash), Offer::Abort);
}

#[test]
fn a_snapshot_whose_state_does_not_hash_to_the_app_hash_is_rejected() {
    // A peer's metadata carries the trusted app hash and the hashes of chunks it
    // made up: every chunk matches, but the rebuilt root does not.
    let chunks = [
        encode_chunk(&[
            (b"a".to_vec(), b"1".to_vec()),
            (b"b".to_vec(), b"2".to_vec()),
        ])
        .unwrap(),
        encode_chunk(&[(b"c".to_vec(), b"3".to_vec())]).unwrap(),
    ];
    let trusted = [5u8; 32];
    let metadata = SnapshotMetadata {
        format: SNAPSHOT_FORMAT,
        height: 10,
        initial_height: 1,
        app_hash: trusted,
        chunk_hashes: chunks.iter().map(|c| sha256(c)).collect(),
        total_bytes: chunks.iter().map(|c| c.len() as u64).sum(),
    };
    let bytes = metadata.encode();
    let snapshot = abci::Snapshot {
        height: 10,
        format: SNAPSHOT_FORMAT,
        chunks: 2,
        hash: sha256(&bytes).to_vec().into(),
        metadata: bytes.into(),
    };
    let dir = tempfile::tempdir().unwrap();
    let mut joiner = fresh_app(dir.path());
    assert_eq!(offer(&mut joiner, &snapshot, &trusted), Offer::Accept);
    assert_eq!(
        result(&apply(&mut joiner, 1, &chunks[1], "p")),
        Apply::Accept
    );
    assert_eq!(
        result(&apply(&mut joiner, 0, &chunks[0], "p")),
        Apply::RejectSnapshot
    );
    assert!(joiner.store().committed().unwrap().is_none());
    assert!(joiner.store().get(b"a").unwrap().is_none());
    let info = joiner.info(&abci::RequestInfo::default()).unwrap();
    assert_eq!(info.last_block_height, 0);

    // The store is still a fresh one: a real snapshot restores into it.
    let snaps = tempfile::tempdir().unwrap();
    let (mut h, mut txgen) = chain(2, snaps.path());
    advance(&mut h, &mut txgen, 2);
    let source = &h.instances[0].as_ref().unwrap().app;
    let real = source.list_snapshots().snapshots[0].clone();
    assert_eq!(
        offer(&mut joiner, &real, &h.blocks[1].app_hash),
        Offer::Accept
    );
    for i in 0..real.chunks {
        let r = apply(&mut joiner, i, &load(source, &real, i), "p");
        assert_eq!(result(&r), Apply::Accept);
    }
    assert_eq!(
        joiner.last_committed().unwrap(),
        source.last_committed().unwrap()
    );
}

#[test]
fn a_snapshot_taken_by_hand_matches_the_listed_one() {
    let snaps = tempfile::tempdir().unwrap();
    let (mut h, mut txgen) = chain(3, snaps.path());
    advance(&mut h, &mut txgen, 3);
    let app = &h.instances[0].as_ref().unwrap().app;
    let listed = app.list_snapshots().snapshots[0].clone();
    let other = tempfile::tempdir().unwrap();
    let store = SnapshotStore::new(other.path(), config(0)).unwrap();
    let info = store.write(&app.store().read_view().unwrap()).unwrap();
    assert_eq!(info.height, 3);
    assert_eq!(info.hash.as_slice(), listed.hash.as_ref());
    assert_eq!(info.chunks, listed.chunks);
    // Interval 0 never takes one by itself.
    assert!(!store.is_due(3) && !store.is_due(0));
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}
