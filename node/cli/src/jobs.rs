//! `vichain submit|watch|job|demo`: inference jobs, from submission to verified result.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use prost::Message;
use serde_json::json;
use vichain_consensus::{Address, sign_tx};
use vichain_proto::v1::{self as pb, query_request::Target, tx_body::Action};
use vichain_worker::infer::InferJob;

use crate::{
    Cli, client, json::job_json, keyring, print, query::Verified, query::fetch,
    query::get_verified_job, tx::next_nonce, tx::send_action,
};

/// `vichain submit` flags.
#[derive(Debug, clap::Args)]
pub(crate) struct SubmitArgs {
    #[arg(long)]
    pub model: String,
    /// Text input (embedding and generation models).
    #[arg(long, conflicts_with_all = ["input", "digit"])]
    pub text: Option<String>,
    /// Raw input bytes from a file (the digits model: 64 int8 pixels).
    #[arg(long, conflicts_with = "digit")]
    pub input: Option<PathBuf>,
    /// The digits model: image N of the 8x8 digits test set bundled with vichain.
    #[arg(long)]
    pub digit: Option<usize>,
    /// Redundancy (0 = the model's policy).
    #[arg(long, default_value_t = 0)]
    pub k: u32,
    /// Escrow; default price x k.
    #[arg(long)]
    pub max_fee: Option<u64>,
    /// Follow the job until it is finalized or failed.
    #[arg(long)]
    pub wait: bool,
    /// Keep the input off chain: submit only its hash, then seal it (HPKE) to each
    /// assigned worker's attested encryption key (models that require TEE).
    #[arg(long)]
    pub sealed: bool,
    /// Split mode: run the pipeline yourself through the worker network (this
    /// process keeps the input, the embedding, the head and the output; only the
    /// input's hash, the stages' digests and the output's digest reach the chain,
    /// which pays the stage workers). Needs --pipeline and --bootstrap.
    #[arg(long, conflicts_with = "sealed", requires_all = ["pipeline", "bootstrap"])]
    pub private: bool,
    /// The split model's manifest.json (with the client's shard next to it).
    #[arg(long)]
    pub pipeline: Option<PathBuf>,
    /// A worker of the network to join through (repeatable).
    #[arg(long)]
    pub bootstrap: Vec<String>,
    /// Most tokens to generate in split mode (Llama models).
    #[arg(long, default_value_t = 16)]
    pub max_tokens: usize,
    #[arg(long, default_value = "dev")]
    pub from: String,
    #[arg(long, default_value_t = 1)]
    pub fee: u64,
}

impl SubmitArgs {
    /// What every mode's SubmitJob asks for and who pays.
    fn order(&self) -> Order<'_> {
        Order {
            from: &self.from,
            fee: self.fee,
            model: &self.model,
            k: self.k,
            max_fee: self.max_fee,
        }
    }
}

/// A job's terms: the signing key, the transaction fee, the model, the redundancy
/// (0: the model's policy) and the escrow (default: price x k).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Order<'a> {
    pub from: &'a str,
    pub fee: u64,
    pub model: &'a str,
    pub k: u32,
    pub max_fee: Option<u64>,
}

/// `vichain submit`: public, sealed or split mode; with --wait, follows the job.
pub(crate) async fn submit(cli: &Cli, args: &SubmitArgs) -> Result<()> {
    let bytes = match (&args.text, &args.input, args.digit) {
        (Some(t), _, _) => t.as_bytes().to_vec(),
        (_, Some(p), _) => std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
        (_, _, Some(n)) => digit_input(n)?.0,
        _ => bail!("give --text, --input or --digit"),
    };
    let order = args.order();
    let id = if args.private {
        let text = String::from_utf8(bytes)
            .context("split mode runs text models: the input must be UTF-8")?;
        let manifest = args
            .pipeline
            .clone()
            .context("--private needs --pipeline")?;
        submit_private_job(cli, order, text, manifest, &args.bootstrap, args.max_tokens).await?
    } else if args.sealed {
        submit_sealed_job(cli, order, bytes).await?
    } else {
        submit_job(cli, order, bytes).await?
    };
    if !cli.json {
        println!("job {id} submitted");
    }
    if args.wait {
        let job = watch(cli, id, !cli.json).await?;
        show_job(cli, &job, None).await?;
    } else if cli.json {
        println!("{}", json!({"job_id": id}));
    }
    Ok(())
}

