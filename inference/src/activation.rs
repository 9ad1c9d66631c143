//! Typed activations passed between shards, with a canonical byte encoding.

use candle_core::{DType, Device, Tensor};
use sha2::{Digest, Sha256};

use crate::{CandleContext, Error, Result, fingerprint::Fingerprint};

/// Most elements an activation may hold (256 MiB of `f32`).
pub const MAX_ACTIVATION_ELEMENTS: usize = 1 << 26;
/// Highest rank an activation may have.
pub const MAX_ACTIVATION_RANK: usize = 4;

const MAGIC: &[u8; 4] = b"VACT";
const VERSION: u8 = 1;
const HEADER_BYTES: usize = 4 + 1 + 1 + 1 + 1 + 8 + 4;

/// A tensor crossing a shard boundary: token ids entering a model, hidden states between
/// layers, or the output leaving it.
///
/// `session` and `position` matter for generation: a shard keeps the KV cache of session
/// `session`, and `position` is the index of the first token in this activation (the number of
/// tokens the session has already processed). Stateless models use session 0 and position 0.
///
/// The canonical encoding ([`Activation::to_bytes`]) is what stages commit to: a fixed header,
/// the shape, then the elements in little-endian order, row-major. Two activations are equal
/// exactly when their encodings are.
#[derive(Clone, Debug, PartialEq)]
pub struct Activation {
    session: u64,
    position: u32,
    shape: Vec<usize>,
    data: ActivationData,
}

/// The elements of an [`Activation`].
#[derive(Clone, Debug, PartialEq)]
pub enum ActivationData {
    /// Hidden states, logits, embeddings.
    F32(Vec<f32>),
    /// Token ids.
    U32(Vec<u32>),
    /// Integer model activations.
    I64(Vec<i64>),
}

/// Element type of an [`Activation`], with its tag in the canonical encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ActivationDType {
    /// 32-bit IEEE float (tag 1).
    F32,
    /// 32-bit unsigned integer (tag 2).
    U32,
    /// 64-bit signed integer (tag 3).
    I64,
}

impl ActivationDType {
    /// The name used in error messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::U32 => "u32",
            Self::I64 => "i64",
        }
    }

    fn tag(self) -> u8 {
        match self {
            Self::F32 => 1,
            Self::U32 => 2,
            Self::I64 => 3,
        }
    }

    fn from_tag(tag: u8) -> Result<Self> {
        match tag {
            1 => Ok(Self::F32),
            2 => Ok(Self::U32),
            3 => Ok(Self::I64),
            other => Err(Error::ActivationEncoding(format!(
                "unknown dtype tag {other}"
            ))),
        }
    }

    fn size(self) -> usize {
        match self {
            Self::F32 | Self::U32 => 4,
            Self::I64 => 8,
        }
    }
}

