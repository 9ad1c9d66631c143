//! The `NodeService` gRPC server: status, transaction broadcast (to the dev
//! mempool or to CometBFT), verifiable queries and registry listings. Server
//! reflection is on, so generic tools (grpcurl) can list and call it.

use std::{net::SocketAddr, sync::Arc};

use prost::Message;
use tonic::{Request, Response, Status};
use tracing::info;
use vichain_consensus::{
    Address, App, CODESPACE, QueryTarget, StateReadExt, Storage, query, state_key,
};
use vichain_proto::v1::{self as pb, node_service_server::NodeService, query_request::Target};

use crate::{comet::CometRpc, dev::DevChain, tasks::Shutdown};

/// Where broadcast transactions go.
#[derive(Debug, Clone)]
pub enum TxSink {
    /// The in-process chain of `vichaind dev`.
    Dev(Arc<DevChain>),
    /// CometBFT's RPC, in `vichaind start`.
    Comet(CometRpc),
}

/// Largest transaction accepted by BroadcastTx before any decoding (the ledger's
/// own limit, checked in CheckTx, is usually lower).
pub const MAX_BROADCAST_BYTES: usize = 4 * 1024 * 1024;
/// Most entries returned by a listing.
pub const MAX_LIST: usize = 10_000;

/// A message fit for a gRPC status header: one line of at most 1 KiB.
fn one_line(s: &str) -> String {
    let mut out: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if out.len() > 1024 {
        let mut end = 1024;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
    }
    out
}

/// The service implementation.
#[derive(Debug, Clone)]
pub struct NodeServer {
    pub(crate) store: Arc<Storage>,
    sink: TxSink,
}

impl NodeServer {
    pub fn new(store: Arc<Storage>, sink: TxSink) -> Self {
        Self { store, sink }
    }

    fn internal(e: impl std::fmt::Display) -> Status {
        Status::internal(e.to_string())
    }

    fn list<M: Message + Default>(&self, prefix: &str) -> Result<Vec<M>, Status> {
        self.store
            .prefix(prefix.as_bytes(), MAX_LIST)
            .map_err(Self::internal)?
            .into_iter()
            .map(|(k, v)| {
                M::decode(v.as_slice()).map_err(|e| {
                    Status::internal(format!(
                        "corrupt state at {}: {e}",
                        String::from_utf8_lossy(&k)
                    ))
                })
            })
            .collect()
    }

    fn height(&self) -> Result<u64, Status> {
        Ok(self
            .store
            .committed()
            .map_err(Self::internal)?
            .map_or(0, |c| c.height))
    }
}

#[tonic::async_trait]
impl NodeService for NodeServer {
    async fn status(
        &self,
        _: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let committed = self.store.committed().map_err(Self::internal)?;
        let Some(c) = committed else {
            return Err(Status::unavailable("the chain has no genesis yet"));
        };
        let store: &Storage = &self.store;
        let (mode, mempool_size) = match &self.sink {
            TxSink::Dev(d) => ("dev", d.mempool_size() as u64),
            TxSink::Comet(_) => ("cometbft", 0),
        };
        Ok(Response::new(pb::StatusResponse {
            chain_id: store.chain_id().map_err(Self::internal)?,
            height: if c.height + 1 == c.initial_height {
                0
            } else {
                c.height
            },
            app_hash: c.app_hash.to_vec(),
            block_time_ns: store
                .get_u64(state_key::BLOCK_TIME)
                .map_err(Self::internal)?
                .unwrap_or(0) as i64,
            mode: mode.into(),
            mempool_size,
            version: crate::VERSION.into(),
        }))
    }

    async fn broadcast_tx(
        &self,
        req: Request<pb::BroadcastTxRequest>,
    ) -> Result<Response<pb::BroadcastTxResponse>, Status> {
        let tx = req.into_inner().tx;
        if tx.is_empty() {
            return Err(Status::invalid_argument("tx is empty"));
        }
        if tx.len() > MAX_BROADCAST_BYTES {
            return Err(Status::invalid_argument(format!(
                "tx of {} bytes exceeds {MAX_BROADCAST_BYTES}",
                tx.len()
            )));
        }
        match &self.sink {
            TxSink::Dev(chain) => {
                let chain = chain.clone();
                let r = tokio::task::spawn_blocking(move || chain.submit(tx))
                    .await
                    .map_err(Self::internal)?
                    .map_err(Self::internal)?;
                Ok(Response::new(pb::BroadcastTxResponse {
                    code: r.code,
                    codespace: if r.code == 0 {
                        String::new()
                    } else {
                        CODESPACE.into()
                    },
                    log: r.log,
                    tx_hash: r.hash.to_vec(),
                }))
            }
            TxSink::Comet(rpc) => {
                let r = rpc
                    .broadcast_tx_sync(&tx)
                    .await
                    .map_err(|e| Status::unavailable(one_line(&format!("{e:#}"))))?;
                Ok(Response::new(pb::BroadcastTxResponse {
                    code: r.code,
                    log: r.log,
                    tx_hash: r.hash,
                    codespace: r.codespace,
                }))
            }
        }
    }

