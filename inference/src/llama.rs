//! Quantized Llama blocks (SmolLM2-135M-Instruct) loaded from GGUF, candle style.
//!
//! A model is the token embedding, a list of [`LlamaBlock`]s and a [`LlamaHead`]; a
//! [`LlamaStage`] is a range of blocks, optionally with the embedding in front and the head
//! behind, and keeps the KV cache of its blocks for each generation session.

use std::io::Cursor;
use std::time::Instant;

use candle_core::{
    Device, Module, Tensor,
    quantized::{QTensor, gguf_file},
};
use candle_nn::Embedding;
use candle_transformers::quantized_nn::RmsNorm;

use crate::{
    Activation, ActivationDType, CandleContext, Error, LayerRange, QLinear, QLinearGroup, Result,
    attention::{causal_gqa, with_f32},
    kv::{KvCacheConfig, KvCacheStore, LayerKv},
};

/// Longest context a stage precomputes rotary tables for, whatever the GGUF declares.
pub const MAX_CONTEXT: usize = 8192;
const MAX_DIM: usize = 1 << 18;

/// Llama hyperparameters, read from the GGUF metadata (`llama.*`).
#[derive(Clone, Debug, PartialEq)]
pub struct LlamaConfig {
    /// `llama.block_count`.
    pub block_count: usize,
    /// `llama.embedding_length`.
    pub embedding_length: usize,
    /// `llama.feed_forward_length`.
    pub feed_forward_length: usize,
    /// `llama.attention.head_count`.
    pub head_count: usize,
    /// `llama.attention.head_count_kv`.
    pub head_count_kv: usize,
    /// `llama.rope.dimension_count` (must equal the head dimension).
    pub rope_dim: usize,
    /// `llama.rope.freq_base`.
    pub rope_freq_base: f32,
    /// `llama.attention.layer_norm_rms_epsilon`.
    pub rms_norm_eps: f64,
    /// `llama.context_length`, capped at [`MAX_CONTEXT`].
    pub context_length: usize,
    /// Rows of `token_embd.weight`.
    pub vocab_size: usize,
}

impl LlamaConfig {
    /// Reads and checks the hyperparameters; `file` names the GGUF in errors.
    pub fn from_gguf(ct: &gguf_file::Content, file: &str) -> Result<Self> {
        let arch = ct
            .metadata
            .get("general.architecture")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .unwrap_or_else(|| "<missing>".into());
        if arch != "llama" {
            return Err(Error::UnsupportedArchitecture {
                file: file.into(),
                found: arch,
                expected: "general.architecture \"llama\"",
            });
        }
        let get = |key: &str| {
            ct.metadata
                .get(key)
                .ok_or_else(|| Error::field(file, key, "missing"))
        };
        let dim = |key: &str| -> Result<usize> {
            let v = get(key)?
                .to_u32()
                .map_err(|e| Error::field(file, key, e.to_string()))? as usize;
            if v == 0 || v > MAX_DIM {
                return Err(Error::field(
                    file,
                    key,
                    format!("{v} is outside 1..={MAX_DIM}"),
                ));
            }
            Ok(v)
        };
        let f32_of = |key: &str| -> Result<f32> {
            get(key)?
                .to_f32()
                .map_err(|e| Error::field(file, key, e.to_string()))
        };
        let head_count = dim("llama.attention.head_count")?;
        let head_count_kv = dim("llama.attention.head_count_kv")?;
        let embedding_length = dim("llama.embedding_length")?;
        let rope_dim = dim("llama.rope.dimension_count")?;
        if !embedding_length.is_multiple_of(head_count) || !head_count.is_multiple_of(head_count_kv)
        {
            return Err(Error::field(
                file,
                "llama.attention.head_count",
                format!(
                    "{head_count} heads and {head_count_kv} kv heads do not divide width {embedding_length}"
                ),
            ));
        }
        if rope_dim != embedding_length / head_count || !rope_dim.is_multiple_of(2) {
            return Err(Error::field(
                file,
                "llama.rope.dimension_count",
                format!(
                    "{rope_dim} differs from the head dimension {}",
                    embedding_length / head_count
                ),
            ));
        }
        let rope_freq_base = match ct.metadata.get("llama.rope.freq_base") {
            Some(_) => f32_of("llama.rope.freq_base")?,
            None => 10_000.0,
        };
        let rms_norm_eps = f64::from(f32_of("llama.attention.layer_norm_rms_epsilon")?);
        if !(rope_freq_base > 1.0
            && rope_freq_base.is_finite()
            && rms_norm_eps > 0.0
            && rms_norm_eps < 1.0)
        {
            return Err(Error::field(
                file,
                "llama.rope.freq_base",
                format!("freq base {rope_freq_base} or epsilon {rms_norm_eps} out of range"),
            ));
        }
        let context_length = dim("llama.context_length")?.min(MAX_CONTEXT);
        let rows = |name: &str| {
            ct.tensor_infos
                .get(name)
                .and_then(|t| t.shape.dims().first().copied())
        };
        let vocab_size = match ct.metadata.get("llama.vocab_size") {
            Some(_) => Some(dim("llama.vocab_size")?),
            None => rows("token_embd.weight").or_else(|| rows("output.weight")),
        }
        .ok_or_else(|| Error::field(file, "llama.vocab_size", "missing"))?;
        Ok(Self {
            block_count: dim("llama.block_count")?,
            embedding_length,
            feed_forward_length: dim("llama.feed_forward_length")?,
            head_count,
            head_count_kv,
            rope_dim,
            rope_freq_base,
            rms_norm_eps,
            context_length,
            vocab_size,
        })
    }

