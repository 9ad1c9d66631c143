use vichain_inference::{
    Activation, ActivationData, DIGITS_DATA, DIGITS_MODEL, DigitsDataset, KvCacheConfig,
    LayerRange, Pipeline, TrainConfig, evaluate, quantize_input, quantize_mlp, quantized_accuracy,
    sha256_hex, split_mlp, train_float_mlp,
};
use vichain_zk::QuantizedMlp;

#[test]
fn the_bundled_dataset_is_sklearns_digits() {
    assert_eq!(
        sha256_hex(DIGITS_DATA),
        "27501ca3d9e3a0f3000e377176c50ed2ad237e3384efbb3e28237c4965f52f15"
    );
    let data = DigitsDataset::bundled().unwrap();
    assert_eq!(data.len(), 1797);
    let (train, test) = data.split();
    assert_eq!((train.len(), test.len()), (1437, 360));
    for label in 0..10 {
        assert!(test.labels.iter().filter(|l| **l == label).count() >= 25);
    }
    assert!(DigitsDataset::from_bytes(&DIGITS_DATA[..100], "cut").is_err());
    let mut bad = DIGITS_DATA.to_vec();
    bad[16] = 17;
    assert!(DigitsDataset::from_bytes(&bad, "bad").is_err());
}

#[test]
fn the_shipped_model_loads_and_is_accurate() {
    assert_eq!(
        sha256_hex(DIGITS_MODEL),
        "5770168460a69b0d07b2033b7c7ba0af1fbe4dd35e88361c497600824e113c6a"
    );
    let model = QuantizedMlp::from_bytes(DIGITS_MODEL).unwrap();
    assert_eq!(model.input_dim(), 64);
    assert_eq!(model.output_dim(), 10);
    let (_, test) = DigitsDataset::bundled().unwrap().split();
    let acc = quantized_accuracy(&model, &test).unwrap();
    eprintln!("shipped model: quantized test accuracy {acc:.4}");
    assert!(acc >= 0.95, "quantized test accuracy {acc}");
}

#[test]
fn quantization_keeps_accuracy_within_two_points_of_float() {
    let (train, test) = DigitsDataset::bundled().unwrap().split();
    let float = train_float_mlp(&train, &TrainConfig::default()).unwrap();
    let quantized = quantize_mlp(&float, &train).unwrap();
    let report = evaluate(&float, &quantized, &test).unwrap();
    eprintln!("{report:?}");
    assert!(report.float_accuracy >= 0.95, "{report:?}");
    assert!(
        report.quantized_accuracy >= report.float_accuracy - 0.02,
        "{report:?}"
    );
    assert!(report.agreement >= 0.97, "{report:?}");
}

#[test]
fn mlp_shards_compute_exactly_what_the_zk_model_computes() {
    let model = QuantizedMlp::from_bytes(DIGITS_MODEL).unwrap();
    let dir = tempfile::tempdir().unwrap();
    split_mlp(
        &model,
        dir.path(),
        "digits-mlp",
        &[LayerRange::new(0, 1), LayerRange::new(1, 2)],
    )
    .unwrap();
    let mut pipeline = Pipeline::load(dir.path(), KvCacheConfig::default()).unwrap();
    let (_, test) = DigitsDataset::bundled().unwrap().split();
    for img in test.images.iter().take(50) {
        let x = quantize_input(img);
        let expected = model.forward(&x).unwrap();
        let input = Activation::new(
            0,
            0,
            vec![1, 64],
            ActivationData::I64(x.iter().map(|&v| i64::from(v)).collect()),
        )
        .unwrap();
        let out = pipeline.run(&input).unwrap();
        assert_eq!(out.output.as_i64().unwrap(), expected.logits.as_slice());
        assert_eq!(out.stage_hashes.len(), 2);
    }
}
