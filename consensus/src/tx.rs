//! Transactions: decoding untrusted bytes into a verified [`SignedTx`], and signing.
//!
//! A transaction is `Tx { body, signature }` where `body` is the encoded [`pb::TxBody`]
//! and the signature is ed25519 over `SIGN_DOMAIN || body`. The body is signed as
//! received and never re-encoded, so any encoder may produce it.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use prost::Message;
use sha2::{Digest, Sha256};
use vichain_proto::v1 as pb;

use crate::{Address, TxError, crypto::parse_public_key};

/// Domain separation of transaction signatures.
pub const SIGN_DOMAIN: &[u8] = b"vichain/tx/v1";

/// A decoded transaction whose signature has been verified. Stateful checks (chain
/// id against state, nonce, funds) come later, in execution.
#[derive(Debug, Clone)]
pub struct SignedTx {
    pub body: pb::TxBody,
    pub action: pb::tx_body::Action,
    pub signer: VerifyingKey,
    pub sender: Address,
    /// sha256 of the whole transaction bytes, as CometBFT names transactions.
    pub hash: [u8; 32],
    pub len: u64,
}

impl SignedTx {
    /// Decodes and authenticates `bytes`, rejecting anything over `max_bytes` before
    /// parsing. Checks: size, protobuf shape, known action, signer key, signature.
    pub fn decode(bytes: &[u8], max_bytes: u64) -> Result<Self, TxError> {
        Self::decode_cached(bytes, max_bytes, &SigCache::default())
    }

    /// As [`decode`](Self::decode), skipping the signature check for transaction
    /// bytes whose signature `cache` has already verified. The result is the same
    /// either way: a transaction's hash covers its body and signature.
    pub fn decode_cached(bytes: &[u8], max_bytes: u64, cache: &SigCache) -> Result<Self, TxError> {
        let len = bytes.len() as u64;
        if len > max_bytes {
            return Err(TxError::TooLarge {
                size: len,
                max: max_bytes,
            });
        }
        let tx = pb::Tx::decode(bytes).map_err(|e| TxError::Malformed(format!("tx: {e}")))?;
        let body = pb::TxBody::decode(tx.body.as_slice())
            .map_err(|e| TxError::Malformed(format!("tx body: {e}")))?;
        let action = body.action.clone().ok_or(TxError::UnknownKind)?;
        let signer = parse_public_key(&body.signer, "signer")?;
        let sender = Address::from_public_key(&signer);
        let sig_bytes: [u8; 64] =
            tx.signature
                .as_slice()
                .try_into()
                .map_err(|_| TxError::BadSignature {
                    signer: sender.to_string(),
                })?;
        let hash = tx_hash(bytes);
        if !cache.contains(&hash) {
            let signature = Signature::from_bytes(&sig_bytes);
            signer
                .verify(&sign_bytes(&tx.body), &signature)
                .map_err(|_| TxError::BadSignature {
                    signer: sender.to_string(),
                })?;
        }
        Ok(Self {
            body,
            action,
            signer,
            sender,
            hash,
            len,
        })
    }

    /// Short name of the action kind, used in events and metrics.
    pub fn kind(&self) -> &'static str {
        action_kind(&self.action)
    }
}

/// Hashes of transactions whose signatures verified, so that a transaction seen
/// by CheckTx is not verified again in PrepareProposal, ProcessProposal and
/// FinalizeBlock. Bounded: the oldest entries leave first.
#[derive(Debug, Default, Clone)]
pub struct SigCache {
    set: std::collections::BTreeSet<[u8; 32]>,
    order: std::collections::VecDeque<[u8; 32]>,
}

impl SigCache {
    /// Most hashes kept (about 10 MB).
    pub const CAPACITY: usize = 200_000;

    pub fn contains(&self, hash: &[u8; 32]) -> bool {
        self.set.contains(hash)
    }

