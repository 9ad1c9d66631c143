use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use vichain_inference::{KvCacheConfig, SentenceEmbedder, TextGenerator};

pub fn minilm_dir() -> PathBuf {
    vichain_inference::models::minilm_dir().unwrap()
}

pub fn smollm2_path() -> PathBuf {
    vichain_inference::models::smollm2_gguf().unwrap()
}

pub fn embedder() -> &'static SentenceEmbedder {
    static E: OnceLock<SentenceEmbedder> = OnceLock::new();
    E.get_or_init(|| SentenceEmbedder::from_dir(&minilm_dir()).unwrap())
}

pub fn generator() -> &'static Mutex<TextGenerator> {
    static G: OnceLock<Mutex<TextGenerator>> = OnceLock::new();
    G.get_or_init(|| {
        Mutex::new(TextGenerator::from_gguf(&smollm2_path(), KvCacheConfig::default()).unwrap())
    })
}

pub fn fixture(name: &str) -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
