//! Text generation with a Llama model run as a pipeline of stages.

use std::path::Path;

use candle_core::quantized::{gguf_file, tokenizer::TokenizerFromGguf};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tokenizers::{
    Tokenizer,
    pre_tokenizers::{
        PreTokenizerWrapper, byte_level::ByteLevel, digits::Digits, sequence::Sequence,
    },
};

use crate::{
    Activation, Error, Fingerprint, LayerRange, ModelFamily, ModelManifest, Result,
    kv::KvCacheConfig,
    llama::{GgufFile, LlamaStage, argmax},
    manifest::MANIFEST_FILE,
};

/// Most tokens one call may generate.
pub const MAX_NEW_TOKENS: usize = 4096;
/// Longest prompt text, in bytes.
pub const MAX_PROMPT_BYTES: usize = 64 * 1024;

/// SmolLM2's default system prompt (from the chat template in its GGUF).
pub const SMOLLM2_SYSTEM_PROMPT: &str =
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

/// How the next token is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sampling {
    /// The most likely token (the first one on ties).
    Greedy,
    /// A draw from the tempered distribution, restricted to the `top_k` most likely tokens
    /// and then to the smallest set whose probability reaches `top_p`, with a ChaCha20
    /// generator seeded by `seed` (one draw per token). The same logits and seed give the
    /// same tokens on every machine.
    Seeded {
        /// Generator seed.
        seed: u64,
        /// Softmax temperature (> 0).
        temperature: f64,
        /// Keep only the most likely `top_k` tokens (0 keeps all).
        top_k: usize,
        /// Nucleus threshold in (0, 1].
        top_p: f64,
    },
}

/// What to generate.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct GenerationParams {
    /// Most tokens to generate.
    pub max_new_tokens: usize,
    /// Token choice.
    pub sampling: Sampling,
}

impl Default for GenerationParams {
    fn default() -> Self {
        Self {
            max_new_tokens: 64,
            sampling: Sampling::Greedy,
        }
    }
}

/// The result of a generation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Generation {
    /// The prompt's token ids.
    pub prompt_tokens: Vec<u32>,
    /// Generated token ids (with the end-of-sequence token if one was produced).
    pub tokens: Vec<u32>,
    /// The generated text, special tokens removed.
    pub text: String,
    /// Whether generation stopped at the end-of-sequence token.
    pub stopped_at_eos: bool,
}

impl Generation {
    /// sha256 of the generated ids (each as `i64` LE): the output fingerprint.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of_integers(self.tokens.iter().map(|&t| i64::from(t)))
    }
}

/// A chat model: its tokenizer and the stages that run it, all in this process.
///
/// The whole model is one stage; a split model runs its shards in order, with the client's
/// ends (when the layout has them) embedding the tokens first and applying the head last.
/// Either way the logits are bit-identical, because each block computes the same thing on
/// the same inputs.
#[derive(Debug)]
pub struct TextGenerator {
    tokenizer: Tokenizer,
    client: Option<LlamaStage>,
    workers: Vec<LlamaStage>,
    eos: u32,
    vocab_size: usize,
    context_length: usize,
}

impl TextGenerator {
    /// Loads a whole GGUF model file as one stage.
    pub fn from_gguf(path: &Path, kv: KvCacheConfig) -> Result<Self> {
        let gg = GgufFile::open(path)?;
        let cfg = crate::llama::LlamaConfig::from_gguf(&gg.content, gg.name())?;
        let stage = LlamaStage::load(&gg, LayerRange::new(0, cfg.block_count), true, true, kv)?;
        let tokenizer = tokenizer_from_gguf(&gg.content, gg.name())?;
        let eos = eos_token(&gg.content, &tokenizer, gg.name())?;
        Self::new(tokenizer, eos, None, vec![stage])
    }

