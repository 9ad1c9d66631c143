//! The libp2p node every worker and client runs: TCP + noise + yamux, identify, Kademlia
//! provider records keyed by shard sha256, gossipsub announcements, and length-prefixed
//! request-response frames for activations, behind an allow-list.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use futures::StreamExt;
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm, gossipsub, identify,
    identity::Keypair,
    kad, noise,
    request_response::{self, ProtocolSupport},
    swarm::{
        ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, SwarmEvent, THandler,
        THandlerInEvent, THandlerOutEvent, ToSwarm, dummy,
    },
    tcp, yamux,
};
use tokio::sync::{mpsc, oneshot};

use crate::{
    Announcement, Error, MAX_MESSAGE_BYTES, Metrics, Result,
    codec::{FrameCodec, RPC_PROTOCOL},
};

const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/vichain/kad/1.0.0");
const IDENTIFY_PROTOCOL: &str = "/vichain/split/1.0.0";
const ANNOUNCE_TOPIC: &str = "vichain/split/v1/announce";
const INBOUND_QUEUE: usize = 256;

/// Decides which peers may connect: the ledger's worker registry feeds it (peers not on it
/// are refused at connection time, and their announcements and requests are ignored).
#[derive(Clone, Default)]
pub struct AllowList(Option<AllowFn>);

type AllowFn = Arc<dyn Fn(&PeerId) -> bool + Send + Sync>;
type TapFn = Arc<dyn Fn(&PeerId, &[u8]) + Send + Sync>;
type PendingRequest = (PeerId, oneshot::Sender<Result<Vec<u8>>>);
type ProviderQuery = (
    kad::QueryId,
    BTreeSet<PeerId>,
    oneshot::Sender<BTreeSet<PeerId>>,
);

impl AllowList {
    /// Every peer is allowed.
    pub fn all() -> Self {
        Self(None)
    }

    /// Peers for which `f` returns true are allowed.
    pub fn from_fn(f: impl Fn(&PeerId) -> bool + Send + Sync + 'static) -> Self {
        Self(Some(Arc::new(f)))
    }

    /// Exactly `peers` are allowed.
    pub fn only(peers: BTreeSet<PeerId>) -> Self {
        Self::from_fn(move |p| peers.contains(p))
    }

    /// Whether `peer` is allowed.
    pub fn is_allowed(&self, peer: &PeerId) -> bool {
        self.0.as_ref().is_none_or(|f| f(peer))
    }
}

impl std::fmt::Debug for AllowList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "AllowList(hook)"
        } else {
            "AllowList(all)"
        })
    }
}

/// A hook called with the sender and the bytes of every request frame a node receives.
#[derive(Clone)]
pub struct InboundTap(TapFn);

impl InboundTap {
    /// Calls `f` on every request frame received (on the network task: keep it short).
    pub fn new(f: impl Fn(&PeerId, &[u8]) + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }
}

impl std::fmt::Debug for InboundTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InboundTap")
    }
}

/// Settings of a node's network.
#[derive(Clone, Debug)]
pub struct NetworkConfig {
    /// Addresses to listen on (none for a client that only dials).
    pub listen: Vec<Multiaddr>,
    /// Peers to dial at start.
    pub bootstrap: Vec<Multiaddr>,
    /// Bound on one request or response frame.
    pub max_message_bytes: usize,
    /// How long a request may wait for its response.
    pub request_timeout: Duration,
    /// Interval of gossipsub heartbeats and of worker announcements.
    pub heartbeat: Duration,
    /// How long an unused connection stays open.
    pub idle_connection_timeout: Duration,
    /// Who may connect.
    pub allow: AllowList,
    /// Sees every request frame received, before the allow-list and decoding (for audits,
    /// and for tests that check what workers are shown).
    pub inbound_tap: Option<InboundTap>,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            listen: Vec::new(),
            bootstrap: Vec::new(),
            max_message_bytes: MAX_MESSAGE_BYTES,
            request_timeout: Duration::from_secs(30),
            heartbeat: Duration::from_secs(5),
            idle_connection_timeout: Duration::from_secs(300),
            allow: AllowList::all(),
            inbound_tap: None,
        }
    }
}

