//! Sentence embeddings with all-MiniLM-L6-v2 (or another BERT model in the same layout).

use std::path::Path;

use candle_core::{Device, Tensor};
use serde::Deserialize;
use tokenizers::{Tokenizer, TruncationParams};

use crate::{
    CandleContext, Error, LayerRange, Result,
    bert::{BertConfig, BertStage, safetensors_var_builder},
};

/// Longest text accepted, in bytes, before tokenization.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;
/// Most texts in one batch.
pub const MAX_BATCH: usize = 256;
/// sentence-transformers' file holding `max_seq_length`, the truncation length of inputs.
pub const SENTENCE_BERT_CONFIG: &str = "sentence_bert_config.json";

/// A sentence-transformers model loaded from a Hugging Face directory: the tokenizer, a BERT
/// encoder, mean pooling and L2 normalization, as `SentenceTransformer.encode` computes it.
///
/// Inputs are tokenized one at a time without padding (all-MiniLM-L6-v2's `tokenizer.json`
/// pads everything to 128 tokens, which is 4x slower) and truncated to `max_seq_length`
/// tokens like sentence-transformers does.
#[derive(Clone, Debug)]
pub struct SentenceEmbedder {
    tokenizer: Tokenizer,
    model: BertStage,
    max_seq_length: usize,
}

/// `sentence_bert_config.json`.
#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: usize,
}

/// `1_Pooling/config.json` (the fields that decide the pooling mode).
#[derive(Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
}

impl SentenceEmbedder {
    /// Loads `config.json`, `tokenizer.json`, `model.safetensors` and, when present,
    /// `sentence_bert_config.json` and `1_Pooling/config.json` from `dir`.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path).map_err(|e| Error::io(path, e))
        };
        let pooling_path = dir.join("1_Pooling").join("config.json");
        if pooling_path.exists() {
            let bytes = std::fs::read(&pooling_path).map_err(|e| Error::io(&pooling_path, e))?;
            let p: PoolingConfig =
                serde_json::from_slice(&bytes).map_err(|source| Error::Json {
                    path: pooling_path.clone(),
                    source,
                })?;
            if !p.pooling_mode_mean_tokens
                || p.pooling_mode_cls_token
                || p.pooling_mode_max_tokens
                || p.pooling_mode_mean_sqrt_len_tokens
            {
                return Err(Error::field(
                    pooling_path.display().to_string(),
                    "pooling_mode_mean_tokens",
                    "only mean pooling is supported",
                ));
            }
        }
        let st_path = dir.join(SENTENCE_BERT_CONFIG);
        let sentence_bert_config = if st_path.exists() {
            Some(std::fs::read(&st_path).map_err(|e| Error::io(&st_path, e))?)
        } else {
            None
        };
        let config = read("config.json")?;
        let tokenizer = read("tokenizer.json")?;
        let weights = read("model.safetensors")?;
        let source = dir.display().to_string();
        let cfg = BertConfig::from_json(&config, &format!("{source}/config.json"))?;
        let max_seq_length = bert_max_seq_length(&cfg, sentence_bert_config.as_deref(), &source)?;
        Self::from_bytes(&config, &tokenizer, &weights, Some(max_seq_length), &source)
    }

    /// Builds the embedder from the bytes of `config.json`, `tokenizer.json` and
    /// `model.safetensors`; `max_seq_length` defaults to the config's position count.
    /// `source` names the files in errors.
    pub fn from_bytes(
        config_json: &[u8],
        tokenizer_json: &[u8],
        safetensors: &[u8],
        max_seq_length: Option<usize>,
        source: &str,
    ) -> Result<Self> {
        let cfg = BertConfig::from_json(config_json, &format!("{source}/config.json"))?;
        let max_seq_length = checked_max_seq_length(&cfg, max_seq_length, source)?;
        let tokenizer = bert_tokenizer(tokenizer_json, max_seq_length, source)?;
        let vb = safetensors_var_builder(safetensors, &format!("{source}/model.safetensors"))?;
        let model = BertStage::load(
            vb,
            &cfg,
            LayerRange::new(0, cfg.num_hidden_layers),
            true,
            true,
        )?;
        Ok(Self {
            tokenizer,
            model,
            max_seq_length,
        })
    }

    /// The model's config.
    pub fn config(&self) -> &BertConfig {
        self.model.config()
    }

    /// Width of the embeddings.
    pub fn dim(&self) -> usize {
        self.model.config().hidden_size
    }

    /// Longest input, in tokens (longer inputs are truncated).
    pub fn max_seq_length(&self) -> usize {
        self.max_seq_length
    }

    /// Token ids of `text`, with `[CLS]` and `[SEP]`, truncated to `max_seq_length`.
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>> {
        if text.len() > MAX_TEXT_BYTES {
            return Err(Error::TooLarge {
                what: "text length in bytes",
                got: text.len(),
                limit: MAX_TEXT_BYTES,
            });
        }
        let enc = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| Error::tokenizer("encoding a text", e))?;
        Ok(enc.get_ids().to_vec())
    }

    /// The normalized embedding of `text`.
    pub fn embed(&self, text: &str) -> Result<Vec<f32>> {
        let ids = self.tokenize(text)?;
        self.embed_tokens(&ids)
    }

    /// The normalized embedding of already tokenized input.
    pub fn embed_tokens(&self, ids: &[u32]) -> Result<Vec<f32>> {
        if ids.is_empty() {
            return Err(Error::Empty("token sequence"));
        }
        if ids.len() > self.max_seq_length {
            return Err(Error::TooLarge {
                what: "token count",
                got: ids.len(),
                limit: self.max_seq_length,
            });
        }
        let input = Tensor::new(ids, &Device::Cpu)
            .and_then(|t| t.unsqueeze(0))
            .ctx("token ids")?;
        let out = self.model.forward_tensor(&input, None)?;
        out.squeeze(0)
            .and_then(|t| t.to_vec1())
            .ctx("reading the embedding")
    }

    /// Embeddings of several texts in one padded batch (with an attention mask). Results
    /// agree with [`SentenceEmbedder::embed`] to float rounding, not bit for bit: the matmul
    /// shapes differ.
    pub fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        if texts.len() > MAX_BATCH {
            return Err(Error::TooLarge {
                what: "batch size",
                got: texts.len(),
                limit: MAX_BATCH,
            });
        }
        let ids = texts
            .iter()
            .map(|t| self.tokenize(t))
            .collect::<Result<Vec<_>>>()?;
        let len = ids.iter().map(Vec::len).max().unwrap_or(0);
        if len == 0 {
            return Err(Error::Empty("token sequence"));
        }
        let pad = self.config().pad_token_id;
        let mut flat = Vec::with_capacity(ids.len() * len);
        let mut mask = Vec::with_capacity(ids.len() * len);
        for row in &ids {
            flat.extend(
                row.iter()
                    .copied()
                    .chain(std::iter::repeat_n(pad, len - row.len())),
            );
            mask.extend((0..len).map(|i| if i < row.len() { 1f32 } else { 0f32 }));
        }
        let input = Tensor::from_vec(flat, (ids.len(), len), &Device::Cpu).ctx("token ids")?;
        let mask = Tensor::from_vec(mask, (ids.len(), len), &Device::Cpu).ctx("mask")?;
        let out = self.model.forward_tensor(&input, Some(&mask))?;
        out.to_vec2().ctx("reading the embeddings")
    }
}

