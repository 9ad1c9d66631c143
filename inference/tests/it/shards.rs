use vichain_inference::{
    Activation, BertConfig, Error, KvCacheConfig, LayerRange, MANIFEST_FILE, ModelManifest,
    Pipeline, SENTENCE_BERT_CONFIG, Shard, ShardLayout, bert_max_seq_length, bert_tokenizer,
    split_bert,
};

use crate::common::{embedder, minilm_dir};

const SENTENCE: &str = "Verifiable inference lets a blockchain check what a model computed.";

fn whole_model_output() -> Vec<f32> {
    embedder().embed(SENTENCE).unwrap()
}

fn run_split(ranges: &[LayerRange], layout: ShardLayout) -> (Vec<f32>, ModelManifest, usize) {
    let dir = tempfile::tempdir().unwrap();
    let manifest = split_bert(
        &minilm_dir(),
        dir.path(),
        "all-minilm-l6-v2",
        ranges,
        layout,
    )
    .unwrap();
    manifest.verify(dir.path()).unwrap();
    let mut pipeline = Pipeline::load(dir.path(), KvCacheConfig::default()).unwrap();
    let ids = embedder().tokenize(SENTENCE).unwrap();
    let out = pipeline
        .run(&Activation::tokens(0, 0, &ids).unwrap())
        .unwrap();
    assert_eq!(out.output.shape(), [1, 384]);
    (
        out.output.as_f32().unwrap().to_vec(),
        manifest,
        out.stage_hashes.len(),
    )
}

#[test]
fn two_and_three_bert_shards_are_bit_identical_to_the_whole_model() {
    let whole = whole_model_output();
    for parts in [2, 3] {
        let ranges = LayerRange::even(6, parts).unwrap();
        let (out, manifest, stages) = run_split(&ranges, ShardLayout::Pipeline);
        assert_eq!(manifest.shards.len(), parts);
        assert_eq!(stages, parts);
        assert_eq!(
            out.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            whole.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "{parts} shards"
        );
    }
}

#[test]
fn a_split_model_keeps_the_whole_models_truncation_length() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = split_bert(
        &minilm_dir(),
        dir.path(),
        "all-minilm-l6-v2",
        &[LayerRange::new(0, 3), LayerRange::new(3, 6)],
        ShardLayout::ClientKeepsEnds,
    )
    .unwrap();
    assert!(
        manifest
            .files
            .iter()
            .any(|f| f.file == SENTENCE_BERT_CONFIG)
    );
    let source = dir.path().display().to_string();
    let cfg = BertConfig::from_json(
        &manifest.read_file(dir.path(), "config.json").unwrap(),
        &source,
    )
    .unwrap();
    let sbc = manifest
        .read_file(dir.path(), SENTENCE_BERT_CONFIG)
        .unwrap();
    let max = bert_max_seq_length(&cfg, Some(&sbc), &source).unwrap();
    assert_eq!(max, embedder().max_seq_length());
    assert_eq!(
        max, 256,
        "not the config's {} positions",
        cfg.max_position_embeddings
    );
    assert_eq!(bert_max_seq_length(&cfg, None, &source).unwrap(), 512);
    let bad = bert_max_seq_length(&cfg, Some(br#"{"max_seq_length": 513}"#), &source);
    assert!(bad.unwrap_err().to_string().contains("outside 1..=512"));

    // A client tokenizing with the split directory's files gets the embedder's ids.
    let long = "Every stage commits to the activation it emits. ".repeat(40);
    let client = bert_tokenizer(
        &manifest.read_file(dir.path(), "tokenizer.json").unwrap(),
        max,
        &source,
    )
    .unwrap();
    let ids = client
        .encode(long.as_str(), true)
        .unwrap()
        .get_ids()
        .to_vec();
    assert_eq!(ids.len(), 256);
    assert_eq!(ids, embedder().tokenize(&long).unwrap());
}

#[test]
fn the_client_can_keep_embeddings_and_pooling() {
    let whole = whole_model_output();
    let ranges = [LayerRange::new(0, 1), LayerRange::new(1, 6)];
    let (out, manifest, stages) = run_split(&ranges, ShardLayout::ClientKeepsEnds);
    let (_, client) = manifest.client_shard().unwrap();
    assert!(client.embeddings && client.head && client.layers.is_empty());
    assert!(
        manifest
            .worker_shards()
            .all(|(_, s)| !s.embeddings && !s.head)
    );
    assert_eq!(stages, 4, "embed, two workers, pool");
    assert_eq!(out, whole);
}

#[test]
fn splitting_is_deterministic() {
    let ranges = LayerRange::even(6, 2).unwrap();
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let ma = split_bert(&minilm_dir(), a.path(), "m", &ranges, ShardLayout::Pipeline).unwrap();
    let mb = split_bert(&minilm_dir(), b.path(), "m", &ranges, ShardLayout::Pipeline).unwrap();
    assert_eq!(ma, mb);
    assert_eq!(
        ModelManifest::load(&a.path().join(MANIFEST_FILE)).unwrap(),
        ma
    );
}

#[test]
fn corrupted_or_truncated_shards_are_rejected_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let ranges = LayerRange::even(6, 2).unwrap();
    let manifest = split_bert(
        &minilm_dir(),
        dir.path(),
        "m",
        &ranges,
        ShardLayout::Pipeline,
    )
    .unwrap();
    let file = dir.path().join(&manifest.shards[1].file);
    let mut bytes = std::fs::read(&file).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 1;
    std::fs::write(&file, &bytes).unwrap();
    let err = Shard::load(dir.path(), &manifest, 1, KvCacheConfig::default()).unwrap_err();
    assert!(matches!(err, Error::Sha256Mismatch { .. }), "{err}");
    assert!(err.to_string().contains(&manifest.shards[1].file), "{err}");
    // Truncated, with a manifest that matches the truncated bytes: the parser rejects it.
    bytes.truncate(n / 3);
    std::fs::write(&file, &bytes).unwrap();
    let mut forged = manifest.clone();
    forged.shards[1].sha256 = vichain_inference::sha256_hex(&bytes);
    forged.shards[1].size = bytes.len() as u64;
    let err = Shard::load(dir.path(), &forged, 1, KvCacheConfig::default()).unwrap_err();
    assert!(matches!(err, Error::Weights { .. }), "{err}");
    // A missing file names its path.
    std::fs::remove_file(&file).unwrap();
    let err = Shard::load(dir.path(), &manifest, 1, KvCacheConfig::default()).unwrap_err();
    assert!(
        matches!(err, Error::Io { .. }) && err.to_string().contains("shard-01"),
        "{err}"
    );
}

