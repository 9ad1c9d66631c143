//! The ABCI socket server of `vichaind start`: CometBFT v0.38's wire protocol (uvarint
//! length-prefixed protobuf `Request`/`Response` frames) over TCP or a unix socket,
//! serving the ledger's [`App`] (the state machine, which knows nothing of sockets).
//!
//! Written here rather than taken from tower-abci because tower-abci's connection
//! task unwraps every error (a malformed frame panics the task) and its decoder has
//! no size bound. Here a frame is bounded before it is read, any decoding error
//! closes only that connection with a logged reason, and requests on a connection
//! are answered strictly in order, as CometBFT expects. The framing is a
//! tokio-util codec ([`AbciCodec`]) over prost's length-delimiter functions.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
};

use bytes::{Buf, BytesMut};
use futures::{SinkExt, StreamExt};
use prost013::Message;
use tendermint_proto::v0_38::abci::{self as abci, request, response};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, UnixListener},
};
use tokio_util::{
    codec::{Decoder, Encoder, FramedRead, FramedWrite},
    sync::CancellationToken,
};
use tracing::{debug, error, info, warn};

use vichain_consensus::App;

/// Where the server listens.
#[derive(Debug)]
pub enum AbciListener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

impl AbciListener {
    pub async fn bind(addr: &vichain_config::AbciAddr) -> std::io::Result<Self> {
        Ok(match addr {
            vichain_config::AbciAddr::Tcp(a) => Self::Tcp(TcpListener::bind(a).await?),
            vichain_config::AbciAddr::Unix(p) => {
                if p.exists() {
                    std::fs::remove_file(p)?;
                }
                Self::Unix(UnixListener::bind(p)?, p.clone())
            }
        })
    }

    /// The bound TCP address, if this is a TCP listener.
    pub fn tcp_addr(&self) -> Option<std::net::SocketAddr> {
        match self {
            Self::Tcp(l) => l.local_addr().ok(),
            Self::Unix(..) => None,
        }
    }

    /// The bound address, e.g. `tcp://127.0.0.1:26658`.
    pub fn local_addr(&self) -> String {
        match self {
            Self::Tcp(l) => l
                .local_addr()
                .map(|a| format!("tcp://{a}"))
                .unwrap_or_else(|_| "tcp://?".into()),
            Self::Unix(_, p) => format!("unix://{}", p.display()),
        }
    }
}

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame length prefix is not a valid uvarint")]
    BadLength,
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge { len: u64, max: u64 },
    #[error("malformed request: {0}")]
    Decode(#[from] prost013::DecodeError),
    #[error("encoding a response: {0}")]
    Encode(#[from] prost013::EncodeError),
    #[error("application failed: {0}")]
    App(String),
}

/// Serves ABCI connections until `shutdown` is cancelled. Each connection runs in
/// its own task; the application is shared behind a mutex.
pub async fn serve(
    listener: AbciListener,
    app: Arc<Mutex<App>>,
    max_frame_bytes: u64,
    shutdown: CancellationToken,
) {
    info!(addr = %listener.local_addr(), "ABCI server listening");
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = accept(&listener) => a,
        };
        match accepted {
            Ok((read, write, peer)) => {
                let app = app.clone();
                let shutdown = shutdown.clone();
                tokio::spawn(tracing::Instrument::in_current_span(async move {
                    debug!(%peer, "ABCI connection opened");
                    match connection(read, write, app, max_frame_bytes, shutdown).await {
                        Ok(()) => debug!(%peer, "ABCI connection closed"),
                        Err(e) => error!(%peer, "closing ABCI connection: {e}"),
                    }
                }));
            }
            Err(e) => warn!("accepting an ABCI connection failed: {e}"),
        }
    }
    if let AbciListener::Unix(_, path) = &listener {
        let _ = std::fs::remove_file(path);
    }
    info!("ABCI server stopped");
}

type BoxRead = Box<dyn AsyncRead + Unpin + Send>;
type BoxWrite = Box<dyn AsyncWrite + Unpin + Send>;

async fn accept(listener: &AbciListener) -> std::io::Result<(BoxRead, BoxWrite, String)> {
    Ok(match listener {
        AbciListener::Tcp(l) => {
            let (s, peer) = l.accept().await?;
            s.set_nodelay(true)?;
            let (r, w) = s.into_split();
            (Box::new(r), Box::new(w), peer.to_string())
        }
        AbciListener::Unix(l, _) => {
            let (s, _) = l.accept().await?;
            let (r, w) = s.into_split();
            (Box::new(r), Box::new(w), "unix".into())
        }
    })
}

/// Reads requests and writes responses on one connection until EOF, an error,
/// or shutdown. Responses are buffered while more requests are pending and
/// flushed on Flush or when the connection would otherwise wait.
pub async fn connection<R, W>(
    read: R,
    write: W,
    app: Arc<Mutex<App>>,
    max_frame_bytes: u64,
    shutdown: CancellationToken,
) -> Result<(), ConnError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut requests = FramedRead::new(read, AbciCodec::new(max_frame_bytes));
    let mut responses = FramedWrite::new(write, AbciCodec::new(max_frame_bytes));
    loop {
        let req = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = requests.next() => r,
        };
        let Some(req) = req.transpose()? else {
            return Ok(());
        };
        let is_flush = matches!(req.value, Some(request::Value::Flush(_)));
        let resp = if is_flush {
            abci::Response {
                value: Some(response::Value::Flush(abci::ResponseFlush {})),
            }
        } else {
            let app = app.clone();
            let span = tracing::Span::current();
            // The application is synchronous and may take a while (a large block):
            // run it off the async workers. One request at a time per connection
            // keeps responses in order.
            tokio::task::spawn_blocking(move || {
                let _entered = span.enter();
                let mut app = app.lock().map_err(|_| {
                    ConnError::App("application poisoned by an earlier panic".into())
                })?;
                app.handle(req).map_err(|e| ConnError::App(e.to_string()))
            })
            .await
            .map_err(|e| ConnError::App(format!("application task failed: {e}")))?
            .unwrap_or_else(|e| {
                // The node is broken (storage failure, protocol violation): tell
                // CometBFT, which stops on an exception rather than diverge.
                error!("ABCI application error: {e}");
                abci::Response {
                    value: Some(response::Value::Exception(abci::ResponseException {
                        error: e.to_string(),
                    })),
                }
            })
        };
        responses.feed(resp).await?;
        // CometBFT sends Flush when it waits for answers; other clients (such as
        // tendermint-rs's) wait without one. Flushing whenever no further request
        // is already buffered serves both and still batches pipelined requests.
        if is_flush || requests.read_buffer().is_empty() {
            responses.flush().await?;
        }
    }
}