    /// Loads every shard of a split model from `dir` (with its `manifest.json`), verifying
    /// each file's sha256.
    pub fn from_shards(dir: &Path, kv: KvCacheConfig) -> Result<Self> {
        let manifest = ModelManifest::load(&dir.join(MANIFEST_FILE))?;
        if manifest.family != ModelFamily::Llama {
            return Err(Error::Manifest {
                model_id: manifest.model_id,
                reason: format!("family {:?}, expected llama", manifest.family),
            });
        }
        let mut client = None;
        let mut workers = Vec::new();
        let mut tokenizer = None;
        for (i, s) in manifest.shards.iter().enumerate() {
            let bytes = manifest.read_shard(dir, i)?;
            let gg = GgufFile::from_bytes(bytes, &dir.join(&s.file).display().to_string())?;
            if s.embeddings {
                let t = tokenizer_from_gguf(&gg.content, gg.name())?;
                let eos = eos_token(&gg.content, &t, gg.name())?;
                tokenizer = Some((t, eos));
            }
            let stage = LlamaStage::load(&gg, s.layers, s.embeddings, s.head, kv)?;
            if s.layers.is_empty() {
                client = Some(stage);
            } else {
                workers.push(stage);
            }
        }
        let (tokenizer, eos) = tokenizer.ok_or_else(|| Error::Manifest {
            model_id: manifest.model_id.clone(),
            reason: "no shard holds the embeddings".into(),
        })?;
        Self::new(tokenizer, eos, client, workers)
    }

    /// Assembles a generator from loaded stages (`client` holds the ends, if separate).
    pub fn new(
        tokenizer: Tokenizer,
        eos: u32,
        client: Option<LlamaStage>,
        workers: Vec<LlamaStage>,
    ) -> Result<Self> {
        let first = workers.first().ok_or(Error::Empty("pipeline"))?;
        let cfg = first.config().clone();
        Ok(Self {
            tokenizer,
            client,
            workers,
            eos,
            vocab_size: cfg.vocab_size,
            context_length: cfg.context_length,
        })
    }

    /// The tokenizer rebuilt from the GGUF metadata.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The end-of-sequence token id.
    pub fn eos_token(&self) -> u32 {
        self.eos
    }

    /// The worker stages, in order.
    pub fn stages(&self) -> &[LlamaStage] {
        &self.workers
    }

    /// The ChatML prompt for one user message, with SmolLM2's default system prompt.
    pub fn chat_prompt(user: &str) -> String {
        Self::chat_prompt_with_system(SMOLLM2_SYSTEM_PROMPT, user)
    }

    /// The ChatML prompt for one user message after a system message.
    pub fn chat_prompt_with_system(system: &str, user: &str) -> String {
        format!(
            "<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
        )
    }

