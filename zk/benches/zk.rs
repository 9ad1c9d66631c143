//! Groth16 costs for the circuits of issue 4: constraints, setup, prove, verify, batch verify.
//!
//! `cargo bench -p vichain-zk --features prover --bench zk` runs the digits-sized cases and batch verification;
//! `VICHAIN_BENCH_LARGE=1` adds the 784-128-10 MLP and the 10^4-weight commitment opening
//! (minutes each on two cores). Add `--features parallel` for multithreaded proving.
//! Constraint counts and sizes are printed to stderr once per case.

use std::sync::Arc;

use ark_bn254::Bn254;
use ark_groth16::Groth16;
use ark_relations::gr1cs::{ConstraintSynthesizer, ConstraintSystem};
use criterion::{Criterion, criterion_group, criterion_main};
use rand::{SeedableRng, rngs::StdRng};
use vichain_zk::*;

fn count<C: ConstraintSynthesizer<Fr>>(c: C) -> usize {
    let cs = ConstraintSystem::<Fr>::new_ref();
    c.generate_constraints(cs.clone()).expect("synthesis");
    cs.num_constraints()
}

fn input(dim: usize) -> Vec<i8> {
    (0..dim).map(|i| (i % 17) as i8).collect()
}

fn bench_mlp(c: &mut Criterion, name: &str, dims: &[usize], weights: WeightMode) {
    let model = Arc::new(QuantizedMlp::synthetic(dims, 1).expect("model"));
    let mode = match weights {
        WeightMode::Public => "public",
        WeightMode::Private => "private",
    };
    let key = format!("model={name}/weights={mode}");
    let private = InferencePrivate {
        input: input(dims[0]),
        input_salt: Salt([1; 32]),
        output_salt: Salt::default(),
    };
    let job = JobId::from_u64(1);
    let setup_circuit = || {
        InferenceCircuit::for_setup(model.clone(), weights, OutputMode::Argmax).expect("circuit")
    };
    let proving = || {
        InferenceCircuit::for_proving(
            model.clone(),
            weights,
            OutputMode::Argmax,
            private.clone(),
            job,
        )
        .expect("circuit")
    };

    let mut group = c.benchmark_group("mlp");
    group.sample_size(10);
    let constraints = count(proving().0);
    group.bench_function(format!("constraints/{key}"), |b| {
        b.iter(|| count(proving().0))
    });
    group.bench_function(format!("setup/{key}"), |b| {
        b.iter(|| setup(setup_circuit(), Some([1; 32])).expect("setup"))
    });
    let keys = setup(setup_circuit(), Some([1; 32])).expect("setup");
    let mut rng = StdRng::seed_from_u64(1);
    group.bench_function(format!("prove/{key}"), |b| {
        b.iter(|| prove(&keys.proving_key, proving().0, &mut rng).expect("prove"))
    });
    let (circuit, public) = proving();
    let proof = prove(&keys.proving_key, circuit, &mut rng).expect("prove");
    let vk = encode_verifying_key(&keys.verifying_key).expect("vk");
    group.bench_function(format!("verify/{key}"), |b| {
        b.iter(|| {
            verify_inference_proof(&vk, &keys.verifying_key_hash, &public, &proof).expect("verify")
        })
    });
    group.finish();
    let pk = encode_proving_key(&keys.proving_key).expect("pk").len();
    eprintln!(
        "mlp {key}: {constraints} constraints, proof {} B, vk {} B, pk {pk} B",
        proof.len(),
        vk.len()
    );
}

fn digits(c: &mut Criterion) {
    bench_mlp(c, "digits-64-32-10", &[64, 32, 10], WeightMode::Public);
    bench_mlp(c, "digits-64-32-10", &[64, 32, 10], WeightMode::Private);
}

fn large() -> bool {
    std::env::var_os("VICHAIN_BENCH_LARGE").is_some()
}

fn mnist(c: &mut Criterion) {
    if !large() {
        return;
    }
    bench_mlp(c, "mnist-784-128-10", &[784, 128, 10], WeightMode::Public);
}

