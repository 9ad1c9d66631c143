//! State sync on the ABCI side: ListSnapshots and LoadSnapshotChunk serve this
//! node's [`SnapshotStore`](crate::SnapshotStore); OfferSnapshot and
//! ApplySnapshotChunk restore a peer's snapshot into an empty store.

use tendermint_proto::v0_38::abci;
use tracing::{info, warn};

use super::App;
use crate::{
    Result, metrics,
    snapshot::{Applied, Pairs, Refusal, Restore, SnapshotMetadata},
};

impl App {
    /// The snapshots this node serves, newest first.
    pub fn list_snapshots(&self) -> abci::ResponseListSnapshots {
        let snapshots = match self.snapshots.as_ref().map(|s| s.list()) {
            None => Vec::new(),
            Some(Ok(list)) => list,
            Some(Err(e)) => {
                warn!(error = %e, "cannot list snapshots");
                Vec::new()
            }
        };
        abci::ResponseListSnapshots { snapshots }
    }

    /// A chunk of one of this node's snapshots, as stored; empty when unknown.
    pub fn load_snapshot_chunk(
        &self,
        req: &abci::RequestLoadSnapshotChunk,
    ) -> abci::ResponseLoadSnapshotChunk {
        let chunk = self
            .snapshots
            .as_ref()
            .and_then(|s| s.load_chunk(req.height, req.format, req.chunk));
        if chunk.is_none() {
            warn!(
                height = req.height,
                format = req.format,
                index = req.chunk,
                "asked for a snapshot chunk this node does not have"
            );
        }
        abci::ResponseLoadSnapshotChunk {
            chunk: chunk.unwrap_or_default().into(),
        }
    }

    /// Accepts a snapshot to restore when this node has no state yet and the
    /// snapshot is well formed and of the app hash the light client trusts.
    pub fn offer_snapshot(
        &mut self,
        req: &abci::RequestOfferSnapshot,
    ) -> Result<abci::ResponseOfferSnapshot> {
        use abci::response_offer_snapshot::Result as Offer;
        let answer = |r: Offer| abci::ResponseOfferSnapshot { result: r as i32 };
        let Some(snapshot) = req.snapshot.as_ref() else {
            warn!("OfferSnapshot without a snapshot");
            return Ok(answer(Offer::Reject));
        };
        if let Some(c) = self.store.committed()? {
            warn!(
                offered = snapshot.height,
                committed = c.height,
                "refusing a snapshot: this node already has state"
            );
            return Ok(answer(Offer::Abort));
        }
        self.restore = None;
        match Restore::offer(snapshot, &req.app_hash) {
            Ok(restore) => {
                let m = restore.metadata();
                info!(
                    height = m.height,
                    chunks = m.chunks(),
                    bytes = m.total_bytes,
                    app_hash = hex::encode(m.app_hash),
                    "restoring a state-sync snapshot"
                );
                self.restore = Some(restore);
                Ok(answer(Offer::Accept))
            }
            Err(Refusal::Format(e)) => {
                warn!(height = snapshot.height, error = %e, "refusing a snapshot");
                Ok(answer(Offer::RejectFormat))
            }
            Err(Refusal::Reject(reason)) => {
                warn!(height = snapshot.height, %reason, "refusing a snapshot");
                Ok(answer(Offer::Reject))
            }
        }
    }

    /// Checks a chunk of the snapshot being restored against its hash; after the
    /// last one, rebuilds the state, checks its root against the trusted app hash
    /// and only then writes it. `Err` only when writing the checked state fails.
    pub fn apply_snapshot_chunk(
        &mut self,
        req: &abci::RequestApplySnapshotChunk,
    ) -> Result<abci::ResponseApplySnapshotChunk> {
        use abci::response_apply_snapshot_chunk::Result as Apply;
        let answer = |r: Apply| abci::ResponseApplySnapshotChunk {
            result: r as i32,
            ..Default::default()
        };
        let Some(restore) = self.restore.as_mut() else {
            warn!(
                index = req.index,
                "snapshot chunk without a snapshot being restored"
            );
            return Ok(answer(Apply::Abort));
        };
        match restore.apply(req.index, &req.chunk) {
            Applied::Accepted => Ok(answer(Apply::Accept)),
            Applied::Refetch(reason) => {
                warn!(index = req.index, sender = %req.sender, %reason, "refetching a bad snapshot chunk");
                metrics::snapshot_chunk_rejected();
                Ok(abci::ResponseApplySnapshotChunk {
                    result: Apply::Retry as i32,
                    refetch_chunks: vec![req.index],
                    reject_senders: if req.sender.is_empty() {
                        Vec::new()
                    } else {
                        vec![req.sender.clone()]
                    },
                })
            }
            Applied::RejectSnapshot(reason) => {
                warn!(index = req.index, %reason, "rejecting the snapshot being restored");
                self.restore = None;
                Ok(answer(Apply::RejectSnapshot))
            }
            Applied::Complete(pairs) => {
                let Some(restore) = self.restore.take() else {
                    return Ok(answer(Apply::Abort));
                };
                Ok(answer(self.finish_restore(restore.metadata(), pairs)?))
            }
        }
    }

    fn finish_restore(
        &mut self,
        m: &SnapshotMetadata,
        pairs: Pairs,
    ) -> Result<abci::response_apply_snapshot_chunk::Result> {
        use abci::response_apply_snapshot_chunk::Result as Apply;
        let entries = pairs.len();
        let pending = match self
            .store
            .prepare_restore(m.height, m.initial_height, pairs)
        {
            Ok(p) => p,
            Err(e) => {
                warn!(height = m.height, error = %e, "rejecting the snapshot: its state does not rebuild");
                return Ok(Apply::RejectSnapshot);
            }
        };
        if pending.app_hash != m.app_hash {
            warn!(
                height = m.height,
                rebuilt = hex::encode(pending.app_hash),
                trusted = hex::encode(m.app_hash),
                "rejecting the snapshot: its state does not hash to the trusted app hash"
            );
            return Ok(Apply::RejectSnapshot);
        }
        self.store.commit_restore(pending)?;
        self.check_changes.clear();
        self.committed(m.height);
        info!(
            height = m.height,
            entries,
            app_hash = hex::encode(m.app_hash),
            "state restored from a snapshot"
        );
        Ok(Apply::Accept)
    }
}
