//! Sealed job inputs: HPKE (RFC 9180) to a worker's attested encryption key.
//!
//! A worker generates an [`EncryptionKey`] inside its TEE and binds its public half into the
//! report data of its attestation ([`expected_report_data`](crate::expected_report_data)); the
//! ledger stores the attested public key on the worker's record. A client reads that key from
//! state and [`seal`]s its input to it under the [`SealedInputContext`] of the job (chain id, job
//! id, worker address), so the chain carries only ciphertext, and a ciphertext cannot be replayed
//! to another worker, job or chain. Only the holder of the secret key can [`open`] it.
//!
//! Suite: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20Poly1305, base mode, with
//! [`SEALED_INPUT_INFO`] as HPKE's `info`. Base mode authenticates no sender: anyone can seal to
//! a worker's key, so the job flow must also tie the ciphertext to the job's client (the signed
//! transaction that carries it) and the worker must check the opened input against the job's
//! input hash.

use std::path::Path;

use hpke::{
    Deserializable, Kem as _, OpModeR, OpModeS, Serializable, aead::ChaCha20Poly1305,
    kdf::HkdfSha256, kem::X25519HkdfSha256,
};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

type Kem = X25519HkdfSha256;

/// HPKE `info` of every sealed job input, and the first bytes of its AAD.
pub const SEALED_INPUT_INFO: &[u8] = b"vichain/sealed-input/v1";

/// Length of an X25519 public key, an encapsulated key and a secret key.
pub const ENCRYPTION_KEY_LEN: usize = 32;

/// Largest plaintext [`seal`] accepts (the ledger's own `max_input_bytes` is smaller).
pub const MAX_SEALED_PLAINTEXT_LEN: usize = 1024 * 1024;

/// ChaCha20Poly1305 tag length.
const TAG_LEN: usize = 16;

/// Bytes [`SealedInput::encode`] adds to the plaintext: version, recipient, context digest,
/// encapsulated key and tag.
pub const SEALED_INPUT_OVERHEAD: usize = 1 + 3 * ENCRYPTION_KEY_LEN + TAG_LEN;

/// Largest [`SealedInput::encode`]d value [`SealedInput::decode`] accepts.
pub const MAX_SEALED_INPUT_LEN: usize = MAX_SEALED_PLAINTEXT_LEN + SEALED_INPUT_OVERHEAD;

/// Version byte of [`SealedInput::encode`].
pub const SEALED_INPUT_VERSION: u8 = 1;

/// A worker's HPKE secret key (X25519). Never leaves the worker; zeroized on drop.
#[derive(Clone)]
pub struct EncryptionKey {
    secret: <Kem as hpke::Kem>::PrivateKey,
    public: EncryptionPublicKey,
}

/// A worker's HPKE public key: the `encryption_key` its attestation binds and the ledger stores.
///
/// Constructed only from keys that give a contributory X25519 exchange: the all-zero key and the
/// other small-order points, to which nothing can be sealed, are rejected.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EncryptionPublicKey([u8; ENCRYPTION_KEY_LEN]);

/// Where a sealed input may be opened: the job on one chain, for one worker. Its [`aad`] is the
/// HPKE associated data, so a ciphertext moved to another job, worker or chain does not open.
///
/// [`aad`]: SealedInputContext::aad
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealedInputContext<'a> {
    pub chain_id: &'a str,
    pub job_id: u64,
    /// The worker's operator address (20 bytes in vichain).
    pub worker: &'a [u8],
}

/// An input sealed to one worker, as it travels on chain ([`SealedInput::encode`]).
///
/// `recipient` and `context_digest` are public and checked before decryption, so that a
/// ciphertext for another key or job is reported as such (and the ledger can check both without
/// any secret); they are also bound cryptographically (HPKE's key schedule includes the
/// recipient key, the AEAD authenticates the context), so altering them only makes opening fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedInput {
    /// The public key the input is sealed to.
    pub recipient: EncryptionPublicKey,
    /// sha256 of the AAD ([`SealedInputContext::aad`]) it was sealed under.
    pub context_digest: [u8; 32],
    /// HPKE encapsulated key (the sender's ephemeral X25519 public key).
    pub enc: [u8; ENCRYPTION_KEY_LEN],
    /// ChaCha20Poly1305 ciphertext and tag.
    pub ciphertext: Vec<u8>,
}

impl EncryptionKey {
    /// A fresh key from the operating system's random generator.
    pub fn generate() -> Self {
        let (secret, _) = Kem::gen_keypair();
        Self::from_private(secret)
    }

