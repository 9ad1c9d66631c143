//! Loading one shard of a split model and running activations through it.

use std::path::Path;

use vichain_zk::{ACTIVATION_MAX, QuantizedLayer, QuantizedMlp};

use crate::{
    Activation, ActivationDType, ActivationData, Error, Fingerprint, LayerRange, ModelFamily,
    ModelManifest, Result,
    bert::{BertConfig, BertStage, safetensors_var_builder},
    kv::KvCacheConfig,
    llama::{GgufFile, LlamaStage},
    manifest::MANIFEST_FILE,
};

/// One loaded shard of any supported family: activation in, activation out.
#[derive(Debug)]
pub enum Shard {
    /// Part of a BERT encoder (stateless).
    Bert(BertStage),
    /// Part of a Llama decoder (KV cache per session).
    Llama(LlamaStage),
    /// Part of an integer MLP (stateless).
    Mlp(MlpStage),
}

impl Shard {
    /// Loads shard `index` of the model described by `manifest` from `dir`, verifying the
    /// sha256 of every file it reads.
    pub fn load(
        dir: &Path,
        manifest: &ModelManifest,
        index: usize,
        kv: KvCacheConfig,
    ) -> Result<Self> {
        let bytes = manifest.read_shard(dir, index)?;
        let entry = &manifest.shards[index];
        let name = dir.join(&entry.file).display().to_string();
        match manifest.family {
            ModelFamily::Bert => {
                let config = manifest.read_file(dir, "config.json")?;
                let cfg =
                    BertConfig::from_json(&config, &dir.join("config.json").display().to_string())?;
                if cfg.num_hidden_layers != manifest.total_layers {
                    return Err(Error::Manifest {
                        model_id: manifest.model_id.clone(),
                        reason: format!(
                            "total_layers {} but config.json has {}",
                            manifest.total_layers, cfg.num_hidden_layers
                        ),
                    });
                }
                let vb = safetensors_var_builder(&bytes, &name)?;
                Ok(Self::Bert(BertStage::load(
                    vb,
                    &cfg,
                    entry.layers,
                    entry.embeddings,
                    entry.head,
                )?))
            }
            ModelFamily::Llama => {
                let gg = GgufFile::from_bytes(bytes, &name)?;
                Ok(Self::Llama(LlamaStage::load(
                    &gg,
                    entry.layers,
                    entry.embeddings,
                    entry.head,
                    kv,
                )?))
            }
            ModelFamily::QuantizedMlp => {
                let part = QuantizedMlp::from_bytes(&bytes)?;
                Ok(Self::Mlp(MlpStage::new(
                    part.layers,
                    entry.layers,
                    manifest.total_layers,
                )?))
            }
        }
    }

    /// Runs the shard on an activation.
    pub fn forward(&mut self, input: &Activation) -> Result<Activation> {
        match self {
            Self::Bert(s) => s.forward(input),
            Self::Llama(s) => s.forward(input),
            Self::Mlp(s) => s.forward(input),
        }
    }

    /// Drops a generation session's state (a no-op for stateless shards).
    pub fn end_session(&mut self, session: u64) {
        if let Self::Llama(s) = self {
            s.end_session(session);
        }
    }

    /// The layers the shard runs.
    pub fn range(&self) -> LayerRange {
        match self {
            Self::Bert(s) => s.range(),
            Self::Llama(s) => s.range(),
            Self::Mlp(s) => s.range,
        }
    }
}

/// Layers `range` of an integer MLP, computed exactly as [`vichain_zk::QuantizedMlp`] does.
#[derive(Clone, Debug)]
pub struct MlpStage {
    layers: Vec<QuantizedLayer>,
    range: LayerRange,
    total: usize,
}

impl MlpStage {
    /// A stage running `layers` as layers `range` of a model of `total` layers.
    pub fn new(layers: Vec<QuantizedLayer>, range: LayerRange, total: usize) -> Result<Self> {
        range.check(total)?;
        if layers.len() != range.len() {
            return Err(Error::LayerRange {
                start: range.start,
                end: range.start + layers.len(),
                layers: total,
            });
        }
        Ok(Self {
            layers,
            range,
            total,
        })
    }