/// CometBFT's socket framing: each message is prefixed by its length as a protobuf
/// uvarint. Decodes [`abci::Request`]s, refusing a frame longer than the bound as
/// soon as its prefix is read (before buffering its body); encodes [`abci::Response`]s.
#[derive(Debug, Clone, Copy)]
pub struct AbciCodec {
    max_frame_bytes: u64,
}

impl AbciCodec {
    /// The longest length prefix: a uvarint of a u64.
    const MAX_PREFIX: usize = 10;

    pub fn new(max_frame_bytes: u64) -> Self {
        Self { max_frame_bytes }
    }
}

impl Decoder for AbciCodec {
    type Item = abci::Request;
    type Error = ConnError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<abci::Request>, ConnError> {
        let mut rest = &src[..];
        let len = match prost013::decode_length_delimiter(&mut rest) {
            Ok(len) => len,
            // Fewer bytes than the longest prefix: the rest of it is still to come.
            Err(_) if src.len() < Self::MAX_PREFIX => return Ok(None),
            Err(_) => return Err(ConnError::BadLength),
        };
        if len as u64 > self.max_frame_bytes {
            return Err(ConnError::FrameTooLarge {
                len: len as u64,
                max: self.max_frame_bytes,
            });
        }
        // The prefix as sent, which may be longer than the shortest encoding.
        let prefix = src.len() - rest.len();
        if rest.len() < len {
            src.reserve(len - rest.len());
            return Ok(None);
        }
        src.advance(prefix);
        let body = src.split_to(len).freeze();
        Ok(Some(abci::Request::decode(body)?))
    }
}

impl Encoder<abci::Response> for AbciCodec {
    type Error = ConnError;

    fn encode(&mut self, msg: abci::Response, dst: &mut BytesMut) -> Result<(), ConnError> {
        let len = msg.encoded_len();
        dst.reserve(prost013::length_delimiter_len(len) + len);
        prost013::encode_length_delimiter(len, dst)?;
        msg.encode(dst)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo(message: &str) -> abci::Request {
        abci::Request {
            value: Some(request::Value::Echo(abci::RequestEcho {
                message: message.into(),
            })),
        }
    }

    fn decode(bytes: &[u8]) -> Result<Option<abci::Request>, ConnError> {
        AbciCodec::new(1 << 20).decode(&mut BytesMut::from(bytes))
    }

    #[test]
    fn frames_are_decoded_as_their_bytes_arrive() {
        let mut wire = echo("one").encode_length_delimited_to_vec();
        wire.extend(echo("two").encode_length_delimited_to_vec());
        let mut codec = AbciCodec::new(1 << 20);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for byte in wire {
            buf.extend_from_slice(&[byte]);
            if let Some(req) = codec.decode(&mut buf).unwrap() {
                got.push(req);
            }
        }
        assert_eq!(got, vec![echo("one"), echo("two")]);
        assert!(buf.is_empty());
    }

    #[test]
    fn a_prefix_longer_than_needed_is_read_as_sent() {
        let body = echo("padded").encode_to_vec();
        let len = u8::try_from(body.len()).unwrap();
        assert!(len < 0x80);
        // The same length in two bytes: a continuation bit, then zero.
        let mut wire = vec![len | 0x80, 0x00];
        wire.extend(&body);
        assert_eq!(decode(&wire).unwrap(), Some(echo("padded")));
    }

    #[test]
    fn an_over_long_or_overflowing_prefix_is_refused() {
        // Eleven continuation bytes: no uvarint is that long.
        assert!(matches!(decode(&[0xff; 11]), Err(ConnError::BadLength)));
        // Ten bytes whose value does not fit in a u64.
        let mut overflow = [0xff; 10];
        overflow[9] = 0x02;
        assert!(matches!(decode(&overflow), Err(ConnError::BadLength)));
        // Nine continuation bytes may still be the start of a valid prefix.
        assert!(matches!(decode(&[0xff; 9]), Ok(None)));
    }

    #[test]
    fn a_frame_over_the_bound_is_refused_before_its_body_arrives() {
        // 2^40 bytes announced, none sent.
        let err = decode(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x20]).unwrap_err();
        assert!(
            matches!(err, ConnError::FrameTooLarge { len, max } if len == 1 << 40 && max == 1 << 20),
            "{err}"
        );
    }

    #[test]
    fn responses_are_length_prefixed() {
        let resp = abci::Response {
            value: Some(response::Value::Echo(abci::ResponseEcho {
                message: "hi".into(),
            })),
        };
        let mut buf = BytesMut::new();
        AbciCodec::new(1 << 20)
            .encode(resp.clone(), &mut buf)
            .unwrap();
        assert_eq!(&buf[..], resp.encode_length_delimited_to_vec().as_slice());
    }
}