    pub fn insert(&mut self, hash: [u8; 32]) {
        if self.set.insert(hash) {
            self.order.push_back(hash);
            while self.order.len() > Self::CAPACITY {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }

    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

pub fn action_kind(action: &pb::tx_body::Action) -> &'static str {
    use pb::tx_body::Action as A;
    match action {
        A::Transfer(_) => "transfer",
        A::AddValidator(_) => "add_validator",
        A::RemoveValidator(_) => "remove_validator",
        A::UpdatePower(_) => "update_power",
        A::RegisterModel(_) => "register_model",
        A::RegisterWorker(_) => "register_worker",
        A::SubmitJob(_) => "submit_job",
        A::SubmitProof(_) => "submit_proof",
        A::SubmitAttestation(_) => "submit_attestation",
        A::CommitResult(_) => "commit_result",
        A::RevealResult(_) => "reveal_result",
        A::SealInputs(_) => "seal_inputs",
        A::RecordPipeline(_) => "record_pipeline",
    }
}

/// The bytes a signer signs: the domain tag, then the encoded body.
pub fn sign_bytes(body: &[u8]) -> Vec<u8> {
    // A capacity hint only: a saturated one still reserves what fits.
    let mut out = Vec::with_capacity(SIGN_DOMAIN.len().saturating_add(body.len()));
    out.extend_from_slice(SIGN_DOMAIN);
    out.extend_from_slice(body);
    out
}

/// sha256 of the transaction bytes (CometBFT's tx hash).
pub fn tx_hash(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Builds and signs a transaction: what the CLI and tests use.
pub fn sign_tx(
    key: &SigningKey,
    chain_id: &str,
    nonce: u64,
    fee: u64,
    action: pb::tx_body::Action,
) -> Vec<u8> {
    let body = pb::TxBody {
        chain_id: chain_id.to_owned(),
        signer: key.verifying_key().as_bytes().to_vec(),
        nonce,
        fee,
        action: Some(action),
    }
    .encode_to_vec();
    let signature = key.sign(&sign_bytes(&body)).to_bytes().to_vec();
    pb::Tx { body, signature }.encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::dev_signing_key;
    use proptest::prelude::*;

    fn transfer(to: [u8; 20], amount: u64) -> pb::tx_body::Action {
        pb::tx_body::Action::Transfer(pb::Transfer {
            to: to.to_vec(),
            amount,
        })
    }

    proptest! {
        #[test]
        fn signed_transfers_round_trip(seed in any::<[u8; 32]>(), to in any::<[u8; 20]>(),
                                       amount in any::<u64>(), nonce in any::<u64>(), fee in any::<u64>(),
                                       chain in "[a-z0-9-]{1,20}") {
            let key = SigningKey::from_bytes(&seed);
            let bytes = sign_tx(&key, &chain, nonce, fee, transfer(to, amount));
            let tx = SignedTx::decode(&bytes, 1 << 20).unwrap();
            prop_assert_eq!(tx.sender, Address::from_public_key(&key.verifying_key()));
            prop_assert_eq!(tx.body.nonce, nonce);
            prop_assert_eq!(tx.body.fee, fee);
            prop_assert_eq!(&tx.body.chain_id, &chain);
            prop_assert_eq!(tx.action, transfer(to, amount));
            prop_assert_eq!(tx.hash, tx_hash(&bytes));
        }

        #[test]
        fn any_flipped_bit_is_rejected(pos in any::<prop::sample::Index>(), bit in 0u8..8) {
            let key = dev_signing_key();
            let mut bytes = sign_tx(&key, "c", 7, 1, transfer([9; 20], 5));
            let i = pos.index(bytes.len());
            bytes[i] ^= 1 << bit;
            // Either it no longer parses, or the signature no longer matches; it never
            // decodes as a valid transaction from the same signer with the same body.
            match SignedTx::decode(&bytes, 1 << 20) {
                Err(_) => {}
                Ok(tx) => prop_assert!(false, "flipped tx accepted: {:?}", tx.body),
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = SignedTx::decode(&bytes, 1 << 20);
        }
    }

    #[test]
    fn the_signature_cache_skips_only_what_it_verified() {
        let key = dev_signing_key();
        let good = sign_tx(&key, "c", 0, 1, transfer([1; 20], 1));
        let mut cache = SigCache::default();
        let tx = SignedTx::decode_cached(&good, 1 << 20, &cache).unwrap();
        cache.insert(tx.hash);
        assert!(SignedTx::decode_cached(&good, 1 << 20, &cache).is_ok());
        // A forged signature has other bytes, hence another hash: still checked.
        let mut forged = pb::Tx::decode(good.as_slice()).unwrap();
        forged.signature[3] ^= 1;
        let forged = forged.encode_to_vec();
        assert!(matches!(
            SignedTx::decode_cached(&forged, 1 << 20, &cache),
            Err(TxError::BadSignature { .. })
        ));
    }

    #[test]
    fn the_signature_cache_is_bounded() {
        let mut cache = SigCache::default();
        for i in 0..(SigCache::CAPACITY + 10) as u64 {
            let mut h = [0u8; 32];
            h[..8].copy_from_slice(&i.to_be_bytes());
            cache.insert(h);
        }
        assert_eq!(cache.len(), SigCache::CAPACITY);
        assert!(!cache.contains(&[0u8; 32]));
    }

    #[test]
    fn oversize_is_rejected_before_parsing() {
        let err = SignedTx::decode(&[0u8; 100], 99).unwrap_err();
        assert_eq!(err, TxError::TooLarge { size: 100, max: 99 });
    }

    #[test]
    fn missing_action_is_unknown_kind() {
        let key = dev_signing_key();
        let body = pb::TxBody {
            chain_id: "c".into(),
            signer: key.verifying_key().as_bytes().to_vec(),
            nonce: 0,
            fee: 1,
            action: None,
        }
        .encode_to_vec();
        let signature = key.sign(&sign_bytes(&body)).to_bytes().to_vec();
        let bytes = pb::Tx { body, signature }.encode_to_vec();
        assert_eq!(
            SignedTx::decode(&bytes, 1 << 20).unwrap_err(),
            TxError::UnknownKind
        );
    }
}