    /// `[1, in_dim]` i64 (int8 values for layer 0, `[0, 127]` after) to `[1, out_dim]` i64.
    pub fn forward(&self, input: &Activation) -> Result<Activation> {
        let context = format!("mlp stage {}", self.range);
        input.expect_dtype(&context, ActivationDType::I64)?;
        let in_dim = self.layers[0].in_dim;
        if input.shape() != [1, in_dim] {
            return Err(Error::ActivationShape {
                context,
                got: input.shape().to_vec(),
                expected: format!("[1, {in_dim}]"),
            });
        }
        let x = input.as_i64().unwrap_or_default();
        let (lo, hi) = if self.range.start == 0 {
            (-128, 127)
        } else {
            (0, ACTIVATION_MAX)
        };
        if let Some((i, v)) = x.iter().enumerate().find(|(_, v)| **v < lo || **v > hi) {
            return Err(Error::field(
                context,
                format!("[{i}]"),
                format!("{v} is outside [{lo}, {hi}]"),
            ));
        }
        let mut x = x.to_vec();
        for (i, layer) in self.layers.iter().enumerate() {
            let last = self.range.start + i + 1 == self.total;
            x = layer.forward(&x, last);
        }
        Activation::new(
            input.session(),
            input.position(),
            vec![1, x.len()],
            ActivationData::I64(x),
        )
    }
}

/// All the shards of a split model, run in order in this process.
///
/// With the client-keeps-ends layout the client's shard runs first (embeddings) and last
/// (head). Each activation crossing a boundary is hashed, as a stage would commit to it.
#[derive(Debug)]
pub struct Pipeline {
    manifest: ModelManifest,
    client: Option<Shard>,
    workers: Vec<Shard>,
}

/// The result of [`Pipeline::run`].
#[derive(Clone, Debug, PartialEq)]
pub struct PipelineOutput {
    /// The model's output.
    pub output: Activation,
    /// sha256 of each activation emitted by a stage, in order.
    pub stage_hashes: Vec<Fingerprint>,
}

impl Pipeline {
    /// Loads every shard listed in `dir/manifest.json`.
    pub fn load(dir: &Path, kv: KvCacheConfig) -> Result<Self> {
        let manifest = ModelManifest::load(&dir.join(MANIFEST_FILE))?;
        let mut client = None;
        let mut workers = Vec::new();
        for (i, s) in manifest.shards.iter().enumerate() {
            let shard = Shard::load(dir, &manifest, i, kv)?;
            if s.layers.is_empty() {
                client = Some(shard);
            } else {
                workers.push(shard);
            }
        }
        Ok(Self {
            manifest,
            client,
            workers,
        })
    }

    /// The manifest the pipeline was loaded from.
    pub fn manifest(&self) -> &ModelManifest {
        &self.manifest
    }

    /// Runs `input` through every stage.
    pub fn run(&mut self, input: &Activation) -> Result<PipelineOutput> {
        let client_embeds = self
            .manifest
            .client_shard()
            .is_some_and(|(_, s)| s.embeddings);
        let client_head = self.manifest.client_shard().is_some_and(|(_, s)| s.head);
        let mut act = input.clone();
        let mut stage_hashes = Vec::new();
        if let Some(c) = self.client.as_mut().filter(|_| client_embeds) {
            act = c.forward(&act)?;
            stage_hashes.push(act.sha256());
        }
        for w in &mut self.workers {
            act = w.forward(&act)?;
            stage_hashes.push(act.sha256());
        }
        if let Some(c) = self.client.as_mut().filter(|_| client_head) {
            act = c.forward(&act)?;
            stage_hashes.push(act.sha256());
        }
        Ok(PipelineOutput {
            output: act,
            stage_hashes,
        })
    }

    /// Drops a generation session's state in every stage.
    pub fn end_session(&mut self, session: u64) {
        for w in &mut self.workers {
            w.end_session(session);
        }
    }
}
