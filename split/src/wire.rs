//! The p2p messages: domain types, and their protobuf encoding with bounds checked before
//! decoding. This is where untrusted bytes become typed values.

use libp2p::Multiaddr;
use prost::Message as _;
use vichain_inference::{Activation, Fingerprint, LayerRange, MAX_MODEL_ID_LEN, ShardEntry};

use crate::{Error, Result};

#[allow(missing_docs, clippy::all, missing_debug_implementations)]
mod pb {
    include!(concat!(env!("OUT_DIR"), "/vichain.split.v1.rs"));
}

/// Default bound on one request or response frame (activations of a few thousand tokens).
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
/// Bound on one gossipsub announcement.
pub const MAX_ANNOUNCEMENT_BYTES: usize = 4096;
/// Most listen addresses an announcement may carry.
pub const MAX_ANNOUNCED_ADDRS: usize = 16;
/// Longest error reason kept from a peer.
pub const MAX_REASON_BYTES: usize = 1024;
/// Most shards a pong may list.
pub const MAX_SERVED_SHARDS: usize = 64;

/// A shard of a model as the network names it: its layers and the sha256 of its file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShardRef {
    /// Layers held.
    pub range: LayerRange,
    /// sha256 of the shard file, as listed in the manifest.
    pub sha256: Fingerprint,
}

impl ShardRef {
    /// The reference of a manifest entry.
    pub fn from_entry(entry: &ShardEntry) -> Result<Self> {
        let bytes = hex::decode(&entry.sha256)
            .map_err(|e| Error::malformed("shard sha256", format!("{}: {e}", entry.sha256)))?;
        Ok(Self {
            range: entry.layers,
            sha256: fingerprint("shard sha256", &bytes)?,
        })
    }

    /// The Kademlia key under which holders of the shard provide it.
    pub fn provider_key(&self) -> Vec<u8> {
        self.sha256.0.to_vec()
    }

    fn to_pb(self) -> pb::ShardRef {
        pb::ShardRef {
            layer_start: self.range.start as u32,
            layer_end: self.range.end as u32,
            shard_sha256: self.sha256.0.to_vec(),
        }
    }

    fn from_pb(p: Option<pb::ShardRef>) -> Result<Self> {
        let p = p.ok_or_else(|| Error::malformed("shard", "missing"))?;
        if p.layer_start >= p.layer_end {
            return Err(Error::malformed(
                "shard",
                format!("empty layer range {}..{}", p.layer_start, p.layer_end),
            ));
        }
        Ok(Self {
            range: LayerRange::new(p.layer_start as usize, p.layer_end as usize),
            sha256: fingerprint("shard sha256", &p.shard_sha256)?,
        })
    }
}

impl std::fmt::Display for ShardRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hex = self.sha256.to_string();
        write!(f, "{}@{}", self.range, &hex[..hex.len().min(12)])
    }
}

/// A request from a client to a worker.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    /// Run an activation through a shard.
    Forward(ForwardRequest),
    /// Drop a session's KV cache.
    EndSession {
        /// The model.
        model_id: String,
        /// The shard.
        shard: ShardRef,
        /// The session.
        session: u64,
    },
    /// Which shards do you serve, how busy are you.
    Ping {
        /// Echoed back.
        nonce: u64,
    },
}

/// An activation sent to a stage, checked on decoding: the tensor hashes to the sha256 sent
/// with it, is one canonical activation, and its session and position match the message's.
#[derive(Clone, Debug, PartialEq)]
pub struct ForwardRequest {
    /// The model.
    pub model_id: String,
    /// The shard to run.
    pub shard: ShardRef,
    /// The activation.
    pub activation: Activation,
    /// sha256 of its canonical bytes.
    pub tensor_sha256: Fingerprint,
}

/// A worker's answer.
#[derive(Clone, Debug, PartialEq)]
pub enum Response {
    /// The shard's output.
    Forward(ForwardResponse),
    /// The session was dropped.
    EndSession {
        /// Whether the worker had it.
        existed: bool,
    },
    /// What the worker serves.
    Pong(Pong),
    /// The request was refused.
    Error(StageError),
}

