//! The ABCI server driven over real sockets: by tendermint-rs's `tendermint-abci`
//! client (an independent implementation of CometBFT's socket protocol) over TCP,
//! and by raw length-prefixed frames over a unix socket for the methods that
//! client lacks (PrepareProposal, ProcessProposal).

use std::{
    io::{Read, Write},
    sync::{Arc, Mutex},
};

use ed25519_dalek::SigningKey;
use prost013::Message;
use tendermint_proto::{
    google::protobuf::Timestamp,
    v0_38::abci::{self, request::Value as Q, response::Value as R},
};
use tokio_util::sync::CancellationToken;
use vichain_config::{AbciAddr, AppState, GenesisAccount, ParamsConfig};
use vichain_consensus::{Address, App, QueryResult, Storage, query, sign_tx};
use vichain_proto::v1::{self as pb, tx_body::Action};
use vichain_validator::abci::{AbciListener, serve};

const CHAIN: &str = "vichain-abci-test";

fn user() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

fn init_request() -> abci::RequestInitChain {
    let addr = Address::from_public_key(&user().verifying_key());
    let app_state = AppState {
        authority: addr.to_string(),
        accounts: vec![GenesisAccount {
            address: addr.to_string(),
            balance: 1_000_000,
        }],
        models: vec![],
        params: ParamsConfig::default(),
    };
    abci::RequestInitChain {
        time: Some(Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        }),
        chain_id: CHAIN.into(),
        consensus_params: None,
        validators: vec![],
        app_state_bytes: serde_json::to_vec(&app_state).unwrap().into(),
        initial_height: 1,
    }
}

fn transfer(nonce: u64, amount: u64) -> Vec<u8> {
    sign_tx(
        &user(),
        CHAIN,
        nonce,
        1,
        Action::Transfer(pb::Transfer {
            to: vec![9; 20],
            amount,
        }),
    )
}

struct Server {
    _dir: tempfile::TempDir,
    store: Arc<Storage>,
    stop: CancellationToken,
    addr: String,
}

