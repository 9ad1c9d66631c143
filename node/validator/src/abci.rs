//! The ABCI socket server of `vichaind start`: CometBFT v0.38's wire protocol (uvarint
//! length-prefixed protobuf `Request`/`Response` frames) over TCP or a unix socket,
//! serving the ledger's [`App`] (the state machine, which knows nothing of sockets).
//!
//! Written here rather than taken from tower-abci because tower-abci's connection
//! task unwraps every error (a malformed frame panics the task) and its decoder has
//! no size bound. Here a frame is bounded before it is read, any decoding error
//! closes only that connection with a logged reason, and requests on a connection
//! are answered strictly in order, as CometBFT expects.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
};

use prost013::Message;
use tendermint_proto::v0_38::abci::{self as abci, request, response};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter},
    net::{TcpListener, UnixListener},
};
use tokio_util::sync::CancellationToken;
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
    let mut reader = BufReader::new(read);
    let mut writer = BufWriter::new(write);
    loop {
        let frame = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            f = read_frame(&mut reader, max_frame_bytes) => f?,
        };
        let Some(frame) = frame else {
            return Ok(());
        };
        let req = abci::Request::decode(frame.as_slice())?;
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
        write_frame(&mut writer, &resp).await?;
        // CometBFT sends Flush when it waits for answers; other clients (such as
        // tendermint-rs's) wait without one. Flushing whenever no further request
        // is already buffered serves both and still batches pipelined requests.
        if is_flush || reader.buffer().is_empty() {
            writer.flush().await?;
        }
    }
}

/// Reads one uvarint-length-prefixed frame; `None` at a clean EOF.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: u64,
) -> Result<Option<Vec<u8>>, ConnError> {
    let mut len: u64 = 0;
    for i in 0..10 {
        let byte = match reader.read_u8().await {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && i == 0 => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        len |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            if len > max {
                return Err(ConnError::FrameTooLarge { len, max });
            }
            let mut buf = vec![0u8; len as usize];
            reader.read_exact(&mut buf).await?;
            return Ok(Some(buf));
        }
    }
    Err(ConnError::BadLength)
}

/// Writes one length-prefixed message (not flushed).
pub async fn write_frame<W: AsyncWrite + Unpin, M: Message>(
    writer: &mut W,
    msg: &M,
) -> std::io::Result<()> {
    let buf = msg.encode_length_delimited_to_vec();
    writer.write_all(&buf).await
}
