//! Account keys and addresses. An address is the first 20 bytes of sha256 of an
//! ed25519 public key, shown as bech32 with the `vichain` prefix.

use bech32::{Bech32, Hrp};
use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::TxError;

/// Human-readable prefix of bech32 addresses (one definition, shared with the wire
/// types' JSON view).
pub const ADDRESS_HRP: &str = vichain_proto::json::ADDRESS_HRP;

/// A 20-byte account address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address(pub [u8; 20]);

impl Address {
    pub fn from_public_key(key: &VerifyingKey) -> Self {
        let digest = Sha256::digest(key.as_bytes());
        let mut out = [0u8; 20];
        out.copy_from_slice(&digest[..20]);
        Self(out)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TxError> {
        let arr: [u8; 20] = bytes.try_into().map_err(|_| {
            TxError::invalid("address", format!("{} bytes, expected 20", bytes.len()))
        })?;
        Ok(Self(arr))
    }

    pub fn as_bytes(&self) -> &[u8; 20] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The prefix is a valid constant and 20 bytes always fit a bech32 string.
        let hrp = Hrp::parse_unchecked(ADDRESS_HRP);
        match bech32::encode::<Bech32>(hrp, &self.0) {
            Ok(s) => f.write_str(&s),
            Err(_) => write!(f, "0x{}", self.to_hex()),
        }
    }
}

impl std::fmt::Debug for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Address({self})")
    }
}

impl std::str::FromStr for Address {
    type Err = TxError;

    /// Accepts bech32 (`vichain1...`) or 40 hex digits.
    fn from_str(s: &str) -> Result<Self, TxError> {
        if s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            let bytes = hex::decode(s).map_err(|e| TxError::invalid("address", e.to_string()))?;
            return Self::from_bytes(&bytes);
        }
        let (hrp, data) =
            bech32::decode(s).map_err(|e| TxError::invalid("address", format!("{s:?}: {e}")))?;
        if hrp.as_str() != ADDRESS_HRP {
            return Err(TxError::invalid(
                "address",
                format!("{s:?} has prefix {hrp}, expected {ADDRESS_HRP}"),
            ));
        }
        Self::from_bytes(&data)
    }
}

/// Parses a 32-byte ed25519 public key.
pub fn parse_public_key(bytes: &[u8], field: &'static str) -> Result<VerifyingKey, TxError> {
    let arr: [u8; 32] = bytes
        .try_into()
        .map_err(|_| TxError::invalid(field, format!("{} bytes, expected 32", bytes.len())))?;
    VerifyingKey::from_bytes(&arr).map_err(|_| TxError::invalid(field, "not a valid ed25519 point"))
}

/// The well-known key of `vichaind dev`'s prefunded account. It is derived from a
/// public string, like the test accounts of other dev chains: never fund it on a
/// real network.
pub fn dev_signing_key() -> SigningKey {
    let seed: [u8; 32] =
        Sha256::digest(b"vichain dev account: never use outside vichaind dev").into();
    SigningKey::from_bytes(&seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_round_trips_through_bech32_and_hex() {
        let addr = Address::from_public_key(&dev_signing_key().verifying_key());
        let s = addr.to_string();
        assert!(s.starts_with("vichain1"), "{s}");
        assert_eq!(s.parse::<Address>().unwrap(), addr);
        assert_eq!(addr.to_hex().parse::<Address>().unwrap(), addr);
    }

    #[test]
    fn bad_addresses_are_named() {
        assert!(
            "cosmos1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqnrql8a"
                .parse::<Address>()
                .is_err()
        );
        let err = "vichain1zzz".parse::<Address>().unwrap_err();
        assert_eq!(err.code(), 14);
    }
}