    /// The key RFC 9180's `DeriveKeyPair` gives for `ikm` (at least 32 bytes of secret entropy;
    /// for tests and for keys derived from a sealed TEE secret).
    pub fn derive(ikm: &[u8]) -> Result<Self> {
        if ikm.len() < ENCRYPTION_KEY_LEN {
            return Err(Error::EncryptionKeyInvalid(format!(
                "key material is {} bytes, at least {ENCRYPTION_KEY_LEN} needed",
                ikm.len()
            )));
        }
        let (secret, _) = Kem::derive_keypair(ikm);
        Ok(Self::from_private(secret))
    }

    /// The key with this 32-byte X25519 secret.
    pub fn from_secret_bytes(secret: &[u8]) -> Result<Self> {
        let secret = <Kem as hpke::Kem>::PrivateKey::from_bytes(secret).map_err(|_| {
            Error::EncryptionKeyInvalid(format!(
                "secret key is {} bytes, expected {ENCRYPTION_KEY_LEN}",
                secret.len()
            ))
        })?;
        Ok(Self::from_private(secret))
    }

    fn from_private(secret: <Kem as hpke::Kem>::PrivateKey) -> Self {
        let mut public = [0u8; ENCRYPTION_KEY_LEN];
        public.copy_from_slice(&Kem::sk_to_pk(&secret).to_bytes());
        Self {
            secret,
            public: EncryptionPublicKey(public),
        }
    }

    /// The public key to attest and publish.
    pub fn public_key(&self) -> EncryptionPublicKey {
        self.public
    }

    /// The 32-byte secret, as [`EncryptionKey::save`] writes it.
    pub fn secret_bytes(&self) -> [u8; ENCRYPTION_KEY_LEN] {
        let mut out = [0u8; ENCRYPTION_KEY_LEN];
        out.copy_from_slice(&self.secret.to_bytes());
        out
    }

    /// Writes the secret (hex, one line) to a new file readable only by its owner (0600).
    /// Refuses to overwrite an existing file, so a key in use is never lost by mistake.
    pub fn save(&self, path: &Path) -> Result<()> {
        use std::io::Write as _;
        let key_file = |reason: String| Error::KeyFile {
            path: path.display().to_string(),
            reason,
        };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(|e| key_file(e.to_string()))?;
        let secret = Zeroizing::new(self.secret_bytes());
        let mut line = Zeroizing::new(hex::encode(*secret));
        line.push('\n');
        file.write_all(line.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| key_file(e.to_string()))
    }

    /// Reads a key written by [`EncryptionKey::save`]. On unix, a file that its group or others
    /// can read is refused: the key would no longer be the worker's alone.
    pub fn load(path: &Path) -> Result<Self> {
        let key_file = |reason: String| Error::KeyFile {
            path: path.display().to_string(),
            reason,
        };
        let meta = std::fs::metadata(path).map_err(|e| key_file(e.to_string()))?;
        // A hex secret and a newline; anything much larger is not a key file.
        if meta.len() > 256 {
            return Err(key_file(format!("{} bytes is not a key file", meta.len())));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(key_file(format!(
                    "permissions {mode:o} let others read the secret key; chmod 600 it"
                )));
            }
        }
        let text =
            Zeroizing::new(std::fs::read_to_string(path).map_err(|e| key_file(e.to_string()))?);
        let secret = Zeroizing::new(
            hex::decode(text.trim()).map_err(|e| key_file(format!("not a hex secret key: {e}")))?,
        );
        Self::from_secret_bytes(&secret).map_err(|e| key_file(e.to_string()))
    }
}

impl std::fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptionKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl EncryptionPublicKey {
    /// Checks a 32-byte X25519 public key: the right length, and not a small-order point (an
    /// exchange with one gives the all-zero secret, so nothing could be sealed to it).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let key: [u8; ENCRYPTION_KEY_LEN] = bytes.try_into().map_err(|_| {
            Error::EncryptionKeyInvalid(format!(
                "public key is {} bytes, expected {ENCRYPTION_KEY_LEN}",
                bytes.len()
            ))
        })?;
        // Any clamped scalar is a multiple of the cofactor 8, so the product is the identity
        // exactly when the point has small order.
        let probe = x25519_dalek::StaticSecret::from([0x42; 32]);
        if !probe
            .diffie_hellman(&x25519_dalek::PublicKey::from(key))
            .was_contributory()
        {
            return Err(Error::EncryptionKeyInvalid(format!(
                "{} is a small-order X25519 point",
                hex::encode(key)
            )));
        }
        Ok(Self(key))
    }

    /// Parses 64 hex characters.
    pub fn from_hex(s: &str) -> Result<Self> {
        let bytes = hex::decode(s.trim())
            .map_err(|e| Error::EncryptionKeyInvalid(format!("public key is not hex: {e}")))?;
        Self::from_bytes(&bytes)
    }

    pub fn to_bytes(&self) -> [u8; ENCRYPTION_KEY_LEN] {
        self.0
    }

    pub fn as_bytes(&self) -> &[u8; ENCRYPTION_KEY_LEN] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl std::fmt::Debug for EncryptionPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EncryptionPublicKey({})", self.to_hex())
    }
}

