//! The 8x8 handwritten digits, a float MLP trained on them with candle-nn, and its
//! quantization to the integer MLP that the zk circuits prove.

use candle_core::{Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use rand::{Rng, SeedableRng, seq::SliceRandom};
use serde::{Deserialize, Serialize};
use vichain_zk::{ACTIVATION_MAX, MAX_SHIFT, QuantizedLayer, QuantizedMlp};

use crate::{CandleContext, Error, Result};

/// scikit-learn's digits (1,797 images), exported by `scripts/export_digits.py`.
pub const DIGITS_DATA: &[u8] = include_bytes!("../data/digits.bin");
/// The shipped quantized model (`cargo run -p vichain-inference --example
/// train_digits`).
pub const DIGITS_MODEL: &[u8] = include_bytes!("../data/digits-mlp.vqmlp");
/// Pixels per image.
pub const PIXELS: usize = 64;
/// Number of classes.
pub const CLASSES: usize = 10;

const MAGIC: &[u8; 8] = b"VDIGITS\0";

/// Labelled 8x8 images with pixel values `0..=16`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DigitsDataset {
    /// Row-major pixels, one array per image.
    pub images: Vec<[u8; PIXELS]>,
    /// Class of each image, `0..=9`.
    pub labels: Vec<u8>,
}

impl DigitsDataset {
    /// Decodes the format written by `scripts/export_digits.py`.
    pub fn from_bytes(bytes: &[u8], file: &str) -> Result<Self> {
        let bad = |reason: String| Error::Dataset {
            file: file.into(),
            reason,
        };
        if bytes.len() < 16 || &bytes[..8] != MAGIC {
            return Err(bad("bad magic, not a VDIGITS file".into()));
        }
        let n = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
        let pixels = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]) as usize;
        if pixels != PIXELS {
            return Err(bad(format!("{pixels} pixels per image, expected {PIXELS}")));
        }
        let body = &bytes[16..];
        if n == 0 || Some(body.len()) != n.checked_mul(PIXELS + 1) {
            return Err(bad(format!(
                "{} data bytes for {n} images of {} bytes",
                body.len(),
                PIXELS + 1
            )));
        }
        let mut images = Vec::with_capacity(n);
        let mut labels = Vec::with_capacity(n);
        for (i, rec) in body.chunks_exact(PIXELS + 1).enumerate() {
            let mut img = [0u8; PIXELS];
            img.copy_from_slice(&rec[..PIXELS]);
            if let Some(p) = img.iter().find(|p| **p > 16) {
                return Err(bad(format!("image {i}: pixel value {p} above 16")));
            }
            if usize::from(rec[PIXELS]) >= CLASSES {
                return Err(bad(format!("image {i}: label {}", rec[PIXELS])));
            }
            images.push(img);
            labels.push(rec[PIXELS]);
        }
        Ok(Self { images, labels })
    }

    /// The dataset bundled with the crate ([`DIGITS_DATA`]).
    pub fn bundled() -> Result<Self> {
        Self::from_bytes(DIGITS_DATA, "inference/data/digits.bin")
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The fixed train/test split: image `i` is a test image when `i % 5 == 0` (360 of
    /// 1,797, a 20% held-out split spread over all writers).
    pub fn split(&self) -> (Self, Self) {
        let mut train = Self {
            images: vec![],
            labels: vec![],
        };
        let mut test = train.clone();
        for (i, (img, label)) in self.images.iter().zip(&self.labels).enumerate() {
            let dst = if i % 5 == 0 { &mut test } else { &mut train };
            dst.images.push(*img);
            dst.labels.push(*label);
        }
        (train, test)
    }
}

/// The int8 model input for an image: `min(8 * pixel, 127)`. The float model sees the same
/// values divided by 128, so quantizing the input loses nothing.
pub fn quantize_input(pixels: &[u8; PIXELS]) -> Vec<i8> {
    pixels
        .iter()
        .map(|&p| (u16::from(p) * 8).min(127) as i8)
        .collect()
}

fn float_inputs(data: &DigitsDataset) -> Result<Tensor> {
    let flat: Vec<f32> = data
        .images
        .iter()
        .flat_map(|img| {
            quantize_input(img)
                .into_iter()
                .map(|v| f32::from(v) / 128.0)
        })
        .collect();
    Tensor::from_vec(flat, (data.len(), PIXELS), &Device::Cpu).ctx("digit inputs")
}

/// Hyperparameters of [`train_float_mlp`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Layer widths, input first (`[64, 32, 10]`).
    pub dims: Vec<usize>,
    /// Passes over the training set.
    pub epochs: usize,
    /// Minibatch size.
    pub batch_size: usize,
    /// AdamW learning rate.
    pub learning_rate: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Seeds the initialization and the shuffling (ChaCha20).
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            dims: vec![PIXELS, 32, CLASSES],
            epochs: 60,
            batch_size: 32,
            learning_rate: 3e-3,
            weight_decay: 1e-4,
            seed: 20240727,
        }
    }
}

