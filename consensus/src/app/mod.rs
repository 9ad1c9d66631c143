//! The ABCI++ application: one method per CometBFT v0.38 request, deterministic
//! over the committed store and the block CometBFT hands in.

use std::{collections::BTreeMap, sync::Arc};

use tendermint_proto::{
    google::protobuf::Timestamp,
    v0_38::{
        abci::{self as abci, request, response},
        crypto as tmcrypto,
    },
};
use tracing::{debug, error, info, warn};

mod statesync;

use crate::{
    Error, Result, TxError,
    ctx::{BlockCtx, Event, TxOutcome},
    error::{CODESPACE, ExecError},
    exec, genesis, jobs, metrics,
    proofs::{self, KeyCache, ProofCtx},
    query::{self, QueryResult},
    snapshot::{Restore, SnapshotStore},
    state::{Overlay, StateReadExt},
    state_key,
    store::{ChangeSet, PendingCommit, Storage},
    tx::{SigCache, SignedTx, tx_hash},
};

/// Largest vote extension accepted from another validator.
pub const MAX_VOTE_EXTENSION_BYTES: usize = 1024;
/// Reported in Info as the application protocol version.
pub const APP_VERSION: u64 = 1;

/// The ledger application. Not thread-safe by itself: the ABCI server serializes
/// access; queries may read the shared [`Storage`] directly.
#[derive(Debug)]
pub struct App {
    store: Arc<Storage>,
    /// Changes of transactions accepted by CheckTx since the last commit.
    check_changes: ChangeSet,
    /// The block finalized but not yet committed.
    pending: Option<PendingCommit>,
    /// Signatures already verified, by transaction hash.
    sig_cache: SigCache,
    /// Prepared zk verifying keys, by hash.
    zk_keys: Arc<KeyCache>,
    /// Where state-sync snapshots are taken and served from; `None`: neither.
    snapshots: Option<Arc<SnapshotStore>>,
    /// The snapshot accepted by OfferSnapshot, while its chunks arrive.
    restore: Option<Restore>,
    /// Summaries of the blocks this App committed, for the node's dashboard.
    recent: Arc<metrics::RecentBlocks>,
    /// Told the height of every commit (see [`App::on_commit`]).
    on_commit: Option<CommitHook>,
}

/// A callback the node gives the App to hear of each commit; the ledger itself stays
/// free of any async runtime.
struct CommitHook(Box<dyn Fn(u64) + Send + Sync>);

impl std::fmt::Debug for CommitHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CommitHook")
    }
}

/// Result of running one transaction.
#[derive(Debug, Clone)]
pub struct TxResult {
    pub code: u32,
    pub log: String,
    pub outcome: TxOutcome,
}

impl TxResult {
    fn from(r: std::result::Result<TxOutcome, TxError>) -> Self {
        match r {
            Ok(outcome) => Self {
                code: 0,
                log: String::new(),
                outcome,
            },
            Err(e) => Self {
                code: e.code(),
                log: e.to_string(),
                outcome: TxOutcome::default(),
            },
        }
    }
}

impl App {
    pub fn new(store: Arc<Storage>) -> Self {
        Self {
            store,
            check_changes: ChangeSet::new(),
            pending: None,
            sig_cache: SigCache::default(),
            zk_keys: Arc::default(),
            snapshots: None,
            restore: None,
            recent: Arc::default(),
            on_commit: None,
        }
    }

    /// The summaries of the blocks this App commits, shared with whoever shows them.
    pub fn recent_blocks(&self) -> Arc<metrics::RecentBlocks> {
        self.recent.clone()
    }

    /// Calls `hook` with the height of every block this App commits, and of a
    /// state-sync snapshot it restores, once that state is readable from the store:
    /// how the node wakes what follows the chain (gRPC watch streams) without polling.
    /// The hook runs while the App is locked, so it should only signal.
    pub fn on_commit(mut self, hook: impl Fn(u64) + Send + Sync + 'static) -> Self {
        self.on_commit = Some(CommitHook(Box::new(hook)));
        self
    }

    /// Tells the commit hook, if any, that `height` is committed.
    fn committed(&self, height: u64) {
        if let Some(CommitHook(hook)) = &self.on_commit {
            hook(height);
        }
    }