impl std::fmt::Display for EncryptionPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl std::str::FromStr for EncryptionPublicKey {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::from_hex(s)
    }
}

impl SealedInputContext<'_> {
    /// The AAD: `"vichain/sealed-input/v1" || u32 BE len(chain_id) || chain_id || u64 BE job_id
    /// || u32 BE len(worker) || worker`. Length prefixes keep any two contexts apart.
    pub fn aad(&self) -> Vec<u8> {
        let mut aad = Vec::with_capacity(
            SEALED_INPUT_INFO.len() + 16 + self.chain_id.len() + self.worker.len(),
        );
        aad.extend_from_slice(SEALED_INPUT_INFO);
        aad.extend_from_slice(&len_be(self.chain_id.len()));
        aad.extend_from_slice(self.chain_id.as_bytes());
        aad.extend_from_slice(&self.job_id.to_be_bytes());
        aad.extend_from_slice(&len_be(self.worker.len()));
        aad.extend_from_slice(self.worker);
        aad
    }

    /// [`seal`] under this context.
    pub fn seal(&self, recipient: &EncryptionPublicKey, plaintext: &[u8]) -> Result<SealedInput> {
        seal(recipient, plaintext, &self.aad())
    }

    /// [`open`] under this context.
    pub fn open(&self, key: &EncryptionKey, sealed: &SealedInput) -> Result<Vec<u8>> {
        open(key, sealed, &self.aad())
    }
}

/// Encrypts `plaintext` (at most [`MAX_SEALED_PLAINTEXT_LEN`] bytes) to `recipient`, binding
/// `aad` (for job inputs, [`SealedInputContext::aad`]). Uses fresh OS randomness each call.
pub fn seal(recipient: &EncryptionPublicKey, plaintext: &[u8], aad: &[u8]) -> Result<SealedInput> {
    if plaintext.len() > MAX_SEALED_PLAINTEXT_LEN {
        return Err(Error::SealedInputTooLarge {
            len: plaintext.len(),
            max: MAX_SEALED_PLAINTEXT_LEN,
        });
    }
    let pk = <Kem as hpke::Kem>::PublicKey::from_bytes(recipient.as_bytes())
        .map_err(|e| Error::Seal(e.to_string()))?;
    let (enc, ciphertext) = hpke::single_shot_seal::<ChaCha20Poly1305, HkdfSha256, Kem>(
        &OpModeS::Base,
        &pk,
        SEALED_INPUT_INFO,
        plaintext,
        aad,
    )
    .map_err(|e| Error::Seal(e.to_string()))?;
    let mut enc_bytes = [0u8; ENCRYPTION_KEY_LEN];
    enc_bytes.copy_from_slice(&enc.to_bytes());
    Ok(SealedInput {
        recipient: *recipient,
        context_digest: Sha256::digest(aad).into(),
        enc: enc_bytes,
        ciphertext,
    })
}

/// Decrypts a [`SealedInput`] with the worker's key under `aad`.
///
/// Errors say why: [`Error::SealedToAnotherKey`] (not this worker's key),
/// [`Error::SealedForAnotherContext`] (another chain, job or worker), or
/// [`Error::SealedInputTampered`] (the ciphertext or encapsulated key was altered).
pub fn open(key: &EncryptionKey, sealed: &SealedInput, aad: &[u8]) -> Result<Vec<u8>> {
    sealed.check_addressed(&key.public_key(), aad)?;
    let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&sealed.enc)
        .map_err(|_| Error::SealedInputTampered)?;
    hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, Kem>(
        &OpModeR::Base,
        &key.secret,
        &enc,
        SEALED_INPUT_INFO,
        &sealed.ciphertext,
        aad,
    )
    .map_err(|_| Error::SealedInputTampered)
}

