//! Snapshot format 1: the metadata and chunk encodings, and their bounded decoders.
//!
//! Both use borsh's layout (little-endian integers, a `u32` count before a
//! sequence, fixed arrays inline), written out by hand on the decoding side so
//! that every length is checked against what is left and against a limit before
//! anything is allocated: metadata and chunks come from peers.

use sha2::{Digest, Sha256};

/// The only snapshot format this node writes and restores.
pub const SNAPSHOT_FORMAT: u32 = 1;
/// Largest chunk written or accepted (CometBFT's chunk message is at most 16e6
/// bytes, envelope included).
pub const MAX_CHUNK_BYTES: usize = vichain_config::MAX_SNAPSHOT_CHUNK_BYTES as usize;
/// Most chunks in one snapshot: their hashes must fit in the metadata.
pub const MAX_CHUNKS: u32 = 100_000;
/// Largest metadata: the fixed fields and [`MAX_CHUNKS`] hashes, which stays below
/// the 4e6 bytes of CometBFT's snapshot message.
pub const MAX_METADATA_BYTES: usize = METADATA_FIXED_BYTES + 32 * MAX_CHUNKS as usize;
/// Largest state key. Keys are paths built by `state_key` from ids the ledger
/// bounds (model ids of 64 bytes, hex addresses and hashes), a few hundred bytes at
/// most.
pub const MAX_KEY_BYTES: usize = 4096;
/// Largest state value: one pair must fit in one chunk.
pub const MAX_VALUE_BYTES: usize = MAX_CHUNK_BYTES - MAX_KEY_BYTES - CHUNK_HEADER_BYTES - 8;
/// Most bytes of chunks in one snapshot. A restore holds the state in memory (jmt
/// builds the tree of a version in memory anyway), so this bounds what a peer can
/// make this node buffer before the root is checked.
pub const MAX_SNAPSHOT_BYTES: u64 = 4 * 1024 * 1024 * 1024;

/// format, height, initial_height, app_hash, chunk count, total_bytes.
const METADATA_FIXED_BYTES: usize = 4 + 8 + 8 + 32 + 4 + 8;
/// The pair count before a chunk's pairs.
const CHUNK_HEADER_BYTES: usize = 4;

/// Key/value pairs of the state, in key order.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// What a snapshot is, as `Snapshot.metadata` carries it; `Snapshot.hash` is the
/// sha256 of its encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotMetadata {
    pub format: u32,
    /// Height of the block whose committed state the snapshot holds.
    pub height: u64,
    /// The chain's first height, which numbers the tree's versions.
    pub initial_height: u64,
    /// The state root after `height`, as the header of `height + 1` carries it.
    pub app_hash: [u8; 32],
    /// sha256 of each chunk, in chunk order.
    pub chunk_hashes: Vec<[u8; 32]>,
    /// Sum of the chunks' lengths.
    pub total_bytes: u64,
}

/// Why snapshot bytes or files were refused, or a snapshot could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("unknown snapshot format {0} (this node reads format {SNAPSHOT_FORMAT})")]
    UnknownFormat(u32),
    #[error("{what} of {size} bytes exceeds the limit of {max}")]
    TooLarge {
        what: &'static str,
        size: u64,
        max: u64,
    },
    #[error("{what} is truncated: {needed} bytes needed at offset {offset}, {left} left")]
    Truncated {
        what: &'static str,
        offset: usize,
        needed: u64,
        left: usize,
    },
    #[error("{what} has {count} trailing bytes")]
    Trailing { what: &'static str, count: usize },
    #[error("invalid snapshot {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("snapshot file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] crate::Error),
}

pub type SnapshotResult<T> = std::result::Result<T, SnapshotError>;

impl SnapshotError {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

impl SnapshotMetadata {
    pub fn chunks(&self) -> u32 {
        // Bounded by MAX_CHUNKS when decoded and when written.
        u32::try_from(self.chunk_hashes.len()).unwrap_or(u32::MAX)
    }

    pub fn encode(&self) -> Vec<u8> {
        // A capacity hint only (the hashes are bounded by MAX_CHUNKS).
        let hashes = self.chunk_hashes.len().saturating_mul(32);
        let mut out = Vec::with_capacity(METADATA_FIXED_BYTES.saturating_add(hashes));
        out.extend_from_slice(&self.format.to_le_bytes());
        out.extend_from_slice(&self.height.to_le_bytes());
        out.extend_from_slice(&self.initial_height.to_le_bytes());
        out.extend_from_slice(&self.app_hash);
        out.extend_from_slice(&self.chunks().to_le_bytes());
        for h in &self.chunk_hashes {
            out.extend_from_slice(h);
        }
        out.extend_from_slice(&self.total_bytes.to_le_bytes());
        out
    }