async fn start(addr: AbciAddr) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Storage::open(&dir.path().join("state.redb")).unwrap());
    let app = Arc::new(Mutex::new(App::new(store.clone())));
    let listener = AbciListener::bind(&addr).await.unwrap();
    let addr = match listener.tcp_addr() {
        Some(a) => a.to_string(),
        None => listener.local_addr(),
    };
    let stop = CancellationToken::new();
    tokio::spawn(serve(listener, app, 1 << 20, stop.clone()));
    Server {
        _dir: dir,
        store,
        stop,
        addr,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tendermint_abci_client_drives_a_full_block_over_tcp() {
    let server = start(AbciAddr::Tcp("127.0.0.1:0".parse().unwrap())).await;
    let addr = server.addr.clone();
    let store = server.store.clone();
    tokio::task::spawn_blocking(move || {
        let mut c = tendermint_abci::ClientBuilder::default()
            .connect(&addr)
            .unwrap();
        assert_eq!(
            c.echo(abci::RequestEcho {
                message: "hi".into()
            })
            .unwrap()
            .message,
            "hi"
        );
        let info = c.info(abci::RequestInfo::default()).unwrap();
        assert_eq!(info.last_block_height, 0);
        assert!(info.last_block_app_hash.is_empty());
        let genesis = c.init_chain(init_request()).unwrap();
        assert_eq!(genesis.app_hash.len(), 32);

        let ok = c
            .check_tx(abci::RequestCheckTx {
                tx: transfer(0, 10).into(),
                r#type: 0,
            })
            .unwrap();
        assert_eq!(ok.code, 0, "{}", ok.log);
        let bad = c
            .check_tx(abci::RequestCheckTx {
                tx: vec![1, 2, 3].into(),
                r#type: 0,
            })
            .unwrap();
        assert_ne!(bad.code, 0);
        assert_eq!(bad.codespace, "vichain");

        let ext = c
            .extend_vote(abci::RequestExtendVote {
                height: 1,
                ..Default::default()
            })
            .unwrap();
        let verified = c
            .verify_vote_extension(abci::RequestVerifyVoteExtension {
                vote_extension: ext.vote_extension,
                height: 1,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            verified.status,
            abci::response_verify_vote_extension::VerifyStatus::Accept as i32
        );
        let oversize = c
            .verify_vote_extension(abci::RequestVerifyVoteExtension {
                vote_extension: vec![0; 4096].into(),
                height: 1,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            oversize.status,
            abci::response_verify_vote_extension::VerifyStatus::Reject as i32
        );

        let fin = c
            .finalize_block(abci::RequestFinalizeBlock {
                txs: vec![transfer(0, 10).into()],
                hash: vec![1; 32].into(),
                height: 1,
                time: Some(Timestamp {
                    seconds: 1_700_000_001,
                    nanos: 0,
                }),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(fin.tx_results.len(), 1);
        assert_eq!(fin.tx_results[0].code, 0, "{}", fin.tx_results[0].log);
        assert!(
            fin.tx_results[0]
                .events
                .iter()
                .any(|e| e.r#type == "transfer")
        );
        c.commit().unwrap();

        let info = c.info(abci::RequestInfo::default()).unwrap();
        assert_eq!(info.last_block_height, 1);
        assert_eq!(info.last_block_app_hash, fin.app_hash);

        // A query with a proof that verifies against the committed app hash.
        let recipient = Address::from_bytes(&[9; 20]).unwrap();
        let q = c
            .query(abci::RequestQuery {
                data: Default::default(),
                path: format!("/accounts/{recipient}"),
                height: 0,
                prove: true,
            })
            .unwrap();
        assert_eq!(q.code, 0, "{}", q.log);
        let account: pb::Account = prost::Message::decode(q.value.as_ref()).unwrap();
        assert_eq!(account.balance, 10);
        let op = &q.proof_ops.unwrap().ops[0];
        assert_eq!(op.r#type, query::PROOF_OP_TYPE);
        let app_hash: [u8; 32] = fin.app_hash.as_ref().try_into().unwrap();
        let result = QueryResult {
            key: q.key.to_vec(),
            value: Some(q.value.to_vec()),
            height: 1,
            app_hash,
            proof: op.data.clone(),
        };
        query::verify(&result, &app_hash).unwrap();
        let mut forged = result.clone();
        forged.value = Some(vec![1, 2, 3]);
        assert!(query::verify(&forged, &app_hash).is_err());

        // An unknown path is an error response, not a dropped connection.
        let q = c
            .query(abci::RequestQuery {
                path: "/nope".into(),
                ..Default::default()
            })
            .unwrap();
        assert_ne!(q.code, 0);
        assert!(q.log.contains("/nope"), "{}", q.log);

        // Snapshots: none offered.
        assert!(c.list_snapshots().unwrap().snapshots.is_empty());
        let offer = c
            .offer_snapshot(abci::RequestOfferSnapshot::default())
            .unwrap();
        assert_eq!(
            offer.result,
            abci::response_offer_snapshot::Result::Reject as i32
        );
    })
    .await
    .unwrap();
    server.stop.cancel();
    let _ = store;
}

/// A minimal socket client speaking CometBFT's framing: each request is followed
/// by a Flush, and responses are read up to the Flush response.
struct RawClient<S: Read + Write> {
    sock: S,
}

impl<S: Read + Write> RawClient<S> {
    fn call(&mut self, value: Q) -> R {
        let mut buf = abci::Request { value: Some(value) }.encode_length_delimited_to_vec();
        buf.extend(
            abci::Request {
                value: Some(Q::Flush(abci::RequestFlush {})),
            }
            .encode_length_delimited_to_vec(),
        );
        self.sock.write_all(&buf).unwrap();
        let first = self.read().expect("a response");
        let flush = self.read().expect("a flush response");
        assert!(matches!(flush, R::Flush(_)));
        first
    }

    fn read(&mut self) -> Option<R> {
        // The length prefix, a byte at a time until it decodes (at most 10 bytes).
        let mut prefix = Vec::new();
        let len = loop {
            let mut b = [0u8; 1];
            if self.sock.read(&mut b).ok()? == 0 {
                return None;
            }
            prefix.push(b[0]);
            match prost013::decode_length_delimiter(prefix.as_slice()) {
                Ok(len) => break len,
                Err(_) if prefix.len() < 10 => {}
                Err(_) => return None,
            }
        };
        let mut frame = vec![0; len];
        self.sock.read_exact(&mut frame).ok()?;
        abci::Response::decode(frame.as_slice()).ok()?.value
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proposals_flow_over_a_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("abci.sock");
    let server = start(AbciAddr::Unix(path.clone())).await;
    tokio::task::spawn_blocking(move || {
        let mut c = RawClient {
            sock: std::os::unix::net::UnixStream::connect(&path).unwrap(),
        };
        let R::InitChain(_) = c.call(Q::InitChain(init_request())) else {
            panic!("InitChain")
        };
        let good = transfer(0, 5);
        let bad = sign_tx(
            &user(),
            "another-chain",
            1,
            1,
            Action::Transfer(pb::Transfer {
                to: vec![9; 20],
                amount: 5,
            }),
        );
        let R::PrepareProposal(p) = c.call(Q::PrepareProposal(abci::RequestPrepareProposal {
            max_tx_bytes: 1 << 20,
            txs: vec![good.clone().into(), bad.clone().into()],
            height: 1,
            ..Default::default()
        })) else {
            panic!("PrepareProposal")
        };
        assert_eq!(p.txs, vec![bytes_of(&good)]);
        let R::ProcessProposal(accept) = c.call(Q::ProcessProposal(abci::RequestProcessProposal {
            txs: p.txs.clone(),
            height: 1,
            ..Default::default()
        })) else {
            panic!("ProcessProposal")
        };
        assert_eq!(
            accept.status,
            abci::response_process_proposal::ProposalStatus::Accept as i32
        );
        let R::ProcessProposal(reject) = c.call(Q::ProcessProposal(abci::RequestProcessProposal {
            txs: vec![good.clone().into(), bad.into()],
            height: 1,
            ..Default::default()
        })) else {
            panic!("ProcessProposal")
        };
        assert_eq!(
            reject.status,
            abci::response_process_proposal::ProposalStatus::Reject as i32
        );
        let R::FinalizeBlock(f) = c.call(Q::FinalizeBlock(abci::RequestFinalizeBlock {
            txs: p.txs,
            height: 1,
            ..Default::default()
        })) else {
            panic!("FinalizeBlock")
        };
        assert_eq!(f.tx_results[0].code, 0);
        let R::Commit(_) = c.call(Q::Commit(abci::RequestCommit {})) else {
            panic!("Commit")
        };
        // A protocol violation (Commit without a block) is reported as an
        // exception, which CometBFT treats as fatal, rather than answered wrongly.
        let R::Exception(e) = c.call(Q::Commit(abci::RequestCommit {})) else {
            panic!("expected an exception")
        };
        assert!(e.error.contains("Commit"), "{}", e.error);
    })
    .await
    .unwrap();
    server.stop.cancel();
}

fn bytes_of(v: &[u8]) -> bytes::Bytes {
    bytes::Bytes::copy_from_slice(v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_close_only_their_connection() {
    let server = start(AbciAddr::Tcp("127.0.0.1:0".parse().unwrap())).await;
    let addr = server.addr.clone();
    tokio::task::spawn_blocking(move || {
        let garbage: [&[u8]; 4] = [
            // A length prefix announcing 2^40 bytes: refused before reading.
            &[0x80, 0x80, 0x80, 0x80, 0x80, 0x20],
            // An invalid uvarint (more than 10 continuation bytes).
            &[0xff; 11],
            // A short frame whose body is not a Request.
            &[3, 0xff, 0xff, 0xff],
            // A truncated frame followed by EOF.
            &[10, 1, 2],
        ];
        for g in garbage {
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            s.write_all(g).unwrap();
            s.shutdown(std::net::Shutdown::Write).ok();
            let mut rest = Vec::new();
            // The server closes the connection without answering.
            s.read_to_end(&mut rest).unwrap();
            assert!(rest.is_empty());
        }
        // The server is still up and serving.
        let mut c = tendermint_abci::ClientBuilder::default()
            .connect(&addr)
            .unwrap();
        assert_eq!(
            c.echo(abci::RequestEcho {
                message: "still here".into()
            })
            .unwrap()
            .message,
            "still here"
        );
    })
    .await
    .unwrap();
    server.stop.cancel();
}