fn opening(c: &mut Criterion) {
    if !large() {
        return;
    }
    // 100 x 100 = 10^4 weights (plus 100 biases).
    let model = Arc::new(QuantizedMlp::synthetic(&[100, 100], 1).expect("model"));
    let key = format!("weights={}", model.num_weights());
    let mut group = c.benchmark_group("opening");
    group.sample_size(10);
    let constraints = count(
        OpeningCircuit::for_proving(model.clone(), JobId::from_u64(1))
            .expect("circuit")
            .0,
    );
    group.bench_function(format!("setup/{key}"), |b| {
        b.iter(|| {
            setup(
                OpeningCircuit::for_setup(model.clone()).expect("circuit"),
                Some([1; 32]),
            )
            .expect("setup")
        })
    });
    let keys = setup(
        OpeningCircuit::for_setup(model.clone()).expect("circuit"),
        Some([1; 32]),
    )
    .expect("setup");
    let mut rng = StdRng::seed_from_u64(1);
    group.bench_function(format!("prove/{key}"), |b| {
        b.iter(|| {
            prove_opening(
                &keys.proving_key,
                model.clone(),
                JobId::from_u64(1),
                &mut rng,
            )
            .expect("prove")
        })
    });
    let (public, proof) = prove_opening(
        &keys.proving_key,
        model.clone(),
        JobId::from_u64(1),
        &mut rng,
    )
    .expect("prove");
    let vk = encode_verifying_key(&keys.verifying_key).expect("vk");
    group.bench_function(format!("verify/{key}"), |b| {
        b.iter(|| {
            verify_opening_proof(&vk, &keys.verifying_key_hash, &public, &proof).expect("verify")
        })
    });
    group.finish();
    eprintln!("opening {key}: {constraints} constraints");
}

fn batch(c: &mut Criterion) {
    let model = Arc::new(QuantizedMlp::synthetic(&[64, 32, 10], 1).expect("model"));
    let keys = setup(
        InferenceCircuit::for_setup(model.clone(), WeightMode::Public, OutputMode::Argmax)
            .expect("circuit"),
        Some([1; 32]),
    )
    .expect("setup");
    let mut rng = StdRng::seed_from_u64(1);
    let private = InferencePrivate {
        input: input(64),
        input_salt: Salt([1; 32]),
        output_salt: Salt::default(),
    };
    let (public, proof) = prove_inference(
        &keys.proving_key,
        model,
        WeightMode::Public,
        OutputMode::Argmax,
        private,
        JobId::from_u64(1),
        &mut rng,
    )
    .expect("prove");
    let proof = decode_proof(&proof).expect("proof");
    let pvk = prepare(&keys.verifying_key);
    let inputs = public.to_field_elements();
    // Rerandomized copies are distinct valid proofs of the same statement.
    let items: Vec<(Vec<Fr>, Proof<Bn254>)> = (0..100)
        .map(|_| {
            (
                inputs.clone(),
                Groth16::<Bn254>::rerandomize_proof(&keys.verifying_key, &proof, &mut rng),
            )
        })
        .collect();
    let mut group = c.benchmark_group("verify");
    group.sample_size(10);
    group.bench_function("single/model=digits-64-32-10", |b| {
        b.iter(|| verify(&pvk, &inputs, &items[0].1).expect("verify"))
    });
    group.bench_function("batch/model=digits-64-32-10/proofs=100", |b| {
        b.iter(|| verify_batch(&pvk, &items, b"block").expect("verify"))
    });
    group.bench_function("sequential/model=digits-64-32-10/proofs=100", |b| {
        b.iter(|| {
            items
                .iter()
                .for_each(|(i, p)| verify(&pvk, i, p).expect("verify"))
        })
    });
    group.finish();
}

/// The floor under any Groth16 verification: three pairings (one multi-pairing of three
/// pairs, as a prepared-key verification computes).
fn pairings(c: &mut Criterion) {
    use ark_ec::{CurveGroup, pairing::Pairing};
    use ark_std::UniformRand;
    let mut rng = StdRng::seed_from_u64(3);
    let g1: Vec<_> = (0..3)
        .map(|_| <Bn254 as Pairing>::G1::rand(&mut rng).into_affine())
        .collect();
    let g2: Vec<_> = (0..3)
        .map(|_| <Bn254 as Pairing>::G2::rand(&mut rng).into_affine())
        .collect();
    c.bench_function("pairings/three", |b| {
        b.iter(|| Bn254::multi_pairing(g1.iter().copied(), g2.iter().copied()))
    });
}

criterion_group!(benches, digits, batch, opening, mnist, pairings);
criterion_main!(benches);
