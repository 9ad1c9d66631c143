//! State-sync snapshots: how a new CometBFT full node gets the ledger's state at a
//! recent height instead of executing every block since genesis.
//!
//! A node with `[state_sync] snapshot_interval = N` writes a [`SnapshotStore`]
//! snapshot after committing every N-th block: every key/value pair of the
//! committed state, in key order, cut into chunks of about `chunk_bytes`. The
//! writing runs on a background thread from a redb read transaction opened at
//! Commit ([`ReadView`](crate::ReadView)), so it sees exactly that height while the
//! next blocks commit. A snapshot is written into a temporary directory and renamed
//! into place, so a crash never leaves a half snapshot that is listed; only the
//! `snapshot_keep_recent` newest are kept.
//!
//! Format 1 (see [`SnapshotMetadata`]): the metadata is the borsh layout of
//! `(format, height, initial_height, app_hash, chunk sha256s, total bytes)`, and
//! `Snapshot.hash` is its sha256; a chunk is the borsh layout of a sequence of
//! `(key, value)` pairs. Pairs rather than tree nodes because the app hash, the jmt
//! root, depends only on the set of pairs: the joining node rebuilds the tree and
//! checks that its root is the app hash CometBFT's light client trusts before it
//! writes anything. Each chunk is checked on arrival against its hash in the
//! metadata, so a peer serving a bad chunk is named and the chunk refetched from
//! another ([`App`](crate::App)'s ApplySnapshotChunk).
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use vichain_consensus::{App, SnapshotStore, Storage};
//! let store = Arc::new(Storage::open("data/state.redb".as_ref())?);
//! let config = vichain_config::StateSyncConfig::default();
//! let app = App::new(store).with_snapshots(SnapshotStore::new("data/snapshots", config)?);
//! # let _ = app; Ok(()) }
//! ```

mod format;
mod restore;

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    thread::JoinHandle,
    time::Instant,
};

use tendermint_proto::v0_38::abci;
use tracing::{error, info, warn};
use vichain_config::StateSyncConfig;

pub use format::{
    MAX_CHUNK_BYTES, MAX_CHUNKS, MAX_KEY_BYTES, MAX_METADATA_BYTES, MAX_SNAPSHOT_BYTES,
    MAX_VALUE_BYTES, Pairs, SNAPSHOT_FORMAT, SnapshotError, SnapshotMetadata, SnapshotResult,
    decode_chunk, encode_chunk,
};
pub(crate) use restore::{Applied, Refusal, Restore};

use crate::{metrics, store::ReadView};

const METADATA_FILE: &str = "metadata";
/// Prefix of directories being written or deleted: never listed, removed at start.
const TMP_PREFIX: &str = ".tmp-";

// The snapshot is written on another thread from a read transaction opened at
// Commit; should redb ever make it !Send, this stops compiling rather than
// silently writing a later height.
const _: fn() = || {
    fn assert_send<T: Send>() {}
    assert_send::<ReadView>();
};

/// The snapshots of one node, on disk: `DIR/<height, 20 digits>/` holding
/// `metadata` and `chunk-NNNNNN` files.
#[derive(Debug)]
pub struct SnapshotStore {
    dir: PathBuf,
    config: StateSyncConfig,
    /// The snapshot being written in the background, if any.
    writer: Mutex<Option<JoinHandle<()>>>,
}

/// A snapshot written to disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub height: u64,
    pub chunks: u32,
    pub total_bytes: u64,
    pub hash: [u8; 32],
}