    async fn query(
        &self,
        req: Request<pb::QueryRequest>,
    ) -> Result<Response<pb::QueryResponse>, Status> {
        let req = req.into_inner();
        let bad = |e: vichain_consensus::TxError| Status::invalid_argument(e.to_string());
        let target = match req.target {
            Some(Target::Account(a)) => QueryTarget::Account(a.parse::<Address>().map_err(bad)?),
            Some(Target::Model(id)) => QueryTarget::Model(id),
            Some(Target::Worker(a)) => QueryTarget::Worker(a.parse::<Address>().map_err(bad)?),
            Some(Target::Job(id)) => QueryTarget::Job(id),
            Some(Target::Params(_)) => QueryTarget::Params,
            Some(Target::Key(k)) => {
                if k.len() > 1024 {
                    return Err(Status::invalid_argument("key longer than 1024 bytes"));
                }
                QueryTarget::Key(k)
            }
            None => return Err(Status::invalid_argument("query target is missing")),
        };
        let store = self.store.clone();
        let key = target.key();
        let r = tokio::task::spawn_blocking(move || query::get(&store, &key, req.height))
            .await
            .map_err(Self::internal)?
            .map_err(|e| match e {
                vichain_consensus::Error::Query(m) => Status::out_of_range(m),
                other => Self::internal(other),
            })?;
        Ok(Response::new(pb::QueryResponse {
            key: r.key,
            found: r.value.is_some(),
            value: r.value.unwrap_or_default(),
            height: r.height,
            app_hash: r.app_hash.to_vec(),
            proof: r.proof,
        }))
    }

    async fn list_models(
        &self,
        _: Request<pb::ListModelsRequest>,
    ) -> Result<Response<pb::ListModelsResponse>, Status> {
        Ok(Response::new(pb::ListModelsResponse {
            models: self.list(state_key::MODELS)?,
            height: self.height()?,
        }))
    }

    async fn list_workers(
        &self,
        _: Request<pb::ListWorkersRequest>,
    ) -> Result<Response<pb::ListWorkersResponse>, Status> {
        Ok(Response::new(pb::ListWorkersResponse {
            workers: self.list(state_key::WORKERS)?,
            height: self.height()?,
        }))
    }
}

/// `app`, announcing the height of each block it commits on the returned channel,
/// which [`serve`] takes: the gRPC streams wake at each commit instead of polling.
pub fn announce_commits(
    app: App,
) -> vichain_consensus::Result<(App, tokio::sync::watch::Receiver<u64>)> {
    let height = app.store().committed()?.map_or(0, |c| c.height);
    let (commits, followers) = tokio::sync::watch::channel(height);
    let app = app.on_commit(move |height| {
        commits.send_replace(height);
    });
    Ok((app, followers))
}

/// Serves NodeService, JobService (and reflection) on `addr` until shutdown.
/// `commits` carries the height of each block the ledger commits (see
/// [`crate::job_service::JobServer::new`]).
pub async fn serve(
    addr: SocketAddr,
    server: NodeServer,
    commits: tokio::sync::watch::Receiver<u64>,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(vichain_proto::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("binding gRPC on {addr}: {e}"))?;
    info!(%addr, "gRPC server listening");
    let jobs = crate::job_service::JobServer::new(
        server.clone(),
        server.store.clone(),
        commits,
        shutdown.clone(),
    );
    tonic::transport::Server::builder()
        .add_service(reflection)
        .add_service(
            pb::job_service_server::JobServiceServer::new(jobs)
                .max_decoding_message_size(MAX_BROADCAST_BYTES + 1024),
        )
        .add_service(
            pb::node_service_server::NodeServiceServer::new(server)
                .max_decoding_message_size(MAX_BROADCAST_BYTES + 1024),
        )
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            async move { shutdown.wait().await },
        )
        .await?;
    Ok(())
}
