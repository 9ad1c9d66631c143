//! Length-prefixed frames for request-response, bounded before any byte is buffered.

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use libp2p::{StreamProtocol, request_response};

/// Protocol of activation requests.
pub(crate) const RPC_PROTOCOL: StreamProtocol = StreamProtocol::new("/vichain/split/rpc/1");

/// A `u32` big-endian length, then that many bytes; longer frames are refused unread.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FrameCodec {
    pub(crate) max_bytes: usize,
}

impl FrameCodec {
    async fn read_frame<T: AsyncRead + Unpin + Send>(
        &self,
        io: &mut T,
    ) -> std::io::Result<Vec<u8>> {
        let mut len = [0u8; 4];
        io.read_exact(&mut len).await?;
        let len = u32::from_be_bytes(len) as usize;
        if len > self.max_bytes {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "frame of {len} bytes exceeds the limit of {}",
                    self.max_bytes
                ),
            ));
        }
        let mut buf = vec![0u8; len];
        io.read_exact(&mut buf).await?;
        Ok(buf)
    }

    async fn write_frame<T: AsyncWrite + Unpin + Send>(
        &self,
        io: &mut T,
        bytes: Vec<u8>,
    ) -> std::io::Result<()> {
        let len = u32::try_from(bytes.len()).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "frame longer than 4 GiB")
        })?;
        io.write_all(&len.to_be_bytes()).await?;
        io.write_all(&bytes).await
    }
}

impl request_response::Codec for FrameCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> std::io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        self.read_frame(io).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> std::io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        self.read_frame(io).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> std::io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        self.write_frame(io, req).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> std::io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        self.write_frame(io, res).await
    }
}
