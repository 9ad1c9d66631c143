//! `vichaind dev`: a complete single-node chain in one process. A block producer
//! plays CometBFT's part for the one validator, calling the very same ABCI methods
//! in the same order (PrepareProposal, ProcessProposal, FinalizeBlock, Commit)
//! every block time, and a bounded in-process mempool takes transactions that
//! passed CheckTx, rechecking what is left after every block as CometBFT does.

use std::{
    collections::{BTreeSet, VecDeque},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result, anyhow, bail};
use sha2::{Digest, Sha256};
use tendermint_proto::{
    google::protobuf::Timestamp,
    v0_38::{abci, crypto as tmcrypto},
};
use tracing::{debug, info};
use vichain_config::{DevConfig, Genesis, MempoolConfig};
use vichain_consensus::{App, StateReadExt, state_key, tx_hash};

use crate::tasks::Shutdown;

/// Rejection code for a transaction the full mempool cannot take.
pub const CODE_MEMPOOL_FULL: u32 = 100;
/// Rejection code for a transaction already in the mempool.
pub const CODE_DUPLICATE: u32 = 101;

/// Result of submitting a transaction to the dev mempool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    pub code: u32,
    pub log: String,
    pub hash: [u8; 32],
}

/// What one produced block contained.
#[derive(Debug, Clone)]
pub struct BlockSummary {
    pub height: u64,
    pub txs: usize,
    pub failed: usize,
    pub app_hash: [u8; 32],
    pub tx_results: Vec<abci::ExecTxResult>,
}

#[derive(Debug, Default)]
struct Mempool {
    txs: VecDeque<Vec<u8>>,
    hashes: BTreeSet<[u8; 32]>,
    bytes: u64,
}

/// The in-process chain.
#[derive(Debug)]
pub struct DevChain {
    app: Arc<Mutex<App>>,
    mempool: Mutex<Mempool>,
    dev: DevConfig,
    limits: MempoolConfig,
    proposer: Vec<u8>,
}

impl DevChain {
    pub fn new(
        app: Arc<Mutex<App>>,
        dev: DevConfig,
        limits: MempoolConfig,
        proposer: Vec<u8>,
    ) -> Self {
        Self {
            app,
            mempool: Mutex::new(Mempool::default()),
            dev,
            limits,
            proposer,
        }
    }

