//! Length-prefixed frames for request-response, bounded before any byte is buffered.
//!
//! The framing is tokio-util's [`LengthDelimitedCodec`] with a 4-byte big-endian
//! length; libp2p's streams are futures-io, so they are read through tokio-util's compat
//! adapters.

use futures::{AsyncRead, AsyncWrite, SinkExt, StreamExt};
use libp2p::{StreamProtocol, request_response};
use tokio_util::{
    codec::{FramedRead, FramedWrite, LengthDelimitedCodec, length_delimited},
    compat::{FuturesAsyncReadCompatExt, FuturesAsyncWriteCompatExt},
};

/// Protocol of activation requests.
pub(crate) const RPC_PROTOCOL: StreamProtocol = StreamProtocol::new("/vichain/split/rpc/1");

/// Bytes of the length prefix.
const HEAD_BYTES: usize = 4;

/// A `u32` big-endian length, then that many bytes; longer frames are refused unread.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FrameCodec {
    pub(crate) max_bytes: usize,
}

/// The wire format: a `u32` big-endian length (the prefix not counted), then the frame.
fn length_delimited(max_bytes: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(HEAD_BYTES)
        .big_endian()
        .max_frame_length(max_bytes)
        .new_codec()
}

fn is_length_error(e: &std::io::Error) -> bool {
    e.get_ref()
        .is_some_and(|inner| inner.is::<length_delimited::LengthDelimitedCodecError>())
}

impl FrameCodec {
    async fn read_frame<T: AsyncRead + Unpin + Send>(
        &self,
        io: &mut T,
    ) -> std::io::Result<Vec<u8>> {
        // The codec checks the length against the bound before it reserves room for
        // the frame; a peer's length alone never makes us allocate past `max_bytes`.
        let mut frames = FramedRead::new(io.compat(), length_delimited(self.max_bytes));
        match frames.next().await {
            Some(Ok(frame)) => Ok(frame.into()),
            Some(Err(e)) if is_length_error(&e) => {
                // The refused prefix is still buffered: report the length it claimed.
                let head = frames.read_buffer().get(..HEAD_BYTES);
                let len = head
                    .and_then(|h| <[u8; HEAD_BYTES]>::try_from(h).ok())
                    .map_or(0, u32::from_be_bytes);
                Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "frame of {len} bytes exceeds the limit of {}",
                        self.max_bytes
                    ),
                ))
            }
            Some(Err(e)) => Err(e),
            None => Err(std::io::ErrorKind::UnexpectedEof.into()),
        }
    }

    async fn write_frame<T: AsyncWrite + Unpin + Send>(
        &self,
        io: &mut T,
        bytes: Vec<u8>,
    ) -> std::io::Result<()> {
        // Only the prefix bounds what we send; the receiver applies its own limit.
        let codec = length_delimited(u32::MAX as usize);
        let mut frames = FramedWrite::new(io.compat_write(), codec);
        frames.send(&bytes[..]).await.map_err(|e| {
            if is_length_error(&e) {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "frame longer than 4 GiB")
            } else {
                e
            }
        })
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

#[cfg(test)]
mod tests {
    use futures::{executor::block_on, io::Cursor};
    use request_response::Codec as _;

    use super::*;

    #[test]
    fn frames_are_a_big_endian_u32_length_then_the_bytes() {
        let mut codec = FrameCodec { max_bytes: 16 };
        let mut out = Cursor::new(Vec::new());
        block_on(codec.write_request(&RPC_PROTOCOL, &mut out, b"hello".to_vec())).unwrap();
        assert_eq!(out.get_ref().as_slice(), b"\0\0\0\x05hello");

        // What a peer sends, byte for byte, decodes.
        let mut input = Cursor::new(b"\0\0\0\x03abc".to_vec());
        let got = block_on(codec.read_response(&RPC_PROTOCOL, &mut input)).unwrap();
        assert_eq!(got, b"abc");
        let mut empty = Cursor::new(b"\0\0\0\0".to_vec());
        assert!(
            block_on(codec.read_request(&RPC_PROTOCOL, &mut empty))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn an_oversized_length_is_refused_before_its_bytes_arrive() {
        let mut codec = FrameCodec { max_bytes: 16 };
        // Claims 4 GiB - 1 and sends nothing more.
        let mut input = Cursor::new(b"\xff\xff\xff\xff".to_vec());
        let err = block_on(codec.read_request(&RPC_PROTOCOL, &mut input)).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        assert_eq!(
            err.to_string(),
            "frame of 4294967295 bytes exceeds the limit of 16"
        );
        let mut at_limit = vec![0, 0, 0, 16];
        at_limit.extend([7; 16]);
        let got = block_on(codec.read_request(&RPC_PROTOCOL, &mut Cursor::new(at_limit))).unwrap();
        assert_eq!(got, [7; 16]);
    }

    #[test]
    fn truncated_streams_are_errors() {
        let mut codec = FrameCodec { max_bytes: 16 };
        for bytes in [&b""[..], b"\0\0", b"\0\0\0\x05hel"] {
            let mut input = Cursor::new(bytes.to_vec());
            assert!(block_on(codec.read_request(&RPC_PROTOCOL, &mut input)).is_err());
        }
    }
}
