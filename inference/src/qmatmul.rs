//! Matrix products with Q4_1 and Q8_0 GGUF weights: bit-identical to candle's scalar
//! arithmetic, the same bits on every CPU, and several times faster.
//!
//! candle 0.11 multiplies Q4_1 weights with scalar code (`BlockQ4_1::vec_dot_unopt`, with an
//! f16 to f32 conversion per block), which took about 85% of SmolLM2's decoding time, and Q8_0
//! weights with an AVX2 kernel whose float sums (eight lanes, fused multiply-adds) round
//! differently from its scalar path, so machines with and without AVX2 disagree in the last
//! bits. [`QLinear`] keeps candle's scalar arithmetic exactly and only changes how it is
//! computed:
//!
//! - activations are quantized to 8 bits as candle's `QMatMul` quantizes them before its dot
//!   products (ggml's `quantize_row_q8_1`, whose values and scale are also Q8_0's; a test
//!   compares with candle's quantizer);
//! - each 32-value block's dot product of weights and 8-bit activations is an integer,
//!   computed exactly (AVX2 where the CPU has it, plain integer code elsewhere);
//! - each block then adds candle's float expression to the row's sum (`sumi * d_w * d_x +
//!   m_w * s_x` for Q4_1, `sumi * d_w * d_x` for Q8_0), in block order, without fused
//!   multiply-adds, so every rounding is the same.
//!
//! The output is therefore the same bits as candle's scalar path on every CPU and for any
//! thread count: the tests compare against candle and between the kernels. Weights are
//! regrouped four output rows at a time so that one pass over the activation serves four rows
//! with independent float sums, and the f16 scales are widened to f32 (exactly) at load time.

use candle_core::{
    Device, Module, Tensor,
    quantized::{GgmlDType, QMatMul, QTensor},
};
use half::f16;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// Values per quantization block.
const QK: usize = 32;
/// Bytes of one Q4_1 block in GGUF: f16 scale, f16 minimum, 16 bytes of nibbles.
const Q4_1_BYTES: usize = 20;
/// Bytes of one Q8_0 block in GGUF: f16 scale, 32 signed bytes.
const Q8_0_BYTES: usize = 34;
/// Output rows that share one pass over the activation.
const ROWS: usize = 4;

static PORTABLE: AtomicBool = AtomicBool::new(false);

/// Makes this crate's kernels that have a SIMD path (these products, attention, GELU) run
/// their plain-code path instead. The results are the same bits either way (that is what the
/// tests check with it); it exists for those tests and for diagnosing a machine.
pub fn set_portable_kernels(on: bool) {
    PORTABLE.store(on, Ordering::Relaxed);
}

/// Runs `f` compiled for the best instruction set this CPU has, unless
/// [`set_portable_kernels`] asked for plain code.
#[inline(always)]
pub(crate) fn dispatch<R>(f: impl FnOnce() -> R) -> R {
    if PORTABLE.load(Ordering::Relaxed) {
        f()
    } else {
        pulp::Arch::new().dispatch(f)
    }
}

/// Four output rows' Q4_1 weights for one block of 32 inputs. Aligned so that every field
/// loads straight into a vector register.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(32))]
struct Q41Group {
    /// Scale of each row's block.
    d: [f32; ROWS],
    /// Minimum of each row's block.
    m: [f32; ROWS],
    /// Each row's 32 weights as nibbles: low nibble of byte j is weight j, high nibble is
    /// weight j + 16 (GGUF's layout).
    qs: [[u8; QK / 2]; ROWS],
}

/// Four output rows' Q8_0 weights for one block of 32 inputs.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(32))]
struct Q80Group {
    /// Each row's 32 weights.
    qs: [[i8; QK]; ROWS],
    /// Scale of each row's block.
    d: [f32; ROWS],
}

/// The regrouped weights: `groups[g * blocks + b]` holds rows `4g..4g + 4`, inputs
/// `32b..32b + 32`.
#[derive(Clone, Debug)]
enum Groups {
    Q41(Vec<Q41Group>),
    Q80(Vec<Q80Group>),
}

