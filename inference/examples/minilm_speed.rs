//! all-MiniLM-L6-v2 speed, in the same shape as `scripts/bench_minilm_torch.py` prints it (the
//! median of many runs of one 12-token sentence, and of a batch of 32 sentences), so that
//! `scripts/bench_vs_reference.py` can alternate candle and PyTorch in one session.
//!
//! ```text
//! scripts/fetch-models.sh
//! RAYON_NUM_THREADS=2 cargo run --release -p vichain-inference --example minilm_speed
//! ```

use std::time::Instant;

use vichain_inference::SentenceEmbedder;

const SENTENCE: &str = "The quick brown fox jumps over the lazy dog.";

fn median<F: FnMut()>(runs: usize, mut f: F) -> f64 {
    for _ in 0..(runs / 10).max(3) {
        f();
    }
    let mut samples: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[runs / 2]
}

fn main() {
    let dir = vichain_inference::models::minilm_dir().expect("all-MiniLM-L6-v2");
    let e = SentenceEmbedder::from_dir(&dir).expect("model");
    assert_eq!(e.tokenize(SENTENCE).expect("tokens").len(), 12);
    let batch: Vec<String> = (0..32).map(|i| format!("{SENTENCE} Number {i}.")).collect();
    let refs: Vec<&str> = batch.iter().map(String::as_str).collect();
    let one = median(300, || {
        e.embed(SENTENCE).expect("embed");
    });
    let many = median(20, || {
        e.embed_batch(&refs).expect("embed");
    });
    println!("minilm/embed/tokens=12: {:.2} ms", one * 1e3);
    println!(
        "minilm/embed_batch/sentences=32: {:.1} ms ({:.0} sentences/s)",
        many * 1e3,
        32.0 / many
    );
}