impl NetworkConfig {
    /// Checks the bounds.
    pub fn validate(&self) -> Result<()> {
        if !(1024..=256 * 1024 * 1024).contains(&self.max_message_bytes) {
            return Err(Error::Config(format!(
                "max_message_bytes {} is outside 1 KiB..=256 MiB",
                self.max_message_bytes
            )));
        }
        for (name, d) in [
            ("request_timeout", self.request_timeout),
            ("heartbeat", self.heartbeat),
            ("idle_connection_timeout", self.idle_connection_timeout),
        ] {
            if d.is_zero() {
                return Err(Error::Config(format!("{name} must be positive")));
            }
        }
        Ok(())
    }
}

/// A request received by this node, to be answered with [`Node::respond`].
#[derive(Debug)]
pub struct InboundRequest {
    /// The (allowed, authenticated) requester.
    pub peer: PeerId,
    /// Handle for the answer.
    pub id: u64,
    /// The frame, at most `max_message_bytes` long, not yet decoded.
    pub bytes: Vec<u8>,
}

/// An announcement as this node last saw it.
#[derive(Clone, Debug)]
pub struct SeenAnnouncement {
    /// The signed content.
    pub announcement: Announcement,
    /// When it arrived.
    pub received: Instant,
}

/// What a node knows about the network at one moment.
#[derive(Clone, Debug, Default)]
pub struct NetworkSnapshot {
    /// Addresses this node listens on.
    pub listen_addrs: Vec<Multiaddr>,
    /// Peers with an open connection.
    pub connected: BTreeSet<PeerId>,
    /// Latest announcement of each allowed peer.
    pub announcements: BTreeMap<PeerId, SeenAnnouncement>,
}

/// Handle on a running libp2p node; clones share it. The swarm runs in its own task until
/// [`Node::shutdown`] or until every handle is dropped.
#[derive(Clone, Debug)]
pub struct Node {
    peer_id: PeerId,
    commands: mpsc::Sender<Command>,
    metrics: Arc<Metrics>,
    max_message_bytes: usize,
}

#[derive(Debug)]
enum Command {
    Request {
        peer: PeerId,
        bytes: Vec<u8>,
        reply: oneshot::Sender<Result<Vec<u8>>>,
    },
    Respond {
        id: u64,
        bytes: Vec<u8>,
    },
    Dial {
        addr: Multiaddr,
        reply: oneshot::Sender<Result<()>>,
    },
    Provide {
        key: Vec<u8>,
    },
    FindProviders {
        key: Vec<u8>,
        reply: oneshot::Sender<BTreeSet<PeerId>>,
    },
    Publish {
        data: Vec<u8>,
    },
    Snapshot {
        reply: oneshot::Sender<NetworkSnapshot>,
    },
    Shutdown {
        ack: oneshot::Sender<()>,
    },
}