/// A Q4_1 or Q8_0 weight matrix (`[rows, cols]`, one row per output feature), regrouped.
#[derive(Debug)]
pub struct QMatrix {
    rows: usize,
    cols: usize,
    groups: Groups,
}

/// Activations quantized to 8 bits, one row of blocks per input row.
struct XRows {
    /// Scale of each block.
    d: Vec<f32>,
    /// Scale times the sum of the block's values (Q8_1's `s`, rounded through f16).
    s: Vec<f32>,
    qs: Vec<XBlock>,
}

/// One block of 32 quantized activations, aligned for a vector load.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(32))]
struct XBlock([i8; QK]);

fn f16_at(bytes: &[u8], at: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([bytes[at], bytes[at + 1]])).to_f32()
}

impl QMatrix {
    /// Regroups a Q4_1 or Q8_0 tensor of shape `[rows, cols]`; `None` if it is not one these
    /// kernels take (another dtype, rank, or rows not a multiple of 4).
    pub fn from_qtensor(t: &QTensor) -> candle_core::Result<Option<Self>> {
        let (rows, cols, block_bytes) = match (t.dtype(), t.shape().dims()) {
            (GgmlDType::Q4_1, &[rows, cols]) if rows % ROWS == 0 && cols % QK == 0 => {
                (rows, cols, Q4_1_BYTES)
            }
            (GgmlDType::Q8_0, &[rows, cols]) if rows % ROWS == 0 && cols % QK == 0 => {
                (rows, cols, Q8_0_BYTES)
            }
            _ => return Ok(None),
        };
        let data = t.data()?;
        let blocks = cols / QK;
        if data.len() != rows * blocks * block_bytes {
            candle_core::bail!(
                "{:?} tensor [{rows}, {cols}] holds {} bytes, expected {}",
                t.dtype(),
                data.len(),
                rows * blocks * block_bytes
            );
        }
        // Byte offset of row r's block b.
        let at = |g: usize, r: usize, b: usize| ((g * ROWS + r) * blocks + b) * block_bytes;
        let cells = (0..rows / ROWS).flat_map(|g| (0..blocks).map(move |b| (g, b)));
        let groups = if t.dtype() == GgmlDType::Q4_1 {
            Groups::Q41(
                cells
                    .map(|(g, b)| {
                        let mut group = Q41Group {
                            d: [0.0; ROWS],
                            m: [0.0; ROWS],
                            qs: [[0; QK / 2]; ROWS],
                        };
                        for r in 0..ROWS {
                            let at = at(g, r, b);
                            group.d[r] = f16_at(&data, at);
                            group.m[r] = f16_at(&data, at + 2);
                            group.qs[r].copy_from_slice(&data[at + 4..at + Q4_1_BYTES]);
                        }
                        group
                    })
                    .collect(),
            )
        } else {
            Groups::Q80(
                cells
                    .map(|(g, b)| {
                        let mut group = Q80Group {
                            qs: [[0; QK]; ROWS],
                            d: [0.0; ROWS],
                        };
                        for r in 0..ROWS {
                            let at = at(g, r, b);
                            group.d[r] = f16_at(&data, at);
                            for (q, &byte) in group.qs[r].iter_mut().zip(&data[at + 2..]) {
                                *q = byte as i8;
                            }
                        }
                        group
                    })
                    .collect(),
            )
        };
        Ok(Some(Self { rows, cols, groups }))
    }

