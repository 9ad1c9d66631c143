//! BERT encoder blocks (all-MiniLM-L6-v2 and its family), candle style.
//!
//! A model is embeddings, a list of [`BertLayer`]s and a pooling step; a shard is a range of
//! layers, optionally with the embeddings in front and the pooling behind.

use std::path::Path;

use candle_core::{D, DType, Device, Module, Tensor};
use candle_nn::{Embedding, LayerNorm, VarBuilder};
use serde::{Deserialize, Serialize};

use crate::{Activation, CandleContext, Error, LayerRange, Result};

/// Largest hidden size, layer count, vocabulary or sequence length a config may declare.
const MAX_CONFIG_DIM: usize = 1 << 20;

/// The Hugging Face `config.json` of a BERT model (the fields this crate uses).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    /// `["BertModel"]` and friends.
    #[serde(default)]
    pub architectures: Vec<String>,
    /// Must be `"bert"`.
    pub model_type: String,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Width of the hidden states.
    pub hidden_size: usize,
    /// Number of encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer.
    pub num_attention_heads: usize,
    /// Width of the feed-forward layer.
    pub intermediate_size: usize,
    /// Activation of the feed-forward layer.
    pub hidden_act: HiddenAct,
    /// Longest sequence the position embeddings cover.
    pub max_position_embeddings: usize,
    /// Number of token types.
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
    /// Padding token id.
    #[serde(default)]
    pub pad_token_id: u32,
    /// Only `"absolute"` is supported.
    #[serde(default = "absolute")]
    pub position_embedding_type: String,
}

fn absolute() -> String {
    "absolute".into()
}

/// Feed-forward activation named by `hidden_act`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HiddenAct {
    /// Exact GELU (`erf`), what `transformers` calls `gelu`.
    Gelu,
    /// The tanh approximation.
    #[serde(alias = "gelu_pytorch_tanh", alias = "gelu_approximate")]
    GeluNew,
    /// ReLU.
    Relu,
}

impl BertConfig {
    /// Reads and validates a `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_json(&bytes, &path.display().to_string())
    }

    /// Parses and validates `config.json` bytes; `file` names them in errors.
    pub fn from_json(bytes: &[u8], file: &str) -> Result<Self> {
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|source| Error::Json {
                path: file.into(),
                source,
            })?;
        let model_type = value
            .get("model_type")
            .and_then(|v| v.as_str())
            .unwrap_or("<missing>");
        if model_type != "bert" {
            return Err(Error::UnsupportedArchitecture {
                file: file.into(),
                found: model_type.into(),
                expected: "model_type \"bert\"",
            });
        }
        let cfg: Self = serde_json::from_value(value).map_err(|source| Error::Json {
            path: file.into(),
            source,
        })?;
        cfg.validate(file)?;
        Ok(cfg)
    }

    /// Checks the sizes that the layers rely on.
    pub fn validate(&self, file: &str) -> Result<()> {
        for (field, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ] {
            if v == 0 || v > MAX_CONFIG_DIM {
                return Err(Error::field(
                    file,
                    field,
                    format!("{v} is outside 1..={MAX_CONFIG_DIM}"),
                ));
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(Error::field(
                file,
                "num_attention_heads",
                format!(
                    "{} does not divide hidden_size {}",
                    self.num_attention_heads, self.hidden_size
                ),
            ));
        }
        if self.position_embedding_type != "absolute" {
            return Err(Error::field(
                file,
                "position_embedding_type",
                format!("{:?} is not supported", self.position_embedding_type),
            ));
        }
        if !(self.layer_norm_eps > 0.0 && self.layer_norm_eps < 1.0) {
            return Err(Error::field(
                file,
                "layer_norm_eps",
                format!("{} is outside (0, 1)", self.layer_norm_eps),
            ));
        }
        Ok(())
    }

    fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}

/// Token, position and token-type embeddings followed by a LayerNorm.
#[derive(Clone, Debug)]
pub struct BertEmbeddings {
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    layer_norm: LayerNorm,
    max_positions: usize,
    vocab_size: usize,
}

