//! Model manifests: which files make up a model, which layers each shard holds, and their hashes.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// Version of the manifest format this crate writes and reads.
pub const MANIFEST_VERSION: u32 = 1;
/// File name of a manifest inside a shard directory.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Most shards a manifest may list.
pub const MAX_SHARDS: usize = 256;
/// Most layers a model may have.
pub const MAX_LAYERS: usize = 4096;
/// Longest model id.
pub const MAX_MODEL_ID_LEN: usize = 128;

/// Describes a model cut into shards by layer range.
///
/// Worker shards (those with at least one layer) are listed in execution order and cover
/// `0..total_layers` without gaps. The embeddings and the head (final norm, output projection
/// or pooling) are each held by exactly one shard: either the first and last worker shards
/// (a pipeline), or a shard without layers that the client keeps (split learning, so raw
/// inputs and outputs never leave the client).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelManifest {
    /// [`MANIFEST_VERSION`].
    pub version: u32,
    /// The id the model is registered under.
    pub model_id: String,
    /// Which runtime executes it.
    pub family: ModelFamily,
    /// Number of layers (transformer blocks, or MLP layers) in the whole model.
    pub total_layers: usize,
    /// The shards.
    pub shards: Vec<ShardEntry>,
    /// Files every stage reads besides its shard (config.json, tokenizer.json).
    #[serde(default)]
    pub files: Vec<FileEntry>,
}

/// Model families this crate runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelFamily {
    /// BERT sentence embeddings (safetensors shards).
    Bert,
    /// Llama text generation (GGUF shards).
    Llama,
    /// The integer MLP of `vichain_zk` (VQMLP shards).
    QuantizedMlp,
}

/// One shard: a file holding a contiguous range of layers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardEntry {
    /// File name, relative to the manifest's directory.
    pub file: String,
    /// Lowercase hex sha256 of the file.
    pub sha256: String,
    /// Size of the file in bytes.
    pub size: u64,
    /// Layers held.
    pub layers: LayerRange,
    /// Whether the shard holds the input embeddings.
    pub embeddings: bool,
    /// Whether the shard holds the head (final norm and output, or pooling).
    pub head: bool,
}

/// A file listed in a manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// File name, relative to the manifest's directory.
    pub file: String,
    /// Lowercase hex sha256 of the file.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

/// Layers `start..end` of a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LayerRange {
    /// First layer.
    pub start: usize,
    /// One past the last layer.
    pub end: usize,
}

impl LayerRange {
    /// Layers `start..end`.
    pub const fn new(start: usize, end: usize) -> Self {
        Self { start, end }
    }

    /// Number of layers.
    pub fn len(&self) -> usize {
        self.end.saturating_sub(self.start)
    }

    /// Whether the range holds no layer.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks `start < end <= layers`.
    pub fn check(&self, layers: usize) -> Result<()> {
        if self.start >= self.end || self.end > layers {
            return Err(Error::LayerRange {
                start: self.start,
                end: self.end,
                layers,
            });
        }
        Ok(())
    }

    /// Cuts `0..layers` into `parts` contiguous ranges of nearly equal size.
    pub fn even(layers: usize, parts: usize) -> Result<Vec<Self>> {
        if parts == 0 || parts > layers {
            return Err(Error::LayerRange {
                start: 0,
                end: parts,
                layers,
            });
        }
        let mut out = Vec::with_capacity(parts);
        let mut start = 0;
        for i in 0..parts {
            let len = layers / parts + usize::from(i < layers % parts);
            out.push(Self::new(start, start + len));
            start += len;
        }
        Ok(out)
    }
}

impl std::fmt::Display for LayerRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}..{}", self.start, self.end)
    }
}

/// Where the embeddings and head go when a model is split.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShardLayout {
    /// The first shard carries the embeddings, the last the head.
    Pipeline,
    /// An extra shard without layers carries both, for the client to keep.
    ClientKeepsEnds,
}

impl ModelManifest {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let manifest: Self = serde_json::from_slice(&bytes).map_err(|source| Error::Json {
            path: path.into(),
            source,
        })?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// Writes the manifest as pretty JSON.
    pub fn save(&self, path: &Path) -> Result<()> {
        self.validate()?;
        let json = serde_json::to_vec_pretty(self).map_err(|source| Error::Json {
            path: path.into(),
            source,
        })?;
        std::fs::write(path, json).map_err(|e| Error::io(path, e))
    }

