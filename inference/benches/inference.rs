//! Criterion benches of the model runtime on the real models.
//!
//! ```text
//! scripts/fetch-models.sh
//! RAYON_NUM_THREADS=2 cargo bench -p vichain-inference --bench inference
//! ```

#![allow(clippy::unwrap_used, reason = "a bench aborts on any failure")]

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use vichain_inference::{
    Activation, DIGITS_MODEL, DigitsDataset, GenerationParams, KvCacheConfig, LayerRange, Pipeline,
    Sampling, SentenceEmbedder, ShardLayout, TextGenerator, quantize_input, split_bert, split_gguf,
};
use vichain_zk::QuantizedMlp;

fn models() -> PathBuf {
    let dir = vichain_inference::models::models_dir();
    vichain_inference::models::minilm_dir().expect("the benchmarks run the real models");
    dir
}

/// A sentence of exactly 12 tokens with [CLS] and [SEP].
const SENTENCE: &str = "The quick brown fox jumps over the lazy dog.";

fn minilm(c: &mut Criterion) {
    let dir = models().join("all-minilm-l6-v2");
    let e = SentenceEmbedder::from_dir(&dir).unwrap();
    let ids = e.tokenize(SENTENCE).unwrap();
    c.bench_function(&format!("minilm/embed/tokens={}", ids.len()), |b| {
        b.iter(|| e.embed(black_box(SENTENCE)).unwrap())
    });
    let batch: Vec<String> = (0..32).map(|i| format!("{SENTENCE} Number {i}.")).collect();
    let refs: Vec<&str> = batch.iter().map(String::as_str).collect();
    c.bench_function("minilm/embed_batch/sentences=32", |b| {
        b.iter(|| e.embed_batch(black_box(&refs)).unwrap())
    });
    let tmp = tempfile::tempdir().unwrap();
    split_bert(
        &dir,
        tmp.path(),
        "minilm",
        &LayerRange::even(6, 3).unwrap(),
        ShardLayout::Pipeline,
    )
    .unwrap();
    let mut pipeline = Pipeline::load(tmp.path(), KvCacheConfig::default()).unwrap();
    let input = Activation::tokens(0, 0, &ids).unwrap();
    c.bench_function(&format!("minilm/sharded3/tokens={}", ids.len()), |b| {
        b.iter(|| pipeline.run(black_box(&input)).unwrap())
    });
}

fn smollm2(c: &mut Criterion) {
    let path = models()
        .join("smollm2-135m-instruct")
        .join("SmolLM2-135M-Instruct.Q4_1.gguf");
    let mut g = TextGenerator::from_gguf(&path, KvCacheConfig::default()).unwrap();
    let prompt = g
        .encode(&TextGenerator::chat_prompt("Write a haiku about the sea."))
        .unwrap();
    let mut group = c.benchmark_group("smollm2");
    group.sample_size(10);
    group.bench_function(format!("prefill/tokens={}", prompt.len()), |b| {
        b.iter(|| {
            let l = g.step(1, 0, black_box(&prompt)).unwrap();
            g.end_session(1);
            l
        })
    });
    // Decoding: 32 new tokens, forced to run (no early stop) by using a seeded sampler
    // that avoids nothing; the prompt's prefill is included, measured above.
    let params = GenerationParams {
        max_new_tokens: 32,
        sampling: Sampling::Greedy,
    };
    group.bench_function("generate/tokens=32", |b| {
        b.iter(|| g.generate(2, black_box(&prompt), &params).unwrap())
    });
    let tmp = tempfile::tempdir().unwrap();
    split_gguf(
        &path,
        tmp.path(),
        "smollm2",
        &LayerRange::even(30, 3).unwrap(),
        ShardLayout::Pipeline,
    )
    .unwrap();
    let mut sharded = TextGenerator::from_shards(tmp.path(), KvCacheConfig::default()).unwrap();
    group.bench_function("sharded3_generate/tokens=32", |b| {
        b.iter(|| sharded.generate(2, black_box(&prompt), &params).unwrap())
    });
    group.finish();
}

fn digits(c: &mut Criterion) {
    let model = QuantizedMlp::from_bytes(DIGITS_MODEL).unwrap();
    let (_, test) = DigitsDataset::bundled().unwrap().split();
    let x = quantize_input(&test.images[0]);
    c.bench_function("digits/forward/dims=64-32-10", |b| {
        b.iter(|| model.forward(black_box(&x)).unwrap())
    });
}

criterion_group!(benches, minilm, smollm2, digits);
criterion_main!(benches);
