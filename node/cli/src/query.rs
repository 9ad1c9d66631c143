//! `vichain query`: state read with Merkle proofs checked against the app hash.

use anyhow::{Context, Result, bail};
use prost::Message;
use serde_json::{Value, json};
use vichain_consensus::{Address, QueryResult, query};
use vichain_proto::json::view;
use vichain_proto::v1::{
    self as pb, node_service_client::NodeServiceClient, query_request::Target,
};

use crate::{Cli, client, json::job_json, print};

#[derive(Debug, clap::Subcommand)]
pub(crate) enum QueryCmd {
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

/// A verified query answer.
pub(crate) struct Verified {
    pub(crate) value: Option<Vec<u8>>,
    pub(crate) height: u64,
    pub(crate) app_hash: [u8; 32],
}

/// Queries and checks the proof against the app hash of the answer's height; when
/// that is the node's latest height, the app hash must also equal Status's.
pub(crate) async fn fetch(
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

pub(crate) async fn run(cli: &Cli, cmd: &QueryCmd) -> Result<()> {
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
        (QueryCmd::Account { .. }, Some(b)) => view(&pb::Account::decode(b.as_slice())?),
        (QueryCmd::Model { .. }, Some(b)) => view(&pb::Model::decode(b.as_slice())?),
        (QueryCmd::Worker { .. }, Some(b)) => view(&pb::Worker::decode(b.as_slice())?),
        (QueryCmd::Job { .. }, Some(b)) => job_json(&pb::Job::decode(b.as_slice())?),
        (QueryCmd::BlockHash { height }, Some(b)) => {
            json!({"block_height": height, "block_hash": hex::encode(b)})
        }
        (QueryCmd::Params, Some(b)) => view(&pb::Params::decode(b.as_slice())?),
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

/// The job at the latest height, with its Merkle proof checked.
pub(crate) async fn get_verified_job(cli: &Cli, id: u64) -> Result<(pb::Job, Verified)> {
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