impl SealedInput {
    /// Checks, without any secret, that this input is sealed to `recipient` under `aad`: what a
    /// ledger can check before carrying a ciphertext to a worker.
    pub fn check_addressed(&self, recipient: &EncryptionPublicKey, aad: &[u8]) -> Result<()> {
        if self.recipient != *recipient {
            return Err(Error::SealedToAnotherKey {
                sealed_to: self.recipient.to_hex(),
                key: recipient.to_hex(),
            });
        }
        let digest: [u8; 32] = Sha256::digest(aad).into();
        if self.context_digest != digest {
            return Err(Error::SealedForAnotherContext);
        }
        Ok(())
    }

    /// Length of the plaintext inside.
    pub fn plaintext_len(&self) -> usize {
        self.ciphertext.len().saturating_sub(TAG_LEN)
    }

    /// `version (1) || recipient (32) || context digest (32) || enc (32) || ciphertext`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + 3 * ENCRYPTION_KEY_LEN + self.ciphertext.len());
        out.push(SEALED_INPUT_VERSION);
        out.extend_from_slice(self.recipient.as_bytes());
        out.extend_from_slice(&self.context_digest);
        out.extend_from_slice(&self.enc);
        out.extend_from_slice(&self.ciphertext);
        out
    }

    /// Decodes [`SealedInput::encode`]'s output, bounded by [`MAX_SEALED_INPUT_LEN`]. The
    /// recipient must be a valid public key; the ciphertext at least a tag long.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        if bytes.len() > MAX_SEALED_INPUT_LEN {
            return Err(Error::SealedInputTooLarge {
                len: bytes.len(),
                max: MAX_SEALED_INPUT_LEN,
            });
        }
        if bytes.len() < SEALED_INPUT_OVERHEAD {
            return Err(Error::SealedInputMalformed(format!(
                "{} bytes, at least {SEALED_INPUT_OVERHEAD} needed",
                bytes.len()
            )));
        }
        let (version, rest) = bytes.split_at(1);
        if version[0] != SEALED_INPUT_VERSION {
            return Err(Error::SealedInputMalformed(format!(
                "version {}, expected {SEALED_INPUT_VERSION}",
                version[0]
            )));
        }
        let (recipient, rest) = rest.split_at(ENCRYPTION_KEY_LEN);
        let (digest, rest) = rest.split_at(32);
        let (enc, ciphertext) = rest.split_at(ENCRYPTION_KEY_LEN);
        let mut context_digest = [0u8; 32];
        context_digest.copy_from_slice(digest);
        let mut enc_bytes = [0u8; ENCRYPTION_KEY_LEN];
        enc_bytes.copy_from_slice(enc);
        Ok(Self {
            recipient: EncryptionPublicKey::from_bytes(recipient)?,
            context_digest,
            enc: enc_bytes,
            ciphertext: ciphertext.to_vec(),
        })
    }
}

fn len_be(len: usize) -> [u8; 4] {
    u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(job_id: u64) -> SealedInputContext<'static> {
        SealedInputContext {
            chain_id: "vichain-dev",
            job_id,
            worker: &[7; 20],
        }
    }

    #[test]
    fn round_trip_through_the_encoding() {
        let key = EncryptionKey::derive(&[1; 32]).unwrap();
        let sealed = ctx(1).seal(&key.public_key(), b"hello").unwrap();
        assert_eq!(sealed.plaintext_len(), 5);
        let decoded = SealedInput::decode(&sealed.encode()).unwrap();
        assert_eq!(decoded, sealed);
        assert_eq!(ctx(1).open(&key, &decoded).unwrap(), b"hello");
    }

    #[test]
    fn contexts_are_length_prefixed() {
        let a = SealedInputContext {
            chain_id: "ab",
            job_id: 1,
            worker: b"c",
        };
        let b = SealedInputContext {
            chain_id: "a",
            job_id: 1,
            worker: b"bc",
        };
        assert_ne!(a.aad(), b.aad());
        assert!(a.aad().starts_with(SEALED_INPUT_INFO));
    }

    #[test]
    fn small_order_public_keys_are_refused() {
        let mut p_minus_1 = [0xff; 32];
        p_minus_1[0] = 0xec;
        p_minus_1[31] = 0x7f;
        for bad in [
            [0u8; 32],
            {
                let mut one = [0u8; 32];
                one[0] = 1;
                one
            },
            p_minus_1,
        ] {
            assert!(matches!(
                EncryptionPublicKey::from_bytes(&bad),
                Err(Error::EncryptionKeyInvalid(_))
            ));
        }
        assert!(EncryptionPublicKey::from_bytes(&[9; 31]).is_err());
        let key = EncryptionKey::derive(&[2; 32]).unwrap().public_key();
        assert_eq!(EncryptionPublicKey::from_bytes(key.as_bytes()), Ok(key));
    }
}
