//! `vichaind zk` and `vichaind model`: Groth16 keys and proofs, model commitments and
//! shards (the worker runtime's tools; built with the `worker` feature).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;
use vichain_worker::zk_tool::{self, OutputModeArg, WeightModeArg};

#[derive(Debug, Subcommand)]
pub(crate) enum ZkCmd {
    /// Circuit-specific trusted setup for a model: writes proving.key, verifying.key
    /// (with .sha256 files) and keys.json under --out. Whoever runs it can forge
    /// proofs for this circuit: in a permissioned network the model owner or the
    /// authority runs it with OS entropy and publishes only the keys.
    Setup {
        /// A VQMLP model file (e.g. inference/data/digits-mlp.vqmlp).
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// public: weights are circuit constants; private: weights are witnesses
        /// opened against the model commitment.
        #[arg(long, value_enum, default_value_t = WeightModeArg::Public)]
        mode: WeightModeArg,
        /// What the proof reveals: argmax, logits or commitment.
        #[arg(long, value_enum, default_value_t = OutputModeArg::Argmax)]
        output: OutputModeArg,
        /// 32-byte hex seed for a reproducible setup (tests only: it lets anyone forge proofs).
        #[arg(long)]
        seed: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Run the model on an input and prove it for a job; writes a proof bundle (JSON).
    Prove {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        pk: PathBuf,
        /// Expected sha256 of the proving key (default: the .sha256 file beside it).
        #[arg(long)]
        pk_hash: Option<String>,
        /// int8 values separated by commas or spaces, or @FILE (each byte an int8).
        #[arg(long)]
        input: String,
        #[arg(long)]
        job_id: u64,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_enum, default_value_t = WeightModeArg::Public)]
        mode: WeightModeArg,
        #[arg(long, value_enum, default_value_t = OutputModeArg::Argmax)]
        output: OutputModeArg,
        /// Salt of the input commitment, 32-byte hex (random by default).
        #[arg(long)]
        salt: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Verify a proof bundle against a verifying key pinned by its sha256.
    Verify {
        #[arg(long)]
        vk: PathBuf,
        /// Expected sha256 of the verifying key (default: the .sha256 file beside it).
        #[arg(long)]
        vk_hash: Option<String>,
        /// A proof bundle written by `zk prove`.
        #[arg(long)]
        proof: PathBuf,
        /// Check the bundle is for this job (the public input is derived from it).
        #[arg(long)]
        job_id: Option<u64>,
        /// Check the bundle claims this model commitment (hex).
        #[arg(long)]
        model_commitment: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ModelCmd {
    /// Recompute a model file's sha256 and Poseidon commitment (the two values the
    /// model registry records).
    Commit {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Cut a model into layer-range shard files plus manifest.json (each shard with
    /// the sha256 of its bytes): a Hugging Face BERT directory, a Llama GGUF file, or
    /// a VQMLP file.
    Split {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// The id the model is (or will be) registered under.
        #[arg(long)]
        id: String,
        /// Contiguous layer ranges covering the model, e.g. 0..2,2..4,4..6.
        #[arg(long, value_delimiter = ',', required = true)]
        layers: Vec<String>,
        /// Put embeddings and head in a separate shard the client keeps (split
        /// learning); otherwise the first shard carries the embeddings, the last the head.
        #[arg(long)]
        client_keeps_ends: bool,
        #[arg(long)]
        json: bool,
    },
}

fn model_split(
    model: &std::path::Path,
    out: &std::path::Path,
    id: &str,
    layers: &[String],
    client_keeps_ends: bool,
    json: bool,
) -> Result<()> {
    use vichain_inference::{ShardLayout, split_bert, split_gguf, split_mlp};
    let ranges = layers
        .iter()
        .map(|l| vichain_worker::serve::parse_layer_range(l))
        .collect::<Result<Vec<_>>>()?;
    let layout = if client_keeps_ends {
        ShardLayout::ClientKeepsEnds
    } else {
        ShardLayout::Pipeline
    };
    let ext = model
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default();
    let manifest = if model.is_dir() {
        split_bert(model, out, id, &ranges, layout)?
    } else if ext == "gguf" {
        split_gguf(model, out, id, &ranges, layout)?
    } else if ext == "vqmlp" {
        if client_keeps_ends {
            anyhow::bail!(
                "an MLP has no embedding or head to keep apart: drop --client-keeps-ends"
            );
        }
        let (mlp, _) = zk_tool::load_model(model)?;
        split_mlp(&mlp, out, id, &ranges)?
    } else {
        anyhow::bail!(
            "{}: expected a Hugging Face model directory, a .gguf file or a .vqmlp file",
            model.display()
        );
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&manifest)?);
    } else {
        println!(
            "wrote {} shards and {}/manifest.json",
            manifest.shards.len(),
            out.display()
        );
        for s in &manifest.shards {
            println!(
                "  {:<24} layers {}..{}  {}{} sha256 {}",
                s.file,
                s.layers.start,
                s.layers.end,
                if s.embeddings { "+embeddings " } else { "" },
                if s.head { "+head" } else { "" },
                s.sha256
            );
        }
    }
    Ok(())
}

pub(crate) fn zk(cmd: ZkCmd) -> Result<()> {
    match cmd {
        ZkCmd::Setup {
            model,
            out,
            mode,
            output,
            seed,
            json,
        } => {
            let seed = seed
                .map(|s| zk_tool::parse_hex32(&s, "--seed"))
                .transpose()?;
            if seed.is_some() {
                eprintln!(
                    "warning: a seeded setup is for tests only; anyone who knows the seed can forge proofs"
                );
            }
            let s = zk_tool::setup(&model, &out, mode.into(), output.into(), seed, !json)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                println!(
                    "mode                 {} weights, {} output",
                    s.mode, s.output
                );
                println!("model sha256         {}", s.model_sha256);
                println!("model commitment     {}", s.model_commitment);
                println!(
                    "proving key          {} ({} bytes)",
                    s.proving_key.display(),
                    s.proving_key_bytes
                );
                println!("proving key sha256   {}", s.proving_key_sha256);
                println!(
                    "verifying key        {} ({} bytes)",
                    s.verifying_key.display(),
                    s.verifying_key_bytes
                );
                println!("verifying key sha256 {}", s.verifying_key_sha256);
                println!("setup took {:.2}s", s.setup_seconds);
            }
            Ok(())
        }
        ZkCmd::Prove {
            model,
            pk,
            pk_hash,
            input,
            job_id,
            out,
            mode,
            output,
            salt,
            json,
        } => {
            let input_salt = match salt {
                Some(s) => vichain_zk::Salt(zk_tool::parse_hex32(&s, "--salt")?),
                None => vichain_zk::Salt::random(),
            };
            let opts = zk_tool::ProveOptions {
                mode: mode.into(),
                output: output.into(),
                input: zk_tool::parse_input(&input)?,
                job_id,
                input_salt,
                output_salt: vichain_zk::Salt::random(),
            };
            let start = std::time::Instant::now();
            let bundle = zk_tool::prove(&model, &pk, pk_hash.as_deref(), &opts)?;
            let text = serde_json::to_string_pretty(&bundle)?;
            std::fs::write(&out, &text).with_context(|| format!("writing {}", out.display()))?;
            if json {
                println!("{text}");
            } else {
                println!(
                    "proved job {} in {:.2}s: output {:?}; bundle written to {}",
                    bundle.job_id,
                    start.elapsed().as_secs_f64(),
                    bundle.output,
                    out.display()
                );
            }
            Ok(())
        }
        ZkCmd::Verify {
            vk,
            vk_hash,
            proof,
            job_id,
            model_commitment,
            json,
        } => {
            let bundle = zk_tool::ProofBundle::load(&proof)?;
            if let Some(id) = job_id {
                anyhow::ensure!(
                    bundle.job_id == id,
                    "the bundle is for job {}, not job {id}",
                    bundle.job_id
                );
            }
            if let Some(c) = model_commitment {
                anyhow::ensure!(
                    zk_tool::parse_hex32(&c, "--model-commitment")?
                        == zk_tool::parse_hex32(&bundle.model_commitment, "model_commitment")?,
                    "the bundle claims model commitment {}, not {c}",
                    bundle.model_commitment
                );
            }
            zk_tool::verify(&vk, vk_hash.as_deref(), &bundle)?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"valid": true, "job_id": bundle.job_id, "output": bundle.output})
                );
            } else {
                println!(
                    "valid: proof for job {} with output {:?}",
                    bundle.job_id, bundle.output
                );
            }
            Ok(())
        }
    }
}

/// `vichaind model commit|split`.
pub(crate) fn model(cmd: ModelCmd) -> Result<()> {
    match cmd {
        ModelCmd::Split {
            model,
            out,
            id,
            layers,
            client_keeps_ends,
            json,
        } => model_split(&model, &out, &id, &layers, client_keeps_ends, json),
        ModelCmd::Commit { model, json } => {
            let (_, info) = zk_tool::load_model(&model)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                println!("model       {}", info.path.display());
                println!("sha256      {}", info.sha256);
                println!("commitment  {}", info.commitment);
                println!(
                    "shape       {} layers, {} -> {}, {} weights",
                    info.layers, info.input_dim, info.output_dim, info.weights
                );
            }
            Ok(())
        }
    }
}
