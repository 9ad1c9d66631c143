//! Attention written out in fixed-order portable code.
//!
//! candle computes attention with batched f32 matmuls through `gemm`, whose kernels (and so
//! their roundings) differ between AVX2 and AVX-512 machines. For generation that can flip a
//! near-tie token between two honest workers, so the Llama path uses [`causal_gqa`], which
//! gives the same bits on every CPU: every score is a [`dot`] with a fixed order, the softmax
//! uses a portable exponential, and each output value sums the values in key order.
//! (BERT keeps candle's attention: its float outputs are compared within a tolerance, and
//! gemm's batched products are faster there: a portable version measured slower on a batch
//! of 32 sentences, see BENCHMARKS.md.)

use candle_core::Tensor;

use crate::gelu::exp_nonpositive;

/// Sizes of one attention call.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AttentionShape {
    pub(crate) heads: usize,
    pub(crate) kv_heads: usize,
    pub(crate) head_dim: usize,
    /// New positions (queries) in this call.
    pub(crate) queries: usize,
    /// Cached plus new positions (keys and values).
    pub(crate) keys: usize,
}

/// Lanes of the fixed-order partial sums in [`dot`].
const LANES: usize = 8;

/// A dot product with a fixed evaluation order: eight interleaved partial sums, then a fixed
/// tree. Each lane is an independent sequence of IEEE operations, so the compiler vectorizes it
/// (SSE2, AVX2 or AVX-512 alike) without changing a bit: the result is the same on every CPU.
#[inline(always)]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = a.chunks_exact(LANES).zip(b.chunks_exact(LANES));
    for (x, y) in chunks {
        for ((a, x), y) in acc.iter_mut().zip(x).zip(y) {
            *a += x * y;
        }
    }
    let tail: f32 = a
        .chunks_exact(LANES)
        .remainder()
        .iter()
        .zip(b.chunks_exact(LANES).remainder())
        .fold(0.0, |t, (x, y)| t + x * y);
    ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + tail
}

/// Causal grouped-query attention, written out so that its result does not depend on the CPU:
/// candle's batched f32 matmuls go through `gemm`, whose kernels (and so their roundings)
/// differ between AVX2 and AVX-512 machines, which could flip a near-tie token between two
/// honest workers. Here every score is a [`dot`], the softmax's exponentials use the same
/// portable polynomial as the GELU, and each output value sums the values in key order.
///
/// `q` is `[heads, queries, head_dim]`, `k` and `v` are `[kv_heads, keys, head_dim]`; query `i`
/// sits at position `keys - queries + i` and sees keys `0..=` that position. The output is
/// `[queries, heads * head_dim]`.
pub(crate) fn causal_gqa(
    shape: &AttentionShape,
    q: &[f32],
    k: &[f32],
    v: &[f32],
) -> candle_core::Result<Vec<f32>> {
    let AttentionShape {
        heads,
        kv_heads,
        head_dim: d,
        queries,
        keys,
    } = *shape;
    if q.len() != heads * queries * d
        || k.len() != kv_heads * keys * d
        || v.len() != k.len()
        || queries > keys
        || kv_heads == 0
        || !heads.is_multiple_of(kv_heads)
    {
        candle_core::bail!("attention: inconsistent sizes {shape:?}");
    }
    let scale = (d as f32).sqrt();
    let group = heads / kv_heads;
    let first = keys - queries;
    let mut out = vec![0f32; queries * heads * d];
    let mut p = vec![0f32; keys];
    crate::qmatmul::dispatch(
        #[inline(always)]
        || {
            for h in 0..heads {
                let kv = h / group;
                let k = &k[kv * keys * d..(kv + 1) * keys * d];
                let v = &v[kv * keys * d..(kv + 1) * keys * d];
                for i in 0..queries {
                    let qi = &q[(h * queries + i) * d..(h * queries + i + 1) * d];
                    let seen = first + i + 1;
                    let p = &mut p[..seen];
                    let mut max = f32::NEG_INFINITY;
                    for (j, pj) in p.iter_mut().enumerate() {
                        *pj = dot(qi, &k[j * d..(j + 1) * d]) / scale;
                        max = max.max(*pj);
                    }
                    let mut sum = 0f32;
                    for pj in p.iter_mut() {
                        *pj = exp_nonpositive(*pj - max);
                        sum += *pj;
                    }
                    let y = &mut out[(i * heads + h) * d..(i * heads + h + 1) * d];
                    for (j, pj) in p.iter().enumerate() {
                        let w = pj / sum;
                        for (yd, vd) in y.iter_mut().zip(&v[j * d..(j + 1) * d]) {
                            *yd += w * vd;
                        }
                    }
                }
            }
        },
    );
    Ok(out)
}