/// A float MLP with ReLU hidden layers: `(weight [out, in], bias [out])` per layer.
#[derive(Clone, Debug)]
pub struct FloatMlp {
    /// The layers, first to last.
    pub layers: Vec<(Tensor, Tensor)>,
}

impl FloatMlp {
    /// Logits `[n, classes]` for inputs `[n, 64]` (values `int8 / 128`).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        forward_layers(self.layers.iter().map(|(w, b)| (w, b)), x).ctx("float mlp")
    }

    /// Predicted classes of `data`.
    pub fn predict(&self, data: &DigitsDataset) -> Result<Vec<u32>> {
        let logits = self.forward(&float_inputs(data)?)?;
        logits
            .argmax(1)
            .and_then(|t| t.to_vec1())
            .ctx("float mlp argmax")
    }

    /// Largest activation of each hidden layer over `data` (input to the quantizer).
    fn hidden_max(&self, data: &DigitsDataset) -> Result<Vec<f32>> {
        let mut x = float_inputs(data)?;
        let mut out = Vec::new();
        for (w, b) in &self.layers[..self.layers.len() - 1] {
            x = x
                .matmul(&w.t().ctx("t")?)
                .and_then(|y| y.broadcast_add(b))
                .and_then(|y| y.relu())
                .ctx("hidden max")?;
            out.push(
                x.flatten_all()
                    .and_then(|t| t.max(0))
                    .and_then(|t| t.to_scalar::<f32>())
                    .ctx("hidden max")?,
            );
        }
        Ok(out)
    }
}

fn forward_layers<'a>(
    layers: impl ExactSizeIterator<Item = (&'a Tensor, &'a Tensor)>,
    x: &Tensor,
) -> candle_core::Result<Tensor> {
    let n = layers.len();
    let mut x = x.clone();
    for (i, (w, b)) in layers.enumerate() {
        x = x.matmul(&w.t()?)?.broadcast_add(b)?;
        if i + 1 < n {
            x = x.relu()?;
        }
    }
    Ok(x)
}

/// Trains a float MLP on `train` with AdamW and cross-entropy, deterministically for a given
/// config (seeded initialization and shuffling; CPU f32).
pub fn train_float_mlp(train: &DigitsDataset, cfg: &TrainConfig) -> Result<FloatMlp> {
    if cfg.dims.len() < 2 || cfg.dims[0] != PIXELS || cfg.dims[cfg.dims.len() - 1] != CLASSES {
        return Err(Error::field(
            "TrainConfig",
            "dims",
            format!("{:?} must run from {PIXELS} to {CLASSES}", cfg.dims),
        ));
    }
    if train.is_empty() || cfg.batch_size == 0 {
        return Err(Error::Empty("training set or batch"));
    }
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(cfg.seed);
    let dev = Device::Cpu;
    let mut vars = Vec::new();
    for w in cfg.dims.windows(2) {
        let (i, o) = (w[0], w[1]);
        // Kaiming-uniform, as torch.nn.Linear initializes.
        let bound = 1.0 / (i as f32).sqrt();
        let weights: Vec<f32> = (0..i * o).map(|_| rng.gen_range(-bound..bound)).collect();
        let biases: Vec<f32> = (0..o).map(|_| rng.gen_range(-bound..bound)).collect();
        vars.push((
            Var::from_tensor(&Tensor::from_vec(weights, (o, i), &dev).ctx("init")?).ctx("init")?,
            Var::from_tensor(&Tensor::from_vec(biases, o, &dev).ctx("init")?).ctx("init")?,
        ));
    }
    let mut opt = AdamW::new(
        vars.iter()
            .flat_map(|(w, b)| [w.clone(), b.clone()])
            .collect(),
        ParamsAdamW {
            lr: cfg.learning_rate,
            weight_decay: cfg.weight_decay,
            ..Default::default()
        },
    )
    .ctx("optimizer")?;
    let x = float_inputs(train)?;
    let y = Tensor::from_vec(
        train
            .labels
            .iter()
            .map(|&l| u32::from(l))
            .collect::<Vec<_>>(),
        train.len(),
        &dev,
    )
    .ctx("labels")?;
    let mut order: Vec<u32> = (0..train.len() as u32).collect();
    for _ in 0..cfg.epochs {
        order.shuffle(&mut rng);
        for chunk in order.chunks(cfg.batch_size) {
            let idx = Tensor::new(chunk, &dev).ctx("batch")?;
            let mut step = || -> candle_core::Result<()> {
                let xb = x.index_select(&idx, 0)?;
                let yb = y.index_select(&idx, 0)?;
                let logits = forward_layers(
                    vars.iter().map(|(w, b)| (w.as_tensor(), b.as_tensor())),
                    &xb,
                )?;
                let loss = candle_nn::loss::cross_entropy(&logits, &yb)?;
                opt.backward_step(&loss)
            };
            step().ctx("training step")?;
        }
    }
    Ok(FloatMlp {
        layers: vars
            .into_iter()
            .map(|(w, b)| (w.as_tensor().detach(), b.as_tensor().detach()))
            .collect(),
    })
}