    /// Token ids of `text` (special tokens such as `<|im_start|>` are recognized).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        if text.len() > MAX_PROMPT_BYTES {
            return Err(Error::TooLarge {
                what: "prompt length in bytes",
                got: text.len(),
                limit: MAX_PROMPT_BYTES,
            });
        }
        let enc = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| Error::tokenizer("encoding a prompt", e))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Text of `ids`, special tokens removed.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer
            .decode(ids, true)
            .map_err(|e| Error::tokenizer("decoding tokens", e))
    }

    /// Runs `ids` (at `position` of `session`) through every stage: the next-token logits.
    pub fn step(&mut self, session: u64, position: u32, ids: &[u32]) -> Result<Vec<f32>> {
        Ok(self.step_traced(session, position, ids)?.0)
    }

    /// Like [`TextGenerator::step`], also returning the sha256 of each activation that
    /// crossed a stage boundary (what each stage would commit to), in order.
    pub fn step_traced(
        &mut self,
        session: u64,
        position: u32,
        ids: &[u32],
    ) -> Result<(Vec<f32>, Vec<Fingerprint>)> {
        let mut act = Activation::tokens(session, position, ids)?;
        let mut trace = Vec::new();
        if let Some(c) = self.client.as_mut().filter(|c| c.has_embedding()) {
            act = c.forward(&act)?;
            trace.push(act.sha256());
        }
        for w in &mut self.workers {
            act = w.forward(&act)?;
            trace.push(act.sha256());
        }
        if let Some(c) = self.client.as_mut().filter(|c| c.has_head()) {
            act = c.forward(&act)?;
            trace.push(act.sha256());
        }
        match (act.as_f32(), act.shape()) {
            (Some(logits), [1, v]) if *v == self.vocab_size => Ok((logits.to_vec(), trace)),
            _ => Err(Error::ActivationShape {
                context: "pipeline output".into(),
                got: act.shape().to_vec(),
                expected: format!("[1, {}] f32 logits", self.vocab_size),
            }),
        }
    }

    /// Generates from a chat message (the ChatML prompt of [`TextGenerator::chat_prompt`]).
    pub fn chat(
        &mut self,
        session: u64,
        user: &str,
        params: &GenerationParams,
    ) -> Result<Generation> {
        let ids = self.encode(&Self::chat_prompt(user))?;
        self.generate(session, &ids, params)
    }

    /// Generates up to `params.max_new_tokens` tokens after `prompt`, stopping at the
    /// end-of-sequence token. The session's caches are dropped at the end.
    pub fn generate(
        &mut self,
        session: u64,
        prompt: &[u32],
        params: &GenerationParams,
    ) -> Result<Generation> {
        if prompt.is_empty() {
            return Err(Error::Empty("prompt"));
        }
        if params.max_new_tokens > MAX_NEW_TOKENS {
            return Err(Error::TooLarge {
                what: "max_new_tokens",
                got: params.max_new_tokens,
                limit: MAX_NEW_TOKENS,
            });
        }
        if prompt.len() + params.max_new_tokens > self.context_length {
            return Err(Error::TooLarge {
                what: "prompt plus new tokens",
                got: prompt.len() + params.max_new_tokens,
                limit: self.context_length,
            });
        }
        let mut sampler = Sampler::new(params.sampling)?;
        let result = (|| {
            let mut tokens = Vec::with_capacity(params.max_new_tokens);
            let mut stopped_at_eos = false;
            if params.max_new_tokens > 0 {
                let mut logits = self.step(session, 0, prompt)?;
                loop {
                    let next = sampler.sample(&logits)?;
                    tokens.push(next);
                    if next == self.eos {
                        stopped_at_eos = true;
                        break;
                    }
                    if tokens.len() == params.max_new_tokens {
                        break;
                    }
                    let pos = (prompt.len() + tokens.len() - 1) as u32;
                    logits = self.step(session, pos, &[next])?;
                }
            }
            let text = self.decode(&tokens)?;
            Ok(Generation {
                prompt_tokens: prompt.to_vec(),
                tokens,
                text,
                stopped_at_eos,
            })
        })();
        self.end_session(session);
        result
    }

    /// Drops a session's caches in every stage.
    pub fn end_session(&mut self, session: u64) {
        for w in &mut self.workers {
            w.end_session(session);
        }
    }
}

/// Chooses tokens from logits.
#[derive(Debug)]
pub struct Sampler {
    sampling: Sampling,
    rng: rand_chacha::ChaCha20Rng,
}

impl Sampler {
    /// Checks the parameters and seeds the generator.
    pub fn new(sampling: Sampling) -> Result<Self> {
        let seed = match sampling {
            Sampling::Greedy => 0,
            Sampling::Seeded {
                seed,
                temperature,
                top_p,
                ..
            } => {
                if !(temperature > 0.0 && temperature.is_finite()) {
                    return Err(Error::field(
                        "Sampling",
                        "temperature",
                        format!("{temperature} must be > 0"),
                    ));
                }
                if !(top_p > 0.0 && top_p <= 1.0) {
                    return Err(Error::field(
                        "Sampling",
                        "top_p",
                        format!("{top_p} is outside (0, 1]"),
                    ));
                }
                seed
            }
        };
        Ok(Self {
            sampling,
            rng: rand_chacha::ChaCha20Rng::seed_from_u64(seed),
        })
    }

    /// The next token.
    pub fn sample(&mut self, logits: &[f32]) -> Result<u32> {
        let Sampling::Seeded {
            temperature,
            top_k,
            top_p,
            ..
        } = self.sampling
        else {
            return argmax(logits);
        };
        argmax(logits)?; // rejects NaN and empty logits
        let mut order: Vec<u32> = (0..logits.len() as u32).collect();
        // Descending by logit, ties by id: a total order, so every machine agrees.
        order.sort_by(|&a, &b| {
            logits[b as usize]
                .total_cmp(&logits[a as usize])
                .then(a.cmp(&b))
        });
        if top_k > 0 {
            order.truncate(top_k);
        }
        let max = f64::from(logits[order[0] as usize]);
        let weights: Vec<f64> = order
            .iter()
            .map(|&i| ((f64::from(logits[i as usize]) - max) / temperature).exp())
            .collect();
        let total: f64 = weights.iter().sum();
        let mut kept = 0;
        let mut mass = 0.0;
        for w in &weights {
            mass += w / total;
            kept += 1;
            if mass >= top_p {
                break;
            }
        }
        let kept_total: f64 = weights[..kept].iter().sum();
        let mut u = self.rng.r#gen::<f64>() * kept_total;
        for (i, w) in weights[..kept].iter().enumerate() {
            if u < *w {
                return Ok(order[i]);
            }
            u -= w;
        }
        Ok(order[kept - 1])
    }
}