/// Runs `f` on a contiguous f32 CPU tensor's values, without copying them.
pub(crate) fn with_f32<R>(
    t: &Tensor,
    f: impl FnOnce(&[f32]) -> candle_core::Result<R>,
) -> candle_core::Result<R> {
    let (storage, layout) = t.storage_and_layout();
    match (&*storage, layout.contiguous_offsets()) {
        (candle_core::Storage::Cpu(cpu), Some((start, end))) => {
            f(&cpu.as_slice::<f32>()?[start..end])
        }
        _ => candle_core::bail!("expected a contiguous f32 CPU tensor"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use rand::{Rng, SeedableRng};

    fn random(n: usize, rng: &mut impl Rng) -> Vec<f32> {
        (0..n).map(|_| rng.gen_range(-2.0..2.0)).collect()
    }

    /// The attention candle's ops compute (what the stage did before [`causal_gqa`]).
    fn reference(shape: &AttentionShape, q: &[f32], k: &[f32], v: &[f32]) -> Vec<f32> {
        let (heads, kv_heads, d) = (shape.heads, shape.kv_heads, shape.head_dim);
        let (queries, keys) = (shape.queries, shape.keys);
        let dev = &Device::Cpu;
        let q = Tensor::from_slice(q, (1, heads, queries, d), dev).expect("q");
        let k = Tensor::from_slice(k, (1, kv_heads, keys, d), dev).expect("k");
        let v = Tensor::from_slice(v, (1, kv_heads, keys, d), dev).expect("v");
        let rep = heads / kv_heads;
        let k = candle_transformers::utils::repeat_kv(k, rep).expect("k");
        let v = candle_transformers::utils::repeat_kv(v, rep).expect("v");
        let att = (q.matmul(&k.t().expect("t")).expect("qk") / (d as f64).sqrt()).expect("s");
        let mask = candle_transformers::utils::build_causal_mask(queries, keys - queries, dev)
            .expect("mask")
            .broadcast_as(att.shape())
            .expect("mask");
        let neg = Tensor::new(f32::NEG_INFINITY, dev)
            .and_then(|n| n.broadcast_as(att.shape()))
            .expect("neg");
        let att = mask.where_cond(&neg, &att).expect("masked");
        let att = candle_nn::ops::softmax_last_dim(&att).expect("softmax");
        att.matmul(&v.contiguous().expect("v"))
            .and_then(|y| y.transpose(1, 2))
            .and_then(|y| y.flatten_all())
            .and_then(|y| y.to_vec1::<f32>())
            .expect("y")
    }

    #[test]
    fn attention_matches_candles_ops_with_grouped_heads_and_a_cache() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(5);
        for (queries, keys) in [(1, 1), (1, 40), (5, 5), (7, 19), (38, 38)] {
            let shape = AttentionShape {
                heads: 9,
                kv_heads: 3,
                head_dim: 64,
                queries,
                keys,
            };
            let q = random(9 * queries * 64, &mut rng);
            let k = random(3 * keys * 64, &mut rng);
            let v = random(3 * keys * 64, &mut rng);
            let ours = causal_gqa(&shape, &q, &k, &v).expect("attend");
            let theirs = reference(&shape, &q, &k, &v);
            let worst = ours
                .iter()
                .zip(&theirs)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-5, "{queries} queries, {keys} keys: {worst}");
        }
    }

    #[test]
    fn inconsistent_attention_sizes_are_errors() {
        let shape = AttentionShape {
            heads: 9,
            kv_heads: 3,
            head_dim: 64,
            queries: 2,
            keys: 1,
        };
        assert!(causal_gqa(&shape, &[0.0; 9 * 2 * 64], &[0.0; 3 * 64], &[0.0; 3 * 64]).is_err());
    }
}