/// The 64 int8 pixels of test image `n` of the bundled digits set, and its label.
pub(crate) fn digit_input(n: usize) -> Result<(Vec<u8>, u8)> {
    let data = vichain_inference::DigitsDataset::bundled()?;
    let (_, test) = data.split();
    let img = test
        .images
        .get(n)
        .with_context(|| format!("the digits test set has {} images", test.images.len()))?;
    let input = vichain_inference::quantize_input(img)
        .into_iter()
        .map(|v| v as u8)
        .collect();
    Ok((input, test.labels[n]))
}

pub(crate) async fn job_client(
    cli: &Cli,
) -> Result<pb::job_service_client::JobServiceClient<tonic::transport::Channel>> {
    pb::job_service_client::JobServiceClient::connect(cli.node.clone())
        .await
        .with_context(|| {
            format!(
                "cannot reach a vichain node at {} (is `vichaind dev` running?)",
                cli.node
            )
        })
}

/// Split mode: submits the input's hash, runs the pipeline through the worker network
/// from this process, prints the output here, and records the stages on chain.
pub(crate) async fn submit_private_job(
    cli: &Cli,
    order: Order<'_>,
    text: String,
    manifest: PathBuf,
    bootstrap: &[String],
    max_tokens: usize,
) -> Result<u64> {
    let bootstrap = bootstrap
        .iter()
        .map(|a| a.parse().with_context(|| format!("--bootstrap {a:?}")))
        .collect::<Result<Vec<_>>>()?;
    let mode = pb::PrivacyMode::Split;
    let id = submit_input_hash(cli, order, text.as_bytes(), mode).await?;
    let job = InferJob::new(manifest, text, bootstrap, max_tokens);
    let summary = vichain_worker::infer::run(&job, |_| {}).await?;
    let mut c = client(cli).await?;
    let workers = c
        .list_workers(pb::ListWorkersRequest {})
        .await?
        .into_inner()
        .workers;
    let (output, stages) = vichain_worker::runner::pipeline_result(&summary.report, &workers)?;
    let output_hash = vichain_consensus::output_fingerprint(&output, &stages).to_vec();
    let status = c.status(pb::StatusRequest {}).await?.into_inner();
    let n = stages.len();
    let record = Action::RecordPipeline(pb::RecordPipeline {
        job_id: id,
        stages,
        output_hash: output_hash.clone(),
    });
    send_action(
        cli,
        &mut c,
        &status,
        order.from,
        order.fee,
        record,
        "pipeline record",
    )
    .await?;
    if cli.json {
        eprintln!("{}", serde_json::to_string(&summary.summary)?);
    } else {
        println!(
            "output (kept here, never on chain): {}",
            serde_json::to_string(&summary.summary)?
        );
        println!(
            "pipeline of {n} stages recorded for job {id}; output digest {}",
            hex::encode(&output_hash)
        );
    }
    Ok(id)
}

/// Submits a sealed job: only the input's hash goes in the SubmitJob; once workers
/// are assigned, the input is sealed to each one's attested key in a SealInputs.
pub(crate) async fn submit_sealed_job(cli: &Cli, order: Order<'_>, input: Vec<u8>) -> Result<u64> {
    let mode = pb::PrivacyMode::Sealed;
    let id = submit_input_hash(cli, order, &input, mode).await?;
    let job = job_client(cli)
        .await?
        .get_job(pb::GetJobRequest { job_id: id })
        .await?
        .into_inner()
        .job
        .context("the node returned no job")?;
    let mut c = client(cli).await?;
    let workers = c
        .list_workers(pb::ListWorkersRequest {})
        .await?
        .into_inner()
        .workers;
    let status = c.status(pb::StatusRequest {}).await?.into_inner();
    let mut copies = Vec::new();
    for a in job.assignments.iter().filter(|a| a.round == job.round) {
        let w = workers
            .iter()
            .find(|w| w.operator == a.operator)
            .context("an assigned worker is not in the registry")?;
        let key = w
            .attestation
            .as_ref()
            .map(|a| a.encryption_key.clone())
            .unwrap_or_default();
        let key = vichain_tee::EncryptionPublicKey::from_bytes(&key).with_context(|| {
            format!(
                "worker {} has no attested encryption key",
                hex::encode(&a.operator)
            )
        })?;
        let ctx = vichain_tee::SealedInputContext {
            chain_id: &status.chain_id,
            job_id: id,
            worker: &a.operator,
        };
        copies.push(pb::SealedCopy {
            operator: a.operator.clone(),
            sealed: ctx.seal(&key, &input)?.encode(),
        });
    }
    let n = copies.len();
    let seal = Action::SealInputs(pb::SealInputs { job_id: id, copies });
    send_action(
        cli,
        &mut c,
        &status,
        order.from,
        order.fee,
        seal,
        "sealed inputs",
    )
    .await?;
    if !cli.json {
        println!("input sealed to {n} attested workers (only its hash is on chain)");
    }
    Ok(id)
}

