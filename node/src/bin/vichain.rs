//! `vichain`: the client CLI. Talks to a node's gRPC `NodeService`; query answers
//! are checked client-side against the app hash with their Merkle proofs.

use std::{path::PathBuf, time::Duration};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use prost::Message;
use serde_json::{Value, json};
use vichain_consensus::{Address, QueryResult, query, sign_tx};
use vichain_node::{home::Home, keys::Keyring};
use vichain_proto::v1::{
    self as pb, node_service_client::NodeServiceClient, query_request::Target, tx_body::Action,
};

#[derive(Debug, Parser)]
#[command(
    name = "vichain",
    version,
    about = "vichain client: keys, transactions and verifiable queries"
)]
struct Cli {
    /// gRPC address of a vichain node.
    #[arg(
        long,
        global = true,
        env = "VICHAIN_NODE",
        default_value = "http://127.0.0.1:9090"
    )]
    node: String,
    /// Directory holding keys/ (default ~/.vichain).
    #[arg(long, global = true, env = "VICHAIN_HOME")]
    home: Option<PathBuf>,
    /// Print JSON (snake_case keys) instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Chain id, height and app hash of the node.
    Status,
    /// Manage account keys.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Sign and broadcast a transaction.
    #[command(subcommand)]
    Tx(TxCmd),
    /// Read state, verified against the app hash with a Merkle proof.
    #[command(subcommand)]
    Query(QueryCmd),
    /// List registered models.
    Models,
    /// List registered workers.
    Workers,
    /// Submit an inference job; with --wait, follow it to its verified result.
    Submit {
        #[arg(long)]
        model: String,
        /// Text input (embedding and generation models).
        #[arg(long, conflicts_with_all = ["input", "digit"])]
        text: Option<String>,
        /// Raw input bytes from a file (the digits model: 64 int8 pixels).
        #[arg(long, conflicts_with = "digit")]
        input: Option<PathBuf>,
        /// The digits model: image N of the 8x8 digits test set bundled with vichain.
        #[arg(long)]
        digit: Option<usize>,
        /// Redundancy (0 = the model's policy).
        #[arg(long, default_value_t = 0)]
        k: u32,
        /// Escrow; default price x k.
        #[arg(long)]
        max_fee: Option<u64>,
        /// Follow the job until it is finalized or failed.
        #[arg(long)]
        wait: bool,
        /// Keep the input off chain: submit only its hash, then seal it (HPKE) to each
        /// assigned worker's attested encryption key (models that require TEE).
        #[arg(long)]
        sealed: bool,
        /// Split mode: run the pipeline yourself through the worker network (this
        /// process keeps the input, the embedding, the head and the output; only the
        /// input's hash, the stages' digests and the output's digest reach the chain,
        /// which pays the stage workers). Needs --pipeline and --bootstrap.
        #[arg(long, conflicts_with = "sealed", requires_all = ["pipeline", "bootstrap"])]
        private: bool,
        /// The split model's manifest.json (with the client's shard next to it).
        #[arg(long)]
        pipeline: Option<PathBuf>,
        /// A worker of the network to join through (repeatable).
        #[arg(long)]
        bootstrap: Vec<String>,
        /// Most tokens to generate in split mode (Llama models).
        #[arg(long, default_value_t = 16)]
        max_tokens: usize,
        #[arg(long, default_value = "dev")]
        from: String,
        #[arg(long, default_value_t = 1)]
        fee: u64,
    },
    /// Follow a job's status changes until it is finalized or failed.
    Watch { id: u64 },
    /// A job with its result, checked against the app hash with its Merkle proof.
    Job { id: u64 },
    /// Submit one job per registered demo model and print each verified result.
    Demo {
        #[arg(long, default_value = "dev")]
        from: String,
    },
    /// Run a split model through the worker network (libp2p) as a client: prints the
    /// route, each stage's activation hashes, failovers and the output.
    Infer(vichain_node::infer::InferArgs),
}

#[derive(Debug, Subcommand)]
enum KeysCmd {
    /// Create a new key.
    Add { name: String },
    /// List keys (the built-in `dev` key first).
    List,
    /// Show one key.
    Show {
        name: String,
        /// Print only the address.
        #[arg(long)]
        address: bool,
    },
}

#[derive(Debug, clap::Args)]
struct TxOpts {
    /// Key that signs (the built-in `dev` key by default).
    #[arg(long, default_value = "dev")]
    from: String,
    #[arg(long, default_value_t = 1)]
    fee: u64,
    /// Return after broadcast instead of waiting for the block.
    #[arg(long)]
    no_wait: bool,
}

