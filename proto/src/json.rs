//! Helpers of the generated JSON view of the wire types (see `build.rs` for its
//! rules): hex bytes, bech32 addresses, enums by name. Used through the
//! `#[serde(with = ...)]` attributes the build script puts on the generated types.

use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

/// The JSON view of a wire type (`Null` if it cannot be rendered, which the generated
/// implementations never do).
pub fn view<T: serde::Serialize>(message: &T) -> serde_json::Value {
    serde_json::to_value(message).unwrap_or(serde_json::Value::Null)
}

/// Human-readable prefix of bech32 account addresses.
pub const ADDRESS_HRP: &str = "vichain";
/// Bytes of an account address.
pub const ADDRESS_BYTES: usize = 20;

/// `bytes` as lowercase hex.
pub mod hex {
    use super::*;

    /// Serializes as hex.
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&::hex::encode(v))
    }

    /// Reads hex.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        ::hex::decode(&s).map_err(|e| D::Error::custom(format!("{s:?} is not hex: {e}")))
    }
}

/// `repeated bytes` as a list of hex strings.
pub mod hex_list {
    use super::*;

    /// Serializes as a list of hex strings.
    pub fn serialize<S: Serializer>(v: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(::hex::encode))
    }

    /// Reads a list of hex strings.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|s| ::hex::decode(s).map_err(|e| D::Error::custom(format!("{s:?}: {e}"))))
            .collect()
    }
}

/// The bech32 form of an address (`vichain1...`); hex for bytes that are not an
/// address (empty stays empty).
pub fn address_string(bytes: &[u8]) -> String {
    if bytes.len() != ADDRESS_BYTES {
        return ::hex::encode(bytes);
    }
    let hrp = bech32::Hrp::parse_unchecked(ADDRESS_HRP);
    bech32::encode::<bech32::Bech32>(hrp, bytes).unwrap_or_else(|_| ::hex::encode(bytes))
}

/// Reads an address as bech32 with the `vichain` prefix or as hex (empty: none).
pub fn parse_address(s: &str) -> Result<Vec<u8>, String> {
    if s.is_empty() {
        return Ok(Vec::new());
    }
    if let Ok((hrp, bytes)) = bech32::decode(s) {
        if hrp.as_str() != ADDRESS_HRP {
            return Err(format!("{s:?}: prefix {hrp}, expected {ADDRESS_HRP}"));
        }
        return Ok(bytes);
    }
    ::hex::decode(s).map_err(|e| format!("{s:?} is neither a bech32 address nor hex: {e}"))
}

/// An address field as bech32.
pub mod address {
    use super::*;

    /// Serializes as bech32.
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&address_string(v))
    }

    /// Reads bech32 or hex.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        parse_address(&String::deserialize(d)?).map_err(D::Error::custom)
    }
}

/// A list of addresses as bech32.
pub mod address_list {
    use super::*;

    /// Serializes as bech32 strings.
    pub fn serialize<S: Serializer>(v: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|a| address_string(a)))
    }

    /// Reads bech32 or hex strings.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|s| parse_address(s).map_err(D::Error::custom))
            .collect()
    }
}

/// An enum field (an `i32` on the wire) by name, or its number when unknown; reads
/// either.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum NameOrNumber {
    /// The proto name.
    Name(String),
    /// The number.
    Number(i32),
}

/// Generates the serde module of one enum's fields.
macro_rules! enum_field {
    ($module:ident, $enum:ident) => {
        #[doc = concat!("`", stringify!($enum), "` fields by name.")]
        pub mod $module {
            use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

            use $crate::json::NameOrNumber;

            /// Serializes the name (the number if unknown).
            pub fn serialize<S: Serializer>(v: &i32, s: S) -> Result<S::Ok, S::Error> {
                match super::$enum::try_from(*v) {
                    Ok(e) => s.serialize_str(e.as_str_name()),
                    Err(_) => s.serialize_i32(*v),
                }
            }

            /// Reads a name or a number.
            pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
                match NameOrNumber::deserialize(d)? {
                    NameOrNumber::Number(n) => Ok(n),
                    NameOrNumber::Name(s) => super::$enum::from_str_name(&s)
                        .map(|e| e as i32)
                        .ok_or_else(|| {
                            D::Error::custom(format!("{s:?} is not a {}", stringify!($enum)))
                        }),
                }
            }
        }
    };
}
pub(crate) use enum_field;

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::v1 as pb;

    fn job() -> pb::Job {
        pb::Job {
            id: 7,
            model_id: "digits".into(),
            client: vec![0x11; 20],
            input: vec![1, 2, 255],
            status: pb::JobStatus::Finalized as i32,
            privacy: pb::PrivacyMode::Sealed as i32,
            output: Some(pb::InferenceOutput {
                value: Some(pb::inference_output::Value::Argmax(3)),
            }),
            assignments: vec![pb::Assignment {
                operator: vec![0x22; 20],
                verdict: pb::Verdict::Agreed as i32,
                commitment: vec![0xab],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn wire_types_read_as_hex_bech32_names_and_numbers() {
        let v = serde_json::to_value(job()).unwrap();
        assert_eq!(v["id"], 7);
        assert_eq!(v["input"], "0102ff");
        assert_eq!(v["status"], "JOB_STATUS_FINALIZED");
        assert_eq!(v["privacy"], "PRIVACY_MODE_SEALED");
        assert_eq!(v["output"], json!({"value": {"argmax": 3}}));
        assert_eq!(v["prover"], "", "an empty address stays empty");
        let client = v["client"].as_str().unwrap();
        assert!(client.starts_with("vichain1"), "{client}");
        assert_eq!(super::parse_address(client).unwrap(), vec![0x11; 20]);
        assert_eq!(v["assignments"][0]["verdict"], "VERDICT_AGREED");
        assert_eq!(v["assignments"][0]["commitment"], "ab");
    }

    #[test]
    fn the_view_reads_back_into_the_same_message() {
        let v = serde_json::to_value(job()).unwrap();
        let back: pb::Job = serde_json::from_value(v).unwrap();
        assert_eq!(back, job());
        // Missing fields are defaults; enums may be numbers; addresses may be hex.
        let partial: pb::Job = serde_json::from_value(json!({
            "id": 1, "status": 4, "client": "11".repeat(20)
        }))
        .unwrap();
        assert_eq!(partial.status, 4);
        assert_eq!(partial.client, vec![0x11; 20]);
    }

    #[test]
    fn bad_json_is_refused_naming_what_is_wrong() {
        let err = |v| {
            serde_json::from_value::<pb::Job>(v)
                .unwrap_err()
                .to_string()
        };
        assert!(err(json!({"input": "xyz"})).contains("not hex"));
        assert!(err(json!({"status": "JOB_STATUS_NOPE"})).contains("not a JobStatus"));
        assert!(err(json!({"client": "cosmos1qqqq"})).contains("neither"));
        let wrong_prefix = {
            let hrp = bech32::Hrp::parse_unchecked("cosmos");
            bech32::encode::<bech32::Bech32>(hrp, &[0u8; 20]).unwrap()
        };
        assert!(err(json!({ "client": wrong_prefix })).contains("expected vichain"));
    }
}
