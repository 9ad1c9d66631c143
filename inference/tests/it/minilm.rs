use vichain_inference::{Fingerprint, FloatTolerance};

use crate::common::{cosine, embedder, f32_bytes, fixture};

#[test]
fn embeddings_match_sentence_transformers() {
    let reference = fixture("minilm_reference.json");
    let e = embedder();
    let mut worst = 0f32;
    for case in reference["cases"].as_array().unwrap() {
        let sentence = case["sentence"].as_str().unwrap();
        let ids: Vec<u32> = case["input_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(e.tokenize(sentence).unwrap(), ids, "{sentence}");
        let expected: Vec<f32> = case["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        let got = e.embed(sentence).unwrap();
        assert_eq!(got.len(), 384);
        let diff = got
            .iter()
            .zip(&expected)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        worst = worst.max(diff);
        assert!(diff <= 1e-5, "{sentence}: max abs diff {diff}");
        let tol = FloatTolerance::EMBEDDING;
        assert!(
            tol.quantize(&got)
                .unwrap()
                .within(&tol.quantize(&expected).unwrap(), tol.max_steps),
            "{sentence}: outside the consensus tolerance"
        );
    }
    eprintln!("max abs diff against sentence-transformers: {worst:e}");
}

#[test]
fn related_sentences_are_closer_than_unrelated_ones() {
    let e = embedder();
    let cat = e.embed("The cat sits on the mat.").unwrap();
    let kitten = e.embed("A kitten is resting on a rug.").unwrap();
    let revenue = e
        .embed("Quarterly revenue grew by twelve percent.")
        .unwrap();
    let norm = cosine(&cat, &cat);
    assert!((norm - 1.0).abs() < 1e-5, "unit norm, got {norm}");
    let related = cosine(&cat, &kitten);
    let unrelated = cosine(&cat, &revenue);
    assert!(related > 0.5 && unrelated < 0.2, "{related} vs {unrelated}");
}

#[test]
fn embedding_fingerprints_are_pinned() {
    let v = embedder().embed("The cat sits on the mat.").unwrap();
    let fixed = FloatTolerance::EMBEDDING.quantize(&v).unwrap();
    // Fixed point (2^-16 steps): what honest machines agree on.
    assert_eq!(
        fixed.fingerprint().to_string(),
        "8a74152c34df31452f62cc4fcc0a9c0cbb13e2860081ad18dda4e2541e4b7009"
    );
    // Exact bits: what this build produces on x86-64 CPUs (see the crate docs on determinism).
    eprintln!("exact f32 sha256 {}", Fingerprint::of_bytes(&f32_bytes(&v)));
}

#[test]
fn batches_agree_with_single_sentences_within_tolerance() {
    let e = embedder();
    let texts = [
        "The cat sits on the mat.",
        "Verifiable inference lets a blockchain check what a model computed.",
        "Hi",
    ];
    let batch = e.embed_batch(&texts).unwrap();
    for (t, b) in texts.iter().zip(&batch) {
        let single = e.embed(t).unwrap();
        let diff = single
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(diff < 1e-5, "{t}: {diff}");
    }
}

#[test]
fn long_inputs_are_truncated_to_max_seq_length() {
    let e = embedder();
    let text = "word ".repeat(1000);
    let ids = e.tokenize(&text).unwrap();
    assert_eq!(ids.len(), e.max_seq_length());
    assert_eq!(e.max_seq_length(), 256);
    assert_eq!(*ids.last().unwrap(), 102, "[SEP] is kept after truncation");
    e.embed(&text).unwrap();
}