impl Node {
    /// Builds the swarm, listens, dials the bootstrap peers and spawns the network task.
    /// `serve_dht` makes the node answer Kademlia queries (workers do, clients need not).
    /// Returns the handle and the stream of requests received.
    pub async fn start(
        keypair: Keypair,
        config: NetworkConfig,
        serve_dht: bool,
        metrics: Arc<Metrics>,
    ) -> Result<(Self, mpsc::Receiver<InboundRequest>)> {
        config.validate()?;
        let peer_id = keypair.public().to_peer_id();
        let mut swarm = build_swarm(keypair, &config)?;
        swarm.behaviour_mut().kad.set_mode(Some(if serve_dht {
            kad::Mode::Server
        } else {
            kad::Mode::Client
        }));
        swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&gossipsub::IdentTopic::new(ANNOUNCE_TOPIC))
            .map_err(|e| Error::Transport(format!("subscribing to announcements: {e}")))?;
        for addr in &config.listen {
            swarm
                .listen_on(addr.clone())
                .map_err(|e| Error::Transport(format!("listening on {addr}: {e}")))?;
        }
        for addr in &config.bootstrap {
            swarm
                .dial(addr.clone())
                .map_err(|e| Error::Transport(format!("dialing {addr}: {e}")))?;
        }
        let (commands, command_rx) = mpsc::channel(1024);
        let (inbound_tx, inbound_rx) = mpsc::channel(INBOUND_QUEUE);
        let task = NetworkTask {
            swarm,
            allow: config.allow.clone(),
            tap: config.inbound_tap.clone(),
            inbound: inbound_tx,
            metrics: metrics.clone(),
            outbound: BTreeMap::new(),
            pending_inbound: BTreeMap::new(),
            next_inbound: 0,
            provider_queries: Vec::new(),
            addresses: BTreeMap::new(),
            listen_addrs: Vec::new(),
            connected: BTreeSet::new(),
            announcements: BTreeMap::new(),
        };
        tokio::spawn(task.run(command_rx));
        let node = Self {
            peer_id,
            commands,
            metrics,
            max_message_bytes: config.max_message_bytes,
        };
        if !config.listen.is_empty() {
            let deadline = Instant::now() + Duration::from_secs(10);
            while node.snapshot().await?.listen_addrs.is_empty() {
                if Instant::now() > deadline {
                    return Err(Error::Transport("no listen address after 10 s".into()));
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        Ok((node, inbound_rx))
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The counters of this node.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Bound on one frame.
    pub fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
    }

    async fn send(&self, command: Command) -> Result<()> {
        self.commands
            .send(command)
            .await
            .map_err(|_| Error::Stopped)
    }

    /// Sends one raw frame to `peer` and waits for its answer frame.
    pub async fn request(&self, peer: PeerId, bytes: Vec<u8>) -> Result<Vec<u8>> {
        if bytes.len() > self.max_message_bytes {
            return Err(Error::TooLarge {
                what: "request",
                got: bytes.len(),
                limit: self.max_message_bytes,
            });
        }
        let (reply, rx) = oneshot::channel();
        self.send(Command::Request { peer, bytes, reply }).await?;
        rx.await.map_err(|_| Error::Stopped)?
    }

    /// Sends one raw frame to `peer` whatever its size: for probing a worker's bounds.
    pub async fn request_unchecked(&self, peer: PeerId, bytes: Vec<u8>) -> Result<Vec<u8>> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Request { peer, bytes, reply }).await?;
        rx.await.map_err(|_| Error::Stopped)?
    }

    /// Answers an [`InboundRequest`].
    pub async fn respond(&self, id: u64, bytes: Vec<u8>) -> Result<()> {
        self.send(Command::Respond { id, bytes }).await
    }

