//! Cutting a model file into shard files plus a manifest.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::Path;

use candle_core::{
    Device, Tensor,
    quantized::{QTensor, gguf_file},
};
use vichain_zk::QuantizedMlp;

use crate::{
    Error, FileEntry, LayerRange, ModelFamily, ModelManifest, Result, SENTENCE_BERT_CONFIG,
    ShardEntry, ShardLayout,
    bert::BertConfig,
    bert_max_seq_length,
    llama::{GgufFile, LlamaConfig},
    manifest::{MANIFEST_FILE, MANIFEST_VERSION, write_file},
};

/// GGUF metadata keys recording a shard's layers.
pub const GGUF_SHARD_START_KEY: &str = "vichain.shard.layer_start";
/// See [`GGUF_SHARD_START_KEY`].
pub const GGUF_SHARD_END_KEY: &str = "vichain.shard.layer_end";

/// Which parts go into which shard file: `(file name, layers, embeddings, head)`.
fn plan(
    ranges: &[LayerRange],
    total: usize,
    layout: ShardLayout,
    ext: &str,
) -> Result<Vec<(String, LayerRange, bool, bool)>> {
    let mut next = 0;
    for r in ranges {
        r.check(total)?;
        if r.start != next {
            return Err(Error::LayerRange {
                start: r.start,
                end: r.end,
                layers: total,
            });
        }
        next = r.end;
    }
    if ranges.is_empty() || next != total {
        return Err(Error::LayerRange {
            start: 0,
            end: next,
            layers: total,
        });
    }
    let name =
        |i: usize, r: &LayerRange| format!("shard-{i:02}-layers-{}-{}.{ext}", r.start, r.end);
    let last = ranges.len() - 1;
    Ok(match layout {
        ShardLayout::Pipeline => ranges
            .iter()
            .enumerate()
            .map(|(i, r)| (name(i, r), *r, i == 0, i == last))
            .collect(),
        ShardLayout::ClientKeepsEnds => std::iter::once((
            format!("client-ends.{ext}"),
            LayerRange::new(0, 0),
            true,
            true,
        ))
        .chain(
            ranges
                .iter()
                .enumerate()
                .map(|(i, r)| (name(i, r), *r, false, false)),
        )
        .collect(),
    })
}

fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))
}

fn finish(manifest: ModelManifest, out_dir: &Path) -> Result<ModelManifest> {
    manifest.save(&out_dir.join(MANIFEST_FILE))?;
    Ok(manifest)
}

/// Splits a Hugging Face BERT directory (`config.json`, `tokenizer.json`,
/// `model.safetensors`) into one safetensors file per shard in `out_dir`, plus
/// `manifest.json`; `config.json`, `tokenizer.json` and, when present,
/// `sentence_bert_config.json` (the truncation length) are copied and listed as files.
///
/// Tensors keep their names (without a leading `bert.`); the embeddings go to the first
/// shard, or to the client's shard with [`ShardLayout::ClientKeepsEnds`]. Mean pooling has
/// no weights, so the head is a flag. The output is deterministic: splitting the same model
/// the same way gives the same bytes and hashes.
pub fn split_bert(
    src_dir: &Path,
    out_dir: &Path,
    model_id: &str,
    ranges: &[LayerRange],
    layout: ShardLayout,
) -> Result<ModelManifest> {
    let read = |name: &str| {
        let p = src_dir.join(name);
        std::fs::read(&p).map_err(|e| Error::io(p, e))
    };
    let config = read("config.json")?;
    let cfg = BertConfig::from_json(&config, &src_dir.join("config.json").display().to_string())?;
    let tokenizer = read("tokenizer.json")?;
    let weights_path = src_dir.join("model.safetensors");
    let weights = read("model.safetensors")?;
    let tensors = candle_core::safetensors::load_buffer(&weights, &Device::Cpu)
        .map_err(|e| Error::weights(weights_path.display().to_string(), e))?;
    let tensors: BTreeMap<String, Tensor> = tensors
        .into_iter()
        .map(|(k, v)| (k.strip_prefix("bert.").map(str::to_string).unwrap_or(k), v))
        .collect();
    let plan = plan(ranges, cfg.num_hidden_layers, layout, "safetensors")?;
    create_dir(out_dir)?;
    let mut shards = Vec::with_capacity(plan.len());
    for (file, range, embeddings, head) in plan {
        let selected: BTreeMap<&String, &Tensor> = tensors
            .iter()
            .filter(|(name, _)| {
                (embeddings
                    && name.starts_with("embeddings.")
                    && *name != "embeddings.position_ids")
                    || (range.start..range.end)
                        .any(|i| name.starts_with(&format!("encoder.layer.{i}.")))
            })
            .collect();
        let bytes = safetensors_bytes(&selected, &file)?;
        let entry = write_file(out_dir, &file, &bytes)?;
        shards.push(shard_entry(entry, range, embeddings, head));
    }
    let mut files = vec![
        write_file(out_dir, "config.json", &config)?,
        write_file(out_dir, "tokenizer.json", &tokenizer)?,
    ];
    // The truncation length travels with the model, so that a client holding only the
    // ends tokenizes exactly as the whole model's embedder does.
    let st_path = src_dir.join(SENTENCE_BERT_CONFIG);
    if st_path.exists() {
        let bytes = std::fs::read(&st_path).map_err(|e| Error::io(&st_path, e))?;
        bert_max_seq_length(&cfg, Some(&bytes), &src_dir.display().to_string())?;
        files.push(write_file(out_dir, SENTENCE_BERT_CONFIG, &bytes)?);
    }
    finish(
        ModelManifest {
            version: MANIFEST_VERSION,
            model_id: model_id.into(),
            family: ModelFamily::Bert,
            total_layers: cfg.num_hidden_layers,
            shards,
            files,
        },
        out_dir,
    )
}