    /// Checks the structure described on [`ModelManifest`].
    pub fn validate(&self) -> Result<()> {
        let bad = |reason: String| Error::Manifest {
            model_id: self.model_id.clone(),
            reason,
        };
        if self.version != MANIFEST_VERSION {
            return Err(bad(format!(
                "version {}, expected {MANIFEST_VERSION}",
                self.version
            )));
        }
        if self.model_id.is_empty()
            || self.model_id.len() > MAX_MODEL_ID_LEN
            || self.model_id.chars().any(|c| c.is_control())
        {
            return Err(bad(format!(
                "model id must be 1..={MAX_MODEL_ID_LEN} printable characters"
            )));
        }
        if self.total_layers == 0 || self.total_layers > MAX_LAYERS {
            return Err(bad(format!(
                "total_layers {} is outside 1..={MAX_LAYERS}",
                self.total_layers
            )));
        }
        if self.shards.is_empty() || self.shards.len() > MAX_SHARDS {
            return Err(bad(format!(
                "{} shards, expected 1..={MAX_SHARDS}",
                self.shards.len()
            )));
        }
        let mut next = 0;
        let (mut embeddings, mut heads) = (0, 0);
        for (i, s) in self.shards.iter().enumerate() {
            check_file_name(&s.file).map_err(|r| bad(format!("shard {i}: {r}")))?;
            check_sha256(&s.sha256).map_err(|r| bad(format!("shard {i}: {r}")))?;
            embeddings += usize::from(s.embeddings);
            heads += usize::from(s.head);
            if s.layers.is_empty() {
                if s.layers.start != 0 || s.layers.end != 0 {
                    return Err(bad(format!(
                        "shard {i}: empty layer range must be 0..0, got {}",
                        s.layers
                    )));
                }
                if !s.embeddings && !s.head {
                    return Err(bad(format!(
                        "shard {i} holds no layers, no embeddings and no head"
                    )));
                }
                continue;
            }
            if s.layers.start != next {
                return Err(bad(format!(
                    "shard {i} covers layers {}, expected it to start at {next}",
                    s.layers
                )));
            }
            if s.layers.end > self.total_layers {
                return Err(Error::LayerRange {
                    start: s.layers.start,
                    end: s.layers.end,
                    layers: self.total_layers,
                });
            }
            if s.embeddings && s.layers.start != 0 {
                return Err(bad(format!(
                    "shard {i} holds the embeddings but starts at layer {}",
                    s.layers.start
                )));
            }
            if s.head && s.layers.end != self.total_layers {
                return Err(bad(format!(
                    "shard {i} holds the head but ends at layer {}",
                    s.layers.end
                )));
            }
            next = s.layers.end;
        }
        if next != self.total_layers {
            return Err(bad(format!(
                "shards cover layers 0..{next}, model has {}",
                self.total_layers
            )));
        }
        if embeddings != 1 || heads != 1 {
            return Err(bad(format!(
                "{embeddings} shards hold the embeddings and {heads} the head, expected one each"
            )));
        }
        for (i, f) in self.files.iter().enumerate() {
            check_file_name(&f.file).map_err(|r| bad(format!("file {i}: {r}")))?;
            check_sha256(&f.sha256).map_err(|r| bad(format!("file {i}: {r}")))?;
        }
        Ok(())
    }

    /// The shards that hold layers, in execution order.
    pub fn worker_shards(&self) -> impl Iterator<Item = (usize, &ShardEntry)> {
        self.shards
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.layers.is_empty())
    }

    /// The shard without layers that the client keeps, if the layout has one.
    pub fn client_shard(&self) -> Option<(usize, &ShardEntry)> {
        self.shards
            .iter()
            .enumerate()
            .find(|(_, s)| s.layers.is_empty())
    }

    /// Reads the listed file `name` from `dir`, checking its size and sha256.
    pub fn read_file(&self, dir: &Path, name: &str) -> Result<Vec<u8>> {
        let (sha256, size) = self
            .files
            .iter()
            .map(|f| (&f.file, &f.sha256, f.size))
            .chain(self.shards.iter().map(|s| (&s.file, &s.sha256, s.size)))
            .find(|(file, _, _)| *file == name)
            .map(|(_, sha256, size)| (sha256, size))
            .ok_or_else(|| Error::Manifest {
                model_id: self.model_id.clone(),
                reason: format!("lists no file {name:?}"),
            })?;
        read_verified(&dir.join(name), sha256, size)
    }

    /// Reads shard `index` from `dir`, checking its size and sha256.
    pub fn read_shard(&self, dir: &Path, index: usize) -> Result<Vec<u8>> {
        let s = self.shards.get(index).ok_or_else(|| Error::Manifest {
            model_id: self.model_id.clone(),
            reason: format!("no shard {index} (has {})", self.shards.len()),
        })?;
        read_verified(&dir.join(&s.file), &s.sha256, s.size)
    }

    /// Checks every shard and file in `dir` against the manifest.
    pub fn verify(&self, dir: &Path) -> Result<()> {
        for i in 0..self.shards.len() {
            self.read_shard(dir, i)?;
        }
        for f in &self.files {
            read_verified(&dir.join(&f.file), &f.sha256, f.size)?;
        }
        Ok(())
    }
}

