//! The zero-knowledge commands of `vichaind` (`zk setup`, `zk prove`, `zk verify`,
//! `model commit`) as functions, so they can be tested without the binary.
//!
//! Files: `setup` writes `proving.key` and `verifying.key` (compressed arkworks
//! encodings) with `*.sha256` files beside them and a `keys.json` summary; a key is
//! loaded only if its sha256 is the one given on the command line or, failing that,
//! the one in its `.sha256` file. `prove` writes a [`ProofBundle`] (JSON), which
//! `verify` checks and `vichain tx submit-proof` sends to the chain.

use std::{
    io::Write,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use vichain_proto::v1 as pb;
use vichain_zk::{
    Commitment, InferenceCircuit, InferencePrivate, InferencePublic, JobId, KeyHash, OutputMode,
    PublicOutput, QuantizedMlp, Salt, WeightMode,
};

/// `--mode`: `public` (weights are circuit constants; cheapest) or `private` (weights
/// are witnesses opened against the model commitment). The ledger's [`WeightMode`]
/// knows nothing of clap, so the flag has its own enum.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum WeightModeArg {
    Public,
    Private,
}

impl From<WeightModeArg> for WeightMode {
    fn from(m: WeightModeArg) -> Self {
        match m {
            WeightModeArg::Public => Self::Public,
            WeightModeArg::Private => Self::Private,
        }
    }
}

/// `--output`: `argmax`, `logits` or `commitment` (see [`OutputMode`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputModeArg {
    Argmax,
    Logits,
    Commitment,
}

impl From<OutputModeArg> for OutputMode {
    fn from(m: OutputModeArg) -> Self {
        match m {
            OutputModeArg::Argmax => Self::Argmax,
            OutputModeArg::Logits => Self::Logits,
            OutputModeArg::Commitment => Self::Commitment,
        }
    }
}

fn weight_mode_name(m: WeightMode) -> &'static str {
    match m {
        WeightMode::Public => "public",
        WeightMode::Private => "private",
    }
}

fn output_mode_name(m: OutputMode) -> &'static str {
    match m {
        OutputMode::Argmax => "argmax",
        OutputMode::Logits => "logits",
        OutputMode::Commitment => "commitment",
    }
}

pub use vichain_validator::tee_tool::parse_hex32;

/// A model file, with the two identities the registry records for it.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub path: PathBuf,
    /// sha256 of the file (the shard hash in RegisterModel).
    pub sha256: String,
    /// Poseidon commitment of the quantized weights (RegisterModel's `commitment`).
    pub commitment: String,
    pub layers: usize,
    pub input_dim: usize,
    pub output_dim: usize,
    pub weights: usize,
}

/// Loads a `VQMLP` model file and recomputes its sha256 and Poseidon commitment.
pub fn load_model(path: &Path) -> Result<(Arc<QuantizedMlp>, ModelInfo)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let model = QuantizedMlp::from_bytes(&bytes)
        .with_context(|| format!("{} is not a VQMLP model file", path.display()))?;
    let info = ModelInfo {
        path: path.to_path_buf(),
        sha256: hex::encode(Sha256::digest(&bytes)),
        commitment: hex::encode(vichain_zk::model_commitment(&model).to_bytes()),
        layers: model.layers.len(),
        input_dim: model.input_dim(),
        output_dim: model.output_dim(),
        weights: model.num_weights(),
    };
    Ok((Arc::new(model), info))
}

/// What `zk setup` wrote.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SetupSummary {
    pub mode: String,
    pub output: String,
    pub model_sha256: String,
    pub model_commitment: String,
    pub proving_key: PathBuf,
    pub proving_key_sha256: String,
    pub proving_key_bytes: usize,
    pub verifying_key: PathBuf,
    pub verifying_key_sha256: String,
    pub verifying_key_bytes: usize,
    pub setup_seconds: f64,
}