    /// Dimension of one attention head.
    pub fn head_dim(&self) -> usize {
        self.embedding_length / self.head_count
    }
}

/// A GGUF file held in memory.
#[derive(Debug)]
pub struct GgufFile {
    /// Metadata and tensor directory.
    pub content: gguf_file::Content,
    bytes: Vec<u8>,
    name: String,
}

impl GgufFile {
    /// Parses `bytes`; `name` identifies the file in errors.
    pub fn from_bytes(bytes: Vec<u8>, name: &str) -> Result<Self> {
        let content = gguf_file::Content::read(&mut Cursor::new(&bytes))
            .map_err(|e| Error::weights(name, e))?;
        // Every tensor must lie inside the file: a truncated GGUF is an error here, not later.
        for (tname, info) in &content.tensor_infos {
            let block = info.ggml_dtype.block_size();
            let elems = info.shape.elem_count();
            let size = (elems / block.max(1)) * info.ggml_dtype.type_size();
            let end = content
                .tensor_data_offset
                .checked_add(info.offset)
                .and_then(|o| o.checked_add(size as u64));
            if end.is_none_or(|e| e > bytes.len() as u64) || elems % block.max(1) != 0 {
                return Err(Error::weights(
                    name,
                    format!("tensor {tname} lies outside the file (truncated?)"),
                ));
            }
        }
        Ok(Self {
            content,
            bytes,
            name: name.into(),
        })
    }

    /// Reads and parses the GGUF file at `path`.
    pub fn open(path: &std::path::Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_bytes(bytes, &path.display().to_string())
    }

