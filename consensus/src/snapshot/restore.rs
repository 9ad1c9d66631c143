//! The joining side: checking an offered snapshot and collecting its chunks.
//!
//! Nothing here writes state. [`Restore`] holds the accepted metadata and the
//! chunks that matched their hashes; once all have arrived it hands the pairs, in
//! key order, to the App, which rebuilds the tree and compares its root with the
//! trusted app hash before committing.

use std::collections::BTreeMap;

use tendermint_proto::v0_38::abci;

use super::format::{
    Pairs, SNAPSHOT_FORMAT, SnapshotError, SnapshotMetadata, decode_chunk, sha256,
};

/// A snapshot accepted by OfferSnapshot, being restored.
#[derive(Debug)]
pub struct Restore {
    metadata: SnapshotMetadata,
    /// Chunks that matched their hash, decoded, by index.
    chunks: BTreeMap<u32, Pairs>,
    /// Sum of the accepted chunks' lengths, at most `metadata.total_bytes`.
    bytes: u64,
}

/// What one chunk did to a restore.
#[derive(Debug)]
pub enum Applied {
    /// Buffered (or already had); more chunks are needed.
    Accepted,
    /// The last chunk: every pair of the snapshot, in key order.
    Complete(Pairs),
    /// The chunk does not match its hash: fetch it again from another peer.
    Refetch(String),
    /// The snapshot itself is bad (its chunks contradict its metadata).
    RejectSnapshot(String),
}

/// Why an offer was refused, as OfferSnapshot's result.
#[derive(Debug)]
pub enum Refusal {
    Format(SnapshotError),
    Reject(String),
}

impl Restore {
    /// Checks an offered snapshot against the app hash CometBFT's light client
    /// trusts for its height.
    pub fn offer(snapshot: &abci::Snapshot, trusted_app_hash: &[u8]) -> Result<Self, Refusal> {
        if snapshot.format != SNAPSHOT_FORMAT {
            return Err(Refusal::Format(SnapshotError::UnknownFormat(
                snapshot.format,
            )));
        }
        // Any fault in the metadata is this snapshot's, never format 1's: a
        // REJECT_FORMAT here would make CometBFT drop every format-1 snapshot.
        let metadata = SnapshotMetadata::decode(&snapshot.metadata)
            .map_err(|e| Refusal::Reject(e.to_string()))?;
        let hash = sha256(&snapshot.metadata);
        if snapshot.hash.as_ref() != hash.as_slice() {
            return Err(Refusal::Reject(format!(
                "snapshot hash {} is not the sha256 of its metadata ({})",
                hex::encode(&snapshot.hash),
                hex::encode(hash)
            )));
        }
        if metadata.height != snapshot.height {
            return Err(Refusal::Reject(format!(
                "snapshot of height {} carries metadata of height {}",
                snapshot.height, metadata.height
            )));
        }
        if metadata.chunks() != snapshot.chunks {
            return Err(Refusal::Reject(format!(
                "snapshot of {} chunks carries metadata of {} chunks",
                snapshot.chunks,
                metadata.chunks()
            )));
        }
        if trusted_app_hash != metadata.app_hash.as_slice() {
            return Err(Refusal::Reject(format!(
                "snapshot app hash {} is not the trusted app hash {} of height {}",
                hex::encode(metadata.app_hash),
                hex::encode(trusted_app_hash),
                metadata.height
            )));
        }
        Ok(Self {
            metadata,
            chunks: BTreeMap::new(),
            bytes: 0,
        })
    }

    pub fn metadata(&self) -> &SnapshotMetadata {
        &self.metadata
    }