    /// Dials `addr`.
    pub async fn dial(&self, addr: Multiaddr) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Dial { addr, reply }).await?;
        rx.await.map_err(|_| Error::Stopped)?
    }

    /// Announces in the DHT that this node provides `key` (a shard's sha256).
    pub async fn provide(&self, key: Vec<u8>) -> Result<()> {
        self.send(Command::Provide { key }).await
    }

    /// The allowed peers the DHT lists as providers of `key`.
    pub async fn find_providers(&self, key: Vec<u8>) -> Result<BTreeSet<PeerId>> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::FindProviders { key, reply }).await?;
        rx.await.map_err(|_| Error::Stopped)
    }

    /// Publishes an announcement on gossipsub (signed with this node's key).
    pub async fn publish(&self, announcement: &Announcement) -> Result<()> {
        self.send(Command::Publish {
            data: announcement.encode(),
        })
        .await
    }

    /// What the node knows now.
    pub async fn snapshot(&self) -> Result<NetworkSnapshot> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Snapshot { reply }).await?;
        rx.await.map_err(|_| Error::Stopped)
    }

    /// Waits until at least `n` peers are connected, or `timeout` passes.
    pub async fn wait_for_peers(&self, n: usize, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let connected = self.snapshot().await?.connected.len();
            if connected >= n {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::Transport(format!(
                    "{connected} peers connected after {timeout:?}, expected {n}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the network task, closing every connection.
    pub async fn shutdown(&self) {
        let (ack, rx) = oneshot::channel();
        if self.send(Command::Shutdown { ack }).await.is_ok() {
            let _ = rx.await;
        }
    }
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    allow: AllowBehaviour,
    identify: identify::Behaviour,
    kad: kad::Behaviour<kad::store::MemoryStore>,
    gossipsub: gossipsub::Behaviour,
    rpc: request_response::Behaviour<FrameCodec>,
}

fn build_swarm(keypair: Keypair, config: &NetworkConfig) -> Result<Swarm<Behaviour>> {
    let allow = config.allow.clone();
    let max_bytes = config.max_message_bytes;
    let request_timeout = config.request_timeout;
    let heartbeat = config.heartbeat;
    let transport_err = |e: &dyn std::fmt::Display| Error::Transport(e.to_string());
    let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| transport_err(&e))?
        .with_behaviour(|key| {
            let peer_id = key.public().to_peer_id();
            let mut kad_config = kad::Config::new(KAD_PROTOCOL);
            kad_config.set_query_timeout(Duration::from_secs(10));
            let gossip_config = gossipsub::ConfigBuilder::default()
                .heartbeat_interval(heartbeat.min(Duration::from_secs(1)))
                .validation_mode(gossipsub::ValidationMode::Strict)
                .max_transmit_size(crate::MAX_ANNOUNCEMENT_BYTES * 4)
                .build()
                .map_err(|e| e.to_string())?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Behaviour {
                allow: AllowBehaviour { allow },
                identify: identify::Behaviour::new(identify::Config::new(
                    IDENTIFY_PROTOCOL.to_string(),
                    key.public(),
                )),
                kad: kad::Behaviour::with_config(
                    peer_id,
                    kad::store::MemoryStore::new(peer_id),
                    kad_config,
                ),
                gossipsub: gossipsub::Behaviour::new(
                    gossipsub::MessageAuthenticity::Signed(key.clone()),
                    gossip_config,
                )?,
                rpc: request_response::Behaviour::with_codec(
                    FrameCodec {
                        max_bytes: max_bytes.saturating_add(64),
                    },
                    [(RPC_PROTOCOL, ProtocolSupport::Full)],
                    request_response::Config::default()
                        .with_request_timeout(request_timeout)
                        .with_max_concurrent_streams(256),
                ),
            })
        })
        .map_err(|e| transport_err(&e))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(config.idle_connection_timeout))
        .build();
    Ok(swarm)
}

struct NetworkTask {
    swarm: Swarm<Behaviour>,
    allow: AllowList,
    tap: Option<InboundTap>,
    inbound: mpsc::Sender<InboundRequest>,
    metrics: Arc<Metrics>,
    outbound: BTreeMap<request_response::OutboundRequestId, PendingRequest>,
    pending_inbound: BTreeMap<u64, request_response::ResponseChannel<Vec<u8>>>,
    next_inbound: u64,
    provider_queries: Vec<ProviderQuery>,
    addresses: BTreeMap<PeerId, BTreeSet<Multiaddr>>,
    listen_addrs: Vec<Multiaddr>,
    connected: BTreeSet<PeerId>,
    announcements: BTreeMap<PeerId, SeenAnnouncement>,
}