    /// The file's name as used in errors.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the file holds tensor `name`.
    pub fn has(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    /// Reads tensor `name` as stored.
    pub fn raw_tensor(&self, name: &str) -> Result<QTensor> {
        self.content
            .tensor(&mut Cursor::new(&self.bytes), name, &Device::Cpu)
            .map_err(|e| Error::weights(format!("{}: {name}", self.name), e))
    }

    /// Reads tensor `name`, checking its shape (`[rows, cols]` as candle orders them).
    pub fn tensor(&self, name: &str, shape: &[usize]) -> Result<QTensor> {
        let t = self.raw_tensor(name)?;
        if t.shape().dims() != shape {
            return Err(Error::weights(
                format!("{}: {name}", self.name),
                format!("shape {:?}, expected {shape:?}", t.shape().dims()),
            ));
        }
        Ok(t)
    }
}

/// Rotary position tables (interleaved pairs, as GGUF stores Llama's q and k).
#[derive(Clone, Debug)]
pub struct Rope {
    cos: Tensor,
    sin: Tensor,
    max_len: usize,
}

impl Rope {
    /// Precomputes `cos` and `sin` for positions `0..cfg.context_length`.
    pub fn new(cfg: &LlamaConfig) -> Result<Self> {
        let half = cfg.rope_dim / 2;
        let theta: Vec<f32> = (0..half)
            .map(|i| {
                1f32 / cfg
                    .rope_freq_base
                    .powf((2 * i) as f32 / cfg.rope_dim as f32)
            })
            .collect();
        let max_len = cfg.context_length;
        let angles: Vec<f32> = (0..max_len)
            .flat_map(|p| theta.iter().map(move |t| p as f32 * t))
            .collect();
        let angles = Tensor::from_vec(angles, (max_len, half), &Device::Cpu).ctx("rope")?;
        Ok(Self {
            cos: angles.cos().ctx("rope")?,
            sin: angles.sin().ctx("rope")?,
            max_len,
        })
    }

    /// Longest sequence the tables cover.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    fn apply(&self, x: &Tensor, pos: usize) -> candle_core::Result<Tensor> {
        let (_, _, seq, _) = x.dims4()?;
        let cos = self.cos.narrow(0, pos, seq)?;
        let sin = self.sin.narrow(0, pos, seq)?;
        candle_nn::rotary_emb::rope_i(&x.contiguous()?, &cos, &sin)
    }
}

/// The token embedding (dequantized to f32, as candle's quantized Llama does).
#[derive(Clone, Debug)]
pub struct LlamaEmbedding {
    embedding: Embedding,
    vocab_size: usize,
}

impl LlamaEmbedding {
    /// Loads `token_embd.weight`.
    pub fn load(gg: &GgufFile, cfg: &LlamaConfig) -> Result<Self> {
        let q = gg.tensor("token_embd.weight", &[cfg.vocab_size, cfg.embedding_length])?;
        let w = q
            .dequantize(&Device::Cpu)
            .map_err(|e| Error::weights(format!("{}: token_embd.weight", gg.name), e))?;
        Ok(Self {
            embedding: Embedding::new(w, cfg.embedding_length),
            vocab_size: cfg.vocab_size,
        })
    }

    /// `[batch, seq]` u32 ids to `[batch, seq, hidden]`.
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let max = ids
            .flatten_all()
            .and_then(|t| t.max(0))
            .and_then(|t| t.to_scalar::<u32>())
            .ctx("llama embedding: checking ids")?;
        if max as usize >= self.vocab_size {
            return Err(Error::field(
                "input_ids",
                "token id",
                format!("{max} is outside the vocabulary of {}", self.vocab_size),
            ));
        }
        self.embedding.forward(ids).ctx("llama embedding")
    }
}