impl BertEmbeddings {
    /// Loads `word_embeddings`, `position_embeddings`, `token_type_embeddings` and `LayerNorm`.
    pub fn load(vb: VarBuilder, cfg: &BertConfig) -> candle_core::Result<Self> {
        let h = cfg.hidden_size;
        Ok(Self {
            word: candle_nn::embedding(cfg.vocab_size, h, vb.pp("word_embeddings"))?,
            position: candle_nn::embedding(
                cfg.max_position_embeddings,
                h,
                vb.pp("position_embeddings"),
            )?,
            token_type: candle_nn::embedding(
                cfg.type_vocab_size,
                h,
                vb.pp("token_type_embeddings"),
            )?,
            layer_norm: candle_nn::layer_norm(h, cfg.layer_norm_eps, vb.pp("LayerNorm"))?,
            max_positions: cfg.max_position_embeddings,
            vocab_size: cfg.vocab_size,
        })
    }

    /// `[batch, seq]` u32 token ids (token type 0) to `[batch, seq, hidden]`.
    pub fn forward(&self, input_ids: &Tensor) -> Result<Tensor> {
        let (_, seq) = input_ids.dims2().ctx("bert embeddings: input ids")?;
        if seq > self.max_positions {
            return Err(Error::TooLarge {
                what: "sequence length",
                got: seq,
                limit: self.max_positions,
            });
        }
        let max_id = input_ids
            .flatten_all()
            .and_then(|t| t.max(0))
            .and_then(|t| t.to_scalar::<u32>())
            .ctx("bert embeddings: checking ids")?;
        if max_id as usize >= self.vocab_size {
            return Err(Error::field(
                "input_ids",
                "token id",
                format!("{max_id} is outside the vocabulary of {}", self.vocab_size),
            ));
        }
        let device = input_ids.device();
        let run = || -> candle_core::Result<Tensor> {
            let words = self.word.forward(input_ids)?;
            let types = self.token_type.forward(&input_ids.zeros_like()?)?;
            let positions = Tensor::arange(0u32, seq as u32, device)?;
            let positions = self.position.forward(&positions)?;
            let x = (words + types)?.broadcast_add(&positions)?;
            self.layer_norm.forward(&x)
        };
        run().ctx("bert embeddings")
    }
}

/// Self-attention, feed-forward, residuals and LayerNorms: one encoder layer.
///
/// The query, key and value projections are fused into one matrix at load time (one matmul
/// instead of three); each output element is still one dot product over the same inputs in
/// the same order, so the result does not change.
#[derive(Clone, Debug)]
pub struct BertLayer {
    qkv: Dense,
    attn_out: Dense,
    attn_norm: LayerNorm,
    intermediate: Dense,
    output: Dense,
    out_norm: LayerNorm,
    act: HiddenAct,
    heads: usize,
    head_dim: usize,
}

impl BertLayer {
    /// Loads `attention.{self.{query,key,value},output.{dense,LayerNorm}}`,
    /// `intermediate.dense` and `output.{dense,LayerNorm}`.
    pub fn load(vb: VarBuilder, cfg: &BertConfig) -> candle_core::Result<Self> {
        let h = cfg.hidden_size;
        let att = vb.pp("attention");
        let sa = att.pp("self");
        let (qw, qb) = weight_and_bias(sa.pp("query"), h, h)?;
        let (kw, kb) = weight_and_bias(sa.pp("key"), h, h)?;
        let (vw, vb_) = weight_and_bias(sa.pp("value"), h, h)?;
        let qkv = Dense::new(
            &Tensor::cat(&[qw, kw, vw], 0)?,
            Tensor::cat(&[qb, kb, vb_], 0)?,
        )?;
        Ok(Self {
            qkv,
            attn_out: Dense::load(att.pp("output").pp("dense"), h, h)?,
            attn_norm: candle_nn::layer_norm(
                h,
                cfg.layer_norm_eps,
                att.pp("output").pp("LayerNorm"),
            )?,
            intermediate: Dense::load(vb.pp("intermediate").pp("dense"), h, cfg.intermediate_size)?,
            output: Dense::load(vb.pp("output").pp("dense"), cfg.intermediate_size, h)?,
            out_norm: candle_nn::layer_norm(
                h,
                cfg.layer_norm_eps,
                vb.pp("output").pp("LayerNorm"),
            )?,
            act: cfg.hidden_act,
            heads: cfg.num_attention_heads,
            head_dim: cfg.head_dim(),
        })
    }