/// Runs `work` while printing elapsed time to stderr once a second (when `show`).
fn with_progress<T>(label: &str, show: bool, work: impl FnOnce() -> T) -> T {
    let done = Arc::new(AtomicBool::new(false));
    use std::io::IsTerminal;
    if show && !std::io::stderr().is_terminal() {
        eprintln!("  {label} ...");
    }
    let ticker = (show && std::io::stderr().is_terminal()).then(|| {
        let done = done.clone();
        let label = label.to_owned();
        std::thread::spawn(move || {
            let start = Instant::now();
            let spinner = ['|', '/', '-', '\\'];
            let mut i = 0;
            while !done.load(Ordering::Relaxed) {
                eprint!(
                    "\r  {} {label} ... {:.1}s",
                    spinner[i % 4],
                    start.elapsed().as_secs_f64()
                );
                let _ = std::io::stderr().flush();
                i += 1;
                std::thread::sleep(Duration::from_millis(200));
            }
            eprintln!(
                "\r  done: {label} in {:.1}s   ",
                start.elapsed().as_secs_f64()
            );
        })
    });
    let out = work();
    done.store(true, Ordering::Relaxed);
    if let Some(t) = ticker {
        let _ = t.join();
    }
    out
}

/// Circuit-specific Groth16 setup for `model`, keys written under `out`.
/// `seed` makes it reproducible and is for tests only: whoever knows it can forge proofs.
pub fn setup(
    model_path: &Path,
    out: &Path,
    mode: WeightMode,
    output: OutputMode,
    seed: Option<[u8; 32]>,
    progress: bool,
) -> Result<SetupSummary> {
    let (model, info) = load_model(model_path)?;
    if progress {
        eprintln!(
            "[1/3] model {}: {} layers, {} weights, {} -> {}",
            model_path.display(),
            info.layers,
            info.weights,
            info.input_dim,
            info.output_dim
        );
        eprintln!(
            "[2/3] Groth16 setup on BN254 ({} weights, {} output)",
            weight_mode_name(mode),
            output_mode_name(output)
        );
    }
    let circuit = InferenceCircuit::for_setup(model, mode, output)?;
    let start = Instant::now();
    let keys = with_progress("circuit synthesis and setup", progress, || {
        vichain_zk::setup(circuit, seed)
    })?;
    let setup_seconds = start.elapsed().as_secs_f64();
    if progress {
        eprintln!("[3/3] writing keys to {}", out.display());
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let pk = vichain_zk::encode_proving_key(&keys.proving_key)?;
    let vk = vichain_zk::encode_verifying_key(&keys.verifying_key)?;
    let pk_path = out.join("proving.key");
    let vk_path = out.join("verifying.key");
    write_key(&pk_path, &pk, &keys.proving_key_hash)?;
    write_key(&vk_path, &vk, &keys.verifying_key_hash)?;
    let summary = SetupSummary {
        mode: weight_mode_name(mode).into(),
        output: output_mode_name(output).into(),
        model_sha256: info.sha256,
        model_commitment: info.commitment,
        proving_key: pk_path,
        proving_key_sha256: keys.proving_key_hash.to_string(),
        proving_key_bytes: pk.len(),
        verifying_key: vk_path,
        verifying_key_sha256: keys.verifying_key_hash.to_string(),
        verifying_key_bytes: vk.len(),
        setup_seconds,
    };
    std::fs::write(
        out.join("keys.json"),
        serde_json::to_string_pretty(&summary)?,
    )?;
    Ok(summary)
}

fn write_key(path: &Path, bytes: &[u8], hash: &KeyHash) -> Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))?;
    std::fs::write(hash_path(path), format!("{hash}\n"))?;
    Ok(())
}

fn hash_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".sha256");
    PathBuf::from(s)
}

/// Reads a key file and the hash it must have: `expected` if given, else the
/// `.sha256` file beside it. The decoders refuse bytes with another hash.
pub fn read_key(path: &Path, expected: Option<&str>) -> Result<(Vec<u8>, KeyHash)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let hex = match expected {
        Some(h) => h.to_owned(),
        None => std::fs::read_to_string(hash_path(path)).with_context(|| {
            format!(
                "no hash given for {} and no {} beside it",
                path.display(),
                hash_path(path).display()
            )
        })?,
    };
    let hash = KeyHash(parse_hex32(&hex, "key hash")?);
    Ok((bytes, hash))
}

