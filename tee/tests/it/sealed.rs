//! Sealed inputs: HPKE round trips, and every way a ciphertext can fail to open says why.

use vichain_tee::{
    EncryptionKey, EncryptionPublicKey, Error, MAX_SEALED_INPUT_LEN, MAX_SEALED_PLAINTEXT_LEN,
    SEALED_INPUT_OVERHEAD, SealedInput, SealedInputContext, open, seal,
};

const WORKER: [u8; 20] = [0x11; 20];

fn ctx(job_id: u64) -> SealedInputContext<'static> {
    SealedInputContext {
        chain_id: "vichain-dev",
        job_id,
        worker: &WORKER,
    }
}

fn key(seed: u8) -> EncryptionKey {
    EncryptionKey::derive(&[seed; 32]).expect("key")
}

#[test]
fn an_input_sealed_to_a_worker_opens_only_with_its_key_and_context() {
    let k = key(1);
    let input = vec![0xab; 1024];
    let sealed = ctx(7).seal(&k.public_key(), &input).expect("seal");
    assert_eq!(sealed.ciphertext.len(), input.len() + 16);
    assert_ne!(sealed.ciphertext[..input.len()], input[..]);
    assert_eq!(ctx(7).open(&k, &sealed), Ok(input.clone()));

    // Two seals of one input differ (fresh ephemeral key each time) and both open.
    let again = ctx(7).seal(&k.public_key(), &input).expect("seal");
    assert_ne!(again.enc, sealed.enc);
    assert_ne!(again.ciphertext, sealed.ciphertext);
    assert_eq!(ctx(7).open(&k, &again), Ok(input));

    // The empty input is sealed too.
    let empty = ctx(7).seal(&k.public_key(), b"").expect("seal");
    assert_eq!(ctx(7).open(&k, &empty), Ok(vec![]));
}

#[test]
fn another_key_is_refused_by_name() {
    let sealed = ctx(7).seal(&key(1).public_key(), b"secret").expect("seal");
    assert!(matches!(
        ctx(7).open(&key(2), &sealed),
        Err(Error::SealedToAnotherKey { .. })
    ));
    // Relabelling the recipient does not help: HPKE binds the real recipient key.
    let mut relabelled = sealed.clone();
    relabelled.recipient = key(2).public_key();
    assert_eq!(
        ctx(7).open(&key(2), &relabelled),
        Err(Error::SealedInputTampered)
    );
}

#[test]
fn another_job_worker_or_chain_is_refused() {
    let k = key(1);
    let sealed = ctx(7).seal(&k.public_key(), b"secret").expect("seal");
    let other_worker = [0x22; 20];
    for other in [
        ctx(8),
        SealedInputContext {
            worker: &other_worker,
            ..ctx(7)
        },
        SealedInputContext {
            chain_id: "vichain-main",
            ..ctx(7)
        },
    ] {
        assert_eq!(
            other.open(&k, &sealed),
            Err(Error::SealedForAnotherContext),
            "{other:?}"
        );
        // Even with the digest rewritten to the other context, the AEAD refuses it.
        let mut moved = sealed.clone();
        moved.context_digest = other
            .seal(&k.public_key(), b"")
            .expect("seal")
            .context_digest;
        assert_eq!(other.open(&k, &moved), Err(Error::SealedInputTampered));
    }
}

#[test]
fn a_flipped_bit_in_the_ciphertext_or_encapsulated_key_is_refused() {
    let k = key(1);
    let sealed = ctx(7).seal(&k.public_key(), &[5; 100]).expect("seal");
    for i in 0..sealed.ciphertext.len() {
        let mut t = sealed.clone();
        t.ciphertext[i] ^= 0x01;
        assert_eq!(
            ctx(7).open(&k, &t),
            Err(Error::SealedInputTampered),
            "byte {i}"
        );
    }
    for i in 0..sealed.enc.len() {
        let mut t = sealed.clone();
        t.enc[i] ^= 0x40;
        assert_eq!(
            ctx(7).open(&k, &t),
            Err(Error::SealedInputTampered),
            "enc byte {i}"
        );
    }
    let mut t = sealed.clone();
    t.ciphertext.truncate(10);
    assert_eq!(ctx(7).open(&k, &t), Err(Error::SealedInputTampered));
}