    /// Checks chunk `index` against its hash and buffers it.
    pub fn apply(&mut self, index: u32, chunk: &[u8]) -> Applied {
        let Some(expected) = self.metadata.chunk_hashes.get(index as usize) else {
            return Applied::RejectSnapshot(format!(
                "chunk index {index} is beyond the snapshot's {} chunks",
                self.metadata.chunks()
            ));
        };
        let hash = sha256(chunk);
        if &hash != expected {
            return Applied::Refetch(format!(
                "chunk {index} of {} bytes has hash {}, the snapshot says {}",
                chunk.len(),
                hex::encode(hash),
                hex::encode(expected)
            ));
        }
        if self.chunks.contains_key(&index) {
            return Applied::Accepted;
        }
        let bytes = self.bytes.checked_add(chunk.len() as u64);
        let Some(bytes) = bytes.filter(|&b| b <= self.metadata.total_bytes) else {
            return Applied::RejectSnapshot(format!(
                "chunks add up to more than the {} bytes the snapshot declares",
                self.metadata.total_bytes
            ));
        };
        let pairs = match decode_chunk(chunk) {
            Ok(p) => p,
            // The chunk is the one the metadata names: the snapshot is bad.
            Err(e) => return Applied::RejectSnapshot(format!("chunk {index}: {e}")),
        };
        self.bytes = bytes;
        self.chunks.insert(index, pairs);
        if self.chunks.len() < self.metadata.chunk_hashes.len() {
            return Applied::Accepted;
        }
        if self.bytes != self.metadata.total_bytes {
            return Applied::RejectSnapshot(format!(
                "chunks add up to {} bytes, the snapshot declares {}",
                self.bytes, self.metadata.total_bytes
            ));
        }
        let chunks = std::mem::take(&mut self.chunks);
        let mut all: Pairs = Vec::new();
        for (index, pairs) in chunks {
            // Keys increase within a chunk (decode_chunk) and must across chunks.
            if let (Some((last, _)), Some((first, _))) = (all.last(), pairs.first())
                && last >= first
            {
                return Applied::RejectSnapshot(format!(
                    "the first key of chunk {index} is not above the last key of chunk {}",
                    // Some chunk came before this one: its index is at least 1.
                    index.saturating_sub(1)
                ));
            }
            all.extend(pairs);
        }
        Applied::Complete(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::format::encode_chunk;

    fn pairs(keys: &[&str]) -> Vec<(Vec<u8>, Vec<u8>)> {
        keys.iter()
            .map(|k| (k.as_bytes().to_vec(), k.as_bytes().to_vec()))
            .collect()
    }

    fn snapshot(chunks: &[Vec<u8>]) -> (abci::Snapshot, SnapshotMetadata) {
        let metadata = SnapshotMetadata {
            format: SNAPSHOT_FORMAT,
            height: 5,
            initial_height: 1,
            app_hash: [3; 32],
            chunk_hashes: chunks.iter().map(|c| sha256(c)).collect(),
            total_bytes: chunks.iter().map(|c| c.len() as u64).sum(),
        };
        let bytes = metadata.encode();
        let s = abci::Snapshot {
            height: 5,
            format: SNAPSHOT_FORMAT,
            chunks: chunks.len() as u32,
            hash: sha256(&bytes).to_vec().into(),
            metadata: bytes.into(),
        };
        (s, metadata)
    }

    #[test]
    fn chunks_in_any_order_complete_in_key_order() {
        let chunks = [
            encode_chunk(&pairs(&["a", "b"])).unwrap(),
            encode_chunk(&pairs(&["c"])).unwrap(),
            encode_chunk(&pairs(&["d", "e"])).unwrap(),
        ];
        let (s, _) = snapshot(&chunks);
        let mut r = Restore::offer(&s, &[3; 32]).unwrap();
        assert!(matches!(r.apply(2, &chunks[2]), Applied::Accepted));
        assert!(matches!(r.apply(0, &chunks[0]), Applied::Accepted));
        assert!(matches!(r.apply(0, &chunks[0]), Applied::Accepted));
        assert!(matches!(r.apply(1, &chunks[0]), Applied::Refetch(_)));
        assert!(matches!(r.apply(3, &chunks[0]), Applied::RejectSnapshot(_)));
        match r.apply(1, &chunks[1]) {
            Applied::Complete(all) => assert_eq!(all, pairs(&["a", "b", "c", "d", "e"])),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn chunks_that_overlap_reject_the_snapshot() {
        let chunks = [
            encode_chunk(&pairs(&["a", "c"])).unwrap(),
            encode_chunk(&pairs(&["b"])).unwrap(),
        ];
        let (s, _) = snapshot(&chunks);
        let mut r = Restore::offer(&s, &[3; 32]).unwrap();
        assert!(matches!(r.apply(0, &chunks[0]), Applied::Accepted));
        assert!(
            matches!(r.apply(1, &chunks[1]), Applied::RejectSnapshot(m) if m.contains("chunk 1"))
        );
    }

    #[test]
    fn a_chunk_that_matches_its_hash_but_not_the_format_rejects_the_snapshot() {
        let chunks = [b"garbage, not pairs".to_vec()];
        let (s, _) = snapshot(&chunks);
        let mut r = Restore::offer(&s, &[3; 32]).unwrap();
        assert!(matches!(r.apply(0, &chunks[0]), Applied::RejectSnapshot(_)));
    }

    #[test]
    fn offers_are_checked_against_their_hash_and_the_trusted_app_hash() {
        let chunks = [encode_chunk(&pairs(&["a"])).unwrap()];
        let (s, _) = snapshot(&chunks);
        assert!(matches!(
            Restore::offer(&s, &[4; 32]),
            Err(Refusal::Reject(m)) if m.contains("trusted app hash")
        ));
        let mut bad = s.clone();
        bad.hash = vec![0; 32].into();
        assert!(
            matches!(Restore::offer(&bad, &[3; 32]), Err(Refusal::Reject(m)) if m.contains("sha256"))
        );
        let mut bad = s.clone();
        bad.height = 6;
        assert!(matches!(
            Restore::offer(&bad, &[3; 32]),
            Err(Refusal::Reject(_))
        ));
        let mut bad = s.clone();
        bad.chunks = 2;
        assert!(matches!(
            Restore::offer(&bad, &[3; 32]),
            Err(Refusal::Reject(_))
        ));
        let mut bad = s.clone();
        bad.format = 2;
        assert!(matches!(
            Restore::offer(&bad, &[3; 32]),
            Err(Refusal::Format(_))
        ));
        let mut bad = s;
        bad.metadata = vec![0xff; 40].into();
        assert!(Restore::offer(&bad, &[3; 32]).is_err());
    }
}