/// A proof with the public inputs it claims: what `zk prove` writes, `zk verify`
/// checks and `vichain tx submit-proof` sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofBundle {
    pub job_id: u64,
    /// Compressed Groth16 proof, hex.
    pub proof: String,
    pub model_commitment: String,
    pub input_commitment: String,
    /// Salt of the input commitment, hex; the ledger needs it for on-chain inputs.
    pub input_salt: String,
    pub output: BundleOutput,
    /// sha256 of the verifying key the proof is for.
    pub verifying_key_sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BundleOutput {
    Argmax(u32),
    Logits(Vec<i64>),
    Commitment(String),
}

impl ProofBundle {
    pub fn public(&self) -> Result<InferencePublic> {
        Ok(InferencePublic {
            model_commitment: Commitment::from_bytes(&parse_hex32(
                &self.model_commitment,
                "model_commitment",
            )?)?,
            input_commitment: Commitment::from_bytes(&parse_hex32(
                &self.input_commitment,
                "input_commitment",
            )?)?,
            job_id: JobId::from_u64(self.job_id),
            output: match &self.output {
                BundleOutput::Argmax(i) => PublicOutput::Argmax(*i),
                BundleOutput::Logits(l) => PublicOutput::Logits(l.clone()),
                BundleOutput::Commitment(c) => {
                    PublicOutput::Commitment(Commitment::from_bytes(&parse_hex32(c, "output")?)?)
                }
            },
        })
    }

    pub fn proof_bytes(&self) -> Result<Vec<u8>> {
        hex::decode(&self.proof).context("proof is not hex")
    }

    /// The SubmitProof transaction body for this bundle.
    pub fn to_tx(&self) -> Result<pb::SubmitProof> {
        use pb::inference_output::Value;
        let value = match &self.output {
            BundleOutput::Argmax(i) => Value::Argmax(*i),
            BundleOutput::Logits(l) => Value::Logits(pb::Logits { values: l.clone() }),
            BundleOutput::Commitment(c) => Value::Commitment(parse_hex32(c, "output")?.to_vec()),
        };
        Ok(pb::SubmitProof {
            job_id: self.job_id,
            proof: self.proof_bytes()?,
            input_commitment: parse_hex32(&self.input_commitment, "input_commitment")?.to_vec(),
            output: Some(pb::InferenceOutput { value: Some(value) }),
            input_salt: if self.input_salt.is_empty() {
                Vec::new()
            } else {
                parse_hex32(&self.input_salt, "input_salt")?.to_vec()
            },
        })
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not a proof bundle", path.display()))
    }
}

/// Parses a model input: comma- or space-separated int8 values, or `@FILE` whose
/// bytes are the values (each byte read as an int8, as the ledger reads an on-chain
/// job input).
pub fn parse_input(s: &str) -> Result<Vec<i8>> {
    if let Some(path) = s.strip_prefix('@') {
        let bytes = std::fs::read(path).with_context(|| format!("reading {path}"))?;
        return Ok(bytes.into_iter().map(|b| b as i8).collect());
    }
    s.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<i8>()
                .with_context(|| format!("input value {t:?} is not an int8"))
        })
        .collect()
}

/// Options of `zk prove`.
#[derive(Debug, Clone)]
pub struct ProveOptions {
    pub mode: WeightMode,
    pub output: OutputMode,
    pub input: Vec<i8>,
    pub job_id: u64,
    pub input_salt: Salt,
    pub output_salt: Salt,
}