#[derive(Debug, Subcommand)]
enum TxCmd {
    /// Send tokens.
    Transfer {
        #[arg(long)]
        to: String,
        #[arg(long)]
        amount: u64,
        #[command(flatten)]
        opts: TxOpts,
    },
    /// Submit an inference job (recorded as pending).
    SubmitJob {
        #[arg(long)]
        model: String,
        #[arg(long)]
        text: String,
        /// Redundancy (0 = the model's policy).
        #[arg(long, default_value_t = 0)]
        k: u32,
        #[arg(long)]
        max_fee: u64,
        #[command(flatten)]
        opts: TxOpts,
    },
    /// Register a model (authority only) from a JSON spec: a genesis model entry,
    /// with the verifying key as hex or as "verifying_key_file" (+ "verifying_key_sha256").
    RegisterModel {
        #[arg(long)]
        spec: PathBuf,
        #[command(flatten)]
        opts: TxOpts,
    },
    /// Register the sender as a worker serving model shards, bonding a stake.
    RegisterWorker {
        /// libp2p peer id (base58).
        #[arg(long)]
        peer_id: String,
        #[arg(long)]
        stake: u64,
        /// Shards served, as MODEL:INDEX (repeat or separate with commas).
        #[arg(long, value_delimiter = ',', required = true)]
        serves: Vec<String>,
        #[command(flatten)]
        opts: TxOpts,
    },
    /// Submit TEE evidence (VTEE bytes) for the sender's worker, bound to the hash of
    /// block --nonce-height (one of the last 100) and to the worker's encryption key.
    SubmitAttestation {
        #[arg(long)]
        evidence: PathBuf,
        #[arg(long)]
        nonce_height: u64,
        /// Hex HPKE public key the evidence binds (`vichaind tee keygen`); stored on
        /// the worker so clients can seal inputs to it.
        #[arg(long)]
        encryption_key: String,
        #[command(flatten)]
        opts: TxOpts,
    },
    /// Submit a zero-knowledge proof of a job's inference (a bundle from `vichaind zk prove`);
    /// the sender must be a registered worker serving the job's model.
    SubmitProof {
        #[arg(long)]
        proof: PathBuf,
        #[command(flatten)]
        opts: TxOpts,
    },
}

#[derive(Debug, Subcommand)]
enum QueryCmd {
    Account {
        address: String,
    },
    Model {
        id: String,
    },
    Worker {
        address: String,
    },
    Job {
        id: u64,
    },
    Params,
    /// The hash of one of the last 100 blocks, as the state keeps it: the nonce a TEE
    /// attestation binds (`vichaind tee simulate --nonce`, `tx submit-attestation
    /// --nonce-height`).
    BlockHash {
        height: u64,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The split client computes while its libp2p swarm runs: give them threads.
    let mut runtime = if matches!(
        cli.command,
        Command::Infer(_) | Command::Submit { private: true, .. }
    ) {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let result = runtime
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(run(cli)));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn keyring(cli: &Cli) -> Keyring {
    Home::new(cli.home.clone().unwrap_or_else(Home::default_path)).keyring()
}

async fn client(cli: &Cli) -> Result<NodeServiceClient<tonic::transport::Channel>> {
    NodeServiceClient::connect(cli.node.clone())
        .await
        .with_context(|| {
            format!(
                "cannot reach a vichain node at {} (is `vichaind dev` running?)",
                cli.node
            )
        })
}

fn print(cli: &Cli, value: &Value, text: impl FnOnce() -> String) {
    if cli.json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        );
    } else {
        println!("{}", text());
    }
}

