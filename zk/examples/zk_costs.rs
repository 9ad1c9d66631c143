//! One-shot Groth16 costs for circuits too large for criterion's ten samples (each setup takes
//! minutes on this machine): constraints, setup, prove (several runs), verify, key sizes and
//! peak memory.
//!
//! ```text
//! cargo run --release -p vichain-zk --features prover --example zk_costs -- opening 1000,100
//! cargo run --release -p vichain-zk --features prover --example zk_costs -- mlp 784,128,10 private
//! ```
//!
//! `opening D0,D1,...` opens the commitment of a synthetic model with those layer widths (1000,100
//! is 10^5 weights plus 100 biases); `mlp DIMS public|private` proves one inference with the
//! argmax output. A third argument sets the number of proving runs (default 3).

use std::{sync::Arc, time::Instant};

use ark_relations::gr1cs::{ConstraintSynthesizer, ConstraintSystem};
use rand::{SeedableRng, rngs::StdRng};
use vichain_zk::*;

fn count<C: ConstraintSynthesizer<Fr>>(c: C) -> usize {
    let cs = ConstraintSystem::<Fr>::new_ref();
    c.generate_constraints(cs.clone()).expect("synthesis");
    cs.num_constraints()
}

/// Peak resident memory of this process so far (Linux), in MiB.
fn peak_rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

fn secs(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn usage() -> ! {
    eprintln!(
        "usage: zk_costs opening D0,D1,.. [RUNS] | zk_costs mlp D0,D1,.. public|private [RUNS]"
    );
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(kind), Some(dims)) = (args.first(), args.get(1)) else {
        usage()
    };
    let dims: Vec<usize> = dims
        .split(',')
        .map(|d| d.parse().unwrap_or_else(|_| usage()))
        .collect();
    let model = Arc::new(QuantizedMlp::synthetic(&dims, 1).expect("model"));
    let job = JobId::from_u64(1);
    println!("model {:?}: {} weights", dims, model.num_weights());

    match kind.as_str() {
        "opening" => {
            let runs = args
                .get(2)
                .map_or(3, |r| r.parse().unwrap_or_else(|_| usage()));
            measure(
                runs,
                || OpeningCircuit::for_proving(model.clone(), job).expect("circuit"),
                || OpeningCircuit::for_setup(model.clone()).expect("circuit"),
                verify_opening_proof,
            );
        }
        "mlp" => {
            let weights = match args.get(2).map(String::as_str) {
                Some("public") => WeightMode::Public,
                Some("private") => WeightMode::Private,
                _ => usage(),
            };
            let runs = args
                .get(3)
                .map_or(3, |r| r.parse().unwrap_or_else(|_| usage()));
            let private = InferencePrivate {
                input: (0..dims[0]).map(|i| (i % 17) as i8).collect(),
                input_salt: Salt([1; 32]),
                output_salt: Salt::default(),
            };
            measure(
                runs,
                || {
                    InferenceCircuit::for_proving(
                        model.clone(),
                        weights,
                        OutputMode::Argmax,
                        private.clone(),
                        job,
                    )
                    .expect("circuit")
                },
                || {
                    InferenceCircuit::for_setup(model.clone(), weights, OutputMode::Argmax)
                        .expect("circuit")
                },
                verify_inference_proof,
            );
        }
        _ => usage(),
    }
}

/// Synthesis, setup, `runs` proofs and one verification from bytes, printed as they finish.
fn measure<C, S, P>(
    runs: usize,
    proving: impl Fn() -> (C, P),
    setup_circuit: impl Fn() -> S,
    verify: impl Fn(&[u8], &KeyHash, &P, &[u8]) -> vichain_zk::Result<()>,
) where
    C: ConstraintSynthesizer<Fr>,
    S: ConstraintSynthesizer<Fr>,
{
    let mut rng = StdRng::seed_from_u64(1);
    let t = Instant::now();
    let constraints = count(proving().0);
    println!(
        "constraints {constraints} (synthesized in {:.2} s)",
        secs(t)
    );
    let t = Instant::now();
    let keys = setup(setup_circuit(), Some([1; 32])).expect("setup");
    println!("setup {:.2} s", secs(t));
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..runs {
        let (circuit, public) = proving();
        let t = Instant::now();
        let proof = prove(&keys.proving_key, circuit, &mut rng).expect("prove");
        times.push(secs(t));
        last = Some((public, proof));
    }
    println!(
        "prove {:.2} s (median of {runs}: {times:.2?})",
        median(&times)
    );
    let (public, proof) = last.expect("one run");
    let vk = encode_verifying_key(&keys.verifying_key).expect("vk");
    let t = Instant::now();
    verify(&vk, &keys.verifying_key_hash, &public, &proof).expect("verify");
    println!("verify from bytes {:.2} ms", secs(t) * 1e3);
    report_sizes(&keys, proof.len(), vk.len());
}

fn report_sizes(keys: &Keys, proof: usize, vk: usize) {
    let pk = encode_proving_key(&keys.proving_key).expect("pk").len();
    println!(
        "proof {proof} B, verifying key {vk} B, proving key {:.1} MB, peak memory {} MiB",
        pk as f64 / 1e6,
        peak_rss_mib().map_or("?".into(), |m| m.to_string())
    );
}