/// Quantizes a float MLP to the integer MLP of `vichain_zk`.
///
/// Per layer: weights scaled by `127 / max|w|` and rounded to int8; biases rounded in the
/// accumulator's scale (input scale times weight scale); hidden layers shift the
/// accumulator right by the smallest amount that brings the largest activation seen on
/// `calibration` within `[0, 127]`; the last layer keeps the accumulator (shift 0) as logits.
/// The input scale is 128 (see [`quantize_input`]).
pub fn quantize_mlp(model: &FloatMlp, calibration: &DigitsDataset) -> Result<QuantizedMlp> {
    let hidden_max = model.hidden_max(calibration)?;
    let mut in_scale = 128f64;
    let mut layers = Vec::with_capacity(model.layers.len());
    for (l, (w, b)) in model.layers.iter().enumerate() {
        let (out_dim, in_dim) = w.dims2().ctx("weights")?;
        let wv: Vec<f32> = w.flatten_all().and_then(|t| t.to_vec1()).ctx("weights")?;
        let bv: Vec<f32> = b.to_vec1().ctx("biases")?;
        let wmax = wv.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
        let w_scale = 127.0 / f64::from(wmax);
        let weights: Vec<i8> = wv
            .iter()
            .map(|&v| (f64::from(v) * w_scale).round().clamp(-127.0, 127.0) as i8)
            .collect();
        let acc_scale = in_scale * w_scale;
        let biases: Vec<i32> = bv
            .iter()
            .map(|&v| {
                (f64::from(v) * acc_scale)
                    .round()
                    .clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32
            })
            .collect();
        let last = l + 1 == model.layers.len();
        let shift = if last {
            0
        } else {
            let target = f64::from(hidden_max[l]) * acc_scale / ACTIVATION_MAX as f64;
            let mut s = 0u8;
            while s < MAX_SHIFT && f64::from(1u32 << s) < target {
                s += 1;
            }
            s
        };
        in_scale = acc_scale / f64::from(1u32 << shift);
        layers.push(QuantizedLayer {
            in_dim,
            out_dim,
            weights,
            biases,
            shift,
        });
    }
    Ok(QuantizedMlp::new(layers)?)
}

/// Accuracy and agreement figures on a test set.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct DigitsReport {
    /// Test images.
    pub samples: usize,
    /// Accuracy of the float model.
    pub float_accuracy: f64,
    /// Accuracy of the integer model.
    pub quantized_accuracy: f64,
    /// Fraction of images on which both predict the same class.
    pub agreement: f64,
}

/// Accuracy of the integer model on `data`.
pub fn quantized_accuracy(model: &QuantizedMlp, data: &DigitsDataset) -> Result<f64> {
    let preds = quantized_predictions(model, data)?;
    Ok(accuracy(&preds, &data.labels))
}

/// Predictions of the integer model on `data`.
pub fn quantized_predictions(model: &QuantizedMlp, data: &DigitsDataset) -> Result<Vec<u32>> {
    data.images
        .iter()
        .map(|img| Ok(model.forward(&quantize_input(img))?.argmax as u32))
        .collect()
}

/// Compares the float and integer models on `data`.
pub fn evaluate(
    float: &FloatMlp,
    quantized: &QuantizedMlp,
    data: &DigitsDataset,
) -> Result<DigitsReport> {
    let fp = float.predict(data)?;
    let qp = quantized_predictions(quantized, data)?;
    let agree = fp.iter().zip(&qp).filter(|(a, b)| a == b).count();
    Ok(DigitsReport {
        samples: data.len(),
        float_accuracy: accuracy(&fp, &data.labels),
        quantized_accuracy: accuracy(&qp, &data.labels),
        agreement: agree as f64 / data.len().max(1) as f64,
    })
}

fn accuracy(preds: &[u32], labels: &[u8]) -> f64 {
    let ok = preds
        .iter()
        .zip(labels)
        .filter(|(p, l)| **p == u32::from(**l))
        .count();
    ok as f64 / labels.len().max(1) as f64
}