/// A stage's output and its commitment: the sha256 of what it received and emitted.
#[derive(Clone, Debug, PartialEq)]
pub struct ForwardResponse {
    /// sha256 of the tensor bytes the stage received.
    pub input_sha256: Fingerprint,
    /// sha256 of the tensor bytes it emitted (checked against `output` on decoding).
    pub output_sha256: Fingerprint,
    /// The emitted activation.
    pub output: Activation,
    /// Time the shard spent computing, in microseconds, as the worker reports it.
    pub compute_micros: u64,
}

/// A worker's answer to a ping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pong {
    /// The ping's nonce.
    pub nonce: u64,
    /// Shards served, with their model.
    pub shards: Vec<(String, ShardRef)>,
    /// Requests in flight.
    pub load: u32,
    /// Sessions the worker keeps at once.
    pub capacity: u32,
}

/// Why a worker refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorCode {
    /// The request could not be decoded or violates a bound.
    Malformed,
    /// The tensor does not hash to the sha256 sent with it.
    HashMismatch,
    /// The worker does not serve this model, shard or layer range.
    NotServing,
    /// The shard rejected the activation (shape, dtype, position, unknown session).
    BadActivation,
    /// The requester is not on the allow-list.
    NotAllowed,
    /// The worker is at capacity.
    Busy,
    /// The worker failed internally.
    Internal,
}

