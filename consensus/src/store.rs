//! Persistent, authenticated state: a Jellyfish Merkle tree (jmt, as Penumbra uses)
//! whose nodes and versioned values live in redb, an embedded, pure-Rust,
//! crash-safe B-tree store.
//!
//! Why these two: jmt gives a 32-byte root (the app hash) and ics23 membership and
//! non-membership proofs a client verifies; its result depends only on the set of
//! key/value pairs, never on insertion order. redb commits atomically with fsync,
//! needs no C++ toolchain (rocksdb adds about 17 minutes of compile here), and gives
//! ordered range scans for the latest-state table.
//!
//! Layout (one redb file):
//! - `jmt_nodes`: borsh(NodeKey) -> borsh(Node)
//! - `jmt_values`: key_hash || version (big endian) -> tag byte || value
//! - `jmt_preimages`: key_hash -> key (jmt needs neighbours' keys for absence proofs)
//! - `latest`: key -> value at the last committed version (reads and prefix scans)
//! - `meta`: last committed height, its app hash, genesis facts, and the earliest
//!   height with state (set when the state was restored from a snapshot)
//!
//! A block's changes are hashed into a new root at FinalizeBlock without writing
//! ([`Storage::prepare`]); [`Storage::commit`] then writes nodes, values, latest
//! state and the new height in one redb transaction, so a crash leaves either the
//! previous block or the new one on disk, never half of one.
//!
//! A state-sync restore ([`Storage::prepare_restore`], [`Storage::commit_restore`])
//! builds the tree of one version from the full set of key/value pairs into an
//! empty store, in one transaction as well.

use std::{collections::BTreeMap, path::Path};

use jmt::{
    JellyfishMerkleTree, KeyHash, OwnedValue, RootHash, Version,
    storage::{HasPreimage, LeafNode, Node, NodeKey, TreeReader, TreeUpdateBatch},
};
use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition};
use sha2::Sha256;

use crate::{Error, Result};

const NODES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("jmt_nodes");
const VALUES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("jmt_values");
const LATEST: TableDefinition<&[u8], &[u8]> = TableDefinition::new("latest");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const PREIMAGES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("jmt_preimages");

const META_HEIGHT: &str = "height";
const META_APP_HASH: &str = "app_hash";
const META_INITIAL_HEIGHT: &str = "initial_height";
const META_EARLIEST_HEIGHT: &str = "earliest_height";

/// A set of changes to apply: `None` deletes the key. Ordered, so iteration is
/// deterministic.
pub type ChangeSet = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// The hasher of the state tree.
pub type TreeHasher = Sha256;

/// Changes hashed into a new root, ready to be written by [`Storage::commit`].
#[derive(Debug)]
pub struct PendingCommit {
    pub height: u64,
    pub version: Version,
    pub app_hash: [u8; 32],
    changes: ChangeSet,
    batch: TreeUpdateBatch,
    initial_height: Option<u64>,
}

/// The on-disk state of one node.
#[derive(Debug)]
pub struct Storage {
    db: Database,
}

/// What the store says about the last committed block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// 0 before genesis is committed.
    pub height: u64,
    pub app_hash: [u8; 32],
    /// Height of the first block; genesis state is tree version 0 and block `h` is
    /// version `h - initial_height + 1`.
    pub initial_height: u64,
    /// Lowest height whose state (and proofs) this store has: `initial_height - 1`
    /// (genesis) normally, the snapshot's height after a state-sync restore.
    pub earliest_height: u64,
}

/// A consistent, read-only view of the state at the commit it was opened after (a
/// redb MVCC read transaction), `Send` so that a snapshot can be written from it on
/// another thread while blocks keep committing. It holds the pages of that
/// version from being reused until dropped.
#[derive(Debug)]
pub struct ReadView {
    txn: ReadTransaction,
}

/// The tree of a restored state, hashed but not yet written
/// ([`Storage::prepare_restore`]).
#[derive(Debug)]
pub struct PendingRestore {
    pub height: u64,
    pub initial_height: u64,
    /// Root of the rebuilt tree: compare it with the trusted app hash before
    /// [`Storage::commit_restore`].
    pub app_hash: [u8; 32],
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
    batch: TreeUpdateBatch,
}