impl std::fmt::Display for ActivationDType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl ActivationData {
    /// The element type.
    pub fn dtype(&self) -> ActivationDType {
        match self {
            Self::F32(_) => ActivationDType::F32,
            Self::U32(_) => ActivationDType::U32,
            Self::I64(_) => ActivationDType::I64,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Self::F32(v) => v.len(),
            Self::U32(v) => v.len(),
            Self::I64(v) => v.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Activation {
    /// Builds an activation, checking that `shape` matches the number of elements.
    pub fn new(
        session: u64,
        position: u32,
        shape: Vec<usize>,
        data: ActivationData,
    ) -> Result<Self> {
        check_shape(&shape)?;
        let count: usize = shape.iter().product();
        if count != data.len() {
            return Err(Error::ActivationEncoding(format!(
                "shape {shape:?} holds {count} elements, data has {}",
                data.len()
            )));
        }
        Ok(Self {
            session,
            position,
            shape,
            data,
        })
    }

    /// Token ids `[1, n]` entering a model's first stage.
    pub fn tokens(session: u64, position: u32, ids: &[u32]) -> Result<Self> {
        Self::new(
            session,
            position,
            vec![1, ids.len()],
            ActivationData::U32(ids.to_vec()),
        )
    }

    /// Copies a candle tensor (f32, u32 or i64) into an activation.
    pub fn from_tensor(session: u64, position: u32, tensor: &Tensor) -> Result<Self> {
        let shape = tensor.dims().to_vec();
        check_shape(&shape)?;
        let flat = tensor.flatten_all().ctx("flattening an activation")?;
        let data = match tensor.dtype() {
            DType::F32 => ActivationData::F32(flat.to_vec1().ctx("reading an activation")?),
            DType::U32 => ActivationData::U32(flat.to_vec1().ctx("reading an activation")?),
            DType::I64 => ActivationData::I64(flat.to_vec1().ctx("reading an activation")?),
            other => {
                return Err(Error::ActivationEncoding(format!(
                    "tensor dtype {other:?} is not an activation dtype"
                )));
            }
        };
        Self::new(session, position, shape, data)
    }

    /// Copies the activation into a candle tensor on `device`.
    pub fn to_tensor(&self, device: &Device) -> Result<Tensor> {
        let shape = self.shape.as_slice();
        let t = match &self.data {
            ActivationData::F32(v) => Tensor::from_slice(v, shape, device),
            ActivationData::U32(v) => Tensor::from_slice(v, shape, device),
            ActivationData::I64(v) => Tensor::from_slice(v, shape, device),
        };
        t.ctx("building a tensor from an activation")
    }

    /// The generation session this activation belongs to (0 for stateless models).
    pub fn session(&self) -> u64 {
        self.session
    }

    /// Index of the first token of this activation within its session.
    pub fn position(&self) -> u32 {
        self.position
    }

    /// The shape, outermost dimension first.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The element type.
    pub fn dtype(&self) -> ActivationDType {
        self.data.dtype()
    }

    /// The elements, row-major.
    pub fn data(&self) -> &ActivationData {
        &self.data
    }

    /// The elements as `f32`, if that is their type.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            ActivationData::F32(v) => Some(v),
            _ => None,
        }
    }

    /// The elements as `u32`, if that is their type.
    pub fn as_u32(&self) -> Option<&[u32]> {
        match &self.data {
            ActivationData::U32(v) => Some(v),
            _ => None,
        }
    }

    /// The elements as `i64`, if that is their type.
    pub fn as_i64(&self) -> Option<&[i64]> {
        match &self.data {
            ActivationData::I64(v) => Some(v),
            _ => None,
        }
    }

    /// Checks the element type, naming `context` in the error.
    pub fn expect_dtype(&self, context: &str, expected: ActivationDType) -> Result<()> {
        if self.dtype() != expected {
            return Err(Error::ActivationDtype {
                context: context.to_string(),
                got: self.dtype().name(),
                expected: expected.name(),
            });
        }
        Ok(())
    }

    /// The canonical encoding (version 1), little-endian:
    /// magic `"VACT"`, `u8` version, `u8` dtype tag, `u8` rank, `u8` zero, `u64` session,
    /// `u32` position, `rank` x `u32` dimensions, then the elements.
    pub fn to_bytes(&self) -> Vec<u8> {
        let dtype = self.dtype();
        let mut out = Vec::with_capacity(
            HEADER_BYTES + 4 * self.shape.len() + dtype.size() * self.data.len(),
        );
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.push(dtype.tag());
        out.push(self.shape.len() as u8);
        out.push(0);
        out.extend_from_slice(&self.session.to_le_bytes());
        out.extend_from_slice(&self.position.to_le_bytes());
        for &d in &self.shape {
            out.extend_from_slice(&(d as u32).to_le_bytes());
        }
        match &self.data {
            ActivationData::F32(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
            ActivationData::U32(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
            ActivationData::I64(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
        }
        out
    }

    /// Decodes [`Activation::to_bytes`]; rejects anything that is not exactly one canonical
    /// encoding, and never panics.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let bad = |m: String| Error::ActivationEncoding(m);
        if bytes.len() < HEADER_BYTES {
            return Err(bad(format!(
                "{} bytes, shorter than the {HEADER_BYTES}-byte header",
                bytes.len()
            )));
        }
        if &bytes[..4] != MAGIC {
            return Err(bad("bad magic, not a VACT activation".into()));
        }
        if bytes[4] != VERSION {
            return Err(bad(format!("unsupported version {}", bytes[4])));
        }
        let dtype = ActivationDType::from_tag(bytes[5])?;
        let rank = usize::from(bytes[6]);
        if bytes[7] != 0 {
            return Err(bad(format!("reserved byte is {}, expected 0", bytes[7])));
        }
        let session = u64::from_le_bytes(le_array(&bytes[8..16]));
        let position = u32::from_le_bytes(le_array(&bytes[16..20]));
        if rank == 0 || rank > MAX_ACTIVATION_RANK {
            return Err(bad(format!(
                "rank {rank}, expected 1..={MAX_ACTIVATION_RANK}"
            )));
        }
        let dims_end = HEADER_BYTES + 4 * rank;
        let dims_bytes = bytes
            .get(HEADER_BYTES..dims_end)
            .ok_or_else(|| bad(format!("truncated shape: need {dims_end} bytes")))?;
        let shape: Vec<usize> = dims_bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(le_array(c)) as usize)
            .collect();
        check_shape(&shape)?;
        let count: usize = shape.iter().product();
        let body = &bytes[dims_end..];
        if body.len() != count * dtype.size() {
            return Err(bad(format!(
                "shape {shape:?} of {dtype} needs {} data bytes, found {}",
                count * dtype.size(),
                body.len()
            )));
        }
        let data = match dtype {
            ActivationDType::F32 => ActivationData::F32(
                body.chunks_exact(4)
                    .map(|c| f32::from_le_bytes(le_array(c)))
                    .collect(),
            ),
            ActivationDType::U32 => ActivationData::U32(
                body.chunks_exact(4)
                    .map(|c| u32::from_le_bytes(le_array(c)))
                    .collect(),
            ),
            ActivationDType::I64 => ActivationData::I64(
                body.chunks_exact(8)
                    .map(|c| i64::from_le_bytes(le_array(c)))
                    .collect(),
            ),
        };
        Self::new(session, position, shape, data)
    }

    /// sha256 of the canonical encoding: what a stage commits to.
    pub fn sha256(&self) -> Fingerprint {
        Fingerprint(Sha256::digest(self.to_bytes()).into())
    }
}

fn check_shape(shape: &[usize]) -> Result<()> {
    if shape.is_empty() || shape.len() > MAX_ACTIVATION_RANK {
        return Err(Error::ActivationEncoding(format!(
            "rank {}, expected 1..={MAX_ACTIVATION_RANK}",
            shape.len()
        )));
    }
    let mut count = 1usize;
    for &d in shape {
        if d > u32::MAX as usize {
            return Err(Error::ActivationEncoding(format!(
                "dimension {d} does not fit in u32"
            )));
        }
        count = count.saturating_mul(d);
    }
    if count > MAX_ACTIVATION_ELEMENTS {
        return Err(Error::TooLarge {
            what: "activation element count",
            got: count,
            limit: MAX_ACTIVATION_ELEMENTS,
        });
    }
    Ok(())
}

/// Copies a slice of known length into an array; callers pass exactly `N` bytes.
fn le_array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[..N]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_hash_are_stable() {
        let a = Activation::new(
            7,
            3,
            vec![1, 2, 2],
            ActivationData::F32(vec![0.5, -1.0, 2.25, f32::MIN_POSITIVE]),
        )
        .unwrap();
        let bytes = a.to_bytes();
        assert_eq!(&bytes[..4], b"VACT");
        assert_eq!(Activation::from_bytes(&bytes).unwrap(), a);
        assert_eq!(
            a.sha256().to_string(),
            hex::encode(Sha256::digest(&bytes)),
            "the hash is the hash of the canonical bytes"
        );
        let t = a.to_tensor(&Device::Cpu).unwrap();
        assert_eq!(Activation::from_tensor(7, 3, &t).unwrap(), a);
    }

    #[test]
    fn every_truncation_and_extension_is_rejected() {
        let a = Activation::tokens(1, 0, &[5, 6, 7]).unwrap();
        let bytes = a.to_bytes();
        for cut in 0..bytes.len() {
            assert!(Activation::from_bytes(&bytes[..cut]).is_err(), "cut {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Activation::from_bytes(&longer).is_err());
        let mut bad_dtype = bytes.clone();
        bad_dtype[5] = 9;
        assert!(Activation::from_bytes(&bad_dtype).is_err());
        let mut huge = bytes[..HEADER_BYTES].to_vec();
        huge[6] = 2;
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            Activation::from_bytes(&huge),
            Err(Error::TooLarge { .. })
        ));
    }

    #[test]
    fn shape_must_match_data() {
        assert!(Activation::new(0, 0, vec![2, 2], ActivationData::U32(vec![1, 2, 3])).is_err());
        assert!(Activation::new(0, 0, vec![], ActivationData::U32(vec![])).is_err());
    }
}