#[test]
fn shards_reject_activations_of_the_wrong_shape_or_dtype() {
    let dir = tempfile::tempdir().unwrap();
    let ranges = LayerRange::even(6, 2).unwrap();
    let manifest = split_bert(
        &minilm_dir(),
        dir.path(),
        "m",
        &ranges,
        ShardLayout::Pipeline,
    )
    .unwrap();
    let mut middle = Shard::load(dir.path(), &manifest, 1, KvCacheConfig::default()).unwrap();
    let tokens = Activation::tokens(0, 0, &[101, 2000, 102]).unwrap();
    assert!(matches!(
        middle.forward(&tokens),
        Err(Error::ActivationDtype { .. })
    ));
    let wrong_width = Activation::new(
        0,
        0,
        vec![1, 3, 100],
        vichain_inference::ActivationData::F32(vec![0.0; 300]),
    )
    .unwrap();
    assert!(matches!(
        middle.forward(&wrong_width),
        Err(Error::ActivationShape { .. })
    ));
    let mut first = Shard::load(dir.path(), &manifest, 0, KvCacheConfig::default()).unwrap();
    let out_of_vocab = Activation::tokens(0, 0, &[101, 999_999, 102]).unwrap();
    assert!(first.forward(&out_of_vocab).is_err());
    let too_long = Activation::tokens(0, 0, &vec![100; 600]).unwrap();
    assert!(matches!(
        first.forward(&too_long),
        Err(Error::TooLarge { .. })
    ));
}

#[test]
fn out_of_range_layer_ranges_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    for ranges in [
        vec![LayerRange::new(0, 7)],
        vec![LayerRange::new(0, 3), LayerRange::new(4, 6)],
        vec![LayerRange::new(0, 3)],
        vec![],
    ] {
        let err = split_bert(
            &minilm_dir(),
            dir.path(),
            "m",
            &ranges,
            ShardLayout::Pipeline,
        )
        .unwrap_err();
        assert!(matches!(err, Error::LayerRange { .. }), "{ranges:?}: {err}");
    }
}