    /// Takes state-sync snapshots into `snapshots` (as its config says) and serves
    /// them to joining nodes. Restoring a snapshot works with or without it.
    pub fn with_snapshots(mut self, snapshots: SnapshotStore) -> Self {
        self.snapshots = Some(Arc::new(snapshots));
        self
    }

    pub fn store(&self) -> &Arc<Storage> {
        &self.store
    }

    pub fn snapshots(&self) -> Option<&SnapshotStore> {
        self.snapshots.as_deref()
    }

    /// Dispatches one ABCI request. `Err` means the node is broken and must stop.
    pub fn handle(&mut self, req: abci::Request) -> Result<abci::Response> {
        use request::Value as Q;
        use response::Value as R;
        let value = match req.value {
            Some(Q::Echo(r)) => R::Echo(abci::ResponseEcho { message: r.message }),
            Some(Q::Flush(_)) => R::Flush(abci::ResponseFlush {}),
            Some(Q::Info(r)) => R::Info(self.info(&r)?),
            Some(Q::InitChain(r)) => R::InitChain(self.init_chain(r)?),
            Some(Q::Query(r)) => R::Query(self.query(&r)),
            Some(Q::CheckTx(r)) => R::CheckTx(self.check_tx(&r.tx)?),
            Some(Q::Commit(_)) => R::Commit(self.commit()?),
            Some(Q::ListSnapshots(_)) => R::ListSnapshots(self.list_snapshots()),
            Some(Q::OfferSnapshot(r)) => R::OfferSnapshot(self.offer_snapshot(&r)?),
            Some(Q::LoadSnapshotChunk(r)) => R::LoadSnapshotChunk(self.load_snapshot_chunk(&r)),
            Some(Q::ApplySnapshotChunk(r)) => R::ApplySnapshotChunk(self.apply_snapshot_chunk(&r)?),
            Some(Q::PrepareProposal(r)) => R::PrepareProposal(self.prepare_proposal(&r)?),
            Some(Q::ProcessProposal(r)) => R::ProcessProposal(self.process_proposal(&r)?),
            Some(Q::ExtendVote(r)) => R::ExtendVote(self.extend_vote(&r)),
            Some(Q::VerifyVoteExtension(r)) => {
                R::VerifyVoteExtension(self.verify_vote_extension(&r))
            }
            Some(Q::FinalizeBlock(r)) => R::FinalizeBlock(self.finalize_block(&r)?),
            None => R::Exception(abci::ResponseException {
                error: "empty or unknown ABCI request".into(),
            }),
        };
        Ok(abci::Response { value: Some(value) })
    }

    /// Height and app hash of the last committed block, as Info reports them
    /// (height 0 while only genesis is stored, so CometBFT replays InitChain).
    pub fn last_committed(&self) -> Result<(u64, [u8; 32])> {
        Ok(match self.store.committed()? {
            None => (0, [0; 32]),
            Some(c) if c.height.checked_add(1) == Some(c.initial_height) => (0, c.app_hash),
            Some(c) => (c.height, c.app_hash),
        })
    }

    pub fn info(&self, _req: &abci::RequestInfo) -> Result<abci::ResponseInfo> {
        let (height, app_hash) = self.last_committed()?;
        let app_hash = if self.store.committed()?.is_none() {
            Vec::new()
        } else {
            app_hash.to_vec()
        };
        info!(
            height,
            app_hash = hex::encode(&app_hash),
            "ABCI Info handshake"
        );
        Ok(abci::ResponseInfo {
            data: "vichain".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            app_version: APP_VERSION,
            last_block_height: height as i64,
            last_block_app_hash: app_hash.into(),
        })
    }

