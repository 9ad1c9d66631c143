//! The model runtime of a vichain worker: real models run by candle on the CPU, cut into
//! shards by layer range, executed deterministically and fingerprinted so that the ledger
//! can compare what independent workers computed.
//!
//! Three families are supported:
//! - **Sentence embeddings** (BERT, e.g. all-MiniLM-L6-v2): [`SentenceEmbedder`] loads a
//!   Hugging Face directory and computes sentence-transformers' mean-pooled, normalized
//!   embedding; [`BertStage`] runs any layer range of it.
//! - **Text generation** (Llama, e.g. SmolLM2-135M-Instruct as Q4_1 GGUF):
//!   [`TextGenerator`] rebuilds the tokenizer from the GGUF metadata, applies the chat
//!   template and generates greedily or with a seeded [`Sampler`]; [`LlamaStage`] runs a
//!   layer range and keeps its KV caches per session in a bounded [`KvCacheStore`].
//! - **Integer MLPs** for zero-knowledge proofs: exactly `vichain_zk::QuantizedMlp`, trained
//!   in float on the 8x8 digits with candle-nn ([`train_float_mlp`]) and quantized
//!   ([`quantize_mlp`]); the trained model ships as [`DIGITS_MODEL`].
//!
//! A model is split by [`split_bert`], [`split_gguf`] or [`split_mlp`] into shard files and a
//! [`ModelManifest`] (layer ranges and sha256 of every file); the embeddings and head go to
//! the first and last shards, or to a separate shard the client keeps
//! ([`ShardLayout::ClientKeepsEnds`]). A [`Shard`] maps an [`Activation`] (typed: shape,
//! dtype, session, position; canonical little-endian bytes and sha256) to the next, and
//! running the shards in sequence ([`Pipeline`]) is bit-identical to the whole model.
//!
//! # Determinism
//! On one machine, outputs are bit-identical across runs and across thread counts (1 or 2
//! were tested; candle's CPU matmuls split work over output rows and columns, never inside a
//! dot product). Across CPUs with different SIMD paths (AVX2 vs AVX-512 vs NEON) float
//! results can differ in the last bits, so float outputs are compared in fixed point within
//! a stated tolerance ([`FloatTolerance`], [`FixedPointOutput`]); integer outputs (token
//! ids, the integer MLP) are compared exactly by [`Fingerprint`].
//!
//! Generated tokens need more: SmolLM2 quantizes activations to 8 bits before every Q4_1
//! product, so a last-bit difference anywhere can move logits by tenths and flip a near-tie
//! token. The Llama path therefore avoids CPU-dependent kernels: the Q4_1 and Q8_0 products
//! ([`QLinear`]: exact integer block sums, then candle's scalar float expression in a fixed
//! order, AVX2 or plain code alike) and attention (fixed-order dot products and a portable
//! exponential) give the same bits with and without AVX2 or AVX-512 (a test runs generation
//! both ways through [`set_portable_kernels`]). What the bits still depend on is the
//! platform's libm, through candle's rotary tables and SiLU.
//!
//! ```no_run
//! # fn main() -> vichain_inference::Result<()> {
//! use vichain_inference::{FloatTolerance, SentenceEmbedder};
//! let embedder = SentenceEmbedder::from_dir("/var/tmp/vichain-models/all-minilm-l6-v2".as_ref())?;
//! let v = embedder.embed("A worker computes this embedding.")?;
//! let revealed = FloatTolerance::EMBEDDING.quantize(&v)?;
//! println!("commit to {}", revealed.fingerprint());
//! # Ok(())
//! # }
//! ```

mod activation;
mod attention;
mod bert;
mod digits;
mod embedder;
mod error;
mod fingerprint;
mod gelu;
mod generate;
mod kv;
mod llama;
mod manifest;
pub mod models;
mod qmatmul;
mod shard;
mod split;

pub(crate) use error::CandleContext;

pub use crate::{
    activation::{
        Activation, ActivationDType, ActivationData, MAX_ACTIVATION_ELEMENTS, MAX_ACTIVATION_RANK,
    },
    bert::{BertConfig, BertEmbeddings, BertLayer, BertStage, HiddenAct, MeanPooling},
    digits::{
        CLASSES, DIGITS_DATA, DIGITS_MODEL, DigitsDataset, DigitsReport, FloatMlp, PIXELS,
        TrainConfig, evaluate, quantize_input, quantize_mlp, quantized_accuracy,
        quantized_predictions, train_float_mlp,
    },
    embedder::{
        MAX_BATCH, MAX_TEXT_BYTES, SENTENCE_BERT_CONFIG, SentenceEmbedder, bert_max_seq_length,
        bert_tokenizer,
    },
    error::{Error, Result},
    fingerprint::{Fingerprint, FixedPointOutput, FloatTolerance},
    gelu::gelu_erf,
    generate::{
        Generation, GenerationParams, MAX_NEW_TOKENS, MAX_PROMPT_BYTES, SMOLLM2_SYSTEM_PROMPT,
        Sampler, Sampling, TextGenerator, tokenizer_from_gguf,
    },
    kv::{KvCacheConfig, KvCacheStore, LayerKv, SessionKv},
    llama::{
        GgufFile, LlamaBlock, LlamaConfig, LlamaEmbedding, LlamaHead, LlamaStage, MAX_CONTEXT,
        Rope, argmax,
    },
    manifest::{
        FileEntry, LayerRange, MANIFEST_FILE, MANIFEST_VERSION, MAX_LAYERS, MAX_MODEL_ID_LEN,
        MAX_SHARDS, ModelFamily, ModelManifest, ShardEntry, ShardLayout, read_verified, sha256_hex,
    },
    qmatmul::{QLinear, QLinearGroup, QMatrix, set_portable_kernels},
    shard::{MlpStage, Pipeline, PipelineOutput, Shard},
    split::{GGUF_SHARD_END_KEY, GGUF_SHARD_START_KEY, split_bert, split_gguf, split_mlp},
};