/// Runs the model on the input and proves it for the job.
#[tracing::instrument(level = "info", name = "zk_prove", skip_all, fields(job_id = opts.job_id))]
pub fn prove(
    model_path: &Path,
    pk_path: &Path,
    pk_hash: Option<&str>,
    opts: &ProveOptions,
) -> Result<ProofBundle> {
    let (model, _) = load_model(model_path)?;
    let (pk_bytes, hash) = read_key(pk_path, pk_hash)?;
    let pk = vichain_zk::decode_proving_key(&pk_bytes, &hash)
        .with_context(|| format!("refusing proving key {}", pk_path.display()))?;
    let vk_hash = KeyHash::of(&vichain_zk::encode_verifying_key(&pk.vk)?);
    let started = std::time::Instant::now();
    let (public, proof) = vichain_zk::prove_inference(
        &pk,
        model,
        opts.mode,
        opts.output,
        InferencePrivate {
            input: opts.input.clone(),
            input_salt: opts.input_salt,
            output_salt: opts.output_salt,
        },
        JobId::from_u64(opts.job_id),
        &mut rand::rngs::OsRng,
    )?;
    vichain_validator::metrics::zk_proved(started.elapsed());
    Ok(ProofBundle {
        job_id: opts.job_id,
        proof: hex::encode(proof),
        model_commitment: hex::encode(public.model_commitment.to_bytes()),
        input_commitment: hex::encode(public.input_commitment.to_bytes()),
        input_salt: hex::encode(opts.input_salt.0),
        output: match public.output {
            PublicOutput::Argmax(i) => BundleOutput::Argmax(i),
            PublicOutput::Logits(l) => BundleOutput::Logits(l),
            PublicOutput::Commitment(c) => BundleOutput::Commitment(hex::encode(c.to_bytes())),
        },
        verifying_key_sha256: vk_hash.to_string(),
    })
}

/// Verifies a bundle against a verifying key pinned by `vk_hash`.
pub fn verify(vk_path: &Path, vk_hash: Option<&str>, bundle: &ProofBundle) -> Result<()> {
    let (vk, hash) = read_key(vk_path, vk_hash)?;
    let public = bundle.public()?;
    vichain_zk::verify_inference_proof(&vk, &hash, &public, &bundle.proof_bytes()?)
        .with_context(|| format!("proof for job {} does not verify", bundle.job_id))
}

/// Reads a model spec for `vichain tx register-model`: the JSON of a genesis model
/// (`vichain_config::GenesisModel`), where the verifying key may instead be given as
/// `"verifying_key_file"` (a path, relative to the spec's folder) and pinned with
/// `"verifying_key_sha256"`; a key whose hash differs is refused.
pub fn register_model_spec(path: &Path) -> Result<pb::RegisterModel> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let obj = value
        .as_object_mut()
        .ok_or_else(|| anyhow::anyhow!("{}: expected a JSON object", path.display()))?;
    let vk_file = obj.remove("verifying_key_file");
    let vk_sha = obj.remove("verifying_key_sha256");
    let spec: vichain_config::GenesisModel = serde_json::from_value(value)
        .with_context(|| format!("{}: not a model spec", path.display()))?;
    let mut verifying_key = hex::decode(&spec.verifying_key).context("verifying_key: not hex")?;
    if let Some(file) = vk_file {
        anyhow::ensure!(
            verifying_key.is_empty(),
            "give either verifying_key or verifying_key_file, not both"
        );
        let file = file
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("verifying_key_file: expected a path"))?;
        let file = path.parent().unwrap_or(Path::new(".")).join(file);
        let expected = vk_sha.as_ref().and_then(|v| v.as_str());
        let (bytes, hash) = read_key(&file, expected)?;
        vichain_zk::decode_verifying_key(&bytes, &hash)
            .with_context(|| format!("refusing verifying key {}", file.display()))?;
        verifying_key = bytes;
    } else if let Some(sha) = vk_sha.as_ref().and_then(|v| v.as_str()) {
        let hash = KeyHash(parse_hex32(sha, "verifying_key_sha256")?);
        vichain_zk::decode_verifying_key(&verifying_key, &hash)
            .context("refusing verifying_key")?;
    }
    let shards = spec
        .shards
        .iter()
        .map(|s| {
            Ok(pb::ShardSpec {
                start_layer: s.start_layer,
                end_layer: s.end_layer,
                sha256: parse_hex32(&s.sha256, "shard sha256")?.to_vec(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(pb::RegisterModel {
        model_id: spec.model_id,
        name: spec.name,
        family: spec.family,
        total_layers: spec.total_layers,
        shards,
        policy: Some(
            vichain_consensus::policy_from_config(&spec.policy).map_err(anyhow::Error::msg)?,
        ),
        verifying_key,
        commitment: hex::decode(spec.commitment.trim_start_matches("0x"))
            .context("commitment: not hex")?,
        price: spec.price,
    })
}