/// Submits a job that carries only the sha256 of `input` (split and sealed modes).
pub(crate) async fn submit_input_hash(
    cli: &Cli,
    order: Order<'_>,
    input: &[u8],
    privacy: pb::PrivacyMode,
) -> Result<u64> {
    use sha2::Digest;
    let hash = sha2::Sha256::digest(input).to_vec();
    let payload = pb::submit_job::Payload::InputHash(hash);
    submit_job_payload(cli, order, payload, privacy).await
}

/// Signs a SubmitJob and sends it through JobService.SubmitJob; returns the job id.
pub(crate) async fn submit_job(cli: &Cli, order: Order<'_>, input: Vec<u8>) -> Result<u64> {
    let payload = pb::submit_job::Payload::Input(input);
    submit_job_payload(cli, order, payload, pb::PrivacyMode::Public).await
}

pub(crate) async fn submit_job_payload(
    cli: &Cli,
    order: Order<'_>,
    payload: pb::submit_job::Payload,
    privacy: pb::PrivacyMode,
) -> Result<u64> {
    let Order {
        from,
        fee,
        model,
        k,
        max_fee,
    } = order;
    let key = keyring(cli).get(from)?;
    let mut c = client(cli).await?;
    let status = c.status(pb::StatusRequest {}).await?.into_inner();
    let m = fetch(&mut c, Target::Model(model.into()), &status).await?;
    let Some(m) = m.value else {
        bail!("model {model:?} is not registered (see `vichain models`)");
    };
    let m = pb::Model::decode(m.as_slice())?;
    let policy = m.policy.clone().unwrap_or_default();
    let k_eff = if k == 0 { policy.k } else { k };
    let max_fee = max_fee.unwrap_or(m.price.saturating_mul(u64::from(k_eff)));
    let nonce = next_nonce(&mut c, &status, &key.address()).await?;
    let tx = sign_tx(
        &key.key,
        &status.chain_id,
        nonce,
        fee,
        Action::SubmitJob(pb::SubmitJob {
            model_id: model.into(),
            payload: Some(payload),
            k,
            max_fee,
            privacy: privacy as i32,
        }),
    );
    let r = job_client(cli)
        .await?
        .submit_job(pb::SubmitJobRequest { tx, wait_ms: 0 })
        .await
        .map_err(|s| anyhow::anyhow!("job refused ({:?}): {}", s.code(), s.message()))?
        .into_inner();
    Ok(r.job_id)
}

/// Streams a job's changes until it closes; prints each one when `show`.
pub(crate) async fn watch(cli: &Cli, id: u64, show: bool) -> Result<pb::Job> {
    let mut stream = job_client(cli)
        .await?
        .watch_job(pb::WatchJobRequest { job_id: id })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
    let mut last = None;
    while let Some(update) = stream.message().await? {
        let Some(job) = update.job else { continue };
        if show {
            let committed = job
                .assignments
                .iter()
                .filter(|a| !a.commitment.is_empty())
                .count();
            let revealed = job.assignments.iter().filter(|a| a.revealed).count();
            println!(
                "height {:>5}  job {}  {:<10} committed {}/{} revealed {}/{}{}",
                update.height,
                job.id,
                vichain_consensus::status_name(job.status),
                committed,
                job.assignments.len(),
                revealed,
                job.assignments.len(),
                if job.round > 0 {
                    format!("  (escalation {})", job.round)
                } else {
                    String::new()
                }
            );
        }
        last = Some(job);
    }
    last.context("the node closed the stream without a job")
}