/// How many tokens of an input a BERT model keeps: `max_seq_length` from the model's
/// `sentence_bert_config.json` (its bytes, when the model has that file), as
/// sentence-transformers truncates, else the config's position count.
///
/// The one rule for every tokenizer of a BERT model: [`SentenceEmbedder`] and the client of
/// a split model (which reads the file from the split directory, where [`crate::split_bert`]
/// copies it) truncate at the same length, so both see the same tokens.
pub fn bert_max_seq_length(
    cfg: &BertConfig,
    sentence_bert_config: Option<&[u8]>,
    source: &str,
) -> Result<usize> {
    let max = match sentence_bert_config {
        Some(bytes) => {
            let c: SentenceBertConfig =
                serde_json::from_slice(bytes).map_err(|source_err| Error::Json {
                    path: format!("{source}/{SENTENCE_BERT_CONFIG}").into(),
                    source: source_err,
                })?;
            Some(c.max_seq_length)
        }
        None => None,
    };
    checked_max_seq_length(cfg, max, source)
}

fn checked_max_seq_length(cfg: &BertConfig, max: Option<usize>, source: &str) -> Result<usize> {
    let max_seq_length = max.unwrap_or(cfg.max_position_embeddings);
    if max_seq_length == 0 || max_seq_length > cfg.max_position_embeddings {
        return Err(Error::field(
            format!("{source}/{SENTENCE_BERT_CONFIG}"),
            "max_seq_length",
            format!(
                "{max_seq_length} is outside 1..={}",
                cfg.max_position_embeddings
            ),
        ));
    }
    Ok(max_seq_length)
}

/// Loads a BERT `tokenizer.json` with padding off and truncation at `max_len` tokens, as
/// [`SentenceEmbedder`] does (for a client that holds only the ends of a split model).
pub fn bert_tokenizer(bytes: &[u8], max_len: usize, source: &str) -> Result<Tokenizer> {
    let mut tokenizer = Tokenizer::from_bytes(bytes)
        .map_err(|e| Error::tokenizer(format!("{source}/tokenizer.json"), e))?;
    tokenizer.with_padding(None);
    tokenizer
        .with_truncation(Some(TruncationParams {
            max_length: max_len,
            ..Default::default()
        }))
        .map_err(|e| Error::tokenizer(format!("{source}/tokenizer.json"), e))?;
    Ok(tokenizer)
}