/// Reads `path` and checks that it has `size` bytes hashing to `sha256`.
pub fn read_verified(path: &Path, sha256: &str, size: u64) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let actual = sha256_hex(&bytes);
    if bytes.len() as u64 != size || actual != sha256 {
        return Err(Error::Sha256Mismatch {
            path: path.to_path_buf(),
            expected: format!("{sha256} ({size} bytes)"),
            actual: format!("{actual} ({} bytes)", bytes.len()),
        });
    }
    Ok(bytes)
}

/// Lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Writes `bytes` to `dir/name` and returns its manifest entry.
pub(crate) fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<FileEntry> {
    let path: PathBuf = dir.join(name);
    std::fs::write(&path, bytes).map_err(|e| Error::io(&path, e))?;
    Ok(FileEntry {
        file: name.to_string(),
        sha256: sha256_hex(bytes),
        size: bytes.len() as u64,
    })
}

fn check_file_name(name: &str) -> std::result::Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "file name {name:?} must be a plain name of [A-Za-z0-9._-]"
        ))
    }
}

fn check_sha256(hex: &str) -> std::result::Result<(), String> {
    if hex.len() == 64 && hex.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')) {
        Ok(())
    } else {
        Err(format!("sha256 {hex:?} is not 64 lowercase hex digits"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(file: &str, start: usize, end: usize, embeddings: bool, head: bool) -> ShardEntry {
        ShardEntry {
            file: file.into(),
            sha256: "0".repeat(64),
            size: 0,
            layers: LayerRange::new(start, end),
            embeddings,
            head,
        }
    }

    fn manifest(shards: Vec<ShardEntry>) -> ModelManifest {
        ModelManifest {
            version: MANIFEST_VERSION,
            model_id: "m".into(),
            family: ModelFamily::Bert,
            total_layers: 6,
            shards,
            files: vec![],
        }
    }

    #[test]
    fn accepts_both_layouts() {
        manifest(vec![
            entry("a", 0, 3, true, false),
            entry("b", 3, 6, false, true),
        ])
        .validate()
        .unwrap();
        manifest(vec![
            entry("client", 0, 0, true, true),
            entry("a", 0, 2, false, false),
            entry("b", 2, 6, false, false),
        ])
        .validate()
        .unwrap();
    }

    #[test]
    fn rejects_gaps_overlaps_and_misplaced_ends() {
        for shards in [
            vec![entry("a", 0, 2, true, false), entry("b", 3, 6, false, true)],
            vec![entry("a", 0, 4, true, false), entry("b", 3, 6, false, true)],
            vec![entry("a", 0, 3, true, false), entry("b", 3, 7, false, true)],
            vec![entry("a", 0, 3, false, false), entry("b", 3, 6, true, true)],
            vec![entry("a", 0, 6, true, false)],
            vec![entry("a", 0, 6, true, true), entry("c", 0, 0, false, false)],
            vec![entry("../a", 0, 6, true, true)],
        ] {
            assert!(manifest(shards.clone()).validate().is_err(), "{shards:?}");
        }
        let mut m = manifest(vec![entry("a", 0, 6, true, true)]);
        m.shards[0].sha256 = "XYZ".into();
        assert!(m.validate().is_err());
    }

    #[test]
    fn even_ranges_cover_the_model() {
        assert_eq!(
            LayerRange::even(30, 4).unwrap(),
            vec![
                LayerRange::new(0, 8),
                LayerRange::new(8, 16),
                LayerRange::new(16, 23),
                LayerRange::new(23, 30)
            ]
        );
        assert!(LayerRange::even(3, 4).is_err());
        assert!(LayerRange::even(3, 0).is_err());
    }

    #[test]
    fn json_roundtrip() {
        let m = manifest(vec![entry("a", 0, 6, true, true)]);
        let json = serde_json::to_string(&m).unwrap();
        assert!(json.contains("\"family\":\"bert\""));
        assert_eq!(serde_json::from_str::<ModelManifest>(&json).unwrap(), m);
        assert!(
            serde_json::from_str::<ModelManifest>(&json.replace("\"files\"", "\"extra\"")).is_err()
        );
    }
}