    pub fn init_chain(&mut self, req: abci::RequestInitChain) -> Result<abci::ResponseInitChain> {
        let initial_height = u64::try_from(req.initial_height.max(1))
            .map_err(|_| Error::Genesis("initial height out of range".into()))?;
        let validators = req
            .validators
            .iter()
            .map(|v| {
                let key = match v.pub_key.as_ref().and_then(|k| k.sum.as_ref()) {
                    Some(tmcrypto::public_key::Sum::Ed25519(k)) => k.clone(),
                    _ => return Err(Error::Genesis("validators must have ed25519 keys".into())),
                };
                let power = u64::try_from(v.power)
                    .map_err(|_| Error::Genesis(format!("negative power {}", v.power)))?;
                Ok((key, power))
            })
            .collect::<Result<Vec<_>>>()?;
        let digest = genesis::digest(
            &req.chain_id,
            &req.app_state_bytes,
            &validators,
            initial_height,
        );

        if let Some(c) = self.store.committed()? {
            // CometBFT repeats InitChain when a crash came before the first block
            // committed; the same genesis gives the same answer, another is refused.
            let stored = self.store.get(state_key::GENESIS_DIGEST.as_bytes())?;
            if c.height.checked_add(1) == Some(c.initial_height)
                && stored.as_deref() == Some(&digest[..])
            {
                return Ok(abci::ResponseInitChain {
                    app_hash: c.app_hash.to_vec().into(),
                    ..Default::default()
                });
            }
            return Err(Error::Genesis(format!(
                "InitChain for chain {:?} on a store already initialized (committed height {})",
                req.chain_id, c.height
            )));
        }

        let mut state = Overlay::new(self.store.as_ref());
        genesis::apply(
            &mut state,
            &req.chain_id,
            &req.app_state_bytes,
            &validators,
            initial_height,
        )?;
        // `initial_height` is at least 1 (above): genesis is stored one height below.
        let pending = self.store.prepare(
            initial_height.saturating_sub(1),
            state.into_changes(),
            Some(initial_height),
        )?;
        let app_hash = pending.app_hash;
        self.store.commit(pending)?;
        info!(chain_id = %req.chain_id, app_hash = hex::encode(app_hash), "genesis committed");
        Ok(abci::ResponseInitChain {
            consensus_params: None,
            validators: Vec::new(),
            app_hash: app_hash.to_vec().into(),
        })
    }

    /// The context of the next block to be built on the committed state.
    fn next_ctx(&self, height: u64, time_ns: i64) -> Result<BlockCtx> {
        let state: &Storage = &self.store;
        Ok(BlockCtx {
            height,
            time_ns,
            chain_id: state.chain_id()?,
            block_hash: [0; 32],
            params: state.params()?,
            proofs: ProofCtx {
                keys: self.zk_keys.clone(),
                verdicts: Arc::default(),
            },
        })
    }

    /// Batch-verifies the proofs of a block (or proposal) ahead of executing it; the
    /// randomness is derived from the block's height and transactions.
    fn preverify(
        &self,
        ctx: &mut BlockCtx,
        txs: &[bytes::Bytes],
        decoded: &[std::result::Result<SignedTx, TxError>],
    ) {
        let randomness = proofs::batch_randomness(ctx.height, txs.iter().map(|t| tx_hash(t)));
        let verdicts = proofs::preverify(self.store.as_ref(), &self.zk_keys, decoded, &randomness);
        ctx.proofs.verdicts = Arc::new(verdicts);
    }

    #[tracing::instrument(level = "debug", name = "check_tx", skip_all, fields(bytes = tx.len()))]
    pub fn check_tx(&mut self, tx: &[u8]) -> Result<abci::ResponseCheckTx> {
        let Some(c) = self.store.committed()? else {
            return Ok(abci::ResponseCheckTx {
                code: TxError::Malformed("chain has no genesis yet".into()).code(),
                log: "chain has no genesis yet".into(),
                codespace: CODESPACE.into(),
                ..Default::default()
            });
        };
        let time_ns = self.store.get_u64(state_key::BLOCK_TIME)?.unwrap_or(0) as i64;
        let next = c.height.checked_add(1).ok_or_else(|| Error::Corrupt {
            key: state_key::HEIGHT.into(),
            reason: format!("committed height {} has no next height", c.height),
        })?;
        let ctx = self.next_ctx(next, time_ns)?;
        let base = std::mem::take(&mut self.check_changes);
        let mut check = Overlay::with_changes(self.store.as_ref(), base);
        let decoded = SignedTx::decode_cached(tx, ctx.params.max_tx_bytes, &self.sig_cache);
        if let Ok(d) = &decoded {
            self.sig_cache.insert(d.hash);
        }
        let result = run_decoded(&mut check, &ctx, decoded)?;
        self.check_changes = check.into_changes();
        if result.code != 0 {
            debug!(code = result.code, log = %result.log, "CheckTx rejected");
            metrics::check_tx_rejected(result.code);
        }
        Ok(abci::ResponseCheckTx {
            code: result.code,
            log: result.log,
            codespace: if result.code == 0 {
                String::new()
            } else {
                CODESPACE.into()
            },
            gas_wanted: 1,
            ..Default::default()
        })
    }

