//! Proofs made and verified through the byte-level API the ledger and workers use.

use std::sync::Arc;

use rand::{SeedableRng, rngs::StdRng};
use vichain_zk::*;

use crate::digits;

fn input(seed: u8) -> Vec<i8> {
    (0..64)
        .map(|i| ((i as u8).wrapping_mul(seed) % 17) as i8)
        .collect()
}

#[test]
fn a_digits_proof_verifies_from_bytes_and_only_for_its_job() {
    let mut rng = StdRng::seed_from_u64(5);
    // Private weights on a smaller model keep the debug-build test short.
    let small = Arc::new(QuantizedMlp::synthetic(&[64, 8, 10], 2024).unwrap());
    for (model, weights) in [(digits(), WeightMode::Public), (small, WeightMode::Private)] {
        let keys = setup(
            InferenceCircuit::for_setup(model.clone(), weights, OutputMode::Argmax).unwrap(),
            Some([3; 32]),
        )
        .unwrap();
        let vk = encode_verifying_key(&keys.verifying_key).unwrap();
        let private = InferencePrivate {
            input: input(7),
            input_salt: Salt([1; 32]),
            output_salt: Salt::default(),
        };
        let (public, proof) = prove_inference(
            &keys.proving_key,
            model.clone(),
            weights,
            OutputMode::Argmax,
            private,
            JobId::from_u64(77),
            &mut rng,
        )
        .unwrap();
        assert_eq!(
            public.output,
            PublicOutput::Argmax(model.forward(&input(7)).unwrap().argmax as u32)
        );
        assert_eq!(public.model_commitment, model_commitment(&model));
        verify_inference_proof(&vk, &keys.verifying_key_hash, &public, &proof).unwrap();
        let replay = InferencePublic {
            job_id: JobId::from_u64(78),
            ..public.clone()
        };
        assert!(matches!(
            verify_inference_proof(&vk, &keys.verifying_key_hash, &replay, &proof),
            Err(Error::InvalidProof)
        ));
        let other_key = KeyHash([1; 32]);
        assert!(matches!(
            verify_inference_proof(&vk, &other_key, &public, &proof),
            Err(Error::KeyHashMismatch { .. })
        ));
    }
}

#[test]
fn a_block_of_proofs_is_batch_verified_and_the_forgery_singled_out() {
    let model = Arc::new(QuantizedMlp::synthetic(&[16, 8, 4], 9).unwrap());
    let keys = setup(
        InferenceCircuit::for_setup(model.clone(), WeightMode::Public, OutputMode::Logits).unwrap(),
        Some([4; 32]),
    )
    .unwrap();
    let key = PreparedKey::decode(
        &encode_verifying_key(&keys.verifying_key).unwrap(),
        &keys.verifying_key_hash,
    )
    .unwrap();
    let mut rng = StdRng::seed_from_u64(6);
    let mut items: Vec<(InferencePublic, Vec<u8>)> = (0..5u8)
        .map(|j| {
            let x: Vec<i8> = (0..16).map(|i| (i as i8) - (j as i8) * 3).collect();
            let private = InferencePrivate {
                input: x,
                input_salt: Salt([j; 32]),
                output_salt: Salt::default(),
            };
            prove_inference(
                &keys.proving_key,
                model.clone(),
                WeightMode::Public,
                OutputMode::Logits,
                private,
                JobId::from_u64(u64::from(j)),
                &mut rng,
            )
            .unwrap()
        })
        .collect();
    assert!(
        key.verify_inference_batch(&items, b"block 1")
            .iter()
            .all(Result::is_ok)
    );
    if let PublicOutput::Logits(l) = &mut items[3].0.output {
        l[1] -= 1;
    }
    items[1].1 = vec![0; 3];
    let results: Vec<bool> = key
        .verify_inference_batch(&items, b"block 1")
        .iter()
        .map(Result::is_ok)
        .collect();
    assert_eq!(results, vec![true, false, true, false, true]);
}

#[test]
fn a_split_inference_is_proven_stage_by_stage() {
    let model = QuantizedMlp::synthetic(&[12, 8, 6, 4], 13).unwrap();
    let mut rng = StdRng::seed_from_u64(8);
    let job = JobId::from_bytes(b"job-abc").unwrap();
    let (s0, s1, s2) = (Salt([1; 32]), Salt([2; 32]), Salt([3; 32]));
    let x: Vec<i64> = (0..12).map(|i| i * 9 - 50).collect();
    let mut activation = x.clone();
    let mut salts = vec![s0, s1, s2].into_iter();
    let mut salt_in = salts.next().unwrap();
    let mut commitments = Vec::new();
    for (start, end) in [(0, 1), (1, 3)] {
        let shard = Arc::new(ModelShard::from_model(&model, start, end).unwrap());
        let keys = setup(
            ShardCircuit::for_setup(shard.clone(), WeightMode::Private).unwrap(),
            Some([5; 32]),
        )
        .unwrap();
        let salt_out = salts.next().unwrap();
        let private = ShardPrivate {
            input: activation.clone(),
            input_salt: salt_in,
            output_salt: salt_out,
        };
        let (public, proof) = prove_shard(
            &keys.proving_key,
            shard.clone(),
            WeightMode::Private,
            private,
            job,
            &mut rng,
        )
        .unwrap();
        let vk = encode_verifying_key(&keys.verifying_key).unwrap();
        verify_shard_proof(&vk, &keys.verifying_key_hash, &public, &proof).unwrap();
        commitments.push(public);
        activation = shard.forward(&activation).unwrap();
        salt_in = salt_out;
    }
    assert_eq!(
        commitments[0].output_commitment,
        commitments[1].input_commitment
    );
    let x8: Vec<i8> = x.iter().map(|&v| v as i8).collect();
    assert_eq!(commitments[0].input_commitment, input_commitment(&x8, &s0));
    let logits = model.forward(&x8).unwrap().logits;
    assert_eq!(
        commitments[1].output_commitment,
        vector_commitment(&logits, LOGIT_BITS, &s2).unwrap()
    );
}

#[test]
fn a_worker_proves_it_holds_the_registered_weights() {
    let model = Arc::new(QuantizedMlp::synthetic(&[20, 10], 4).unwrap());
    let keys = setup(
        OpeningCircuit::for_setup(model.clone()).unwrap(),
        Some([6; 32]),
    )
    .unwrap();
    let (public, proof) = prove_opening(
        &keys.proving_key,
        model.clone(),
        JobId::from_u64(1),
        &mut StdRng::seed_from_u64(1),
    )
    .unwrap();
    let vk = encode_verifying_key(&keys.verifying_key).unwrap();
    verify_opening_proof(&vk, &keys.verifying_key_hash, &public, &proof).unwrap();
    let other = OpeningPublic {
        model_commitment: model_commitment(&QuantizedMlp::synthetic(&[20, 10], 5).unwrap()),
        ..public
    };
    assert!(verify_opening_proof(&vk, &keys.verifying_key_hash, &other, &proof).is_err());
}
