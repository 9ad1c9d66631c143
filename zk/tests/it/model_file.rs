//! The model file format, as a verifier reads it.

use vichain_zk::QuantizedMlp;

use crate::digits;

#[test]
fn the_model_file_roundtrips_and_its_hash_is_stable() {
    let model = digits();
    let bytes = model.to_bytes();
    assert_eq!(&QuantizedMlp::from_bytes(&bytes).unwrap(), &*model);
    assert_eq!(
        model.file_sha256(),
        <[u8; 32]>::try_from(sha2_digest(&bytes)).unwrap()
    );
}

fn sha2_digest(bytes: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).to_vec()
}