async fn run(cli: Cli) -> Result<()> {
    match &cli.command {
        Command::Status => {
            let s = client(&cli)
                .await?
                .status(pb::StatusRequest {})
                .await?
                .into_inner();
            let v = json!({
                "chain_id": s.chain_id,
                "height": s.height,
                "app_hash": hex::encode(&s.app_hash),
                "block_time_ns": s.block_time_ns,
                "mode": s.mode,
                "mempool_size": s.mempool_size,
                "version": s.version,
            });
            print(&cli, &v, || {
                format!(
                    "chain id:  {}\nheight:    {}\napp hash:  {}\nmode:      {}\nmempool:   {}",
                    s.chain_id,
                    s.height,
                    hex::encode_upper(&s.app_hash),
                    s.mode,
                    s.mempool_size
                )
            });
        }
        Command::Keys(cmd) => keys(&cli, cmd)?,
        Command::Submit {
            model,
            text,
            input,
            digit,
            k,
            max_fee,
            wait,
            sealed,
            private,
            pipeline,
            bootstrap,
            max_tokens,
            from,
            fee,
        } => {
            let bytes = match (text, input, digit) {
                (Some(t), _, _) => t.as_bytes().to_vec(),
                (_, Some(p), _) => {
                    std::fs::read(p).with_context(|| format!("reading {}", p.display()))?
                }
                (_, _, Some(n)) => digit_input(*n)?.0,
                _ => bail!("give --text, --input or --digit"),
            };
            let id = if *private {
                let text = String::from_utf8(bytes)
                    .context("split mode runs text models: the input must be UTF-8")?;
                let manifest = pipeline.clone().context("--private needs --pipeline")?;
                submit_private_job(
                    &cli,
                    from,
                    *fee,
                    model,
                    text,
                    *k,
                    *max_fee,
                    manifest,
                    bootstrap,
                    *max_tokens,
                )
                .await?
            } else if *sealed {
                submit_sealed_job(&cli, from, *fee, model, bytes, *k, *max_fee).await?
            } else {
                submit_job(&cli, from, *fee, model, bytes, *k, *max_fee).await?
            };
            if !cli.json {
                println!("job {id} submitted");
            }
            if *wait {
                let job = watch(&cli, id, !cli.json).await?;
                show_job(&cli, &job, None).await?;
            } else if cli.json {
                println!("{}", json!({"job_id": id}));
            }
        }
        Command::Watch { id } => {
            let job = watch(&cli, *id, !cli.json).await?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&job_json(&job))?);
            }
        }
        Command::Job { id } => {
            let job = get_verified_job(&cli, *id).await?;
            show_job(&cli, &job.0, Some(job.1)).await?;
        }
        Command::Demo { from } => demo(&cli, from).await?,
        Command::Tx(cmd) => tx(&cli, cmd).await?,
        Command::Query(cmd) => query_cmd(&cli, cmd).await?,
        Command::Models => {
            let r = client(&cli)
                .await?
                .list_models(pb::ListModelsRequest {})
                .await?
                .into_inner();
            let models: Vec<Value> = r.models.iter().map(model_json).collect();
            print(&cli, &json!({"height": r.height, "models": models}), || {
                if r.models.is_empty() {
                    return "no models registered".into();
                }
                r.models
                    .iter()
                    .map(|m| {
                        let p = m.policy.clone().unwrap_or_default();
                        format!(
                            "{}  family={} layers={} shards={} k={} quorum={} price={}",
                            m.model_id,
                            m.family,
                            m.total_layers,
                            m.shards.len(),
                            p.k,
                            p.quorum,
                            m.price
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        Command::Infer(args) => vichain_node::infer::main(args.clone(), cli.json).await?,
        Command::Workers => {
            let r = client(&cli)
                .await?
                .list_workers(pb::ListWorkersRequest {})
                .await?
                .into_inner();
            let workers: Vec<Value> = r.workers.iter().map(worker_json).collect();
            print(
                &cli,
                &json!({"height": r.height, "workers": workers}),
                || {
                    if r.workers.is_empty() {
                        return "no workers registered".into();
                    }
                    workers
                        .iter()
                        .map(|w| {
                            let tee = match &w["attestation"] {
                                Value::Null => "none".to_owned(),
                                a => format!(
                                    "{}{} measurement={} tcb={} expires_at_height={} encryption_key={}",
                                    a["kind"].as_str().unwrap_or(""),
                                    if a["simulated"] == true {
                                        " (SIMULATED)"
                                    } else {
                                        ""
                                    },
                                    a["measurement"].as_str().unwrap_or(""),
                                    a["tcb_status"].as_str().unwrap_or(""),
                                    a["expiry_height"],
                                    a["encryption_key"].as_str().unwrap_or("")
                                ),
                            };
                            format!(
                                "{}  peer={} stake={} reputation={} tee={}",
                                w["operator"], w["peer_id"], w["stake"], w["reputation"], tee
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                },
            );
        }
    }
    Ok(())
}

fn keys(cli: &Cli, cmd: &KeysCmd) -> Result<()> {
    let ring = keyring(cli);
    let show = |k: &vichain_node::keys::NamedKey| json!({"name": k.name, "address": k.address().to_string(), "public_key": k.public_key_hex()});
    match cmd {
        KeysCmd::Add { name } => {
            let k = ring.add(name)?;
            print(cli, &show(&k), || format!("{}  {}", k.name, k.address()));
        }
        KeysCmd::List => {
            let all = ring.list()?;
            let v: Vec<Value> = all.iter().map(show).collect();
            print(cli, &json!(v), || {
                all.iter()
                    .map(|k| format!("{:<16} {}", k.name, k.address()))
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        KeysCmd::Show { name, address } => {
            let k = ring.get(name)?;
            if *address {
                println!("{}", k.address());
            } else {
                print(cli, &show(&k), || {
                    format!(
                        "name:        {}\naddress:     {}\npublic key:  {}",
                        k.name,
                        k.address(),
                        k.public_key_hex()
                    )
                });
            }
        }
    }
    Ok(())
}

async fn tx(cli: &Cli, cmd: &TxCmd) -> Result<()> {
    let (opts, action) = match cmd {
        TxCmd::Transfer { to, amount, opts } => {
            let to: Address = to.parse().with_context(|| format!("--to {to:?}"))?;
            (
                opts,
                Action::Transfer(pb::Transfer {
                    to: to.as_bytes().to_vec(),
                    amount: *amount,
                }),
            )
        }
        TxCmd::SubmitJob {
            model,
            text,
            k,
            max_fee,
            opts,
        } => (
            opts,
            Action::SubmitJob(pb::SubmitJob {
                model_id: model.clone(),
                payload: Some(pb::submit_job::Payload::Input(text.as_bytes().to_vec())),
                k: *k,
                max_fee: *max_fee,
                privacy: pb::PrivacyMode::Public as i32,
            }),
        ),
        TxCmd::RegisterModel { spec, opts } => (
            opts,
            Action::RegisterModel(vichain_node::zk_tool::register_model_spec(spec)?),
        ),
        TxCmd::RegisterWorker {
            peer_id,
            stake,
            serves,
            opts,
        } => {
            let serves = serves
                .iter()
                .map(|s| {
                    let (model, index) = s
                        .rsplit_once(':')
                        .with_context(|| format!("--serves {s:?}: expected MODEL:INDEX"))?;
                    Ok(pb::ServedShard {
                        model_id: model.to_owned(),
                        shard_index: index
                            .parse()
                            .with_context(|| format!("--serves {s:?}: bad shard index"))?,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            (
                opts,
                Action::RegisterWorker(pb::RegisterWorker {
                    peer_id: peer_id.clone(),
                    stake: *stake,
                    serves,
                }),
            )
        }
        TxCmd::SubmitAttestation {
            evidence,
            nonce_height,
            encryption_key,
            opts,
        } => (
            opts,
            Action::SubmitAttestation(pb::SubmitAttestation {
                evidence: std::fs::read(evidence)
                    .with_context(|| format!("reading {}", evidence.display()))?,
                nonce_height: *nonce_height,
                encryption_key: vichain_tee::EncryptionPublicKey::from_hex(encryption_key)
                    .context("--encryption-key")?
                    .to_bytes()
                    .to_vec(),
            }),
        ),
        TxCmd::SubmitProof { proof, opts } => (
            opts,
            Action::SubmitProof(vichain_node::zk_tool::ProofBundle::load(proof)?.to_tx()?),
        ),
    };
    let key = keyring(cli).get(&opts.from)?;
    let sender = key.address();
    let mut c = client(cli).await?;
    let status = c.status(pb::StatusRequest {}).await?.into_inner();
    let account = fetch(&mut c, Target::Account(sender.to_string()), &status).await?;
    let Some(bytes) = account.value else {
        bail!(
            "account {sender} does not exist on chain {} (fund it first)",
            status.chain_id
        );
    };
    let account = pb::Account::decode(bytes.as_slice())?;
    let kind = vichain_consensus::action_kind(&action);
    let tx = sign_tx(&key.key, &status.chain_id, account.nonce, opts.fee, action);
    let r = c
        .broadcast_tx(pb::BroadcastTxRequest { tx })
        .await?
        .into_inner();
    let hash = hex::encode_upper(&r.tx_hash);
    if r.code != 0 {
        let v = json!({"tx_hash": hash, "code": r.code, "codespace": r.codespace, "log": r.log, "included": false});
        print(cli, &v, || format!("rejected (code {}): {}", r.code, r.log));
        std::process::exit(1);
    }
    let mut included_at = None;
    if !opts.no_wait {
        // Included once the sender's nonce has moved past this transaction's.
        for _ in 0..120 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let s = c.status(pb::StatusRequest {}).await?.into_inner();
            let a = fetch(&mut c, Target::Account(sender.to_string()), &s).await?;
            let nonce = a
                .value
                .map(|v| pb::Account::decode(v.as_slice()).map(|a| a.nonce))
                .transpose()?
                .unwrap_or(0);
            if nonce > account.nonce {
                included_at = Some(s.height);
                break;
            }
        }
        if included_at.is_none() {
            bail!("transaction {hash} was accepted but not included within 30s");
        }
    }
    let v = json!({"tx_hash": hash, "code": 0, "kind": kind, "sender": sender.to_string(), "nonce": account.nonce, "included": included_at.is_some(), "height": included_at});
    print(cli, &v, || match included_at {
        Some(h) => format!("{kind} {hash} included at height {h}"),
        None => format!("{kind} {hash} accepted into the mempool"),
    });
    Ok(())
}

/// A verified query answer.
struct Verified {
    value: Option<Vec<u8>>,
    height: u64,
    app_hash: [u8; 32],
}

/// Queries and checks the proof against the app hash of the answer's height; when
/// that is the node's latest height, the app hash must also equal Status's.
async fn fetch(
    c: &mut NodeServiceClient<tonic::transport::Channel>,
    target: Target,
    status: &pb::StatusResponse,
) -> Result<Verified> {
    let r = c
        .query(pb::QueryRequest {
            target: Some(target),
            height: status.height,
        })
        .await?
        .into_inner();
    let app_hash: [u8; 32] = r
        .app_hash
        .as_slice()
        .try_into()
        .context("node returned an app hash that is not 32 bytes")?;
    if r.height == status.height && r.app_hash != status.app_hash {
        bail!(
            "the node's query app hash differs from its status at height {}",
            r.height
        );
    }
    let result = QueryResult {
        key: r.key,
        value: r.found.then_some(r.value),
        height: r.height,
        app_hash,
        proof: r.proof,
    };
    query::verify(&result, &app_hash).context("Merkle proof verification failed")?;
    Ok(Verified {
        value: result.value,
        height: result.height,
        app_hash,
    })
}

async fn query_cmd(cli: &Cli, cmd: &QueryCmd) -> Result<()> {
    let mut c = client(cli).await?;
    let status = c.status(pb::StatusRequest {}).await?.into_inner();
    let target = match cmd {
        QueryCmd::Account { address } => {
            let a: Address = address
                .parse()
                .with_context(|| format!("address {address:?}"))?;
            Target::Account(a.to_string())
        }
        QueryCmd::Model { id } => Target::Model(id.clone()),
        QueryCmd::Worker { address } => Target::Worker(address.clone()),
        QueryCmd::Job { id } => Target::Job(*id),
        QueryCmd::Params => Target::Params(true),
        QueryCmd::BlockHash { height } => {
            Target::Key(vichain_consensus::state_key::recent_block_hash(*height).into_bytes())
        }
    };
    let v = fetch(&mut c, target, &status).await?;
    let mut out = json!({"height": v.height, "app_hash": hex::encode(v.app_hash), "proof_verified": true, "found": v.value.is_some()});
    let body = match (cmd, &v.value) {
        (_, None) => Value::Null,
        (QueryCmd::Account { .. }, Some(b)) => {
            let a = pb::Account::decode(b.as_slice())?;
            json!({"address": Address::from_bytes(&a.address)?.to_string(), "balance": a.balance, "nonce": a.nonce, "public_key": hex::encode(&a.public_key)})
        }
        (QueryCmd::Model { .. }, Some(b)) => model_json(&pb::Model::decode(b.as_slice())?),
        (QueryCmd::Worker { .. }, Some(b)) => worker_json(&pb::Worker::decode(b.as_slice())?),
        (QueryCmd::Job { .. }, Some(b)) => job_json(&pb::Job::decode(b.as_slice())?),
        (QueryCmd::BlockHash { height }, Some(b)) => {
            json!({"block_height": height, "block_hash": hex::encode(b)})
        }
        (QueryCmd::Params, Some(b)) => {
            let p = pb::Params::decode(b.as_slice())?;
            json!({"max_tx_bytes": p.max_tx_bytes, "max_input_bytes": p.max_input_bytes, "min_fee": p.min_fee,
                   "min_worker_stake": p.min_worker_stake, "max_k": p.max_k, "max_shards": p.max_shards,
                   "max_served_shards": p.max_served_shards, "max_verifying_key_bytes": p.max_verifying_key_bytes})
        }
    };
    if let (Value::Object(o), Value::Object(b)) = (&mut out, &body) {
        for (k, v) in b {
            o.insert(k.clone(), v.clone());
        }
    }
    if !cli.json && v.value.is_none() {
        println!(
            "not found at height {} (absence proven against app hash {})",
            v.height,
            hex::encode_upper(v.app_hash)
        );
        std::process::exit(1);
    }
    print(cli, &out, || {
        let mut lines = vec![];
        if let Value::Object(b) = &body {
            for (k, val) in b {
                lines.push(format!("{k}: {val}"));
            }
        }
        lines.push(format!(
            "(height {}, proof verified against app hash {})",
            v.height,
            hex::encode_upper(v.app_hash)
        ));
        lines.join("\n")
    });
    Ok(())
}

fn model_json(m: &pb::Model) -> Value {
    let p = m.policy.clone().unwrap_or_default();
    json!({
        "model_id": m.model_id, "name": m.name, "family": m.family, "total_layers": m.total_layers,
        "shards": m.shards.iter().map(|s| json!({"start_layer": s.start_layer, "end_layer": s.end_layer, "sha256": hex::encode(&s.sha256)})).collect::<Vec<_>>(),
        "policy": {"k": p.k, "quorum": p.quorum, "tolerance_ppm": p.tolerance_ppm, "require_proof": p.require_proof, "require_tee": p.require_tee},
        "verifying_key_hash": hex::encode(&m.verifying_key_hash), "commitment": hex::encode(&m.commitment),
        "price": m.price, "registered_height": m.registered_height,
    })
}

fn worker_json(w: &pb::Worker) -> Value {
    json!({
        "operator": Address::from_bytes(&w.operator).map(|a| a.to_string()).unwrap_or_default(),
        "peer_id": w.peer_id, "stake": w.stake, "reputation": w.reputation as f64 / 1e6,
        "serves": w.serves.iter().map(|s| json!({"model_id": s.model_id, "shard_index": s.shard_index})).collect::<Vec<_>>(),
        "registered_height": w.registered_height, "last_seen_height": w.last_seen_height,
        "attestation": w.attestation.as_ref().map(|a| json!({
            "kind": a.kind, "simulated": a.simulated, "measurement": hex::encode(&a.measurement),
            "tcb_status": a.tcb_status, "debug": a.debug, "valid_until": a.valid_until,
            "attested_height": a.attested_height, "expiry_height": a.expiry_height,
            "encryption_key": hex::encode(&a.encryption_key),
        })),
    })
}

/// The 64 int8 pixels of test image `n` of the bundled digits set, and its label.
fn digit_input(n: usize) -> Result<(Vec<u8>, u8)> {
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

async fn job_client(
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

/// The nonce `address`'s next transaction must carry (0 for an account not on chain yet),
/// read with its Merkle proof.
async fn next_nonce(
    c: &mut NodeServiceClient<tonic::transport::Channel>,
    status: &pb::StatusResponse,
    address: &Address,
) -> Result<u64> {
    let account = fetch(c, Target::Account(address.to_string()), status).await?;
    Ok(match account.value {
        Some(b) => pb::Account::decode(b.as_slice())?.nonce,
        None => 0,
    })
}

/// Split mode: submits the input's hash, runs the pipeline through the worker network
/// from this process, prints the output here, and records the stages on chain.
#[allow(clippy::too_many_arguments)]
async fn submit_private_job(
    cli: &Cli,
    from: &str,
    fee: u64,
    model: &str,
    text: String,
    k: u32,
    max_fee: Option<u64>,
    manifest: PathBuf,
    bootstrap: &[String],
    max_tokens: usize,
) -> Result<u64> {
    let bootstrap = bootstrap
        .iter()
        .map(|a| a.parse().with_context(|| format!("--bootstrap {a:?}")))
        .collect::<Result<Vec<_>>>()?;
    let mode = pb::PrivacyMode::Split;
    let id = submit_input_hash(cli, from, fee, model, text.as_bytes(), mode, k, max_fee).await?;
    let args = vichain_node::infer::InferArgs {
        model: manifest,
        text: Some(text),
        input: None,
        bootstrap,
        max_tokens,
        allow_peers: None,
        timeout: Duration::from_secs(30),
        discovery_timeout: Duration::from_secs(20),
        repeat: 1,
        local: false,
    };
    let summary = vichain_node::infer::run(&args, |_| {}).await?;
    let mut c = client(cli).await?;
    let workers = c
        .list_workers(pb::ListWorkersRequest {})
        .await?
        .into_inner()
        .workers;
    let (output, stages) = vichain_node::runner::pipeline_result(&summary.report, &workers)?;
    let output_hash = vichain_consensus::output_fingerprint(&output, &stages).to_vec();
    let status = c.status(pb::StatusRequest {}).await?.into_inner();
    let n = stages.len();
    let record = Action::RecordPipeline(pb::RecordPipeline {
        job_id: id,
        stages,
        output_hash: output_hash.clone(),
    });
    send_action(cli, &mut c, &status, from, fee, record, "pipeline record").await?;
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
async fn submit_sealed_job(
    cli: &Cli,
    from: &str,
    fee: u64,
    model: &str,
    input: Vec<u8>,
    k: u32,
    max_fee: Option<u64>,
) -> Result<u64> {
    let mode = pb::PrivacyMode::Sealed;
    let id = submit_input_hash(cli, from, fee, model, &input, mode, k, max_fee).await?;
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
    send_action(cli, &mut c, &status, from, fee, seal, "sealed inputs").await?;
    if !cli.json {
        println!("input sealed to {n} attested workers (only its hash is on chain)");
    }
    Ok(id)
}

/// Submits a job that carries only the sha256 of `input` (split and sealed modes).
#[allow(clippy::too_many_arguments)]
async fn submit_input_hash(
    cli: &Cli,
    from: &str,
    fee: u64,
    model: &str,
    input: &[u8],
    privacy: pb::PrivacyMode,
    k: u32,
    max_fee: Option<u64>,
) -> Result<u64> {
    use sha2::Digest;
    let hash = sha2::Sha256::digest(input).to_vec();
    let payload = pb::submit_job::Payload::InputHash(hash);
    submit_job_payload(cli, from, fee, model, payload, privacy, k, max_fee).await
}

/// Signs `action` from `from` with the next nonce and broadcasts it; `what` names the
/// transaction if the node refuses it.
async fn send_action(
    cli: &Cli,
    c: &mut NodeServiceClient<tonic::transport::Channel>,
    status: &pb::StatusResponse,
    from: &str,
    fee: u64,
    action: Action,
    what: &str,
) -> Result<()> {
    let key = keyring(cli).get(from)?;
    let nonce = next_nonce(c, status, &key.address()).await?;
    let tx = sign_tx(&key.key, &status.chain_id, nonce, fee, action);
    let r = c
        .broadcast_tx(pb::BroadcastTxRequest { tx })
        .await?
        .into_inner();
    if r.code != 0 {
        bail!("{what} refused (code {}): {}", r.code, r.log);
    }
    Ok(())
}

/// Signs a SubmitJob and sends it through JobService.SubmitJob; returns the job id.
async fn submit_job(
    cli: &Cli,
    from: &str,
    fee: u64,
    model: &str,
    input: Vec<u8>,
    k: u32,
    max_fee: Option<u64>,
) -> Result<u64> {
    submit_job_payload(
        cli,
        from,
        fee,
        model,
        pb::submit_job::Payload::Input(input),
        pb::PrivacyMode::Public,
        k,
        max_fee,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn submit_job_payload(
    cli: &Cli,
    from: &str,
    fee: u64,
    model: &str,
    payload: pb::submit_job::Payload,
    privacy: pb::PrivacyMode,
    k: u32,
    max_fee: Option<u64>,
) -> Result<u64> {
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
async fn watch(cli: &Cli, id: u64, show: bool) -> Result<pb::Job> {
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

/// The job at the latest height, with its Merkle proof checked.
async fn get_verified_job(cli: &Cli, id: u64) -> Result<(pb::Job, Verified)> {
    let mut c = client(cli).await?;
    let status = c.status(pb::StatusRequest {}).await?.into_inner();
    let v = fetch(&mut c, Target::Job(id), &status).await?;
    let Some(bytes) = &v.value else {
        bail!(
            "job {id} does not exist (absence proven at height {})",
            v.height
        );
    };
    Ok((pb::Job::decode(bytes.as_slice())?, v))
}

/// A one-line human summary of a job's result.
fn result_summary(job: &pb::Job, family: &str) -> String {
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

async fn show_job(cli: &Cli, job: &pb::Job, proof: Option<Verified>) -> Result<()> {
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

async fn demo(cli: &Cli, from: &str) -> Result<()> {
    let models = client(cli)
        .await?
        .list_models(pb::ListModelsRequest {})
        .await?
        .into_inner()
        .models;
    let mut ran = 0;
    for m in &models {
        let input = match m.model_id.as_str() {
            "digits" => {
                let (input, label) = digit_input(0)?;
                println!(
                    "== digits: test image 0 (label {label}), k={}, Groth16 proofs required",
                    m.policy.clone().unwrap_or_default().k
                );
                input
            }
            "minilm" => {
                println!("== minilm: \"vichain verifies inference\"");
                b"vichain verifies inference".to_vec()
            }
            "minilm-tee" => {
                println!(
                    "== minilm-tee: the same sentence, sealed to attested workers (only its hash on chain)"
                );
                let started = std::time::Instant::now();
                let id = submit_sealed_job(
                    cli,
                    from,
                    1,
                    &m.model_id,
                    b"vichain verifies inference".to_vec(),
                    0,
                    None,
                )
                .await?;
                let job = watch(cli, id, !cli.json).await?;
                show_job(cli, &job, None).await?;
                println!(
                    "({:.1} s from submission)\n",
                    started.elapsed().as_secs_f64()
                );
                ran += 1;
                continue;
            }
            "smollm2" => {
                println!("== smollm2: \"What is the capital of France?\"");
                b"What is the capital of France?".to_vec()
            }
            _ => continue,
        };
        let started = std::time::Instant::now();
        let id = submit_job(cli, from, 1, &m.model_id, input, 0, None).await?;
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

fn job_json(j: &pb::Job) -> Value {
    let status = pb::JobStatus::try_from(j.status)
        .map(|s| s.as_str_name())
        .unwrap_or("UNKNOWN");
    json!({
        "id": j.id, "model_id": j.model_id,
        "client": Address::from_bytes(&j.client).map(|a| a.to_string()).unwrap_or_default(),
        "input_hash": hex::encode(&j.input_hash), "input_bytes": j.input.len(), "k": j.k, "escrow": j.escrow,
        "status": status, "submitted_height": j.submitted_height, "tx_hash": hex::encode_upper(&j.tx_hash),
        "zk_proof_verified": j.proof_verified, "output": output_json(j.output.as_ref()),
        "input_commitment": hex::encode(&j.input_commitment),
        "prover": Address::from_bytes(&j.prover).map(|a| a.to_string()).unwrap_or_default(),
        "proof_height": j.proof_height,
        "round": j.round, "commit_deadline": j.commit_deadline, "reveal_deadline": j.reveal_deadline,
        "outcome": j.outcome, "finalized_height": j.finalized_height, "refund": j.refund,
        "failure": j.failure, "diverged_stage": j.diverged_stage,
        "privacy": pb::PrivacyMode::try_from(j.privacy).map(|p| p.as_str_name()).unwrap_or("UNKNOWN"),
        "output_hash": hex::encode(&j.output_hash),
        "pipeline": j.pipeline.iter().map(|s| json!({
            "worker": Address::from_bytes(&s.operator).map(|x| x.to_string()).unwrap_or_default(),
            "layers": format!("{}..{}", s.start_layer, s.end_layer),
            "input_hash": hex::encode(&s.input_hash), "output_hash": hex::encode(&s.output_hash),
        })).collect::<Vec<_>>(),
        "result": j.result.as_ref().map(|r| json!({"values": r.values, "text": r.text})),
        "assignments": j.assignments.iter().map(|a| json!({
            "worker": Address::from_bytes(&a.operator).map(|x| x.to_string()).unwrap_or_default(),
            "round": a.round, "committed": !a.commitment.is_empty(), "revealed": a.revealed,
            "proof_verified": a.proof_verified, "attestation_kind": a.attestation_kind,
            "verdict": pb::Verdict::try_from(a.verdict).map(|v| v.as_str_name()).unwrap_or("UNKNOWN"),
            "reward": a.reward, "slashed": a.slashed,
        })).collect::<Vec<_>>(),
    })
}

fn output_json(o: Option<&pb::InferenceOutput>) -> Value {
    use pb::inference_output::Value as V;
    match o.and_then(|o| o.value.as_ref()) {
        Some(V::Argmax(i)) => json!({"argmax": i}),
        Some(V::Logits(l)) => json!({"logits": l.values}),
        Some(V::Commitment(c)) => json!({"commitment": hex::encode(c)}),
        None => Value::Null,
    }
}
