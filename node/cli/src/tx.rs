//! `vichain tx`: sign and broadcast transactions.

use std::{path::PathBuf, time::Duration};

use anyhow::{Context, Result, bail};
use prost::Message;
use serde_json::json;
use vichain_consensus::{Address, sign_tx};
use vichain_proto::v1::{
    self as pb, node_service_client::NodeServiceClient, query_request::Target, tx_body::Action,
};

use crate::{Cli, client, keyring, print, query::fetch};

#[derive(Debug, clap::Args)]
pub(crate) struct TxOpts {
    /// Key that signs (the built-in `dev` key by default).
    #[arg(long, default_value = "dev")]
    from: String,
    #[arg(long, default_value_t = 1)]
    fee: u64,
    /// Return after broadcast instead of waiting for the block.
    #[arg(long)]
    no_wait: bool,
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum TxCmd {
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

pub(crate) async fn run(cli: &Cli, cmd: &TxCmd) -> Result<()> {
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
            Action::RegisterModel(vichain_worker::zk_tool::register_model_spec(spec)?),
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
            Action::SubmitProof(vichain_worker::zk_tool::ProofBundle::load(proof)?.to_tx()?),
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

/// Signs `action` from `from` with the next nonce and broadcasts it; `what` names the
/// transaction if the node refuses it.
pub(crate) async fn send_action(
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

/// The nonce `address`'s next transaction must carry (0 for an account not on chain yet),
/// read with its Merkle proof.
pub(crate) async fn next_nonce(
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