    /// The rows of `parts` one after another (all of one format and input width): one
    /// product computes what the parts would, bit for bit.
    pub fn concat_rows(parts: &[&Self]) -> candle_core::Result<Self> {
        let Some(first) = parts.first() else {
            candle_core::bail!("quantized concat: no matrices");
        };
        if let Some(p) = parts.iter().find(|p| p.cols != first.cols) {
            candle_core::bail!(
                "quantized concat: input widths {} and {} differ",
                first.cols,
                p.cols
            );
        }
        let groups = match &first.groups {
            Groups::Q41(_) => Groups::Q41(concat_groups(parts, |g| match g {
                Groups::Q41(v) => Some(v),
                Groups::Q80(_) => None,
            })?),
            Groups::Q80(_) => Groups::Q80(concat_groups(parts, |g| match g {
                Groups::Q80(v) => Some(v),
                Groups::Q41(_) => None,
            })?),
        };
        Ok(Self {
            rows: parts.iter().map(|p| p.rows).sum(),
            cols: first.cols,
            groups,
        })
    }

    /// Output features.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input features.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// `x` (`[..., cols]` f32) times the transposed weights: `[..., rows]`.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.forward_with(x, Kernel::best())
    }

    fn forward_with(&self, x: &Tensor, kernel: Kernel) -> candle_core::Result<Tensor> {
        let dims = x.dims();
        let Some((&cols, lead)) = dims.split_last() else {
            candle_core::bail!("quantized matmul: a scalar input");
        };
        if cols != self.cols {
            candle_core::bail!(
                "quantized matmul: input width {cols}, the weights take {}",
                self.cols
            );
        }
        let n: usize = lead.iter().product();
        let xq = quantize_activations(&x.flatten_all()?.to_vec1::<f32>()?);
        let blocks = self.cols / QK;
        let out: Vec<AtomicU32> = (0..n * self.rows).map(|_| AtomicU32::new(0)).collect();
        let run = |range: std::ops::Range<usize>| {
            for g in range {
                for i in 0..n {
                    let xs = i * blocks..(i + 1) * blocks;
                    let (d, s, q) = (&xq.d[xs.clone()], &xq.s[xs.clone()], &xq.qs[xs]);
                    let w = g * blocks..(g + 1) * blocks;
                    let sums = match &self.groups {
                        Groups::Q41(groups) => kernel.dot4_q41(&groups[w], d, s, q),
                        Groups::Q80(groups) => kernel.dot4_q80(&groups[w], d, q),
                    };
                    for (r, v) in sums.iter().enumerate() {
                        out[i * self.rows + g * ROWS + r].store(v.to_bits(), Ordering::Relaxed);
                    }
                }
            }
        };
        // candle's own worker pool, so that these products and candle's share the threads.
        candle_core::utils::barrier_pool().execute_chunked(self.rows / ROWS, run);
        let out: Vec<f32> = out
            .into_iter()
            .map(|v| f32::from_bits(v.into_inner()))
            .collect();
        let mut shape = lead.to_vec();
        shape.push(self.rows);
        Tensor::from_vec(out, shape, &Device::Cpu)
    }
}

/// The groups of every part, in order; `pick` returns a part's groups if it has the first
/// part's format.
fn concat_groups<T: Copy>(
    parts: &[&QMatrix],
    pick: impl Fn(&Groups) -> Option<&Vec<T>>,
) -> candle_core::Result<Vec<T>> {
    let mut out = Vec::new();
    for p in parts {
        let Some(groups) = pick(&p.groups) else {
            candle_core::bail!("quantized concat: Q4_1 and Q8_0 mixed");
        };
        out.extend_from_slice(groups);
    }
    Ok(out)
}