    /// `[batch, seq, hidden]` to `[batch, seq, hidden]`; `mask` is the additive attention mask
    /// `[batch, 1, 1, seq]` (0 for tokens, a large negative value for padding), or `None`
    /// when no token is padding.
    pub fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> candle_core::Result<Tensor> {
        let (b, s, h) = x.dims3()?;
        let x2 = x.reshape((b * s, h))?;
        let qkv = self
            .qkv
            .forward(&x2)?
            .reshape((b, s, 3, self.heads, self.head_dim))?
            .permute((2, 0, 3, 1, 4))?;
        let q = qkv.get(0)?.contiguous()?;
        let k = qkv.get(1)?.contiguous()?;
        let v = qkv.get(2)?.contiguous()?;
        let scores = (q.matmul(&k.t()?)? / (self.head_dim as f64).sqrt())?;
        let scores = match mask {
            Some(m) => scores.broadcast_add(m)?,
            None => scores,
        };
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let ctx = probs
            .matmul(&v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b * s, h))?;
        let attn = self.attn_out.forward(&ctx)?;
        let attn = self.attn_norm.forward(&(attn + &x2)?)?;
        let inter = self.intermediate.forward(&attn)?;
        let inter = match self.act {
            HiddenAct::Gelu => crate::gelu_erf(&inter)?,
            HiddenAct::GeluNew => inter.gelu()?,
            HiddenAct::Relu => inter.relu()?,
        };
        let out = self.output.forward(&inter)?;
        self.out_norm.forward(&(out + attn)?)?.reshape((b, s, h))
    }
}

/// A linear layer storing its weight transposed (`[in, out]`, contiguous), so the matmul
/// streams the weight row by row instead of through a transposed view.
#[derive(Clone, Debug)]
struct Dense {
    wt: Tensor,
    bias: Tensor,
}

impl Dense {
    fn new(weight: &Tensor, bias: Tensor) -> candle_core::Result<Self> {
        Ok(Self {
            wt: weight.t()?.contiguous()?,
            bias,
        })
    }

    fn load(vb: VarBuilder, in_dim: usize, out_dim: usize) -> candle_core::Result<Self> {
        let (w, b) = weight_and_bias(vb, in_dim, out_dim)?;
        Self::new(&w, b)
    }

    /// `[n, in]` to `[n, out]`.
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        x.matmul(&self.wt)?.broadcast_add(&self.bias)
    }
}

fn weight_and_bias(
    vb: VarBuilder,
    in_dim: usize,
    out_dim: usize,
) -> candle_core::Result<(Tensor, Tensor)> {
    Ok((
        vb.get((out_dim, in_dim), "weight")?,
        vb.get(out_dim, "bias")?,
    ))
}

/// sentence-transformers' mean pooling over the tokens, then L2 normalization.
#[derive(Clone, Copy, Debug, Default)]
pub struct MeanPooling;

impl MeanPooling {
    /// `[batch, seq, hidden]` hidden states and an optional `[batch, seq]` f32 mask of ones
    /// (tokens) and zeros (padding) to `[batch, hidden]` unit vectors.
    pub fn forward(&self, hidden: &Tensor, mask: Option<&Tensor>) -> candle_core::Result<Tensor> {
        let pooled = match mask {
            None => hidden.mean(1)?,
            Some(mask) => {
                let m = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
                let summed = hidden.broadcast_mul(&m)?.sum(1)?;
                let counts = m.sum(1)?.clamp(1e-9, f64::MAX)?;
                summed.broadcast_div(&counts)?
            }
        };
        // torch.nn.functional.normalize: x / max(||x||, 1e-12)
        let norm = pooled
            .sqr()?
            .sum_keepdim(D::Minus1)?
            .sqrt()?
            .clamp(1e-12, f64::MAX)?;
        pooled.broadcast_div(&norm)
    }
}

/// A contiguous part of a BERT model: optionally the embeddings, layers `range`, optionally
/// the pooling. The whole model is the stage with everything.
#[derive(Clone, Debug)]
pub struct BertStage {
    cfg: BertConfig,
    range: LayerRange,
    embeddings: Option<BertEmbeddings>,
    layers: Vec<BertLayer>,
    pooling: Option<MeanPooling>,
}

