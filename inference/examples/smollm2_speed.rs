//! SmolLM2 decoding speed, single process: prompt processing and generation tokens/s, the
//! figures llama.cpp's `llama_perf_context_print` reports, for a side-by-side comparison
//! (`scripts/bench_smollm2.py` runs both).
//!
//! ```text
//! scripts/fetch-models.sh
//! RAYON_NUM_THREADS=2 cargo run --release -p vichain-inference --example smollm2_speed -- [TOKENS] [ROUNDS]
//! ```

use std::time::Instant;

use vichain_inference::{KvCacheConfig, TextGenerator, argmax};

fn main() {
    let mut args = std::env::args().skip(1);
    let tokens: usize = args.next().map_or(64, |a| a.parse().expect("TOKENS"));
    let rounds: usize = args.next().map_or(3, |a| a.parse().expect("ROUNDS"));
    let path = vichain_inference::models::smollm2_gguf().expect("SmolLM2");
    let mut g = TextGenerator::from_gguf(&path, KvCacheConfig::default()).expect("model");
    let prompt = g
        .encode(&TextGenerator::chat_prompt("Write a haiku about the sea."))
        .expect("prompt");
    for round in 0..rounds {
        let session = round as u64;
        let t = Instant::now();
        let mut logits = g.step(session, 0, &prompt).expect("prefill");
        let prefill = t.elapsed().as_secs_f64();
        let t = Instant::now();
        // Greedy, never stopping at end of sequence, so every round decodes `tokens` tokens.
        for i in 0..tokens {
            let next = argmax(&logits).expect("argmax");
            logits = g
                .step(session, (prompt.len() + i) as u32, &[next])
                .expect("decode");
        }
        let decode = t.elapsed().as_secs_f64();
        g.end_session(session);
        println!(
            "round {round}: prompt {} tokens in {:.1} ms ({:.1} tokens/s); generation {tokens} tokens in {:.1} ms ({:.1} tokens/s, {:.2} ms/token)",
            prompt.len(),
            prefill * 1e3,
            prompt.len() as f64 / prefill,
            decode * 1e3,
            tokens as f64 / decode,
            decode * 1e3 / tokens as f64,
        );
    }
}