fn safetensors_bytes(tensors: &BTreeMap<&String, &Tensor>, file: &str) -> Result<Vec<u8>> {
    // safetensors orders tensors by dtype then name, so the bytes are deterministic.
    safetensors::tensor::serialize(tensors.iter().map(|(k, v)| (k.as_str(), *v)), None)
        .map_err(|e| Error::weights(file, e))
}

/// Splits a Llama GGUF file into one GGUF file per shard in `out_dir`, plus `manifest.json`.
///
/// Every shard keeps all the metadata (sorted by key, so the bytes are deterministic; the
/// tokenizer travels with it) and records its layers under [`GGUF_SHARD_START_KEY`] and
/// [`GGUF_SHARD_END_KEY`]. Blocks keep their global names (`blk.{i}.*`). The embedding
/// shard holds `token_embd.weight`; the head shard holds `output_norm.weight` and the output
/// matrix (the tied embedding is stored as `output.weight` when the head is in another
/// shard than the embedding). Quantized blocks are copied byte for byte.
pub fn split_gguf(
    src: &Path,
    out_dir: &Path,
    model_id: &str,
    ranges: &[LayerRange],
    layout: ShardLayout,
) -> Result<ModelManifest> {
    let gg = GgufFile::open(src)?;
    let cfg = LlamaConfig::from_gguf(&gg.content, gg.name())?;
    let plan = plan(ranges, cfg.block_count, layout, "gguf")?;
    let metadata: BTreeMap<&String, &gguf_file::Value> = gg
        .content
        .metadata
        .iter()
        .filter(|(k, _)| k.as_str() != "general.alignment" && !k.starts_with("vichain."))
        .collect();
    let names: Vec<&String> = {
        let mut n: Vec<&String> = gg.content.tensor_infos.keys().collect();
        n.sort();
        n
    };
    create_dir(out_dir)?;
    let mut shards = Vec::with_capacity(plan.len());
    for (file, range, embeddings, head) in plan {
        let mut tensors: Vec<(String, QTensor)> = Vec::new();
        for name in &names {
            let in_range = (range.start..range.end).any(|i| name.starts_with(&format!("blk.{i}.")));
            let wanted = in_range
                || (embeddings && name.as_str() == "token_embd.weight")
                || (head && matches!(name.as_str(), "output_norm.weight" | "output.weight"));
            if wanted {
                tensors.push(((*name).clone(), gg.raw_tensor(name)?));
            }
        }
        if head && !embeddings && !gg.has("output.weight") {
            tensors.push(("output.weight".into(), gg.raw_tensor("token_embd.weight")?));
            tensors.sort_by(|a, b| a.0.cmp(&b.0));
        }
        let start = gguf_file::Value::U32(range.start as u32);
        let end = gguf_file::Value::U32(range.end as u32);
        let mut md: Vec<(&str, &gguf_file::Value)> =
            metadata.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        md.push((GGUF_SHARD_START_KEY, &start));
        md.push((GGUF_SHARD_END_KEY, &end));
        md.sort_by(|a, b| a.0.cmp(b.0));
        let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let mut buf = Cursor::new(Vec::new());
        gguf_file::write(&mut buf, &md, &refs).map_err(|e| Error::weights(&file, e))?;
        let entry = write_file(out_dir, &file, buf.get_ref())?;
        shards.push(shard_entry(entry, range, embeddings, head));
    }
    finish(
        ModelManifest {
            version: MANIFEST_VERSION,
            model_id: model_id.into(),
            family: ModelFamily::Llama,
            total_layers: cfg.block_count,
            shards,
            files: vec![],
        },
        out_dir,
    )
}

/// Splits an integer MLP into one `VQMLP` file per layer range in `out_dir`, plus
/// `manifest.json`. Only [`ShardLayout::Pipeline`]: the MLP has no embedding or head weights
/// (the first shard takes the int8 input, the last emits the logits).
pub fn split_mlp(
    model: &QuantizedMlp,
    out_dir: &Path,
    model_id: &str,
    ranges: &[LayerRange],
) -> Result<ModelManifest> {
    let total = model.layers.len();
    let plan = plan(ranges, total, ShardLayout::Pipeline, "vqmlp")?;
    create_dir(out_dir)?;
    let mut shards = Vec::with_capacity(plan.len());
    for (file, range, embeddings, head) in plan {
        let part = QuantizedMlp::new(model.layers[range.start..range.end].to_vec())?;
        let entry = write_file(out_dir, &file, &part.to_bytes())?;
        shards.push(shard_entry(entry, range, embeddings, head));
    }
    finish(
        ModelManifest {
            version: MANIFEST_VERSION,
            model_id: model_id.into(),
            family: ModelFamily::QuantizedMlp,
            total_layers: total,
            shards,
            files: vec![],
        },
        out_dir,
    )
}

/// The manifest entry of a shard file just written.
fn shard_entry(entry: FileEntry, layers: LayerRange, embeddings: bool, head: bool) -> ShardEntry {
    ShardEntry {
        file: entry.file,
        sha256: entry.sha256,
        size: entry.size,
        layers,
        embeddings,
        head,
    }
}
