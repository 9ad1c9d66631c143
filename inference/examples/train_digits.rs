//! Trains the digits MLP in float with candle-nn, quantizes it to `vichain_zk::QuantizedMlp`
//! and writes the model file shipped in `inference/data/`.
//!
//! ```text
//! cargo run -p vichain-inference --example train_digits [OUT]
//! ```
//! `OUT` defaults to `inference/data/digits-mlp.vqmlp`. Training is seeded and gives the same
//! bytes with 1 or 2 threads on this machine (sha256 5770168460a6...); on a CPU with other SIMD
//! paths the float rounding, and so possibly the file, can differ.

use std::path::PathBuf;

use vichain_inference::{
    DigitsDataset, TrainConfig, evaluate, quantize_mlp, sha256_hex, train_float_mlp,
};

fn main() -> anyhow::Result<()> {
    let out = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/digits-mlp.vqmlp"));
    let data = DigitsDataset::bundled()?;
    let (train, test) = data.split();
    let cfg = TrainConfig::default();
    println!(
        "training {:?} on {} images ({} held out): {} epochs, batch {}, lr {}, seed {}",
        cfg.dims,
        train.len(),
        test.len(),
        cfg.epochs,
        cfg.batch_size,
        cfg.learning_rate,
        cfg.seed
    );
    let float = train_float_mlp(&train, &cfg)?;
    let quantized = quantize_mlp(&float, &train)?;
    let train_report = evaluate(&float, &quantized, &train)?;
    let test_report = evaluate(&float, &quantized, &test)?;
    println!(
        "train: float {:.4}, quantized {:.4}",
        train_report.float_accuracy, train_report.quantized_accuracy
    );
    println!(
        "test ({} images): float {:.4}, quantized {:.4}, argmax agreement {:.4}",
        test_report.samples,
        test_report.float_accuracy,
        test_report.quantized_accuracy,
        test_report.agreement
    );
    let shifts: Vec<u8> = quantized.layers.iter().map(|l| l.shift).collect();
    println!("shifts {shifts:?}, {} weights", quantized.num_weights());
    let bytes = quantized.to_bytes();
    std::fs::write(&out, &bytes)?;
    println!(
        "wrote {} ({} bytes, sha256 {})",
        out.display(),
        bytes.len(),
        sha256_hex(&bytes)
    );
    Ok(())
}