/// Attention and SwiGLU feed-forward with pre-norms and residuals: one decoder block.
#[derive(Clone, Debug)]
pub struct LlamaBlock {
    attn_norm: RmsNorm,
    /// Query, key and value projections (fused when all are Q4_1).
    qkv: QLinearGroup,
    wo: QLinear,
    ffn_norm: RmsNorm,
    /// Gate and up projections (fused when both are Q4_1).
    gate_up: QLinearGroup,
    down: QLinear,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

impl LlamaBlock {
    /// Loads `blk.{index}.*` from a GGUF file.
    pub fn load(gg: &GgufFile, index: usize, cfg: &LlamaConfig) -> Result<Self> {
        let h = cfg.embedding_length;
        let kv = cfg.head_count_kv * cfg.head_dim();
        let ff = cfg.feed_forward_length;
        let p = format!("blk.{index}");
        let mm = |name: &str, shape: &[usize]| -> Result<QLinear> {
            let t = gg.tensor(&format!("{p}.{name}"), shape)?;
            QLinear::from_qtensor(t)
                .map_err(|e| Error::weights(format!("{}: {p}.{name}", gg.name), e))
        };
        let norm = |name: &str| -> Result<RmsNorm> {
            let t = gg.tensor(&format!("{p}.{name}"), &[h])?;
            RmsNorm::from_qtensor(t, cfg.rms_norm_eps)
                .map_err(|e| Error::weights(format!("{}: {p}.{name}", gg.name), e))
        };
        let group = |parts: Vec<QLinear>| {
            QLinearGroup::new(parts).map_err(|e| Error::weights(format!("{}: {p}", gg.name), e))
        };
        Ok(Self {
            attn_norm: norm("attn_norm.weight")?,
            qkv: group(vec![
                mm("attn_q.weight", &[h, h])?,
                mm("attn_k.weight", &[kv, h])?,
                mm("attn_v.weight", &[kv, h])?,
            ])?,
            wo: mm("attn_output.weight", &[h, h])?,
            ffn_norm: norm("ffn_norm.weight")?,
            gate_up: group(vec![
                mm("ffn_gate.weight", &[ff, h])?,
                mm("ffn_up.weight", &[ff, h])?,
            ])?,
            down: mm("ffn_down.weight", &[h, ff])?,
            heads: cfg.head_count,
            kv_heads: cfg.head_count_kv,
            head_dim: cfg.head_dim(),
        })
    }

    /// `[1, seq, hidden]` at positions `pos..pos + seq` to the same shape, appending this
    /// block's keys and values to `cache`. Query `i` attends to the cached keys and to this
    /// call's keys up to its own position (causal).
    pub fn forward(
        &self,
        x: &Tensor,
        rope: &Rope,
        pos: usize,
        cache: &mut LayerKv,
    ) -> candle_core::Result<Tensor> {
        let (b, s, h) = x.dims3()?;
        let xn = self.attn_norm.forward(x)?;
        let [q, k, v]: [Tensor; 3] = self
            .qkv
            .forward(&xn)?
            .try_into()
            .map_err(|_| candle_core::Error::Msg("three projections".into()))?;
        let q = q
            .reshape((b, s, self.heads, self.head_dim))?
            .transpose(1, 2)?;
        let k = k
            .reshape((b, s, self.kv_heads, self.head_dim))?
            .transpose(1, 2)?;
        let v = v
            .reshape((b, s, self.kv_heads, self.head_dim))?
            .transpose(1, 2)?
            .contiguous()?;
        let q = rope.apply(&q, pos)?;
        let k = rope.apply(&k, pos)?;
        let (k, v) = match cache.take() {
            None => (k, v),
            Some((kc, vc)) => (Tensor::cat(&[&kc, &k], 2)?, Tensor::cat(&[&vc, &v], 2)?),
        };
        *cache = Some((k.clone(), v.clone()));
        let shape = crate::attention::AttentionShape {
            heads: self.heads,
            kv_heads: self.kv_heads,
            head_dim: self.head_dim,
            queries: s,
            keys: k.dim(2)?,
        };
        let y = with_f32(&q.contiguous()?, |q| {
            with_f32(&k, |k| with_f32(&v, |v| causal_gqa(&shape, q, k, v)))
        })?;
        let y = Tensor::from_vec(y, (b, s, h), &Device::Cpu)?;
        let x = (self.wo.forward(&y)? + x)?;
        let xn = self.ffn_norm.forward(&x)?;
        let [gate, up]: [Tensor; 2] = self
            .gate_up
            .forward(&xn)?
            .try_into()
            .map_err(|_| candle_core::Error::Msg("two projections".into()))?;
        let y = self.down.forward(&(candle_nn::ops::silu(&gate)? * up)?)?;
        y + x
    }
}

/// Final RMS norm and output projection, applied to the last position.
#[derive(Clone, Debug)]
pub struct LlamaHead {
    norm: RmsNorm,
    output: QLinear,
}

impl LlamaHead {
    /// Loads `output_norm.weight` and `output.weight` (or the tied `token_embd.weight`).
    pub fn load(gg: &GgufFile, cfg: &LlamaConfig) -> Result<Self> {
        let h = cfg.embedding_length;
        let norm = gg.tensor("output_norm.weight", &[h])?;
        let norm = RmsNorm::from_qtensor(norm, cfg.rms_norm_eps)
            .map_err(|e| Error::weights(format!("{}: output_norm.weight", gg.name), e))?;
        let name = if gg.has("output.weight") {
            "output.weight"
        } else {
            "token_embd.weight"
        };
        let output = gg.tensor(name, &[cfg.vocab_size, h])?;
        let output = QLinear::from_qtensor(output)
            .map_err(|e| Error::weights(format!("{}: {name}", gg.name), e))?;
        Ok(Self { norm, output })
    }