    fn app(&self) -> Result<MutexGuard<'_, App>> {
        self.app
            .lock()
            .map_err(|_| anyhow!("the application panicked earlier; stopping"))
    }

    fn pool(&self) -> Result<MutexGuard<'_, Mempool>> {
        self.mempool
            .lock()
            .map_err(|_| anyhow!("the mempool panicked earlier; stopping"))
    }

    pub fn mempool_size(&self) -> usize {
        self.mempool.lock().map(|m| m.txs.len()).unwrap_or(0)
    }

    /// Runs InitChain from `genesis` when the store has no state yet, as CometBFT's
    /// handshake does; a store with state resumes where it stopped.
    pub fn handshake(&self, genesis: &Genesis) -> Result<u64> {
        let mut app = self.app()?;
        let info = app.info(&abci::RequestInfo::default())?;
        if info.last_block_height > 0 {
            let chain_id = app.store().chain_id()?;
            if chain_id != genesis.chain_id {
                bail!(
                    "the state in this home belongs to chain {chain_id:?}, genesis.json says {:?}",
                    genesis.chain_id
                );
            }
            info!(
                height = info.last_block_height,
                "resuming the chain from disk"
            );
            return Ok(info.last_block_height as u64);
        }
        let validators = genesis
            .validators
            .iter()
            .map(|v| {
                use base64::Engine as _;
                let key = base64::engine::general_purpose::STANDARD
                    .decode(&v.pub_key.value)
                    .context("genesis validator pub_key is not base64")?;
                Ok(abci::ValidatorUpdate {
                    pub_key: Some(tmcrypto::PublicKey {
                        sum: Some(tmcrypto::public_key::Sum::Ed25519(key)),
                    }),
                    power: v.power.parse().context("genesis validator power")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        app.init_chain(abci::RequestInitChain {
            time: Some(now()),
            chain_id: genesis.chain_id.clone(),
            consensus_params: None,
            validators,
            app_state_bytes: genesis.app_state_bytes().into(),
            initial_height: genesis.initial_height()? as i64,
        })?;
        Ok(0)
    }

    /// Runs CheckTx and, when it passes, queues the transaction.
    pub fn submit(&self, tx: Vec<u8>) -> Result<Submitted> {
        let hash = tx_hash(&tx);
        let mut app = self.app()?;
        let mut pool = self.pool()?;
        if pool.hashes.contains(&hash) {
            vichain_consensus::metrics::check_tx_rejected(CODE_DUPLICATE);
            return Ok(Submitted {
                code: CODE_DUPLICATE,
                log: "transaction is already in the mempool".into(),
                hash,
            });
        }
        if pool.txs.len() >= self.limits.max_txs
            || pool.bytes + tx.len() as u64 > self.limits.max_bytes
        {
            vichain_consensus::metrics::check_tx_rejected(CODE_MEMPOOL_FULL);
            return Ok(Submitted {
                code: CODE_MEMPOOL_FULL,
                log: format!(
                    "mempool is full ({} transactions, {} bytes)",
                    pool.txs.len(),
                    pool.bytes
                ),
                hash,
            });
        }
        let r = app.check_tx(&tx)?;
        if r.code == 0 {
            pool.hashes.insert(hash);
            pool.bytes += tx.len() as u64;
            pool.txs.push_back(tx);
            crate::metrics::mempool(pool.txs.len(), pool.bytes);
        }
        Ok(Submitted {
            code: r.code,
            log: r.log,
            hash,
        })
    }

    /// Produces and commits one block from the mempool.
    pub fn produce_block(&self) -> Result<BlockSummary> {
        let mut app = self.app()?;
        let mut pool = self.pool()?;
        let store = app.store().clone();
        let committed = store
            .committed()?
            .context("no genesis: run the handshake first")?;
        let height = committed.height.max(committed.initial_height - 1) + 1;
        let _span = tracing::info_span!("block", height).entered();
        let last_time = store.get_u64(state_key::BLOCK_TIME)?.unwrap_or(0) as i64;
        let time = timestamp(now_ns().max(last_time + 1_000_000));
        let offered: Vec<Vec<u8>> = pool.txs.drain(..).collect();
        pool.hashes.clear();
        pool.bytes = 0;

        let prepared = app.prepare_proposal(&abci::RequestPrepareProposal {
            max_tx_bytes: self.dev.max_block_bytes as i64,
            txs: offered.iter().map(|t| t.clone().into()).collect(),
            height: height as i64,
            time: Some(time),
            proposer_address: self.proposer.clone().into(),
            ..Default::default()
        })?;
        let block_hash = block_hash(height, &committed.app_hash, &prepared.txs);
        let processed = app.process_proposal(&abci::RequestProcessProposal {
            txs: prepared.txs.clone(),
            hash: block_hash.to_vec().into(),
            height: height as i64,
            time: Some(time),
            proposer_address: self.proposer.clone().into(),
            ..Default::default()
        })?;
        if processed.status != abci::response_process_proposal::ProposalStatus::Accept as i32 {
            bail!("the application rejected its own proposal at height {height}");
        }
        let finalized = app.finalize_block(&abci::RequestFinalizeBlock {
            txs: prepared.txs.clone(),
            hash: block_hash.to_vec().into(),
            height: height as i64,
            time: Some(time),
            proposer_address: self.proposer.clone().into(),
            ..Default::default()
        })?;
        app.commit()?;

        // Recheck what did not make it into the block, in order, as CometBFT does.
        let included: BTreeSet<[u8; 32]> = prepared.txs.iter().map(|t| tx_hash(t)).collect();
        for tx in offered {
            let hash = tx_hash(&tx);
            if included.contains(&hash) {
                continue;
            }
            if app.check_tx(&tx)?.code == 0 {
                pool.hashes.insert(hash);
                pool.bytes += tx.len() as u64;
                pool.txs.push_back(tx);
            }
        }
        crate::metrics::mempool(pool.txs.len(), pool.bytes);
        let app_hash: [u8; 32] = finalized
            .app_hash
            .as_ref()
            .try_into()
            .map_err(|_| anyhow!("app hash is not 32 bytes"))?;
        let failed = finalized.tx_results.iter().filter(|r| r.code != 0).count();
        Ok(BlockSummary {
            height,
            txs: prepared.txs.len(),
            failed,
            app_hash,
            tx_results: finalized.tx_results,
        })
    }

    /// Produces a block every block time until shutdown. A block in progress
    /// always completes: shutdown is only observed between blocks.
    pub async fn run(self: Arc<Self>, shutdown: Shutdown) -> Result<()> {
        let mut interval = tokio::time::interval(self.dev.block_time);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.wait() => break,
                _ = interval.tick() => {}
            }
            let chain = self.clone();
            let block = tokio::task::spawn_blocking(move || chain.produce_block())
                .await
                .map_err(|e| anyhow!("block production panicked: {e}"))??;
            if block.txs > 0 {
                info!(height = block.height, txs = block.txs, app_hash = %hex::encode(block.app_hash), "block committed");
            } else {
                debug!(height = block.height, app_hash = %hex::encode(block.app_hash), "empty block committed");
            }
        }
        info!("block production stopped");
        Ok(())
    }

    /// Block interval, for status.
    pub fn block_time(&self) -> Duration {
        self.dev.block_time
    }
}

/// Rejection codes a dev mempool adds to the ledger's own.
pub fn is_mempool_code(code: u32) -> bool {
    code == CODE_MEMPOOL_FULL || code == CODE_DUPLICATE
}

fn block_hash(height: u64, prev_app_hash: &[u8; 32], txs: &[bytes::Bytes]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"vichain/dev-block");
    h.update(height.to_be_bytes());
    h.update(prev_app_hash);
    for tx in txs {
        h.update(tx_hash(tx));
    }
    h.finalize().into()
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

fn now() -> Timestamp {
    timestamp(now_ns())
}

fn timestamp(ns: i64) -> Timestamp {
    Timestamp {
        seconds: ns.div_euclid(1_000_000_000),
        nanos: ns.rem_euclid(1_000_000_000) as i32,
    }
}