/// Quantizes f32 values (whole blocks) to 8 bits exactly as candle's `BlockQ8_1::from_float`
/// (ggml's `quantize_row_q8_1`) does: scale `amax / 127` stored as f16, values rounded, and the
/// scaled sum computed in f16. `BlockQ8_0::from_float` gives the same scale and values.
fn quantize_activations(x: &[f32]) -> XRows {
    let blocks = x.len() / QK;
    let mut rows = XRows {
        d: Vec::with_capacity(blocks),
        s: Vec::with_capacity(blocks),
        qs: Vec::with_capacity(blocks),
    };
    for block in x.chunks_exact(QK) {
        let amax = block.iter().fold(0f32, |a, v| a.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let d = f16::from_f32(d);
        let mut qs = [0i8; QK];
        let mut sum = 0i32;
        for (q, v) in qs.iter_mut().zip(block) {
            *q = (v * id).round() as i8;
            sum += i32::from(*q);
        }
        rows.d.push(d.to_f32());
        rows.s.push((f16::from_f32(sum as f32) * d).to_f32());
        rows.qs.push(XBlock(qs));
    }
    rows
}

/// Which implementation computes the integer block dot products.
#[derive(Clone, Copy, Debug)]
enum Kernel {
    /// Plain integer code: any CPU.
    Portable,
    /// AVX2 (x86-64-v3), through pulp's safe wrappers.
    #[cfg(target_arch = "x86_64")]
    Avx2(pulp::x86::V3),
}

impl Kernel {
    fn best() -> Self {
        #[cfg(target_arch = "x86_64")]
        if !PORTABLE.load(Ordering::Relaxed)
            && let Some(simd) = pulp::x86::V3::try_new()
        {
            return Self::Avx2(simd);
        }
        Self::Portable
    }

    /// Q4_1: for each of four rows, the sum over blocks, in order, of
    /// `sumi * d_w * d_x + m_w * s_x`.
    fn dot4_q41(self, w: &[Q41Group], xd: &[f32], xs: &[f32], xq: &[XBlock]) -> [f32; ROWS] {
        match self {
            Self::Portable => dot4_q41_portable(w, xd, xs, xq),
            #[cfg(target_arch = "x86_64")]
            Self::Avx2(simd) => simd.vectorize(
                #[inline(always)]
                || dot4_q41_avx2(simd, w, xd, xs, xq),
            ),
        }
    }

    /// Q8_0: for each of four rows, the sum over blocks, in order, of `sumi * d_w * d_x`.
    fn dot4_q80(self, w: &[Q80Group], xd: &[f32], xq: &[XBlock]) -> [f32; ROWS] {
        match self {
            Self::Portable => dot4_q80_portable(w, xd, xq),
            #[cfg(target_arch = "x86_64")]
            Self::Avx2(simd) => simd.vectorize(
                #[inline(always)]
                || dot4_q80_avx2(simd, w, xd, xq),
            ),
        }
    }
}

fn dot4_q41_portable(w: &[Q41Group], xd: &[f32], xs: &[f32], xq: &[XBlock]) -> [f32; ROWS] {
    let mut sum = [0f32; ROWS];
    for (((g, &d), &s), x) in w.iter().zip(xd).zip(xs).zip(xq) {
        for (r, acc) in sum.iter_mut().enumerate() {
            let mut sumi = 0i32;
            for (j, &q) in g.qs[r].iter().enumerate() {
                sumi += i32::from(q & 0x0f) * i32::from(x.0[j])
                    + i32::from(q >> 4) * i32::from(x.0[j + QK / 2]);
            }
            *acc += sumi as f32 * g.d[r] * d + g.m[r] * s;
        }
    }
    sum
}

fn dot4_q80_portable(w: &[Q80Group], xd: &[f32], xq: &[XBlock]) -> [f32; ROWS] {
    let mut sum = [0f32; ROWS];
    for ((g, &d), x) in w.iter().zip(xd).zip(xq) {
        for (r, acc) in sum.iter_mut().enumerate() {
            let sumi: i32 = g.qs[r]
                .iter()
                .zip(&x.0)
                .map(|(&q, &x)| i32::from(q) * i32::from(x))
                .sum();
            *acc += sumi as f32 * g.d[r] * d;
        }
    }
    sum
}

/// Horizontal sums of four rows' eight i32 lanes (exact integer additions, so their order is
/// free): `[row0, row1, row2, row3]`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn hsum4_avx2(
    simd: pulp::x86::V3,
    p: [core::arch::x86_64::__m256i; ROWS],
) -> core::arch::x86_64::__m128i {
    let h = simd.avx2._mm256_hadd_epi32(
        simd.avx2._mm256_hadd_epi32(p[0], p[1]),
        simd.avx2._mm256_hadd_epi32(p[2], p[3]),
    );
    simd.sse2._mm_add_epi32(
        simd.avx._mm256_castsi256_si128(h),
        simd.avx2._mm256_extracti128_si256::<1>(h),
    )
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn dot4_q41_avx2(
    simd: pulp::x86::V3,
    w: &[Q41Group],
    xd: &[f32],
    xs: &[f32],
    xq: &[XBlock],
) -> [f32; ROWS] {
    use core::arch::x86_64::{__m128, __m256i};
    use pulp::bytemuck::{cast, cast_ref};
    let low = simd.sse2._mm_set1_epi8(0x0f);
    let ones = simd.avx._mm256_set1_epi16(1);
    let mut sum: __m128 = simd.sse._mm_setzero_ps();
    for (((g, &d), &s), x) in w.iter().zip(xd).zip(xs).zip(xq) {
        let x: __m256i = *cast_ref(&x.0);
        let row = |r: usize| q41_row_avx2(simd, &g.qs[r], x, low, ones);
        let sumi = hsum4_avx2(simd, [row(0), row(1), row(2), row(3)]);
        // Per row, the scalar expression's roundings, lane by lane: ((sumi * d_w) * d_x) +
        // (m_w * s_x), then added to that row's running sum. No fused multiply-add.
        let t = simd.sse._mm_mul_ps(
            simd.sse
                ._mm_mul_ps(simd.sse2._mm_cvtepi32_ps(sumi), *cast_ref(&g.d)),
            simd.sse._mm_set1_ps(d),
        );
        let t = simd.sse._mm_add_ps(
            t,
            simd.sse
                ._mm_mul_ps(*cast_ref(&g.m), simd.sse._mm_set1_ps(s)),
        );
        sum = simd.sse._mm_add_ps(sum, t);
    }
    cast(sum)
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn dot4_q80_avx2(simd: pulp::x86::V3, w: &[Q80Group], xd: &[f32], xq: &[XBlock]) -> [f32; ROWS] {
    use core::arch::x86_64::{__m128, __m256i};
    use pulp::bytemuck::{cast, cast_ref};
    let ones = simd.avx._mm256_set1_epi16(1);
    let mut sum: __m128 = simd.sse._mm_setzero_ps();
    for ((g, &d), x) in w.iter().zip(xd).zip(xq) {
        let x: __m256i = *cast_ref(&x.0);
        // i8 x i8 through maddubs: |w| as unsigned bytes times x with w's sign (|w| <= 128,
        // |x| <= 127: pairs stay below 2^15), then pairs of i16 to i32.
        let row = |r: usize| {
            let w: __m256i = *cast_ref(&g.qs[r]);
            let p = simd.avx2._mm256_maddubs_epi16(
                simd.avx2._mm256_sign_epi8(w, w),
                simd.avx2._mm256_sign_epi8(x, w),
            );
            simd.avx2._mm256_madd_epi16(p, ones)
        };
        let sumi = hsum4_avx2(simd, [row(0), row(1), row(2), row(3)]);
        // ((sumi * d_w) * d_x), lane by lane, added to each row's running sum.
        let t = simd.sse._mm_mul_ps(
            simd.sse
                ._mm_mul_ps(simd.sse2._mm_cvtepi32_ps(sumi), *cast_ref(&g.d)),
            simd.sse._mm_set1_ps(d),
        );
        sum = simd.sse._mm_add_ps(sum, t);
    }
    cast(sum)
}

/// One row's Q4_1 block: nibbles widened to 32 unsigned bytes in the activation's order, then
/// u8 x i8 pairs summed to i16 (at most 2 * 15 * 127, no saturation) and to eight i32.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn q41_row_avx2(
    simd: pulp::x86::V3,
    q: &[u8; QK / 2],
    x: core::arch::x86_64::__m256i,
    low: core::arch::x86_64::__m128i,
    ones: core::arch::x86_64::__m256i,
) -> core::arch::x86_64::__m256i {
    let q: core::arch::x86_64::__m128i = *pulp::bytemuck::cast_ref(q);
    let lo = simd.sse2._mm_and_si128(q, low);
    let hi = simd
        .sse2
        ._mm_and_si128(simd.sse2._mm_srli_epi16::<4>(q), low);
    let w = simd.avx._mm256_set_m128i(hi, lo);
    let p = simd.avx2._mm256_maddubs_epi16(w, x);
    simd.avx2._mm256_madd_epi16(p, ones)
}

/// A linear layer over GGUF weights: Q4_1 and Q8_0 matrices through [`QMatrix`], anything
/// else through candle's `QMatMul`.
#[derive(Clone, Debug)]
pub enum QLinear {
    /// Q4_1 or Q8_0 weights, regrouped.
    Fast(std::sync::Arc<QMatrix>),
    /// Other quantized (or float) weights.
    Candle(QMatMul),
}

impl QLinear {
    /// Takes ownership of a loaded tensor.
    pub fn from_qtensor(t: QTensor) -> candle_core::Result<Self> {
        match QMatrix::from_qtensor(&t)? {
            Some(m) => Ok(Self::Fast(std::sync::Arc::new(m))),
            None => Ok(Self::Candle(QMatMul::from_qtensor(t)?)),
        }
    }
}

impl Module for QLinear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::Fast(m) => m.forward(x),
            Self::Candle(m) => m.forward(x),
        }
    }
}