/// Rebuilds the tokenizer from GGUF metadata (no hub download).
///
/// candle's builder covers the common pre-tokenizers; SmolLM2's (`smollm`: digits split one
/// by one, then GPT-2 byte-level without a prefix space, as in its `tokenizer.json` and in
/// llama.cpp) is set here.
pub fn tokenizer_from_gguf(ct: &gguf_file::Content, file: &str) -> Result<Tokenizer> {
    let mut tokenizer = Tokenizer::from_gguf(ct)
        .map_err(|e| Error::tokenizer(format!("{file}: GGUF metadata"), e))?;
    let pre = ct
        .metadata
        .get("tokenizer.ggml.pre")
        .and_then(|v| v.to_string().ok())
        .cloned()
        .unwrap_or_default();
    if pre == "smollm" {
        let seq = Sequence::new(vec![
            PreTokenizerWrapper::Digits(Digits::new(true)),
            PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, true)),
        ]);
        tokenizer.with_pre_tokenizer(Some(PreTokenizerWrapper::Sequence(seq)));
    }
    Ok(tokenizer)
}

fn eos_token(ct: &gguf_file::Content, tokenizer: &Tokenizer, file: &str) -> Result<u32> {
    let eos = ct
        .metadata
        .get("tokenizer.ggml.eos_token_id")
        .ok_or_else(|| Error::field(file, "tokenizer.ggml.eos_token_id", "missing"))?
        .to_u32()
        .map_err(|e| Error::field(file, "tokenizer.ggml.eos_token_id", e.to_string()))?;
    if tokenizer.id_to_token(eos).is_none() {
        return Err(Error::field(
            file,
            "tokenizer.ggml.eos_token_id",
            format!("{eos} is not in the vocabulary"),
        ));
    }
    Ok(eos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_first_maximum() {
        let mut s = Sampler::new(Sampling::Greedy).unwrap();
        assert_eq!(s.sample(&[0.1, 3.0, 3.0, -1.0]).unwrap(), 1);
        assert!(s.sample(&[0.1, f32::NAN]).is_err());
        assert!(s.sample(&[]).is_err());
    }

    #[test]
    fn seeded_sampling_is_reproducible_and_respects_top_k() {
        let logits: Vec<f32> = (0..100).map(|i| (i as f32 * 0.7).sin()).collect();
        let params = Sampling::Seeded {
            seed: 42,
            temperature: 1.0,
            top_k: 5,
            top_p: 1.0,
        };
        let draw = || {
            let mut s = Sampler::new(params).unwrap();
            (0..50)
                .map(|_| s.sample(&logits).unwrap())
                .collect::<Vec<_>>()
        };
        let a = draw();
        assert_eq!(a, draw());
        let mut top5: Vec<u32> = (0..100).collect();
        top5.sort_by(|&x, &y| logits[y as usize].total_cmp(&logits[x as usize]));
        top5.truncate(5);
        assert!(a.iter().all(|t| top5.contains(t)));
        assert!(a.iter().collect::<std::collections::BTreeSet<_>>().len() > 1);
        let mut other = Sampler::new(Sampling::Seeded {
            seed: 43,
            temperature: 1.0,
            top_k: 5,
            top_p: 1.0,
        })
        .unwrap();
        let b: Vec<u32> = (0..50).map(|_| other.sample(&logits).unwrap()).collect();
        assert_ne!(a, b);
    }

    #[test]
    fn rejects_bad_sampling_parameters() {
        for (temperature, top_p) in [
            (0.0, 0.9),
            (-1.0, 0.9),
            (1.0, 0.0),
            (1.0, 1.5),
            (f64::NAN, 0.5),
        ] {
            assert!(
                Sampler::new(Sampling::Seeded {
                    seed: 0,
                    temperature,
                    top_k: 0,
                    top_p
                })
                .is_err()
            );
        }
    }
}