impl Storage {
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::Storage(format!("creating {}: {e}", dir.display())))?;
        }
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        {
            txn.open_table(NODES)?;
            txn.open_table(VALUES)?;
            txn.open_table(LATEST)?;
            txn.open_table(META)?;
            txn.open_table(PREIMAGES)?;
        }
        txn.commit()?;
        Ok(Self { db })
    }

    /// The last committed block, or `None` before genesis.
    pub fn committed(&self) -> Result<Option<Committed>> {
        read_committed(&self.db.begin_read()?)
    }

    /// A view of the state as last committed, unaffected by later commits.
    pub fn read_view(&self) -> Result<ReadView> {
        Ok(ReadView {
            txn: self.db.begin_read()?,
        })
    }

    /// Reads the latest committed value of `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(LATEST)?;
        Ok(table.get(key)?.map(|v| v.value().to_vec()))
    }

    /// Lists latest committed key/value pairs under `prefix`, in key order, at most
    /// `limit` of them.
    pub fn prefix(&self, prefix: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(LATEST)?;
        let mut out = Vec::new();
        for entry in table.range::<&[u8]>(prefix..)? {
            let (k, v) = entry?;
            if !k.value().starts_with(prefix) || out.len() >= limit {
                break;
            }
            out.push((k.value().to_vec(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// Hashes `changes` on top of the last committed version into the root of
    /// `height`, without writing anything.
    pub fn prepare(
        &self,
        height: u64,
        changes: ChangeSet,
        genesis_initial_height: Option<u64>,
    ) -> Result<PendingCommit> {
        let (version, initial_height) = match (self.committed()?, genesis_initial_height) {
            (None, Some(initial)) => (0, Some(initial)),
            (Some(c), None) => {
                // initial_height is at least 1 (InitChain and restores check it).
                let expected = c
                    .height
                    .max(c.initial_height.saturating_sub(1))
                    .checked_add(1)
                    .ok_or_else(|| {
                        Error::Protocol(format!("no block follows height {}", c.height))
                    })?;
                if height != expected {
                    return Err(Error::Protocol(format!(
                        "block {height} does not follow the committed height {} (expected {expected})",
                        c.height
                    )));
                }
                let version = version_of(height, c.initial_height).ok_or_else(|| {
                    Error::Protocol(format!(
                        "block {height} is below the initial height {}",
                        c.initial_height
                    ))
                })?;
                (version, None)
            }
            (None, None) => return Err(Error::Protocol(format!("block {height} before genesis"))),
            (Some(c), Some(_)) => {
                return Err(Error::Genesis(format!(
                    "state already initialized (height {})",
                    c.height
                )));
            }
        };
        if changes.is_empty() {
            // jmt refuses empty write sets; every block writes at least its height.
            return Err(Error::Protocol(format!("block {height} changes nothing")));
        }
        let reader = Reader::new(&self.db)?;
        let tree = JellyfishMerkleTree::<_, TreeHasher>::new(&reader);
        let value_set = changes
            .iter()
            .map(|(k, v)| (KeyHash::with::<TreeHasher>(k), v.clone()))
            .collect::<Vec<(KeyHash, Option<OwnedValue>)>>();
        let (root, batch) = tree.put_value_set(value_set, version)?;
        Ok(PendingCommit {
            height,
            version,
            app_hash: root.0,
            changes,
            batch,
            initial_height,
        })
    }

    /// Writes a prepared block atomically and makes it the last committed one.
    pub fn commit(&self, pending: PendingCommit) -> Result<()> {
        let txn = self.db.begin_write()?;
        {
            write_tree(&txn, &pending.batch)?;
            let mut preimages = txn.open_table(PREIMAGES)?;
            let mut latest = txn.open_table(LATEST)?;
            for (key, value) in &pending.changes {
                let key_hash = KeyHash::with::<TreeHasher>(key);
                preimages.insert(key_hash.0.as_slice(), key.as_slice())?;
                match value {
                    Some(v) => {
                        latest.insert(key.as_slice(), v.as_slice())?;
                    }
                    None => {
                        latest.remove(key.as_slice())?;
                    }
                }
            }
            let mut meta = txn.open_table(META)?;
            if let Some(initial) = pending.initial_height {
                meta.insert(META_INITIAL_HEIGHT, initial.to_be_bytes().as_slice())?;
            }
            meta.insert(META_HEIGHT, pending.height.to_be_bytes().as_slice())?;
            meta.insert(META_APP_HASH, pending.app_hash.as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    /// The value of `key` at `height` with an ics23 proof against that height's
    /// root. The proof shows absence when the value is `None`.
    pub fn get_with_proof(
        &self,
        key: &[u8],
        height: u64,
    ) -> Result<(Option<Vec<u8>>, ics23::CommitmentProof, [u8; 32])> {
        let committed = self
            .committed()?
            .ok_or_else(|| Error::Query("no state committed yet".into()))?;
        if height > committed.height || height < committed.earliest_height {
            let restored = if committed.earliest_height >= committed.initial_height {
                " (this node was restored from a snapshot at that height)"
            } else {
                ""
            };
            return Err(Error::Query(format!(
                "height {height} is outside the committed range {}..={}{restored}",
                committed.earliest_height, committed.height
            )));
        }
        // Heights below the first block read the genesis version.
        let version = version_of(height, committed.initial_height).unwrap_or(0);
        let reader = Reader::new(&self.db)?;
        let tree = JellyfishMerkleTree::<_, TreeHasher>::new(&reader);
        let root: RootHash = tree.get_root_hash(version)?;
        let (value, proof) = tree.get_with_ics23_proof(key.to_vec(), version)?;
        Ok((value, proof, root.0))
    }
}

impl Storage {
    /// Hashes the complete state of block `height` (every key/value pair, each key
    /// once) into the tree of that height's version, without writing anything. The
    /// store must be empty: a restore never mixes with existing state.
    pub fn prepare_restore(
        &self,
        height: u64,
        initial_height: u64,
        pairs: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<PendingRestore> {
        if let Some(c) = self.committed()? {
            return Err(Error::Protocol(format!(
                "restore of height {height} into a store that already holds height {}",
                c.height
            )));
        }
        if initial_height == 0 || initial_height > height {
            return Err(Error::Protocol(format!(
                "restore of height {height} with initial height {initial_height}: a snapshot is of a block at or after the first"
            )));
        }
        if pairs.is_empty() {
            return Err(Error::Protocol(format!(
                "restore of height {height} holds no state"
            )));
        }
        let version = version_of(height, initial_height).ok_or_else(|| {
            Error::Protocol(format!(
                "restore of height {height} below its initial height {initial_height}"
            ))
        })?;
        let reader = RestoreReader {
            inner: Reader::new(&self.db)?,
            version,
        };
        let tree = JellyfishMerkleTree::<_, TreeHasher>::new(&reader);
        let value_set = pairs
            .iter()
            .map(|(k, v)| (KeyHash::with::<TreeHasher>(k), Some(v.clone())))
            .collect::<Vec<(KeyHash, Option<OwnedValue>)>>();
        let (root, batch) = tree.put_value_set(value_set, version)?;
        Ok(PendingRestore {
            height,
            initial_height,
            app_hash: root.0,
            pairs,
            batch,
        })
    }

    /// Writes a restored state in one transaction: the tree, the latest values, the
    /// key preimages, and `height` as both the committed and the earliest height.
    pub fn commit_restore(&self, restore: PendingRestore) -> Result<()> {
        let txn = self.db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            if meta.get(META_INITIAL_HEIGHT)?.is_some() {
                return Err(Error::Protocol(format!(
                    "restore of height {} into a store that already holds state",
                    restore.height
                )));
            }
            meta.insert(
                META_INITIAL_HEIGHT,
                restore.initial_height.to_be_bytes().as_slice(),
            )?;
            meta.insert(META_HEIGHT, restore.height.to_be_bytes().as_slice())?;
            meta.insert(META_APP_HASH, restore.app_hash.as_slice())?;
            meta.insert(
                META_EARLIEST_HEIGHT,
                restore.height.to_be_bytes().as_slice(),
            )?;
            write_tree(&txn, &restore.batch)?;
            let mut preimages = txn.open_table(PREIMAGES)?;
            let mut latest = txn.open_table(LATEST)?;
            for (key, value) in &restore.pairs {
                let key_hash = KeyHash::with::<TreeHasher>(key);
                preimages.insert(key_hash.0.as_slice(), key.as_slice())?;
                latest.insert(key.as_slice(), value.as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }
}

impl ReadView {
    /// The last committed block as of this view.
    pub fn committed(&self) -> Result<Option<Committed>> {
        read_committed(&self.txn)
    }

    /// Calls `f` on every latest key/value pair, in key order, stopping at its
    /// first error.
    pub fn for_each_latest<E: From<Error>>(
        &self,
        mut f: impl FnMut(&[u8], &[u8]) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        let table = self.txn.open_table(LATEST).map_err(Error::from)?;
        for entry in table.iter().map_err(Error::from)? {
            let (k, v) = entry.map_err(Error::from)?;
            f(k.value(), v.value())?;
        }
        Ok(())
    }
}

fn read_committed(txn: &ReadTransaction) -> Result<Option<Committed>> {
    let meta = txn.open_table(META)?;
    let Some(initial) = meta.get(META_INITIAL_HEIGHT)? else {
        return Ok(None);
    };
    let initial_height = read_u64(initial.value(), META_INITIAL_HEIGHT)?;
    let height = match meta.get(META_HEIGHT)? {
        Some(v) => read_u64(v.value(), META_HEIGHT)?,
        None => 0,
    };
    let app_hash = match meta.get(META_APP_HASH)? {
        Some(v) => v
            .value()
            .try_into()
            .map_err(|_| corrupt(META_APP_HASH, "not 32 bytes"))?,
        None => return Err(corrupt(META_APP_HASH, "missing")),
    };
    let earliest_height = match meta.get(META_EARLIEST_HEIGHT)? {
        Some(v) => read_u64(v.value(), META_EARLIEST_HEIGHT)?,
        None => initial_height.saturating_sub(1),
    };
    Ok(Some(Committed {
        height,
        app_hash,
        initial_height,
        earliest_height,
    }))
}

/// Writes the nodes and versioned values of a tree update.
fn write_tree(txn: &redb::WriteTransaction, batch: &TreeUpdateBatch) -> Result<()> {
    let mut nodes = txn.open_table(NODES)?;
    for (key, node) in batch.node_batch.nodes() {
        let k = borsh::to_vec(key).map_err(|e| Error::Storage(e.to_string()))?;
        let v = borsh::to_vec(node).map_err(|e| Error::Storage(e.to_string()))?;
        nodes.insert(k.as_slice(), v.as_slice())?;
    }
    let mut values = txn.open_table(VALUES)?;
    for ((version, key_hash), value) in batch.node_batch.values() {
        let k = value_key(key_hash, *version);
        let v = match value {
            Some(v) => [&[1u8][..], v].concat(),
            None => vec![0u8],
        };
        values.insert(k.as_slice(), v.as_slice())?;
    }
    Ok(())
}

/// The tree version of block `height` on a chain whose first block is
/// `initial_height`: genesis, one height below it, is version 0.
fn version_of(height: u64, initial_height: u64) -> Option<Version> {
    height.checked_sub(initial_height)?.checked_add(1)
}

fn value_key(key_hash: &KeyHash, version: Version) -> Vec<u8> {
    let mut k = Vec::with_capacity(40);
    k.extend_from_slice(&key_hash.0);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

fn read_u64(bytes: &[u8], what: &str) -> Result<u64> {
    let arr: [u8; 8] = bytes.try_into().map_err(|_| corrupt(what, "not 8 bytes"))?;
    Ok(u64::from_be_bytes(arr))
}

fn corrupt(key: &str, reason: &str) -> Error {
    Error::Corrupt {
        key: key.into(),
        reason: reason.into(),
    }
}

/// Reads tree nodes and versioned values for jmt from one consistent redb snapshot.
struct Reader {
    nodes: redb::ReadOnlyTable<&'static [u8], &'static [u8]>,
    values: redb::ReadOnlyTable<&'static [u8], &'static [u8]>,
    preimages: redb::ReadOnlyTable<&'static [u8], &'static [u8]>,
}

impl Reader {
    fn new(db: &Database) -> Result<Self> {
        let txn = db.begin_read()?;
        Ok(Self {
            nodes: txn.open_table(NODES)?,
            values: txn.open_table(VALUES)?,
            preimages: txn.open_table(PREIMAGES)?,
        })
    }
}

impl TreeReader for Reader {
    fn get_node_option(&self, node_key: &NodeKey) -> anyhow::Result<Option<Node>> {
        let table = &self.nodes;
        let key = borsh::to_vec(node_key)?;
        match table.get(key.as_slice())? {
            Some(v) => Ok(Some(borsh::from_slice(v.value())?)),
            None => Ok(None),
        }
    }

    fn get_value_option(
        &self,
        max_version: Version,
        key_hash: KeyHash,
    ) -> anyhow::Result<Option<OwnedValue>> {
        let table = &self.values;
        let lo = value_key(&key_hash, 0);
        let hi = value_key(&key_hash, max_version);
        let mut range = table.range::<&[u8]>(lo.as_slice()..=hi.as_slice())?;
        match range.next_back() {
            Some(entry) => {
                let (_, v) = entry?;
                let v = v.value();
                match v.first() {
                    Some(1) => Ok(Some(v[1..].to_vec())),
                    Some(0) => Ok(None),
                    _ => anyhow::bail!("corrupt jmt value for {key_hash:?}"),
                }
            }
            None => Ok(None),
        }
    }

    fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
        // Only used by jmt's own chunked restore; this node restores a snapshot by
        // rebuilding the tree from its pairs (`Storage::prepare_restore`).
        anyhow::bail!("jmt's chunked tree restore is not used")
    }
}

/// The reader of a restore into an empty store. jmt builds version `v > 0` on top
/// of the root of `v - 1`, which a restored store never had: this reports that root
/// as the empty tree, so the restored tree holds exactly the snapshot's pairs.
struct RestoreReader {
    inner: Reader,
    version: Version,
}

impl TreeReader for RestoreReader {
    fn get_node_option(&self, node_key: &NodeKey) -> anyhow::Result<Option<Node>> {
        if self.version.checked_sub(1) == Some(node_key.version())
            && node_key.nibble_path().is_empty()
        {
            return Ok(Some(Node::Null));
        }
        self.inner.get_node_option(node_key)
    }

    fn get_value_option(
        &self,
        max_version: Version,
        key_hash: KeyHash,
    ) -> anyhow::Result<Option<OwnedValue>> {
        self.inner.get_value_option(max_version, key_hash)
    }

    fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
        self.inner.get_rightmost_leaf()
    }
}

impl HasPreimage for Reader {
    fn preimage(&self, key_hash: KeyHash) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(self
            .preimages
            .get(key_hash.0.as_slice())?
            .map(|v| v.value().to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changes(pairs: &[(&str, Option<&str>)]) -> ChangeSet {
        pairs
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.map(|v| v.as_bytes().to_vec())))
            .collect()
    }

    #[test]
    fn commits_persist_and_proofs_verify() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        let store = Storage::open(&path).unwrap();
        assert!(store.committed().unwrap().is_none());
        let g = store
            .prepare(0, changes(&[("a", Some("1")), ("b", Some("2"))]), Some(1))
            .unwrap();
        let genesis_hash = g.app_hash;
        store.commit(g).unwrap();
        let b1 = store
            .prepare(1, changes(&[("a", Some("3")), ("b", None)]), None)
            .unwrap();
        let h1 = b1.app_hash;
        store.commit(b1).unwrap();
        drop(store);

        let store = Storage::open(&path).unwrap();
        let c = store.committed().unwrap().unwrap();
        assert_eq!((c.height, c.app_hash), (1, h1));
        assert_eq!(store.get(b"a").unwrap(), Some(b"3".to_vec()));
        assert_eq!(store.get(b"b").unwrap(), None);

        let (v, proof, root) = store.get_with_proof(b"a", 1).unwrap();
        assert_eq!(root, h1);
        assert_eq!(v.as_deref(), Some(&b"3"[..]));
        assert!(crate::verify_membership(&proof, &root, b"a", b"3"));
        assert!(!crate::verify_membership(&proof, &root, b"a", b"4"));
        let (v, proof, root) = store.get_with_proof(b"b", 1).unwrap();
        assert!(v.is_none());
        assert!(crate::verify_non_membership(&proof, &root, b"b"));
        let (v, _, root) = store.get_with_proof(b"b", 0).unwrap();
        assert_eq!(root, genesis_hash);
        assert_eq!(v.as_deref(), Some(&b"2"[..]));
    }

    #[test]
    fn root_is_independent_of_insertion_order() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let s1 = Storage::open(&a.path().join("s")).unwrap();
        let s2 = Storage::open(&b.path().join("s")).unwrap();
        let mut c1 = ChangeSet::new();
        let mut c2 = ChangeSet::new();
        for i in 0..50u32 {
            c1.insert(i.to_be_bytes().to_vec(), Some(vec![i as u8]));
        }
        for i in (0..50u32).rev() {
            c2.insert(i.to_be_bytes().to_vec(), Some(vec![i as u8]));
        }
        let p1 = s1.prepare(0, c1, Some(1)).unwrap();
        let p2 = s2.prepare(0, c2, Some(1)).unwrap();
        assert_eq!(p1.app_hash, p2.app_hash);
    }

    #[test]
    fn out_of_order_heights_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Storage::open(&dir.path().join("s")).unwrap();
        assert!(
            store
                .prepare(1, changes(&[("a", Some("1"))]), None)
                .is_err()
        );
        let g = store
            .prepare(0, changes(&[("a", Some("1"))]), Some(1))
            .unwrap();
        store.commit(g).unwrap();
        assert!(
            store
                .prepare(2, changes(&[("a", Some("2"))]), None)
                .is_err()
        );
        assert!(store.prepare(1, changes(&[("a", Some("2"))]), None).is_ok());
    }
}