/// Linear layers that read the same input (a block's query, key and value projections; its
/// gate and up projections): one product over their concatenated rows when all are of one
/// [`QMatrix`] format, which quantizes the input once and wakes the worker threads once.
#[derive(Clone, Debug)]
pub enum QLinearGroup {
    /// One matrix, split by these output widths.
    Fused {
        /// The parts' rows, concatenated.
        matrix: std::sync::Arc<QMatrix>,
        /// Each part's output width, in order.
        widths: Vec<usize>,
    },
    /// Computed one by one.
    Separate(Vec<QLinear>),
}

impl QLinearGroup {
    /// Fuses `parts` when they are all [`QMatrix`]es of one format and input width.
    pub fn new(parts: Vec<QLinear>) -> candle_core::Result<Self> {
        let fast: Option<Vec<&QMatrix>> = parts
            .iter()
            .map(|p| match p {
                QLinear::Fast(m) => Some(m.as_ref()),
                QLinear::Candle(_) => None,
            })
            .collect();
        let same_format = |a: &QMatrix, b: &QMatrix| {
            a.cols == b.cols
                && matches!(
                    (&a.groups, &b.groups),
                    (Groups::Q41(_), Groups::Q41(_)) | (Groups::Q80(_), Groups::Q80(_))
                )
        };
        match fast {
            Some(ms) if ms.windows(2).all(|w| same_format(w[0], w[1])) => Ok(Self::Fused {
                widths: ms.iter().map(|m| m.rows).collect(),
                matrix: std::sync::Arc::new(QMatrix::concat_rows(&ms)?),
            }),
            _ => Ok(Self::Separate(parts)),
        }
    }