    /// Decodes and checks metadata: format 1, a height at or after the first, 1 to
    /// [`MAX_CHUNKS`] chunks whose declared total each could hold.
    pub fn decode(bytes: &[u8]) -> SnapshotResult<Self> {
        const WHAT: &str = "snapshot metadata";
        if bytes.len() > MAX_METADATA_BYTES {
            return Err(SnapshotError::TooLarge {
                what: WHAT,
                size: bytes.len() as u64,
                max: MAX_METADATA_BYTES as u64,
            });
        }
        let mut r = Cursor::new(bytes, WHAT);
        let format = r.u32()?;
        if format != SNAPSHOT_FORMAT {
            return Err(SnapshotError::UnknownFormat(format));
        }
        let height = r.u64()?;
        let initial_height = r.u64()?;
        let app_hash = r.array32()?;
        let count = r.u32()?;
        if count == 0 || count > MAX_CHUNKS {
            return Err(SnapshotError::invalid(
                "chunk count",
                format!("{count} is outside 1..={MAX_CHUNKS}"),
            ));
        }
        r.need(32 * u64::from(count))?;
        let chunk_hashes = (0..count)
            .map(|_| r.array32())
            .collect::<SnapshotResult<Vec<_>>>()?;
        let total_bytes = r.u64()?;
        r.finish()?;
        if initial_height == 0 || initial_height > height {
            return Err(SnapshotError::invalid(
                "height",
                format!("height {height} is not at or after the initial height {initial_height}"),
            ));
        }
        // A u32 count times a constant below 2^32 fits a u64: these never saturate.
        const MIN_CHUNK_BYTES: u64 = CHUNK_HEADER_BYTES as u64 + 8;
        let min = u64::from(count).saturating_mul(MIN_CHUNK_BYTES);
        let max = u64::from(count)
            .saturating_mul(MAX_CHUNK_BYTES as u64)
            .min(MAX_SNAPSHOT_BYTES);
        if !(min..=max).contains(&total_bytes) {
            return Err(SnapshotError::invalid(
                "total bytes",
                format!("{total_bytes} is outside {min}..={max} for {count} chunks"),
            ));
        }
        Ok(Self {
            format,
            height,
            initial_height,
            app_hash,
            chunk_hashes,
            total_bytes,
        })
    }
}

/// Appends one pair to a chunk body (the count goes in front at [`finish_chunk`]).
pub fn push_pair(body: &mut Vec<u8>, key: &[u8], value: &[u8]) -> SnapshotResult<()> {
    if key.len() > MAX_KEY_BYTES {
        return Err(SnapshotError::TooLarge {
            what: "state key",
            size: key.len() as u64,
            max: MAX_KEY_BYTES as u64,
        });
    }
    if value.len() > MAX_VALUE_BYTES {
        return Err(SnapshotError::TooLarge {
            what: "state value",
            size: value.len() as u64,
            max: MAX_VALUE_BYTES as u64,
        });
    }
    // Both lengths are bounded above, far below u32::MAX.
    body.extend_from_slice(&(key.len() as u32).to_le_bytes());
    body.extend_from_slice(key);
    body.extend_from_slice(&(value.len() as u32).to_le_bytes());
    body.extend_from_slice(value);
    Ok(())
}

/// Bytes one pair takes in a chunk (saturating: a pair that large is refused anyway,
/// by [`push_pair`]'s bounds).
pub fn pair_len(key: &[u8], value: &[u8]) -> usize {
    key.len().saturating_add(value.len()).saturating_add(8)
}

/// A chunk: the pair count, then the pairs appended by [`push_pair`].
pub fn finish_chunk(pairs: u32, body: &[u8]) -> Vec<u8> {
    // A capacity hint only.
    let mut out = Vec::with_capacity(CHUNK_HEADER_BYTES.saturating_add(body.len()));
    out.extend_from_slice(&pairs.to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// Encodes pairs as one chunk, whatever its size (tests, and peers' view of it).
pub fn encode_chunk(pairs: &[(Vec<u8>, Vec<u8>)]) -> SnapshotResult<Vec<u8>> {
    let mut body = Vec::new();
    for (k, v) in pairs {
        push_pair(&mut body, k, v)?;
    }
    let count = u32::try_from(pairs.len()).map_err(|_| SnapshotError::TooLarge {
        what: "chunk pair count",
        size: pairs.len() as u64,
        max: u64::from(u32::MAX),
    })?;
    Ok(finish_chunk(count, &body))
}

/// Decodes a chunk: at least one pair, keys strictly increasing, every length
/// within its limit and within the bytes left.
pub fn decode_chunk(bytes: &[u8]) -> SnapshotResult<Pairs> {
    const WHAT: &str = "snapshot chunk";
    if bytes.len() > MAX_CHUNK_BYTES {
        return Err(SnapshotError::TooLarge {
            what: WHAT,
            size: bytes.len() as u64,
            max: MAX_CHUNK_BYTES as u64,
        });
    }
    let mut r = Cursor::new(bytes, WHAT);
    let count = r.u32()?;
    if count == 0 {
        return Err(SnapshotError::invalid("chunk", "holds no pairs"));
    }
    // Each pair takes at least its two lengths.
    r.need(8 * u64::from(count))?;
    let mut pairs: Pairs = Vec::with_capacity(count as usize);
    for i in 0..count {
        let key = r.bytes(MAX_KEY_BYTES, "state key")?;
        let value = r.bytes(MAX_VALUE_BYTES, "state value")?;
        if let Some((prev, _)) = pairs.last()
            && prev.as_slice() >= key
        {
            return Err(SnapshotError::invalid(
                "chunk",
                format!("key {i} is not above the key before it"),
            ));
        }
        pairs.push((key.to_vec(), value.to_vec()));
    }
    r.finish()?;
    Ok(pairs)
}

/// Reads fixed-size fields off untrusted bytes, naming what is short.
struct Cursor<'a> {
    bytes: &'a [u8],
    offset: usize,
    what: &'static str,
}

impl<'a> Cursor<'a> {
    fn new(bytes: &'a [u8], what: &'static str) -> Self {
        Self {
            bytes,
            offset: 0,
            what,
        }
    }

    fn left(&self) -> usize {
        // `take` keeps the offset within the bytes.
        self.bytes.len().saturating_sub(self.offset)
    }

    fn need(&self, n: u64) -> SnapshotResult<()> {
        if n > self.left() as u64 {
            return Err(SnapshotError::Truncated {
                what: self.what,
                offset: self.offset,
                needed: n,
                left: self.left(),
            });
        }
        Ok(())
    }

    fn take(&mut self, n: usize) -> SnapshotResult<&'a [u8]> {
        self.need(n as u64)?;
        // `need` leaves n <= left(): the end stays within the bytes.
        let end = self.offset.saturating_add(n);
        let out = &self.bytes[self.offset..end];
        self.offset = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> SnapshotResult<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u32(&mut self) -> SnapshotResult<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> SnapshotResult<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn array32(&mut self) -> SnapshotResult<[u8; 32]> {
        self.array()
    }

    /// A `u32`-length-prefixed byte string of at most `max` bytes.
    fn bytes(&mut self, max: usize, what: &'static str) -> SnapshotResult<&'a [u8]> {
        let len = self.u32()?;
        if len as usize > max {
            return Err(SnapshotError::TooLarge {
                what,
                size: u64::from(len),
                max: max as u64,
            });
        }
        self.take(len as usize)
    }

    fn finish(&self) -> SnapshotResult<()> {
        match self.left() {
            0 => Ok(()),
            count => Err(SnapshotError::Trailing {
                what: self.what,
                count,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::arithmetic_side_effects)]
    use proptest::prelude::*;

    use super::*;

    fn metadata(chunks: usize) -> SnapshotMetadata {
        SnapshotMetadata {
            format: SNAPSHOT_FORMAT,
            height: 10,
            initial_height: 1,
            app_hash: [7; 32],
            chunk_hashes: (0..chunks).map(|i| [i as u8; 32]).collect(),
            total_bytes: 100 * chunks as u64,
        }
    }

    #[test]
    fn metadata_round_trips_in_borsh_layout() {
        let m = metadata(3);
        let bytes = m.encode();
        let borsh = borsh::to_vec(&(
            m.format,
            m.height,
            m.initial_height,
            m.app_hash,
            m.chunk_hashes.clone(),
            m.total_bytes,
        ))
        .unwrap();
        assert_eq!(bytes, borsh);
        assert_eq!(SnapshotMetadata::decode(&bytes).unwrap(), m);
    }

    #[test]
    fn chunks_round_trip_in_borsh_layout() {
        let pairs = vec![
            (b"a".to_vec(), b"1".to_vec()),
            (b"b".to_vec(), Vec::new()),
            (b"c/d".to_vec(), vec![0; 300]),
        ];
        let bytes = encode_chunk(&pairs).unwrap();
        assert_eq!(bytes, borsh::to_vec(&pairs).unwrap());
        assert_eq!(decode_chunk(&bytes).unwrap(), pairs);
    }

    #[test]
    fn bad_metadata_is_named() {
        let err = |bytes: &[u8]| SnapshotMetadata::decode(bytes).unwrap_err().to_string();
        let mut m = metadata(2);
        m.format = 2;
        assert!(err(&m.encode()).contains("unknown snapshot format 2"));
        let mut m = metadata(2);
        m.initial_height = 11;
        assert!(err(&m.encode()).contains("initial height 11"));
        assert!(err(&metadata(0).encode()).contains("chunk count"));
        let mut m = metadata(2);
        m.total_bytes = 3;
        assert!(err(&m.encode()).contains("total bytes"));
        let mut m = metadata(1);
        m.total_bytes = MAX_SNAPSHOT_BYTES + 1;
        assert!(err(&m.encode()).contains("total bytes"));
        let bytes = metadata(2).encode();
        assert!(err(&bytes[..bytes.len() - 1]).contains("truncated"));
        assert!(err(&[bytes.as_slice(), &[0]].concat()).contains("trailing"));
        assert!(err(&vec![0; MAX_METADATA_BYTES + 1]).contains("exceeds"));
        // A count that claims more hashes than the bytes hold fails before allocating.
        let mut lying = metadata(1).encode();
        lying[52..56].copy_from_slice(&MAX_CHUNKS.to_le_bytes());
        assert!(err(&lying).contains("truncated"));
    }

    #[test]
    fn bad_chunks_are_named() {
        let err = |bytes: &[u8]| decode_chunk(bytes).unwrap_err().to_string();
        assert!(err(&0u32.to_le_bytes()).contains("no pairs"));
        assert!(err(&u32::MAX.to_le_bytes()).contains("truncated"));
        let unordered = encode_chunk(&[(b"b".to_vec(), vec![]), (b"a".to_vec(), vec![])]).unwrap();
        assert!(err(&unordered).contains("key 1"));
        let twice = encode_chunk(&[(b"a".to_vec(), vec![]), (b"a".to_vec(), vec![])]).unwrap();
        assert!(err(&twice).contains("key 1"));
        let mut long_key = 1u32.to_le_bytes().to_vec();
        long_key.extend_from_slice(&(MAX_KEY_BYTES as u32 + 1).to_le_bytes());
        long_key.extend_from_slice(&[0; 16]);
        assert!(err(&long_key).contains("state key"));
        assert!(err(&vec![1; MAX_CHUNK_BYTES + 1]).contains("exceeds"));
        let good = encode_chunk(&[(b"a".to_vec(), b"x".to_vec())]).unwrap();
        assert!(err(&[good.as_slice(), &[9]].concat()).contains("trailing"));
        assert!(err(&good[..good.len() - 1]).contains("truncated"));
        assert!(
            encode_chunk(&[(vec![0; MAX_KEY_BYTES + 1], vec![])])
                .unwrap_err()
                .to_string()
                .contains("state key")
        );
    }

    proptest! {
        #[test]
        fn decoders_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = SnapshotMetadata::decode(&bytes);
            let _ = decode_chunk(&bytes);
        }

        #[test]
        fn decoders_never_panic_on_mutated_encodings(
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
            cut in any::<usize>(),
        ) {
            let mut m = metadata(3).encode();
            let mut c = encode_chunk(&[
                (b"accounts/1".to_vec(), vec![1; 40]),
                (b"accounts/2".to_vec(), vec![2; 7]),
            ]).unwrap();
            for (i, b) in &flips {
                let mi = i % m.len();
                m[mi] ^= b;
                let ci = i % c.len();
                c[ci] ^= b;
            }
            let _ = SnapshotMetadata::decode(&m[..cut % (m.len() + 1)]);
            let _ = SnapshotMetadata::decode(&m);
            let _ = decode_chunk(&c[..cut % (c.len() + 1)]);
            let _ = decode_chunk(&c);
        }
    }
}