impl SnapshotStore {
    /// Opens (creating) the snapshot directory and removes what a crash left half
    /// written there.
    pub fn new(dir: impl Into<PathBuf>, config: StateSyncConfig) -> SnapshotResult<Self> {
        let dir = dir.into();
        config
            .validate()
            .map_err(|e| SnapshotError::invalid("config", e.to_string()))?;
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let entry = entry.map_err(io_err(&dir))?;
            if entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                let path = entry.path();
                warn!(path = %path.display(), "removing a snapshot left half written");
                fs::remove_dir_all(&path).map_err(io_err(&path))?;
            }
        }
        Ok(Self {
            dir,
            config,
            writer: Mutex::new(None),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> &StateSyncConfig {
        &self.config
    }

    /// Whether a snapshot is due after committing `height`.
    pub fn is_due(&self, height: u64) -> bool {
        self.config.snapshot_interval > 0 && height.is_multiple_of(self.config.snapshot_interval)
    }

    /// Writes the snapshot of `view` on a background thread and prunes old ones;
    /// a failure is logged, never returned: snapshots must not stop the chain.
    /// Skipped (with a warning) while the previous snapshot is still being written.
    pub fn spawn_write(self: &Arc<Self>, view: ReadView, height: u64) {
        let mut writer = lock(&self.writer);
        if let Some(h) = writer.as_ref()
            && !h.is_finished()
        {
            warn!(
                height,
                "skipping the snapshot: the previous one is still being written"
            );
            metrics::snapshot_written(None);
            return;
        }
        if let Some(h) = writer.take() {
            join(h);
        }
        let this = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("snapshot-writer".into())
            .spawn(move || this.write_logged(&view, height));
        match spawned {
            Ok(h) => *writer = Some(h),
            Err(e) => {
                error!(height, error = %e, "could not start the snapshot writer thread");
                metrics::snapshot_written(None);
            }
        }
    }

    /// Waits for the snapshot being written in the background, if any.
    pub fn wait(&self) {
        let handle = lock(&self.writer).take();
        if let Some(h) = handle {
            join(h);
        }
    }

    fn write_logged(&self, view: &ReadView, height: u64) {
        let started = Instant::now();
        match self.write(view) {
            Ok(s) => {
                info!(
                    height = s.height,
                    chunks = s.chunks,
                    bytes = s.total_bytes,
                    hash = hex::encode(s.hash),
                    seconds = started.elapsed().as_secs_f64(),
                    "snapshot written"
                );
                metrics::snapshot_written(Some(s.height));
            }
            Err(e) => {
                error!(height, error = %e, "snapshot failed");
                metrics::snapshot_written(None);
            }
        }
    }

    /// Writes the snapshot of the state `view` sees, then prunes to the
    /// `snapshot_keep_recent` newest.
    pub fn write(&self, view: &ReadView) -> SnapshotResult<SnapshotInfo> {
        let committed = view
            .committed()?
            .ok_or_else(|| SnapshotError::invalid("state", "nothing is committed"))?;
        let height = committed.height;
        let target = self.dir.join(snapshot_dir_name(height));
        if let Some(existing) = self.read_snapshot(height)? {
            return Ok(existing.1);
        }
        let tmp = self
            .dir
            .join(format!("{TMP_PREFIX}{}", snapshot_dir_name(height)));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
        }
        fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;

        let mut chunks = ChunkWriter::new(&tmp, self.config.chunk_bytes);
        view.for_each_latest(|k, v| chunks.push(k, v))?;
        let (chunk_hashes, total_bytes) = chunks.finish()?;
        let metadata = SnapshotMetadata {
            format: SNAPSHOT_FORMAT,
            height,
            initial_height: committed.initial_height,
            app_hash: committed.app_hash,
            chunk_hashes,
            total_bytes,
        };
        let bytes = metadata.encode();
        if bytes.len() > MAX_METADATA_BYTES {
            return Err(SnapshotError::TooLarge {
                what: "snapshot metadata",
                size: bytes.len() as u64,
                max: MAX_METADATA_BYTES as u64,
            });
        }
        write_synced(&tmp.join(METADATA_FILE), &bytes)?;
        sync_dir(&tmp)?;
        fs::rename(&tmp, &target).map_err(io_err(&target))?;
        sync_dir(&self.dir)?;
        self.prune()?;
        Ok(SnapshotInfo {
            height,
            chunks: metadata.chunks(),
            total_bytes,
            hash: format::sha256(&bytes),
        })
    }

    /// The snapshots on disk, newest first, as ListSnapshots answers. A snapshot
    /// whose metadata does not read back is skipped with a warning.
    pub fn list(&self) -> SnapshotResult<Vec<abci::Snapshot>> {
        let mut heights = self.heights()?;
        heights.reverse();
        let mut out = Vec::with_capacity(heights.len());
        for height in heights {
            match self.read_snapshot(height) {
                Ok(Some((bytes, info))) => out.push(abci::Snapshot {
                    height,
                    format: SNAPSHOT_FORMAT,
                    chunks: info.chunks,
                    hash: info.hash.to_vec().into(),
                    metadata: bytes.into(),
                }),
                // Pruned since the directory was read.
                Ok(None) => {}
                Err(e) => warn!(height, error = %e, "skipping an unreadable snapshot"),
            }
        }
        Ok(out)
    }

    /// The bytes of chunk `index` of the snapshot at `height` in `format`, as
    /// stored; `None` when there is no such chunk.
    pub fn load_chunk(&self, height: u64, format: u32, index: u32) -> Option<Vec<u8>> {
        if format != SNAPSHOT_FORMAT || index >= MAX_CHUNKS {
            return None;
        }
        let path = self
            .dir
            .join(snapshot_dir_name(height))
            .join(chunk_file_name(index));
        let len = fs::metadata(&path).ok()?.len();
        if len > MAX_CHUNK_BYTES as u64 {
            warn!(path = %path.display(), len, "snapshot chunk on disk is oversize");
            return None;
        }
        fs::read(&path).ok()
    }

    /// Heights of the complete snapshots on disk, oldest first.
    fn heights(&self) -> SnapshotResult<Vec<u64>> {
        let mut heights = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io_err(&self.dir))? {
            let entry = entry.map_err(io_err(&self.dir))?;
            if let Some(h) = parse_snapshot_dir_name(&entry.file_name().to_string_lossy()) {
                heights.push(h);
            }
        }
        heights.sort_unstable();
        Ok(heights)
    }

    /// The metadata bytes of the snapshot at `height`, checked, or `None` when
    /// there is none.
    fn read_snapshot(&self, height: u64) -> SnapshotResult<Option<(Vec<u8>, SnapshotInfo)>> {
        let path = self.dir.join(snapshot_dir_name(height)).join(METADATA_FILE);
        let len = match fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path)(e)),
        };
        if len > MAX_METADATA_BYTES as u64 {
            return Err(SnapshotError::TooLarge {
                what: "snapshot metadata file",
                size: len,
                max: MAX_METADATA_BYTES as u64,
            });
        }
        let bytes = fs::read(&path).map_err(io_err(&path))?;
        let metadata = SnapshotMetadata::decode(&bytes)?;
        if metadata.height != height {
            return Err(SnapshotError::invalid(
                "height",
                format!(
                    "{} holds the snapshot of height {}",
                    path.display(),
                    metadata.height
                ),
            ));
        }
        let info = SnapshotInfo {
            height,
            chunks: metadata.chunks(),
            total_bytes: metadata.total_bytes,
            hash: format::sha256(&bytes),
        };
        Ok(Some((bytes, info)))
    }

    /// Deletes all but the `snapshot_keep_recent` newest snapshots, and any
    /// snapshot directory whose metadata does not read back (it would never be
    /// served, and must not count as one of the newest). Each is first renamed to
    /// a temporary name, so a crash midway never leaves it listed.
    fn prune(&self) -> SnapshotResult<()> {
        let mut valid = Vec::new();
        for height in self.heights()? {
            match self.read_snapshot(height) {
                Ok(Some(_)) => valid.push(height),
                Ok(None) => self.remove(height, "it has no metadata")?,
                Err(e) => self.remove(height, &e.to_string())?,
            }
        }
        let keep = self.config.snapshot_keep_recent as usize;
        let old = valid.len().saturating_sub(keep);
        for height in &valid[..old] {
            self.remove(*height, "older snapshots are kept")?;
        }
        Ok(())
    }

    fn remove(&self, height: u64, why: &str) -> SnapshotResult<()> {
        let path = self.dir.join(snapshot_dir_name(height));
        let doomed = self
            .dir
            .join(format!("{TMP_PREFIX}pruned-{}", snapshot_dir_name(height)));
        fs::rename(&path, &doomed).map_err(io_err(&path))?;
        fs::remove_dir_all(&doomed).map_err(io_err(&doomed))?;
        info!(height, reason = why, "removed a snapshot");
        Ok(())
    }
}