impl BertStage {
    /// Loads the parts a stage holds from `vb` (tensors named as in the Hugging Face file,
    /// with or without a leading `bert.`). Layers keep their global indices
    /// (`encoder.layer.{i}`), so a shard file and the whole model file load the same way.
    pub fn load(
        vb: VarBuilder,
        cfg: &BertConfig,
        range: LayerRange,
        embeddings: bool,
        head: bool,
    ) -> Result<Self> {
        if !range.is_empty() {
            range.check(cfg.num_hidden_layers)?;
        } else if !embeddings && !head {
            return Err(Error::LayerRange {
                start: range.start,
                end: range.end,
                layers: cfg.num_hidden_layers,
            });
        }
        let vb = if vb.contains_tensor("bert.encoder.layer.0.output.dense.weight")
            || vb.contains_tensor("bert.embeddings.word_embeddings.weight")
        {
            vb.pp("bert")
        } else {
            vb
        };
        let embeddings = embeddings
            .then(|| BertEmbeddings::load(vb.pp("embeddings"), cfg))
            .transpose()
            .map_err(|e| Error::weights("bert embeddings", e))?;
        let layers = (range.start..range.end)
            .map(|i| {
                BertLayer::load(vb.pp(format!("encoder.layer.{i}")), cfg)
                    .map_err(|e| Error::weights(format!("bert layer {i}"), e))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            cfg: cfg.clone(),
            range,
            embeddings,
            layers,
            pooling: head.then_some(MeanPooling),
        })
    }

    /// The model's config.
    pub fn config(&self) -> &BertConfig {
        &self.cfg
    }

    /// The layers this stage runs.
    pub fn range(&self) -> LayerRange {
        self.range
    }

    /// Whether the stage holds the embeddings.
    pub fn has_embeddings(&self) -> bool {
        self.embeddings.is_some()
    }

    /// Whether the stage holds the pooling.
    pub fn has_head(&self) -> bool {
        self.pooling.is_some()
    }

    /// Runs the stage on tensors. `input` is `[batch, seq]` u32 ids if the stage holds the
    /// embeddings, `[batch, seq, hidden]` f32 otherwise; `mask` is the `[batch, seq]` 0/1
    /// attention mask for padded batches.
    ///
    /// A stage without layers (the client's ends) embeds ids and pools hidden states.
    pub fn forward_tensor(&self, input: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let context = format!("bert stage {}", self.range);
        let tokens = input.dtype() == DType::U32;
        if self.layers.is_empty() {
            return match (tokens, &self.embeddings, &self.pooling) {
                (true, Some(e), _) => e.forward(input),
                (false, _, Some(p)) => {
                    self.check_hidden(&context, input)?;
                    p.forward(input, mask).ctx(&context)
                }
                _ => Err(Error::ActivationDtype {
                    context,
                    got: dtype_name(input.dtype()),
                    expected: if self.embeddings.is_some() {
                        "u32"
                    } else {
                        "f32"
                    },
                }),
            };
        }
        let mut x = match (&self.embeddings, tokens) {
            (Some(e), true) => {
                input.dims2().map_err(|_| Error::ActivationShape {
                    context: context.clone(),
                    got: input.dims().to_vec(),
                    expected: "[batch, seq] token ids".into(),
                })?;
                e.forward(input)?
            }
            (None, false) => {
                self.check_hidden(&context, input)?;
                input.clone()
            }
            (Some(_), false) => {
                return Err(Error::ActivationDtype {
                    context,
                    got: dtype_name(input.dtype()),
                    expected: "u32",
                });
            }
            (None, true) => {
                return Err(Error::ActivationDtype {
                    context,
                    got: "u32",
                    expected: "f32",
                });
            }
        };
        let additive = mask
            .map(|m| -> candle_core::Result<Tensor> {
                // (1 - mask) * f32::MIN, shaped [batch, 1, 1, seq], as transformers does.
                let m = m.to_dtype(DType::F32)?;
                ((m.ones_like()? - m)? * f64::from(f32::MIN))?
                    .unsqueeze(1)?
                    .unsqueeze(1)
            })
            .transpose()
            .ctx(&context)?;
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer
                .forward(&x, additive.as_ref())
                .ctx(&format!("bert layer {}", self.range.start + i))?;
        }
        match &self.pooling {
            Some(p) => p.forward(&x, mask).ctx(&context),
            None => Ok(x),
        }
    }

    /// Runs the stage on an activation (no padding): see [`BertStage::forward_tensor`].
    pub fn forward(&self, input: &Activation) -> Result<Activation> {
        let x = input.to_tensor(&Device::Cpu)?;
        let y = self.forward_tensor(&x, None)?;
        Activation::from_tensor(input.session(), input.position(), &y)
    }

    fn check_hidden(&self, context: &str, x: &Tensor) -> Result<()> {
        if x.dtype() != DType::F32 {
            return Err(Error::ActivationDtype {
                context: context.into(),
                got: dtype_name(x.dtype()),
                expected: "f32",
            });
        }
        match x.dims() {
            [b, s, h]
                if *b > 0
                    && *s > 0
                    && *s <= self.cfg.max_position_embeddings
                    && *h == self.cfg.hidden_size =>
            {
                Ok(())
            }
            dims => Err(Error::ActivationShape {
                context: context.into(),
                got: dims.to_vec(),
                expected: format!(
                    "[batch, 1..={}, {}] hidden states",
                    self.cfg.max_position_embeddings, self.cfg.hidden_size
                ),
            }),
        }
    }
}