    #[tracing::instrument(level = "debug", name = "prepare_proposal", skip_all, fields(height = req.height, txs = req.txs.len()))]
    pub fn prepare_proposal(
        &mut self,
        req: &abci::RequestPrepareProposal,
    ) -> Result<abci::ResponsePrepareProposal> {
        let height = height_of(req.height)?;
        let mut ctx = self.next_ctx(height, time_ns(req.time.as_ref()))?;
        let max_bytes = u64::try_from(req.max_tx_bytes).unwrap_or(0);
        let store = self.store.clone();
        let mut state = Overlay::new(store.as_ref());
        let mut total = 0u64;
        let mut txs = Vec::new();
        let decoded = decode_all(&req.txs, ctx.params.max_tx_bytes, &self.sig_cache);
        self.remember(&decoded);
        self.preverify(&mut ctx, &req.txs, &decoded);
        for (tx, decoded) in req.txs.iter().zip(decoded) {
            let len = tx.len() as u64;
            let Some(with_tx) = total.checked_add(len).filter(|&t| t <= max_bytes) else {
                continue;
            };
            if run_decoded(&mut state, &ctx, decoded)?.code == 0 {
                total = with_tx;
                txs.push(tx.clone());
            }
        }
        debug!(
            height,
            offered = req.txs.len(),
            included = txs.len(),
            "PrepareProposal"
        );
        Ok(abci::ResponsePrepareProposal { txs })
    }

    #[tracing::instrument(level = "debug", name = "process_proposal", skip_all, fields(height = req.height, txs = req.txs.len()))]
    pub fn process_proposal(
        &mut self,
        req: &abci::RequestProcessProposal,
    ) -> Result<abci::ResponseProcessProposal> {
        use abci::response_process_proposal::ProposalStatus;
        let height = height_of(req.height)?;
        let mut ctx = self.next_ctx(height, time_ns(req.time.as_ref()))?;
        let store = self.store.clone();
        let mut state = Overlay::new(store.as_ref());
        let decoded = decode_all(&req.txs, ctx.params.max_tx_bytes, &self.sig_cache);
        self.remember(&decoded);
        self.preverify(&mut ctx, &req.txs, &decoded);
        for (i, tx) in decoded.into_iter().enumerate() {
            let r = run_decoded(&mut state, &ctx, tx)?;
            if r.code != 0 {
                warn!(height, index = i, code = r.code, log = %r.log, "rejecting proposal with an invalid transaction");
                return Ok(abci::ResponseProcessProposal {
                    status: ProposalStatus::Reject as i32,
                });
            }
        }
        Ok(abci::ResponseProcessProposal {
            status: ProposalStatus::Accept as i32,
        })
    }

    fn remember(&mut self, decoded: &[std::result::Result<SignedTx, TxError>]) {
        for tx in decoded.iter().flatten() {
            self.sig_cache.insert(tx.hash);
        }
    }

    pub fn extend_vote(&self, _req: &abci::RequestExtendVote) -> abci::ResponseExtendVote {
        // Validators will attest outputs they computed here (job lifecycle); for now
        // the extension is empty.
        abci::ResponseExtendVote::default()
    }

    pub fn verify_vote_extension(
        &self,
        req: &abci::RequestVerifyVoteExtension,
    ) -> abci::ResponseVerifyVoteExtension {
        use abci::response_verify_vote_extension::VerifyStatus;
        let status = if req.vote_extension.len() <= MAX_VOTE_EXTENSION_BYTES {
            VerifyStatus::Accept
        } else {
            warn!(
                len = req.vote_extension.len(),
                "rejecting oversize vote extension"
            );
            VerifyStatus::Reject
        };
        abci::ResponseVerifyVoteExtension {
            status: status as i32,
        }
    }