/// Cuts the pairs, in key order, into chunk files of at most `chunk_bytes` (or one
/// pair, if that pair alone is larger).
struct ChunkWriter<'a> {
    dir: &'a Path,
    chunk_bytes: usize,
    body: Vec<u8>,
    pairs: u32,
    hashes: Vec<[u8; 32]>,
    total: u64,
}

impl<'a> ChunkWriter<'a> {
    fn new(dir: &'a Path, chunk_bytes: u64) -> Self {
        Self {
            dir,
            chunk_bytes: usize::try_from(chunk_bytes).unwrap_or(MAX_CHUNK_BYTES),
            body: Vec::new(),
            pairs: 0,
            hashes: Vec::new(),
            total: 0,
        }
    }

    fn push(&mut self, key: &[u8], value: &[u8]) -> SnapshotResult<()> {
        // Lengths of bounded keys and values in a bounded chunk: never saturates.
        let with_pair = self
            .body
            .len()
            .saturating_add(format::pair_len(key, value))
            .saturating_add(4);
        if self.pairs > 0 && with_pair > self.chunk_bytes {
            self.flush()?;
        }
        format::push_pair(&mut self.body, key, value)?;
        self.pairs = self.pairs.checked_add(1).ok_or(SnapshotError::TooLarge {
            what: "chunk pair count",
            size: 1 << 32,
            max: u64::from(u32::MAX),
        })?;
        Ok(())
    }