    /// `[1, seq, hidden]` to the `[1, vocab]` logits of the last position.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let s = x.dim(1)?;
        let last = x.narrow(1, s - 1, 1)?;
        let last = self.norm.forward(&last)?.squeeze(1)?;
        self.output.forward(&last)
    }
}

/// A contiguous part of a Llama model with the KV caches of its blocks.
#[derive(Debug)]
pub struct LlamaStage {
    cfg: LlamaConfig,
    range: LayerRange,
    embedding: Option<LlamaEmbedding>,
    blocks: Vec<LlamaBlock>,
    head: Option<LlamaHead>,
    rope: Rope,
    cache: KvCacheStore,
}

impl LlamaStage {
    /// Loads blocks `range` (global indices `blk.{i}`), and the embedding and head if asked,
    /// from a GGUF file (the whole model, or a shard written by the splitter).
    pub fn load(
        gg: &GgufFile,
        range: LayerRange,
        embedding: bool,
        head: bool,
        kv: KvCacheConfig,
    ) -> Result<Self> {
        let cfg = LlamaConfig::from_gguf(&gg.content, gg.name())?;
        if !range.is_empty() {
            range.check(cfg.block_count)?;
        } else if !embedding && !head {
            return Err(Error::LayerRange {
                start: range.start,
                end: range.end,
                layers: cfg.block_count,
            });
        }
        let embedding = embedding
            .then(|| LlamaEmbedding::load(gg, &cfg))
            .transpose()?;
        let blocks = (range.start..range.end)
            .map(|i| LlamaBlock::load(gg, i, &cfg))
            .collect::<Result<Vec<_>>>()?;
        let head = head.then(|| LlamaHead::load(gg, &cfg)).transpose()?;
        let rope = Rope::new(&cfg)?;
        let cache = KvCacheStore::new(kv, blocks.len())?;
        Ok(Self {
            cfg,
            range,
            embedding,
            blocks,
            head,
            rope,
            cache,
        })
    }