    #[tracing::instrument(level = "info", name = "finalize_block", skip_all, fields(height = req.height, txs = req.txs.len()))]
    pub fn finalize_block(
        &mut self,
        req: &abci::RequestFinalizeBlock,
    ) -> Result<abci::ResponseFinalizeBlock> {
        let started = std::time::Instant::now();
        let height = height_of(req.height)?;
        if let Some(p) = &self.pending {
            return Err(Error::Protocol(format!(
                "FinalizeBlock {height} while block {} awaits Commit",
                p.height
            )));
        }
        let time = time_ns(req.time.as_ref());
        let mut ctx = self.next_ctx(height, time)?;
        // CometBFT's block hash; a block without one (never from CometBFT) is seeded
        // by its height and transactions, still the same on every validator.
        ctx.block_hash = match <[u8; 32]>::try_from(req.hash.as_ref()) {
            Ok(h) => h,
            Err(_) => proofs::batch_randomness(height, req.txs.iter().map(|t| tx_hash(t))),
        };
        let decoded = decode_all(&req.txs, ctx.params.max_tx_bytes, &self.sig_cache);
        self.preverify(&mut ctx, &req.txs, &decoded);
        let kinds = metrics::tx_kinds(&decoded);
        let mut state = Overlay::new(self.store.as_ref());
        state.put_u64(state_key::HEIGHT, height);
        state.put_u64(state_key::BLOCK_TIME, time.max(0) as u64);

        let mut tx_results = Vec::with_capacity(req.txs.len());
        let mut updates: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
        for tx in decoded {
            let r = run_decoded(&mut state, &ctx, tx)?;
            for (key, power) in &r.outcome.validator_updates {
                updates.insert(key.clone(), *power);
            }
            tx_results.push(exec_tx_result(r));
        }
        // Deadlines of jobs: commit phases closing, reveals tallied.
        let block_events: Vec<abci::Event> = jobs::end_block(&mut state, &ctx)?
            .into_iter()
            .map(abci_event)
            .collect();
        // Recent block hashes: the nonces TEE evidence binds.
        if req.hash.len() == 32 {
            state.put_raw(state_key::recent_block_hash(height), req.hash.to_vec());
        }
        if let Some(old) = height.checked_sub(state_key::RECENT_BLOCK_HASHES) {
            state.delete_raw(state_key::recent_block_hash(old));
        }
        let validator_updates = updates
            .into_iter()
            .map(|(key, power)| abci::ValidatorUpdate {
                pub_key: Some(tmcrypto::PublicKey {
                    sum: Some(tmcrypto::public_key::Sum::Ed25519(key)),
                }),
                power: power as i64,
            })
            .collect();
        let pending = self.store.prepare(height, state.into_changes(), None)?;
        let app_hash = pending.app_hash;
        self.pending = Some(pending);
        debug!(
            height,
            txs = req.txs.len(),
            app_hash = hex::encode(app_hash),
            "FinalizeBlock"
        );
        let response = abci::ResponseFinalizeBlock {
            events: block_events,
            tx_results,
            validator_updates,
            consensus_param_updates: None,
            app_hash: app_hash.to_vec().into(),
        };
        let prev_time = self.store.get_u64(state_key::BLOCK_TIME).ok().flatten();
        self.recent.finalized(metrics::block_finalized(
            height, time, prev_time, &kinds, &response, started,
        ));
        Ok(response)
    }

    #[tracing::instrument(level = "info", name = "commit", skip_all)]
    pub fn commit(&mut self) -> Result<abci::ResponseCommit> {
        let started = std::time::Instant::now();
        let pending = self
            .pending
            .take()
            .ok_or_else(|| Error::Protocol("Commit without a finalized block".into()))?;
        let height = pending.height;
        self.store.commit(pending)?;
        self.check_changes.clear();
        let record = self.recent.committed(height);
        metrics::block_committed(height, started, record.as_ref());
        debug!(height, "Commit");
        self.committed(height);
        if let Some(snapshots) = self.snapshots.as_ref().filter(|s| s.is_due(height)) {
            // The view is opened before Commit returns, so it is of exactly this
            // height whatever commits while the snapshot is written.
            match self.store.read_view() {
                Ok(view) => snapshots.spawn_write(view, height),
                Err(e) => {
                    error!(height, error = %e, "snapshot failed: cannot read the committed state");
                    metrics::snapshot_written(None);
                }
            }
        }
        Ok(abci::ResponseCommit { retain_height: 0 })
    }