    fn flush(&mut self) -> SnapshotResult<()> {
        let chunk = format::finish_chunk(self.pairs, &self.body);
        let index = u32::try_from(self.hashes.len()).unwrap_or(u32::MAX);
        if index >= MAX_CHUNKS {
            return Err(SnapshotError::TooLarge {
                what: "snapshot chunk count",
                size: u64::from(index) + 1,
                max: u64::from(MAX_CHUNKS),
            });
        }
        // A saturated total is above MAX_SNAPSHOT_BYTES, refused below.
        self.total = self.total.saturating_add(chunk.len() as u64);
        if self.total > MAX_SNAPSHOT_BYTES {
            return Err(SnapshotError::TooLarge {
                what: "snapshot",
                size: self.total,
                max: MAX_SNAPSHOT_BYTES,
            });
        }
        write_synced(&self.dir.join(chunk_file_name(index)), &chunk)?;
        self.hashes.push(format::sha256(&chunk));
        self.body.clear();
        self.pairs = 0;
        Ok(())
    }

    fn finish(mut self) -> SnapshotResult<(Vec<[u8; 32]>, u64)> {
        if self.pairs > 0 {
            self.flush()?;
        }
        if self.hashes.is_empty() {
            return Err(SnapshotError::invalid("state", "holds no pairs"));
        }
        Ok((self.hashes, self.total))
    }
}

fn snapshot_dir_name(height: u64) -> String {
    format!("{height:020}")
}

fn parse_snapshot_dir_name(name: &str) -> Option<u64> {
    if name.len() == 20 && name.bytes().all(|b| b.is_ascii_digit()) {
        name.parse().ok()
    } else {
        None
    }
}

fn chunk_file_name(index: u32) -> String {
    format!("chunk-{index:06}")
}

fn write_synced(path: &Path, bytes: &[u8]) -> SnapshotResult<()> {
    let mut f = fs::File::create(path).map_err(io_err(path))?;
    f.write_all(bytes).map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))
}

/// Makes a directory's entries (a new file, a rename) durable.
fn sync_dir(path: &Path) -> SnapshotResult<()> {
    fs::File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(io_err(path))
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn join(h: JoinHandle<()>) {
    if h.join().is_err() {
        error!("the snapshot writer thread panicked");
        metrics::snapshot_written(None);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A handle stays valid whatever a panicking holder was doing.
    m.lock().unwrap_or_else(|e| e.into_inner())
}