#[test]
fn the_encoding_is_bounded_and_strict() {
    let k = key(1);
    let sealed = ctx(7).seal(&k.public_key(), b"abc").expect("seal");
    let bytes = sealed.encode();
    assert_eq!(bytes.len(), 3 + SEALED_INPUT_OVERHEAD);
    assert_eq!(SealedInput::decode(&bytes), Ok(sealed));
    for n in 0..SEALED_INPUT_OVERHEAD {
        assert!(
            matches!(
                SealedInput::decode(&bytes[..n]),
                Err(Error::SealedInputMalformed(_))
            ),
            "prefix {n}"
        );
    }
    let mut v2 = bytes.clone();
    v2[0] = 2;
    assert!(matches!(
        SealedInput::decode(&v2),
        Err(Error::SealedInputMalformed(_))
    ));
    let mut zero_recipient = bytes.clone();
    zero_recipient[1..33].fill(0);
    assert!(matches!(
        SealedInput::decode(&zero_recipient),
        Err(Error::EncryptionKeyInvalid(_))
    ));
    assert!(matches!(
        SealedInput::decode(&vec![1; MAX_SEALED_INPUT_LEN + 1]),
        Err(Error::SealedInputTooLarge { .. })
    ));
    assert!(matches!(
        seal(&k.public_key(), &vec![0; MAX_SEALED_PLAINTEXT_LEN + 1], b""),
        Err(Error::SealedInputTooLarge { .. })
    ));
    // The largest plaintext fits the largest encoding.
    let big = seal(&k.public_key(), &vec![0; MAX_SEALED_PLAINTEXT_LEN], b"").expect("seal");
    let big = big.encode();
    assert_eq!(big.len(), MAX_SEALED_INPUT_LEN);
    assert!(SealedInput::decode(&big).is_ok());
}

#[test]
fn raw_aad_sealing_matches_the_context_helpers() {
    let k = key(3);
    let sealed = seal(&k.public_key(), b"x", &ctx(1).aad()).expect("seal");
    assert_eq!(ctx(1).open(&k, &sealed), Ok(b"x".to_vec()));
    assert_eq!(open(&k, &sealed, &ctx(1).aad()), Ok(b"x".to_vec()));
    assert_eq!(
        sealed.check_addressed(&k.public_key(), &ctx(1).aad()),
        Ok(())
    );
}

#[test]
fn keys_persist_to_an_owner_only_file_and_are_not_overwritten() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("enc.key");
    let k = EncryptionKey::generate();
    k.save(&path).expect("save");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let loaded = EncryptionKey::load(&path).expect("load");
    assert_eq!(loaded.public_key(), k.public_key());
    assert_eq!(loaded.secret_bytes(), k.secret_bytes());
    assert!(matches!(
        EncryptionKey::generate().save(&path),
        Err(Error::KeyFile { .. })
    ));
    assert_eq!(
        EncryptionKey::load(&path).expect("load").public_key(),
        k.public_key()
    );

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = EncryptionKey::load(&path).expect_err("world-readable key");
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    let garbage = dir.path().join("garbage.key");
    std::fs::write(&garbage, "not hex\n").expect("write");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&garbage, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    assert!(matches!(
        EncryptionKey::load(&garbage),
        Err(Error::KeyFile { .. })
    ));
}

#[test]
fn public_keys_parse_from_hex_and_print_as_hex() {
    let pk = key(4).public_key();
    let parsed: EncryptionPublicKey = pk.to_hex().parse().expect("hex");
    assert_eq!(parsed, pk);
    assert_eq!(pk.to_string(), pk.to_hex());
    assert!("zz".parse::<EncryptionPublicKey>().is_err());
    assert!(format!("{:?}", key(4)).contains(&pk.to_hex()));
    assert!(!format!("{:?}", key(4)).contains(&hex::encode(key(4).secret_bytes())));
}

proptest::proptest! {
    /// Any bytes either decode to a sealed input that encodes back to them, or are an error;
    /// never a panic.
    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
        if let Ok(s) = SealedInput::decode(&bytes) {
            proptest::prop_assert_eq!(s.encode(), bytes);
        }
    }

    /// Valid headers with arbitrary ciphertexts never open and never panic.
    #[test]
    fn arbitrary_ciphertexts_never_open(ct in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200), enc in proptest::prelude::any::<[u8; 32]>()) {
        let k = key(9);
        let mut sealed = ctx(1).seal(&k.public_key(), b"x").expect("seal");
        sealed.ciphertext = ct;
        sealed.enc = enc;
        proptest::prop_assert!(ctx(1).open(&k, &sealed).is_err());
    }
}
