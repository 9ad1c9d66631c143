//! Missing, corrupted or unsupported files fail with errors that name them.

use std::path::Path;

use vichain_inference::{
    BertConfig, Error, GgufFile, KvCacheConfig, LayerRange, LlamaStage, SentenceEmbedder,
    TextGenerator,
};

use crate::common::{minilm_dir, smollm2_path};

fn copy_minilm(to: &Path) {
    for f in ["config.json", "tokenizer.json", "model.safetensors"] {
        std::fs::copy(minilm_dir().join(f), to.join(f)).unwrap();
    }
}

#[test]
fn a_missing_model_directory_names_the_path() {
    let err = SentenceEmbedder::from_dir(Path::new("/nonexistent/minilm")).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert!(
        err.to_string().contains("/nonexistent/minilm/config.json"),
        "{err}"
    );
}

#[test]
fn a_truncated_safetensors_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    copy_minilm(dir.path());
    let path = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = SentenceEmbedder::from_dir(dir.path()).unwrap_err();
    assert!(matches!(err, Error::Weights { .. }), "{err}");
    assert!(err.to_string().contains("model.safetensors"), "{err}");
}

#[test]
fn wrong_shapes_and_architectures_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    copy_minilm(dir.path());
    let cfg_path = dir.path().join("config.json");
    let cfg = std::fs::read_to_string(&cfg_path).unwrap();
    std::fs::write(
        &cfg_path,
        cfg.replace("\"intermediate_size\": 1536", "\"intermediate_size\": 1024"),
    )
    .unwrap();
    let err = SentenceEmbedder::from_dir(dir.path()).unwrap_err();
    assert!(matches!(err, Error::Weights { .. }), "{err}");
    assert!(err.to_string().contains("intermediate"), "{err}");
    std::fs::write(&cfg_path, cfg.replace("\"bert\"", "\"roberta\"")).unwrap();
    let err = SentenceEmbedder::from_dir(dir.path()).unwrap_err();
    assert!(
        matches!(err, Error::UnsupportedArchitecture { .. }),
        "{err}"
    );
    assert!(BertConfig::from_file(&cfg_path).is_err());
}

#[test]
fn a_corrupted_tokenizer_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    copy_minilm(dir.path());
    std::fs::write(dir.path().join("tokenizer.json"), b"{\"model\": 3}").unwrap();
    let err = SentenceEmbedder::from_dir(dir.path()).unwrap_err();
    assert!(matches!(err, Error::Tokenizer { .. }), "{err}");
}

#[test]
fn oversize_and_empty_inputs_are_errors() {
    let e = crate::common::embedder();
    let err = e
        .embed(&"a".repeat(vichain_inference::MAX_TEXT_BYTES + 1))
        .unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }), "{err}");
    assert!(matches!(e.embed_tokens(&[]), Err(Error::Empty(_))));
    assert!(matches!(
        e.embed_tokens(&vec![100; 300]),
        Err(Error::TooLarge { .. })
    ));
}

#[test]
fn a_truncated_gguf_is_an_error() {
    let bytes = std::fs::read(smollm2_path()).unwrap();
    for cut in [10, 1_000, bytes.len() / 2, bytes.len() - 1] {
        let err = GgufFile::from_bytes(bytes[..cut].to_vec(), "cut.gguf").unwrap_err();
        assert!(matches!(err, Error::Weights { .. }), "cut {cut}: {err}");
        assert!(err.to_string().contains("cut.gguf"), "{err}");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    std::fs::write(&path, &bytes[..bytes.len() / 3]).unwrap();
    assert!(TextGenerator::from_gguf(&path, KvCacheConfig::default()).is_err());
}

#[test]
fn out_of_range_llama_layers_are_rejected() {
    let gg = GgufFile::open(&smollm2_path()).unwrap();
    let err = LlamaStage::load(
        &gg,
        LayerRange::new(25, 31),
        false,
        false,
        KvCacheConfig::default(),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::LayerRange {
                end: 31,
                layers: 30,
                ..
            }
        ),
        "{err}"
    );
}
