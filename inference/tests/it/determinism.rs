//! Bit-identical outputs across runs and thread counts.

use std::process::Command;

use vichain_inference::{
    DIGITS_MODEL, DigitsDataset, Fingerprint, TextGenerator, quantize_input, quantized_predictions,
};
use vichain_zk::QuantizedMlp;

use crate::common::{embedder, f32_bytes, generator};

/// Prints the fingerprints compared by `outputs_do_not_depend_on_the_thread_count`; run by
/// that test in child processes with a fixed thread count.
#[test]
#[ignore = "helper run by outputs_do_not_depend_on_the_thread_count"]
fn probe() {
    let e = embedder()
        .embed("Verifiable inference on a permissioned chain.")
        .unwrap();
    println!("PROBE minilm {}", Fingerprint::of_bytes(&f32_bytes(&e)));
    let batch = embedder()
        .embed_batch(&["a short one", "and a somewhat longer second sentence"])
        .unwrap();
    println!(
        "PROBE minilm-batch {}",
        Fingerprint::of_bytes(&f32_bytes(&batch.concat()))
    );
    let mut g = generator()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let prompt = g
        .encode(&TextGenerator::chat_prompt(
            "What is the capital of France?",
        ))
        .unwrap();
    let logits = g.step(1, 0, &prompt).unwrap();
    println!(
        "PROBE smollm2-prefill {}",
        Fingerprint::of_bytes(&f32_bytes(&logits))
    );
    let next = g.step(1, prompt.len() as u32, &[504]).unwrap();
    println!(
        "PROBE smollm2-decode {}",
        Fingerprint::of_bytes(&f32_bytes(&next))
    );
    g.end_session(1);
    let model = QuantizedMlp::from_bytes(DIGITS_MODEL).unwrap();
    let (_, test) = DigitsDataset::bundled().unwrap().split();
    let preds = quantized_predictions(&model, &test).unwrap();
    println!(
        "PROBE digits {}",
        Fingerprint::of_integers(preds.iter().map(|&p| i64::from(p)))
    );
    let _ = quantize_input(&test.images[0]);
}

fn probe_with_threads(threads: usize) -> Vec<String> {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "determinism::probe",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("RAYON_NUM_THREADS", threads.to_string())
        .env("CANDLE_NUM_THREADS", threads.to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "probe with {threads} threads failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<String> = stdout
        .lines()
        .filter_map(|l| l.find("PROBE ").map(|i| l[i..].to_string()))
        .collect();
    assert_eq!(lines.len(), 5, "{stdout}");
    lines
}

#[test]
fn outputs_do_not_depend_on_the_thread_count() {
    let one = probe_with_threads(1);
    let two = probe_with_threads(2);
    assert_eq!(one, two);
    eprintln!("{}", one.join("\n"));
}

#[test]
fn repeated_runs_are_bit_identical() {
    let text = "The same input gives the same output.";
    let a = embedder().embed(text).unwrap();
    let b = embedder().embed(text).unwrap();
    assert_eq!(f32_bytes(&a), f32_bytes(&b));
    let mut g = generator()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let prompt = g.encode(&TextGenerator::chat_prompt(text)).unwrap();
    let x = g.step(21, 0, &prompt).unwrap();
    g.end_session(21);
    let y = g.step(21, 0, &prompt).unwrap();
    g.end_session(21);
    assert_eq!(f32_bytes(&x), f32_bytes(&y));
}