impl ErrorCode {
    /// Stable name, for logs and reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::HashMismatch => "hash_mismatch",
            Self::NotServing => "not_serving",
            Self::BadActivation => "bad_activation",
            Self::NotAllowed => "not_allowed",
            Self::Busy => "busy",
            Self::Internal => "internal",
        }
    }

    fn to_pb(self) -> pb::ErrorCode {
        match self {
            Self::Malformed => pb::ErrorCode::Malformed,
            Self::HashMismatch => pb::ErrorCode::HashMismatch,
            Self::NotServing => pb::ErrorCode::NotServing,
            Self::BadActivation => pb::ErrorCode::BadActivation,
            Self::NotAllowed => pb::ErrorCode::NotAllowed,
            Self::Busy => pb::ErrorCode::Busy,
            Self::Internal => pb::ErrorCode::Internal,
        }
    }

    fn from_pb(code: i32) -> Self {
        match pb::ErrorCode::try_from(code) {
            Ok(pb::ErrorCode::Malformed) => Self::Malformed,
            Ok(pb::ErrorCode::HashMismatch) => Self::HashMismatch,
            Ok(pb::ErrorCode::NotServing) => Self::NotServing,
            Ok(pb::ErrorCode::BadActivation) => Self::BadActivation,
            Ok(pb::ErrorCode::NotAllowed) => Self::NotAllowed,
            Ok(pb::ErrorCode::Busy) => Self::Busy,
            _ => Self::Internal,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A refusal, with a reason for the requester.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StageError {
    /// The kind of refusal.
    pub code: ErrorCode,
    /// Human-readable reason (truncated to [`MAX_REASON_BYTES`]).
    pub reason: String,
}

impl StageError {
    /// A refusal.
    pub fn new(code: ErrorCode, reason: impl std::fmt::Display) -> Self {
        let mut reason = reason.to_string();
        truncate(&mut reason, MAX_REASON_BYTES);
        Self { code, reason }
    }
}

/// What a worker publishes on gossipsub at every heartbeat, signed with its libp2p key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announcement {
    /// The model.
    pub model_id: String,
    /// The shard served.
    pub shard: ShardRef,
    /// Requests in flight.
    pub load: u32,
    /// Sessions the worker keeps at once.
    pub capacity: u32,
    /// Where to reach it.
    pub listen_addrs: Vec<Multiaddr>,
    /// Increases with every announcement of this worker.
    pub sequence: u64,
}

impl Request {
    /// The protobuf encoding.
    pub fn encode(&self) -> Vec<u8> {
        let kind = match self {
            Self::Forward(f) => pb::request::Kind::Forward(pb::ForwardRequest {
                model_id: f.model_id.clone(),
                shard: Some(f.shard.to_pb()),
                session: f.activation.session(),
                position: f.activation.position(),
                tensor: f.activation.to_bytes(),
                tensor_sha256: f.tensor_sha256.0.to_vec(),
            }),
            Self::EndSession {
                model_id,
                shard,
                session,
            } => pb::request::Kind::EndSession(pb::EndSessionRequest {
                model_id: model_id.clone(),
                shard: Some(shard.to_pb()),
                session: *session,
            }),
            Self::Ping { nonce } => pb::request::Kind::Ping(pb::PingRequest { nonce: *nonce }),
        };
        pb::Request { kind: Some(kind) }.encode_to_vec()
    }

    /// Decodes and checks a request of at most `max_bytes`.
    pub fn decode(bytes: &[u8], max_bytes: usize) -> Result<Self> {
        bound("request", bytes.len(), max_bytes)?;
        let p = pb::Request::decode(bytes).map_err(|e| Error::malformed("request", e))?;
        match p.kind {
            Some(pb::request::Kind::Forward(f)) => {
                let model_id = model_id(f.model_id)?;
                let shard = ShardRef::from_pb(f.shard)?;
                let claimed = fingerprint("tensor sha256", &f.tensor_sha256)?;
                let got = Fingerprint::of_bytes(&f.tensor);
                if got != claimed {
                    return Err(Error::HashMismatch {
                        what: "request tensor".into(),
                        got: got.to_string(),
                        expected: claimed.to_string(),
                    });
                }
                let activation = Activation::from_bytes(&f.tensor)
                    .map_err(|e| Error::malformed("request tensor", e))?;
                if activation.session() != f.session || activation.position() != f.position {
                    return Err(Error::malformed(
                        "request",
                        format!(
                            "session {} position {} in the message, {} {} in the tensor",
                            f.session,
                            f.position,
                            activation.session(),
                            activation.position()
                        ),
                    ));
                }
                Ok(Self::Forward(ForwardRequest {
                    model_id,
                    shard,
                    activation,
                    tensor_sha256: got,
                }))
            }
            Some(pb::request::Kind::EndSession(e)) => Ok(Self::EndSession {
                model_id: model_id(e.model_id)?,
                shard: ShardRef::from_pb(e.shard)?,
                session: e.session,
            }),
            Some(pb::request::Kind::Ping(p)) => Ok(Self::Ping { nonce: p.nonce }),
            None => Err(Error::malformed("request", "no kind")),
        }
    }
}

impl ForwardRequest {
    /// A request to run `activation` through `shard` of `model_id`.
    pub fn new(model_id: impl Into<String>, shard: ShardRef, activation: Activation) -> Self {
        let tensor_sha256 = activation.sha256();
        Self {
            model_id: model_id.into(),
            shard,
            activation,
            tensor_sha256,
        }
    }
}

/// Encodes a forward request from raw parts, with whatever hash the caller claims: what a
/// client sends, byte for byte. Useful to probe workers with malformed requests.
pub fn encode_forward_request(
    model_id: &str,
    shard: ShardRef,
    session: u64,
    position: u32,
    tensor: &[u8],
    claimed_sha256: &[u8],
) -> Vec<u8> {
    pb::Request {
        kind: Some(pb::request::Kind::Forward(pb::ForwardRequest {
            model_id: model_id.to_string(),
            shard: Some(shard.to_pb()),
            session,
            position,
            tensor: tensor.to_vec(),
            tensor_sha256: claimed_sha256.to_vec(),
        })),
    }
    .encode_to_vec()
}

impl Response {
    /// The protobuf encoding.
    pub fn encode(&self) -> Vec<u8> {
        let kind = match self {
            Self::Forward(f) => pb::response::Kind::Forward(pb::ForwardResponse {
                input_sha256: f.input_sha256.0.to_vec(),
                output_sha256: f.output_sha256.0.to_vec(),
                tensor: f.output.to_bytes(),
                compute_micros: f.compute_micros,
            }),
            Self::EndSession { existed } => {
                pb::response::Kind::EndSession(pb::EndSessionResponse { existed: *existed })
            }
            Self::Pong(p) => pb::response::Kind::Pong(pb::PongResponse {
                nonce: p.nonce,
                shards: p
                    .shards
                    .iter()
                    .map(|(m, s)| pb::ServedShard {
                        model_id: m.clone(),
                        shard: Some(s.to_pb()),
                    })
                    .collect(),
                load: p.load,
                capacity: p.capacity,
            }),
            Self::Error(e) => pb::response::Kind::Error(pb::ErrorResponse {
                code: e.code.to_pb() as i32,
                reason: e.reason.clone(),
            }),
        };
        pb::Response { kind: Some(kind) }.encode_to_vec()
    }

    /// Decodes and checks a response of at most `max_bytes`: a forward response's tensor
    /// must hash to the output sha256 it carries and be one canonical activation.
    pub fn decode(bytes: &[u8], max_bytes: usize) -> Result<Self> {
        bound("response", bytes.len(), max_bytes)?;
        let p = pb::Response::decode(bytes).map_err(|e| Error::malformed("response", e))?;
        match p.kind {
            Some(pb::response::Kind::Forward(f)) => {
                let input_sha256 = fingerprint("input sha256", &f.input_sha256)?;
                let output_sha256 = fingerprint("output sha256", &f.output_sha256)?;
                let got = Fingerprint::of_bytes(&f.tensor);
                if got != output_sha256 {
                    return Err(Error::HashMismatch {
                        what: "response tensor".into(),
                        got: got.to_string(),
                        expected: output_sha256.to_string(),
                    });
                }
                let output = Activation::from_bytes(&f.tensor)
                    .map_err(|e| Error::malformed("response tensor", e))?;
                Ok(Self::Forward(ForwardResponse {
                    input_sha256,
                    output_sha256,
                    output,
                    compute_micros: f.compute_micros,
                }))
            }
            Some(pb::response::Kind::EndSession(e)) => Ok(Self::EndSession { existed: e.existed }),
            Some(pb::response::Kind::Pong(p)) => {
                if p.shards.len() > MAX_SERVED_SHARDS {
                    return Err(Error::TooLarge {
                        what: "served shard count",
                        got: p.shards.len(),
                        limit: MAX_SERVED_SHARDS,
                    });
                }
                let shards = p
                    .shards
                    .into_iter()
                    .map(|s| Ok((model_id(s.model_id)?, ShardRef::from_pb(s.shard)?)))
                    .collect::<Result<_>>()?;
                Ok(Self::Pong(Pong {
                    nonce: p.nonce,
                    shards,
                    load: p.load,
                    capacity: p.capacity,
                }))
            }
            Some(pb::response::Kind::Error(e)) => Ok(Self::Error(StageError::new(
                ErrorCode::from_pb(e.code),
                e.reason,
            ))),
            None => Err(Error::malformed("response", "no kind")),
        }
    }
}

impl Announcement {
    /// The protobuf encoding.
    pub fn encode(&self) -> Vec<u8> {
        pb::Announcement {
            model_id: self.model_id.clone(),
            shard: Some(self.shard.to_pb()),
            load: self.load,
            capacity: self.capacity,
            listen_addrs: self
                .listen_addrs
                .iter()
                .take(MAX_ANNOUNCED_ADDRS)
                .map(|a| a.to_vec())
                .collect(),
            sequence: self.sequence,
        }
        .encode_to_vec()
    }

    /// Decodes and checks an announcement.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        bound("announcement", bytes.len(), MAX_ANNOUNCEMENT_BYTES)?;
        let p = pb::Announcement::decode(bytes).map_err(|e| Error::malformed("announcement", e))?;
        if p.listen_addrs.len() > MAX_ANNOUNCED_ADDRS {
            return Err(Error::TooLarge {
                what: "announced address count",
                got: p.listen_addrs.len(),
                limit: MAX_ANNOUNCED_ADDRS,
            });
        }
        let listen_addrs = p
            .listen_addrs
            .into_iter()
            .map(|a| Multiaddr::try_from(a).map_err(|e| Error::malformed("announced address", e)))
            .collect::<Result<_>>()?;
        Ok(Self {
            model_id: model_id(p.model_id)?,
            shard: ShardRef::from_pb(p.shard)?,
            load: p.load,
            capacity: p.capacity,
            listen_addrs,
            sequence: p.sequence,
        })
    }
}