pub(crate) fn dtype_name(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "f32",
        DType::U32 => "u32",
        DType::I64 => "i64",
        DType::F16 => "f16",
        DType::BF16 => "bf16",
        DType::F64 => "f64",
        DType::U8 => "u8",
        _ => "other",
    }
}

/// Builds a `VarBuilder` over safetensors bytes held in memory (no mmap, no `unsafe`).
pub(crate) fn safetensors_var_builder(bytes: &[u8], file: &str) -> Result<VarBuilder<'static>> {
    let tensors = candle_core::safetensors::load_buffer(bytes, &Device::Cpu)
        .map_err(|e| Error::weights(file, e))?;
    Ok(VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINILM_CONFIG: &str = r#"{
      "architectures": ["BertModel"], "attention_probs_dropout_prob": 0.1,
      "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "hidden_size": 384,
      "initializer_range": 0.02, "intermediate_size": 1536, "layer_norm_eps": 1e-12,
      "max_position_embeddings": 512, "model_type": "bert", "num_attention_heads": 12,
      "num_hidden_layers": 6, "pad_token_id": 0, "position_embedding_type": "absolute",
      "transformers_version": "4.8.2", "type_vocab_size": 2, "use_cache": true,
      "vocab_size": 30522
    }"#;

    #[test]
    fn parses_minilm_config() {
        let cfg = BertConfig::from_json(MINILM_CONFIG.as_bytes(), "config.json").unwrap();
        assert_eq!(cfg.hidden_size, 384);
        assert_eq!(cfg.num_hidden_layers, 6);
        assert_eq!(cfg.hidden_act, HiddenAct::Gelu);
    }

    #[test]
    fn rejects_other_architectures_and_bad_sizes() {
        let gpt = MINILM_CONFIG.replace("\"bert\"", "\"gpt2\"");
        let err = BertConfig::from_json(gpt.as_bytes(), "config.json").unwrap_err();
        assert!(
            matches!(err, Error::UnsupportedArchitecture { ref found, .. } if found == "gpt2"),
            "{err}"
        );
        let heads =
            MINILM_CONFIG.replace("\"num_attention_heads\": 12", "\"num_attention_heads\": 7");
        let err = BertConfig::from_json(heads.as_bytes(), "config.json").unwrap_err();
        assert!(err.to_string().contains("num_attention_heads"), "{err}");
        let missing = MINILM_CONFIG.replace("\"hidden_size\": 384,", "");
        let err = BertConfig::from_json(missing.as_bytes(), "config.json").unwrap_err();
        assert!(err.to_string().contains("hidden_size"), "{err}");
        assert!(BertConfig::from_json(b"{not json", "config.json").is_err());
    }
}
