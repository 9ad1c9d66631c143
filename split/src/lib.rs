//! The worker network of vichain: split inference over libp2p.
//!
//! Workers hold shards of a model (layer ranges cut by `vichain-inference`), join a libp2p
//! network ([`Node`]: TCP + noise + yamux, identify, Kademlia provider records keyed by shard
//! sha256, signed gossipsub [`Announcement`]s with load and capacity, request-response frames
//! for activations) and serve [`Request`]s ([`run_worker`], [`Worker`]). An [`AllowList`]
//! hook, which the ledger's worker registry will feed, refuses connections from other peers.
//!
//! A client ([`SplitClient`]) keeps the model's embedding and head
//! ([`vichain_inference::ShardLayout::ClientKeepsEnds`]), so workers only ever see
//! intermediate activations. It discovers holders, plans a [`Route`] ([`plan_route`]: low
//! latency and load first, never one worker for every stage when privacy asks), runs
//! embeddings in one pass and generation as a session in which every stage keeps its KV
//! cache, and replaces a failed stage by another holder of the same layers, rebuilding its
//! cache by replaying the session's inputs; the result is identical to an uninterrupted run.
//! An integer MLP has no embedding or head: [`SplitClient::run_bytes`] sends the job's int8
//! input to the first stage and reports the last stage's logits, with the same failover.
//! Every stage answers with the sha256 of the activation it received and emitted, so each
//! step leaves a chain of commitments ([`StepTrace`]) that redundant pipelines can compare
//! stage by stage.
//!
//! The node runs this library as `vichaind worker` (one shard per process) and `vichain
//! infer` (a client; [`SplitClient::run`] reports progress through [`InferProgress`]).
//!
//! ```no_run
//! # async fn demo() -> vichain_split::Result<()> {
//! use vichain_split::{InferInput, InferRequest, infer};
//! let report = infer(InferRequest::new(
//!     "/var/tmp/split/manifest.json".into(),
//!     InferInput::Text("A worker computes this.".into()),
//!     vec!["/ip4/127.0.0.1/tcp/4001".parse().expect("address")],
//! ))
//! .await?;
//! println!("{}", serde_json::to_string_pretty(&report).expect("json"));
//! # Ok(())
//! # }
//! ```

mod client;
mod codec;
mod error;
mod metrics;
mod network;
mod route;
mod wire;
mod worker;

pub use crate::{
    client::{
        ClientConfig, EmbeddingOutput, FailoverEvent, FailoverReport, GenerationOutput,
        GenerationSession, InferInput, InferOutput, InferProgress, InferReport, InferRequest,
        RouteReport, SplitClient, StageCommitment, StageReport, StepReport, StepTrace, infer,
    },
    error::{Error, Result},
    metrics::{Metrics, MetricsSnapshot},
    network::{
        AllowList, InboundRequest, InboundTap, NetworkConfig, NetworkSnapshot, Node,
        SeenAnnouncement,
    },
    route::{Candidate, Route, RouteOptions, RouteStage, plan_route},
    wire::{
        Announcement, ErrorCode, ForwardRequest, ForwardResponse, MAX_ANNOUNCED_ADDRS,
        MAX_ANNOUNCEMENT_BYTES, MAX_MESSAGE_BYTES, MAX_REASON_BYTES, MAX_SERVED_SHARDS, Pong,
        Request, Response, ShardRef, StageError, encode_forward_request,
    },
    worker::{Worker, WorkerConfig, load_or_create_keypair, run_worker},
};

pub use libp2p::{Multiaddr, PeerId, identity::Keypair};