fn bound(what: &'static str, got: usize, limit: usize) -> Result<()> {
    if got > limit {
        return Err(Error::TooLarge { what, got, limit });
    }
    Ok(())
}

fn fingerprint(what: &'static str, bytes: &[u8]) -> Result<Fingerprint> {
    let arr: [u8; 32] = bytes
        .try_into()
        .map_err(|_| Error::malformed(what, format!("{} bytes, expected 32", bytes.len())))?;
    Ok(Fingerprint(arr))
}

fn model_id(id: String) -> Result<String> {
    if id.is_empty() || id.len() > MAX_MODEL_ID_LEN {
        return Err(Error::malformed(
            "model id",
            format!("{} bytes, expected 1..={MAX_MODEL_ID_LEN}", id.len()),
        ));
    }
    Ok(id)
}

fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard() -> ShardRef {
        ShardRef {
            range: LayerRange::new(2, 4),
            sha256: Fingerprint([7; 32]),
        }
    }

    #[test]
    fn requests_and_responses_roundtrip() {
        let act = Activation::tokens(9, 3, &[1, 2, 3]).unwrap();
        let req = Request::Forward(ForwardRequest::new("m", shard(), act.clone()));
        assert_eq!(
            Request::decode(&req.encode(), MAX_MESSAGE_BYTES).unwrap(),
            req
        );
        let resp = Response::Forward(ForwardResponse {
            input_sha256: act.sha256(),
            output_sha256: act.sha256(),
            output: act,
            compute_micros: 5,
        });
        assert_eq!(
            Response::decode(&resp.encode(), MAX_MESSAGE_BYTES).unwrap(),
            resp
        );
        let pong = Response::Pong(Pong {
            nonce: 1,
            shards: vec![("m".into(), shard())],
            load: 2,
            capacity: 3,
        });
        assert_eq!(
            Response::decode(&pong.encode(), MAX_MESSAGE_BYTES).unwrap(),
            pong
        );
        let ann = Announcement {
            model_id: "m".into(),
            shard: shard(),
            load: 1,
            capacity: 4,
            listen_addrs: vec!["/ip4/127.0.0.1/tcp/4001".parse().unwrap()],
            sequence: 8,
        };
        assert_eq!(Announcement::decode(&ann.encode()).unwrap(), ann);
    }

    #[test]
    fn wrong_hashes_oversize_and_garbage_are_rejected() {
        let act = Activation::tokens(1, 0, &[5]).unwrap();
        let bytes = act.to_bytes();
        let bad = encode_forward_request("m", shard(), 1, 0, &bytes, &[0; 32]);
        assert!(matches!(
            Request::decode(&bad, MAX_MESSAGE_BYTES),
            Err(Error::HashMismatch { .. })
        ));
        let sha = act.sha256();
        let mismatched = encode_forward_request("m", shard(), 2, 0, &bytes, &sha.0);
        assert!(matches!(
            Request::decode(&mismatched, MAX_MESSAGE_BYTES),
            Err(Error::Malformed { .. })
        ));
        let good = encode_forward_request("m", shard(), 1, 0, &bytes, &sha.0);
        assert!(Request::decode(&good, MAX_MESSAGE_BYTES).is_ok());
        assert!(matches!(
            Request::decode(&good, good.len() - 1),
            Err(Error::TooLarge { .. })
        ));
        for garbage in [&b"\xff\xff\xff\xff"[..], b"hello world", b"\x0a\x05"] {
            assert!(Request::decode(garbage, MAX_MESSAGE_BYTES).is_err());
            assert!(Response::decode(garbage, MAX_MESSAGE_BYTES).is_err());
            assert!(Announcement::decode(garbage).is_err());
        }
        for cut in 0..good.len() {
            let _ = Request::decode(&good[..cut], MAX_MESSAGE_BYTES);
        }
    }
}