/// A one-line human summary of a job's result.
pub(crate) fn result_summary(job: &pb::Job, family: &str) -> String {
    let Some(r) = &job.result else {
        return "no result".into();
    };
    match family {
        "mlp" => format!("class {}", r.values.first().copied().unwrap_or(-1)),
        "bert" => {
            let xs: Vec<f64> = r.values.iter().map(|&v| v as f64 / 1e6).collect();
            let norm = xs.iter().map(|x| x * x).sum::<f64>().sqrt();
            format!(
                "embedding of {} dims, norm {:.4}, first [{}]",
                xs.len(),
                norm,
                xs.iter()
                    .take(4)
                    .map(|x| format!("{x:.4}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
        _ if !r.text.is_empty() => format!("{:?} ({} tokens)", r.text, r.values.len()),
        _ => format!("{} values", r.values.len()),
    }
}

pub(crate) async fn show_job(cli: &Cli, job: &pb::Job, proof: Option<Verified>) -> Result<()> {
    let (job, v) = match proof {
        Some(v) => (job.clone(), v),
        None => get_verified_job(cli, job.id).await?,
    };
    let model = client(cli)
        .await?
        .list_models(pb::ListModelsRequest {})
        .await?
        .into_inner()
        .models
        .into_iter()
        .find(|m| m.model_id == job.model_id);
    let family = model.as_ref().map(|m| m.family.clone()).unwrap_or_default();
    let mut value = job_json(&job);
    value["result_summary"] = json!(result_summary(&job, &family));
    value["inclusion"] =
        json!({"height": v.height, "app_hash": hex::encode(v.app_hash), "proof_verified": true});
    print(cli, &value, || {
        let agreed: Vec<String> = job
            .assignments
            .iter()
            .filter(|a| a.verdict == pb::Verdict::Agreed as i32)
            .map(|a| {
                let who = Address::from_bytes(&a.operator)
                    .map(|x| x.to_string())
                    .unwrap_or_default();
                if a.proof_verified {
                    format!("{who} (proof verified)")
                } else {
                    who
                }
            })
            .collect();
        let mut lines = vec![format!(
            "job {} on {}: {} ({})",
            job.id,
            job.model_id,
            vichain_consensus::status_name(job.status),
            if job.outcome.is_empty() {
                "-"
            } else {
                job.outcome.as_str()
            }
        )];
        lines.push(format!("result:   {}", result_summary(&job, &family)));
        lines.push(format!("agreed:   {}", agreed.join(", ")));
        for a in &job.assignments {
            if a.verdict != pb::Verdict::Agreed as i32 {
                let who = Address::from_bytes(&a.operator)
                    .map(|x| x.to_string())
                    .unwrap_or_default();
                let verdict = pb::Verdict::try_from(a.verdict)
                    .map(|v| v.as_str_name())
                    .unwrap_or("?");
                lines.push(format!("          {who}: {verdict}"));
            }
        }
        lines.push(format!(
            "blocks:   submitted {}, closed {} ({} blocks); refund {}",
            job.submitted_height,
            job.finalized_height,
            job.finalized_height.saturating_sub(job.submitted_height),
            job.refund
        ));
        lines.push(format!(
            "inclusion proof verified against app hash {} at height {}",
            hex::encode_upper(v.app_hash),
            v.height
        ));
        lines.join("\n")
    });
    Ok(())
}

pub(crate) async fn demo(cli: &Cli, from: &str) -> Result<()> {
    let models = client(cli)
        .await?
        .list_models(pb::ListModelsRequest {})
        .await?
        .into_inner()
        .models;
    let mut ran = 0;
    for m in &models {
        // (input, sealed): a sealed job puts only the input's hash on chain.
        let (input, sealed) = match m.model_id.as_str() {
            "digits" => {
                let (input, label) = digit_input(0)?;
                println!(
                    "== digits: test image 0 (label {label}), k={}, Groth16 proofs required",
                    m.policy.clone().unwrap_or_default().k
                );
                (input, false)
            }
            "minilm" => {
                println!("== minilm: \"vichain verifies inference\"");
                (b"vichain verifies inference".to_vec(), false)
            }
            "minilm-tee" => {
                println!(
                    "== minilm-tee: the same sentence, sealed to attested workers (only its hash on chain)"
                );
                (b"vichain verifies inference".to_vec(), true)
            }
            "smollm2" => {
                println!("== smollm2: \"What is the capital of France?\"");
                (b"What is the capital of France?".to_vec(), false)
            }
            _ => continue,
        };
        let started = std::time::Instant::now();
        let order = demo_order(from, &m.model_id);
        let id = if sealed {
            submit_sealed_job(cli, order, input).await?
        } else {
            submit_job(cli, order, input).await?
        };
        let job = watch(cli, id, !cli.json).await?;
        show_job(cli, &job, None).await?;
        println!(
            "({:.1} s from submission)\n",
            started.elapsed().as_secs_f64()
        );
        ran += 1;
    }
    if ran == 0 {
        bail!("no demo model is registered: start the node with `vichaind dev --workers 3`");
    }
    Ok(())
}

/// A demo job: fee 1, the model's policy and price.
fn demo_order<'a>(from: &'a str, model: &'a str) -> Order<'a> {
    Order {
        from,
        fee: 1,
        model,
        k: 0,
        max_fee: None,
    }
}