    /// The model's hyperparameters.
    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }

    /// The blocks this stage runs.
    pub fn range(&self) -> LayerRange {
        self.range
    }

    /// Whether the stage holds the token embedding.
    pub fn has_embedding(&self) -> bool {
        self.embedding.is_some()
    }

    /// Whether the stage holds the head.
    pub fn has_head(&self) -> bool {
        self.head.is_some()
    }

    /// The stage's KV caches.
    pub fn kv_cache(&self) -> &KvCacheStore {
        &self.cache
    }

    /// Drops a session's KV cache; returns whether it existed.
    pub fn end_session(&mut self, session: u64) -> bool {
        self.cache.end_session(session)
    }

    /// Drops the caches of sessions idle for longer than the configured timeout.
    pub fn evict_idle(&mut self) -> Vec<u64> {
        self.cache.evict_idle(Instant::now())
    }

    /// Runs the stage on one activation.
    ///
    /// Input: `[1, seq]` u32 token ids if the stage holds the embedding, else `[1, seq,
    /// hidden]` f32 hidden states; `position` must equal the number of tokens the session
    /// has processed so far (0 starts a new session, dropping any old cache it had). Output:
    /// the `[1, vocab]` logits of the last token if the stage holds the head, else hidden
    /// states. A stage without blocks (the client's ends) embeds ids and applies the head to
    /// hidden states, and keeps no cache.
    pub fn forward(&mut self, input: &Activation) -> Result<Activation> {
        let context = format!("llama stage {}", self.range);
        let x = input.to_tensor(&Device::Cpu)?;
        let tokens = input.dtype() == ActivationDType::U32;
        let (session, position) = (input.session(), input.position());
        if self.blocks.is_empty() {
            let out = match (tokens, &self.embedding, &self.head) {
                (true, Some(e), _) => {
                    self.check_tokens(&context, input)?;
                    e.forward(&x)?
                }
                (false, _, Some(h)) => {
                    self.check_hidden(&context, input)?;
                    h.forward(&x).ctx(&context)?
                }
                _ => {
                    return Err(Error::ActivationDtype {
                        context,
                        got: input.dtype().name(),
                        expected: if self.embedding.is_some() {
                            "u32"
                        } else {
                            "f32"
                        },
                    });
                }
            };
            return Activation::from_tensor(session, position, &out);
        }
        let mut x = match (&self.embedding, tokens) {
            (Some(e), true) => {
                self.check_tokens(&context, input)?;
                e.forward(&x)?
            }
            (None, false) => {
                self.check_hidden(&context, input)?;
                x
            }
            (Some(_), false) | (None, true) => {
                return Err(Error::ActivationDtype {
                    context,
                    got: input.dtype().name(),
                    expected: if self.embedding.is_some() {
                        "u32"
                    } else {
                        "f32"
                    },
                });
            }
        };
        let seq = x.dim(1).ctx(&context)?;
        let pos = position as usize;
        if pos + seq > self.rope.max_len() {
            return Err(Error::TooLarge {
                what: "session length in tokens",
                got: pos + seq,
                limit: self.rope.max_len(),
            });
        }
        let now = Instant::now();
        let mut cache = self.cache.checkout(session, pos, now)?;
        for (i, block) in self.blocks.iter().enumerate() {
            x = block
                .forward(&x, &self.rope, pos, cache.layer_mut(i))
                .ctx(&format!("llama block {}", self.range.start + i))?;
        }
        cache.advance(seq);
        self.cache.checkin(session, cache, now)?;
        let out = match &self.head {
            Some(h) => h.forward(&x).ctx(&context)?,
            None => x,
        };
        Activation::from_tensor(session, position, &out)
    }

    fn check_tokens(&self, context: &str, input: &Activation) -> Result<()> {
        match input.shape() {
            [1, s] if *s > 0 => Ok(()),
            shape => Err(Error::ActivationShape {
                context: context.into(),
                got: shape.to_vec(),
                expected: "[1, seq] token ids".into(),
            }),
        }
    }

    fn check_hidden(&self, context: &str, input: &Activation) -> Result<()> {
        input.expect_dtype(context, ActivationDType::F32)?;
        match input.shape() {
            [1, s, h] if *s > 0 && *h == self.cfg.embedding_length => Ok(()),
            shape => Err(Error::ActivationShape {
                context: context.into(),
                got: shape.to_vec(),
                expected: format!("[1, seq, {}] hidden states", self.cfg.embedding_length),
            }),
        }
    }
}

/// First index of the largest logit; an error on NaN.
pub fn argmax(logits: &[f32]) -> Result<u32> {
    let mut best = 0usize;
    for (i, &v) in logits.iter().enumerate() {
        if v.is_nan() {
            return Err(Error::field("logits", format!("[{i}]"), "NaN"));
        }
        if v > logits[best] {
            best = i;
        }
    }
    if logits.is_empty() {
        return Err(Error::Empty("logits"));
    }
    Ok(best as u32)
}