impl NetworkTask {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    None => break,
                    Some(Command::Shutdown { ack }) => {
                        drop(self);
                        let _ = ack.send(());
                        return;
                    }
                    Some(c) => self.on_command(c),
                },
                event = self.swarm.select_next_some() => self.on_event(event),
            }
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Request { peer, bytes, reply } => {
                self.metrics.request_sent();
                self.metrics.sent(bytes.len());
                let addrs = self
                    .addresses
                    .get(&peer)
                    .map(|a| a.iter().cloned().collect())
                    .unwrap_or_default();
                let id = self
                    .swarm
                    .behaviour_mut()
                    .rpc
                    .send_request_with_addresses(&peer, bytes, addrs);
                self.outbound.insert(id, (peer, reply));
            }
            Command::Respond { id, bytes } => {
                if let Some(channel) = self.pending_inbound.remove(&id) {
                    self.metrics.sent(bytes.len());
                    // The requester may have gone; nothing to do then.
                    let _ = self.swarm.behaviour_mut().rpc.send_response(channel, bytes);
                }
            }
            Command::Dial { addr, reply } => {
                let r = self
                    .swarm
                    .dial(addr.clone())
                    .map_err(|e| Error::Transport(format!("dialing {addr}: {e}")));
                let _ = reply.send(r);
            }
            Command::Provide { key } => {
                if let Err(e) = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .start_providing(kad::RecordKey::new(&key))
                {
                    tracing::warn!(error = %e, "cannot store a provider record");
                }
            }
            Command::FindProviders { key, reply } => {
                let id = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .get_providers(kad::RecordKey::new(&key));
                self.provider_queries.push((id, BTreeSet::new(), reply));
            }
            Command::Publish { data } => {
                let topic = gossipsub::IdentTopic::new(ANNOUNCE_TOPIC);
                // With no subscribed peer yet, the next heartbeat publishes again.
                if let Err(e) = self.swarm.behaviour_mut().gossipsub.publish(topic, data) {
                    tracing::debug!(error = %e, "announcement not published");
                }
            }
            Command::Snapshot { reply } => {
                let _ = reply.send(NetworkSnapshot {
                    listen_addrs: self.listen_addrs.clone(),
                    connected: self.connected.clone(),
                    announcements: self.announcements.clone(),
                });
            }
            Command::Shutdown { .. } => {}
        }
    }

    fn remember(&mut self, peer: PeerId, addr: Multiaddr, dht: bool) {
        if dht {
            self.swarm
                .behaviour_mut()
                .kad
                .add_address(&peer, addr.clone());
        }
        let known = self.addresses.entry(peer).or_default();
        if known.len() < crate::MAX_ANNOUNCED_ADDRS {
            known.insert(addr);
        }
    }

    fn on_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, peer = %self.swarm.local_peer_id(), "listening");
                self.listen_addrs.push(address);
            }
            SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
            } => {
                self.connected.insert(peer_id);
                if endpoint.is_dialer() {
                    self.remember(peer_id, endpoint.get_remote_address().clone(), false);
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                self.connected.remove(&peer_id);
            }
            SwarmEvent::IncomingConnectionError { error, .. } => {
                if matches!(error, libp2p::swarm::ListenError::Denied { .. }) {
                    self.metrics.denied();
                }
            }
            SwarmEvent::OutgoingConnectionError { error, .. } => {
                if matches!(error, libp2p::swarm::DialError::Denied { .. }) {
                    self.metrics.denied();
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                let dht = info.protocols.contains(&KAD_PROTOCOL);
                for addr in info
                    .listen_addrs
                    .into_iter()
                    .take(crate::MAX_ANNOUNCED_ADDRS)
                {
                    self.remember(peer_id, addr, dht);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                id,
                result,
                step,
                ..
            })) => self.on_query(id, result, step.last),
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                message,
                ..
            })) => self.on_announcement(message),
            SwarmEvent::Behaviour(BehaviourEvent::Rpc(event)) => self.on_rpc(event),
            _ => {}
        }
    }

    fn on_query(&mut self, id: kad::QueryId, result: kad::QueryResult, last: bool) {
        let Some(i) = self.provider_queries.iter().position(|(q, ..)| *q == id) else {
            return;
        };
        if let kad::QueryResult::GetProviders(Ok(kad::GetProvidersOk::FoundProviders {
            providers,
            ..
        })) = result
        {
            let allowed = providers.into_iter().filter(|p| self.allow.is_allowed(p));
            self.provider_queries[i].1.extend(allowed);
        }
        if last {
            let (_, found, reply) = self.provider_queries.swap_remove(i);
            let _ = reply.send(found);
        }
    }

    fn on_announcement(&mut self, message: gossipsub::Message) {
        let Some(source) = message.source else {
            return;
        };
        if !self.allow.is_allowed(&source) || source == *self.swarm.local_peer_id() {
            return;
        }
        let announcement = match Announcement::decode(&message.data) {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(%source, error = %e, "ignoring a bad announcement");
                return;
            }
        };
        if self
            .announcements
            .get(&source)
            .is_some_and(|seen| seen.announcement.sequence >= announcement.sequence)
        {
            return;
        }
        self.metrics.announcement();
        for addr in &announcement.listen_addrs {
            self.remember(source, addr.clone(), false);
        }
        self.announcements.insert(
            source,
            SeenAnnouncement {
                announcement,
                received: Instant::now(),
            },
        );
    }

    fn on_rpc(&mut self, event: request_response::Event<Vec<u8>, Vec<u8>>) {
        use request_response::{Event, Message};
        match event {
            Event::Message {
                peer,
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                self.metrics.received(request.len());
                if let Some(tap) = &self.tap {
                    (tap.0)(&peer, &request);
                }
                if !self.allow.is_allowed(&peer) {
                    let refusal = crate::Response::Error(crate::StageError::new(
                        crate::ErrorCode::NotAllowed,
                        format!("{peer} is not on the allow-list"),
                    ));
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .rpc
                        .send_response(channel, refusal.encode());
                    return;
                }
                let id = self.next_inbound;
                self.next_inbound += 1;
                match self.inbound.try_send(InboundRequest {
                    peer,
                    id,
                    bytes: request,
                }) {
                    Ok(()) => {
                        self.pending_inbound.insert(id, channel);
                    }
                    Err(_) => {
                        let busy = crate::Response::Error(crate::StageError::new(
                            crate::ErrorCode::Busy,
                            "request queue full",
                        ));
                        let _ = self
                            .swarm
                            .behaviour_mut()
                            .rpc
                            .send_response(channel, busy.encode());
                    }
                }
            }
            Event::Message {
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                self.metrics.received(response.len());
                if let Some((_, reply)) = self.outbound.remove(&request_id) {
                    let _ = reply.send(Ok(response));
                }
            }
            Event::OutboundFailure {
                request_id, error, ..
            } => {
                self.metrics.request_failed();
                if let Some((peer, reply)) = self.outbound.remove(&request_id) {
                    let _ = reply.send(Err(Error::Request {
                        peer,
                        reason: error.to_string(),
                    }));
                }
            }
            Event::InboundFailure { peer, error, .. } => {
                self.metrics.inbound_failed();
                tracing::debug!(%peer, %error, "inbound request failed");
            }
            Event::ResponseSent { .. } => {}
        }
    }
}

/// Refuses connections with peers the allow-list rejects, before any protocol runs on them.
struct AllowBehaviour {
    allow: AllowList,
}

#[derive(Debug, thiserror::Error)]
#[error("peer {0} is not on the allow-list")]
struct NotAllowed(PeerId);

impl AllowBehaviour {
    fn check(&self, peer: PeerId) -> Result<dummy::ConnectionHandler, ConnectionDenied> {
        if self.allow.is_allowed(&peer) {
            Ok(dummy::ConnectionHandler)
        } else {
            Err(ConnectionDenied::new(NotAllowed(peer)))
        }
    }
}

impl NetworkBehaviour for AllowBehaviour {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = std::convert::Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.check(peer)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: libp2p::core::Endpoint,
        _: libp2p::core::transport::PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.check(peer)
    }

    fn on_swarm_event(&mut self, _: FromSwarm) {}

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}