    pub fn query(&self, req: &abci::RequestQuery) -> abci::ResponseQuery {
        let height = u64::try_from(req.height).unwrap_or(0);
        let result = query::parse_path(&req.path, &req.data)
            .and_then(|key| query::get(&self.store, &key, height));
        match result {
            Ok(QueryResult {
                key,
                value,
                height,
                proof,
                ..
            }) => abci::ResponseQuery {
                code: 0,
                key: key.into(),
                value: value.unwrap_or_default().into(),
                height: height as i64,
                proof_ops: req.prove.then(|| tmcrypto::ProofOps {
                    ops: vec![tmcrypto::ProofOp {
                        r#type: query::PROOF_OP_TYPE.into(),
                        key: req.data.to_vec(),
                        data: proof,
                    }],
                }),
                ..Default::default()
            },
            Err(e) => abci::ResponseQuery {
                code: 1,
                log: e.to_string(),
                codespace: CODESPACE.into(),
                ..Default::default()
            },
        }
    }
}

/// Below this many transactions, decoding on one thread is cheaper than spawning.
const PARALLEL_DECODE_MIN: usize = 64;

/// Decodes and verifies the signatures of a block's transactions on all cores.
/// Decoding is a pure function of each transaction's bytes, so the result (and
/// the order of results) is the same whatever the thread count; execution then
/// runs sequentially in block order.
fn decode_all(
    txs: &[bytes::Bytes],
    max_bytes: u64,
    cache: &SigCache,
) -> Vec<std::result::Result<SignedTx, TxError>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if txs.len() < PARALLEL_DECODE_MIN || threads == 1 {
        return txs
            .iter()
            .map(|t| SignedTx::decode_cached(t, max_bytes, cache))
            .collect();
    }
    let chunk = txs.len().div_ceil(threads);
    let decode = move |part: &[bytes::Bytes]| {
        part.iter()
            .map(|t| SignedTx::decode_cached(t, max_bytes, cache))
            .collect::<Vec<_>>()
    };
    std::thread::scope(|scope| {
        let handles: Vec<_> = txs
            .chunks(chunk)
            .map(|part| (part, scope.spawn(move || decode(part))))
            .collect();
        handles
            .into_iter()
            // Decoding never panics on any input (proptest feeds it arbitrary bytes);
            // should a thread die anyway, its chunk is decoded again here.
            .flat_map(|(part, h)| h.join().unwrap_or_else(|_| decode(part)))
            .collect()
    })
}

/// Runs one decoded transaction on a fork of `state`, merging it only if it
/// succeeds.
fn run_decoded(
    state: &mut Overlay<'_>,
    ctx: &BlockCtx,
    decoded: std::result::Result<SignedTx, TxError>,
) -> Result<TxResult> {
    let tx = match decoded {
        Ok(tx) => tx,
        Err(e) => return Ok(TxResult::from(Err(e))),
    };
    let (result, changes) = {
        let mut fork = Overlay::new(&*state);
        let r = match exec::execute(&mut fork, ctx, &tx) {
            Ok(outcome) => Ok(outcome),
            Err(ExecError::Rejected(e)) => Err(e),
            Err(ExecError::Halt(e)) => return Err(e),
        };
        (r, fork.into_changes())
    };
    if result.is_ok() {
        state.merge(changes);
    }
    Ok(TxResult::from(result))
}

fn exec_tx_result(r: TxResult) -> abci::ExecTxResult {
    abci::ExecTxResult {
        code: r.code,
        data: r.outcome.data.into(),
        log: r.log,
        codespace: if r.code == 0 {
            String::new()
        } else {
            CODESPACE.into()
        },
        gas_wanted: 1,
        gas_used: 1,
        events: r.outcome.events.into_iter().map(abci_event).collect(),
        ..Default::default()
    }
}

fn abci_event(e: Event) -> abci::Event {
    abci::Event {
        r#type: e.kind,
        attributes: e
            .attributes
            .into_iter()
            .map(|(key, value)| abci::EventAttribute {
                key,
                value,
                index: true,
            })
            .collect(),
    }
}

fn height_of(h: i64) -> Result<u64> {
    u64::try_from(h)
        .ok()
        .filter(|h| *h > 0)
        .ok_or_else(|| Error::Protocol(format!("invalid block height {h}")))
}

/// Block time in unix nanoseconds; a missing time counts as 0.
pub fn time_ns(t: Option<&Timestamp>) -> i64 {
    t.map(|t| {
        t.seconds
            .saturating_mul(1_000_000_000)
            .saturating_add(i64::from(t.nanos))
    })
    .unwrap_or(0)
}