    /// Each part's output for `x`, in order (contiguous tensors).
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Vec<Tensor>> {
        match self {
            Self::Fused { matrix, widths } => {
                let y = matrix.forward(x)?;
                let last = y.rank() - 1;
                let mut start = 0;
                widths
                    .iter()
                    .map(|&w| {
                        let part = y.narrow(last, start, w)?.contiguous();
                        start += w;
                        part
                    })
                    .collect()
            }
            Self::Separate(parts) => parts.iter().map(|p| p.forward(x)).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Bytes of one Q8_1 block as candle stores it: f16 scale, f16 scaled sum, 32 signed bytes.
    const Q8_1_BYTES: usize = 36;

    /// Float weights and a `[1, 3, cols]` input.
    fn random(rows: usize, cols: usize, seed: u64) -> (Tensor, Tensor) {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
        let w: Vec<f32> = (0..rows * cols).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let w = Tensor::from_vec(w, (rows, cols), &Device::Cpu).expect("w");
        let x: Vec<f32> = (0..3 * cols).map(|_| rng.gen_range(-4.0..4.0)).collect();
        let x = Tensor::from_vec(x, (1, 3, cols), &Device::Cpu).expect("x");
        (w, x)
    }

    fn q41(w: &Tensor) -> QTensor {
        QTensor::quantize(w, GgmlDType::Q4_1).expect("quantize")
    }

    fn bits(t: &Tensor) -> Vec<u32> {
        t.flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .expect("f32")
            .into_iter()
            .map(f32::to_bits)
            .collect()
    }

    #[test]
    fn equals_candles_qmatmul_bit_for_bit_with_every_kernel() {
        for (rows, cols) in [(4, 64), (576, 576), (192, 576), (1536, 576), (576, 1536)] {
            let (w, x) = random(rows, cols, rows as u64 * 7 + cols as u64);
            let expected = QMatMul::from_qtensor(q41(&w))
                .and_then(|m| m.forward(&x))
                .expect("candle");
            let ours = QMatrix::from_qtensor(&q41(&w))
                .expect("load")
                .expect("Q4_1");
            assert_eq!(ours.rows(), rows);
            for kernel in [Kernel::Portable, Kernel::best()] {
                let got = ours.forward_with(&x, kernel).expect("forward");
                assert_eq!(got.dims(), expected.dims());
                assert_eq!(bits(&got), bits(&expected), "[{rows}, {cols}] {kernel:?}");
            }
            // One row at a time gives the same bits as the batch.
            let one = ours
                .forward(&x.narrow(1, 2, 1).expect("narrow"))
                .expect("one");
            let batch = expected.narrow(1, 2, 1).expect("narrow");
            assert_eq!(bits(&one), bits(&batch));
        }
    }

    /// candle's scalar Q8_0 product (`vec_dot_unopt`), row by row: what every CPU should get.
    fn candle_scalar_q80(w: &Tensor, x: &Tensor) -> Vec<u32> {
        use candle_core::quantized::k_quants::{BlockQ8_0, GgmlType};
        let (rows, cols) = w.dims2().expect("w");
        let w = w.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("w");
        let x = x.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("x");
        let blocks = cols / QK;
        let quantize = |v: &[f32]| {
            let mut b = vec![BlockQ8_0::zeros(); v.len() / QK];
            BlockQ8_0::from_float(v, &mut b);
            b
        };
        let wq = quantize(&w);
        let mut out = Vec::new();
        for xrow in x.chunks_exact(cols) {
            let xq = quantize(xrow);
            for r in 0..rows {
                let row = &wq[r * blocks..(r + 1) * blocks];
                out.push(BlockQ8_0::vec_dot_unopt(cols, row, &xq).to_bits());
            }
        }
        out
    }

    #[test]
    fn q8_0_equals_candles_scalar_arithmetic_with_every_kernel() {
        for (rows, cols) in [(4, 64), (576, 576), (1024, 576)] {
            let (w, x) = random(rows, cols, rows as u64 + 3 * cols as u64);
            let q = QTensor::quantize(&w, GgmlDType::Q8_0).expect("quantize");
            let ours = QMatrix::from_qtensor(&q).expect("load").expect("Q8_0");
            let expected = candle_scalar_q80(&w, &x);
            for kernel in [Kernel::Portable, Kernel::best()] {
                let got = ours.forward_with(&x, kernel).expect("forward");
                assert_eq!(got.dims(), &[1, 3, rows]);
                assert_eq!(bits(&got), expected, "[{rows}, {cols}] {kernel:?}");
            }
            // candle's own QMatMul (AVX2 here) rounds differently, but only just.
            let candle = QMatMul::from_qtensor(q)
                .and_then(|m| m.forward(&x))
                .and_then(|t| t.flatten_all())
                .and_then(|t| t.to_vec1::<f32>())
                .expect("candle");
            for (a, b) in candle.iter().zip(&expected) {
                let b = f32::from_bits(*b);
                assert!((a - b).abs() <= 1e-4 * b.abs().max(1.0), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn activations_are_quantized_as_candle_quantizes_them() {
        let (_, x) = random(4, 1536, 9);
        let values = x.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("x");
        let ours = quantize_activations(&values);
        let theirs = QTensor::quantize(&x, GgmlDType::Q8_1).expect("quantize");
        let theirs = theirs.data().expect("bytes");
        assert_eq!(theirs.len(), ours.qs.len() * Q8_1_BYTES);
        for (b, block) in theirs.chunks_exact(Q8_1_BYTES).enumerate() {
            assert_eq!(
                f16_at(block, 0).to_bits(),
                ours.d[b].to_bits(),
                "d of block {b}"
            );
            assert_eq!(
                f16_at(block, 2).to_bits(),
                ours.s[b].to_bits(),
                "s of block {b}"
            );
            let qs: Vec<i8> = block[4..].iter().map(|&v| v as i8).collect();
            assert_eq!(qs, ours.qs[b].0, "values of block {b}");
        }
    }

    #[test]
    fn a_fused_group_equals_its_parts() {
        let parts: Vec<(Tensor, Tensor)> = [(8, 1), (4, 2), (12, 3)]
            .iter()
            .map(|&(rows, seed)| random(rows, 64, seed))
            .collect();
        let x = &parts[0].1;
        let linear = |w: &Tensor| QLinear::from_qtensor(q41(w)).expect("load");
        let group =
            QLinearGroup::new(parts.iter().map(|(w, _)| linear(w)).collect()).expect("group");
        assert!(matches!(&group, QLinearGroup::Fused { widths, .. } if widths == &[8, 4, 12]));
        let outs = group.forward(x).expect("forward");
        for ((w, _), out) in parts.iter().zip(&outs) {
            assert_eq!(bits(out), bits(&linear(w).forward(x).expect("part")));
        }
        // Mixed dtypes are computed part by part.
        let w8 = QTensor::quantize(&parts[1].0, GgmlDType::Q8_0).expect("q8");
        let mixed = QLinearGroup::new(vec![
            linear(&parts[0].0),
            QLinear::from_qtensor(w8).expect("load"),
        ])
        .expect("group");
        assert!(matches!(mixed, QLinearGroup::Separate(_)));
        assert_eq!(mixed.forward(x).expect("forward").len(), 2);
    }

    #[test]
    fn other_shapes_and_dtypes_stay_with_candle() {
        let (w, _) = random(6, 32, 1);
        assert!(QMatrix::from_qtensor(&q41(&w)).expect("load").is_none());
        for (dtype, fast) in [
            (GgmlDType::Q8_0, true),
            (GgmlDType::Q4_0, false),
            (GgmlDType::Q8_1, false),
        ] {
            let q = QTensor::quantize(
                &Tensor::zeros((4, 32), candle_core::DType::F32, &Device::Cpu).expect("zeros"),
                dtype,
            )
            .expect("quantize");
            let linear = QLinear::from_qtensor(q).expect("load");
            assert_eq!(matches!(linear, QLinear::Fast(_)), fast, "{dtype:?}");
        }
    }

    #[test]
    fn a_wrong_input_width_is_an_error() {
        let (w, _) = random(4, 64, 2);
        let m = QMatrix::from_qtensor(&q41(&w))
            .expect("load")
            .expect("Q4_1");
        let x = Tensor::zeros((1, 32), candle_core::DType::F32, &Device::Cpu).expect("x");
        let err = m.forward(&x).expect_err("width");
        assert!(err.to_string().contains("input width 32"), "{err}");
    }
}
