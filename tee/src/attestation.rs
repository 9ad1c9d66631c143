use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// What a verifier learned from genuine evidence.
///
/// Produced only by [`Verifier::verify`](crate::Verifier::verify); checking it against a model's
/// [`Policy`](crate::Policy) and against the worker's key ([`check_binding`](crate::check_binding))
/// are separate steps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifiedAttestation {
    /// Which TEE produced the evidence.
    pub kind: TeeKind,
    /// The launch measurement: SNP `MEASUREMENT` (48 bytes), TDX `MRTD` (48 bytes), SGX
    /// `MRENCLAVE` (32 bytes), or the simulated measurement.
    #[serde(with = "hex_vec")]
    pub measurement: Vec<u8>,
    /// The vendor's verdict on the platform's TCB; [`TcbStatus::Unrated`] for SEV-SNP (see
    /// [`SnpClaims::reported_tcb`]) and simulated evidence.
    pub tcb_status: TcbStatus,
    /// Security advisories that apply to the platform's TCB (Intel only).
    pub advisory_ids: Vec<String>,
    /// The 64 bytes the guest or enclave chose to sign; see [`check_binding`](crate::check_binding).
    #[serde(with = "hex_array")]
    pub report_data: [u8; 64],
    /// Unix seconds after which the evidence must not be trusted: the earliest expiry of the
    /// certificates and collateral it was verified with.
    pub valid_until: u64,
    /// The guest or enclave runs in debug mode (its memory is readable by the host).
    pub debug: bool,
    /// Produced by the dev attester: no hardware stands behind it.
    pub simulated: bool,
    /// Kind-specific claims.
    pub claims: Claims,
}

impl VerifiedAttestation {
    /// Whether the attestation still counts at `at` (unix seconds).
    pub fn check_valid_at(&self, at: u64) -> Result<()> {
        if at > self.valid_until {
            return Err(Error::Expired {
                valid_until: self.valid_until,
                at,
            });
        }
        Ok(())
    }

    /// The measurement as lower-case hex.
    pub fn measurement_hex(&self) -> String {
        hex::encode(&self.measurement)
    }
}

/// Kind-specific claims of a [`VerifiedAttestation`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Claims {
    SevSnp(SnpClaims),
    Tdx(TdxClaims),
    Sgx(SgxClaims),
    Simulated,
}

/// Claims of an AMD SEV-SNP attestation report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnpClaims {
    /// The processor family whose AMD root key anchors the chain.
    pub product: SnpProduct,
    /// Report format version.
    pub version: u32,
    /// Guest policy bits (debug, migration, SMT, ...).
    pub policy: u64,
    /// Virtual machine privilege level that requested the report.
    pub vmpl: u32,
    /// Guest security version number from the ID block.
    pub guest_svn: u32,
    /// TCB version the VCEK was derived from (and certifies).
    pub reported_tcb: SnpTcb,
    #[serde(with = "hex_vec")]
    pub host_data: Vec<u8>,
    #[serde(with = "hex_vec")]
    pub family_id: Vec<u8>,
    #[serde(with = "hex_vec")]
    pub image_id: Vec<u8>,
    #[serde(with = "hex_vec")]
    pub id_key_digest: Vec<u8>,
    #[serde(with = "hex_vec")]
    pub chip_id: Vec<u8>,
}

/// Claims of an Intel TDX quote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TdxClaims {
    #[serde(with = "hex_vec")]
    pub mr_td: Vec<u8>,
    /// RTMR0..RTMR3, 48 bytes each.
    #[serde(with = "hex_vecs")]
    pub rtmrs: Vec<Vec<u8>>,
    #[serde(with = "hex_vec")]
    pub mr_seam: Vec<u8>,
    #[serde(with = "hex_vec")]
    pub mr_config_id: Vec<u8>,
    #[serde(with = "hex_vec")]
    pub mr_owner: Vec<u8>,
    #[serde(with = "hex_vec")]
    pub mr_owner_config: Vec<u8>,
    #[serde(with = "hex_vec")]
    pub td_attributes: Vec<u8>,
    #[serde(with = "hex_vec")]
    pub tee_tcb_svn: Vec<u8>,
}

/// Claims of an Intel SGX quote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SgxClaims {
    #[serde(with = "hex_vec")]
    pub mr_enclave: Vec<u8>,
    #[serde(with = "hex_vec")]
    pub mr_signer: Vec<u8>,
    pub isv_prod_id: u16,
    pub isv_svn: u16,
    #[serde(with = "hex_vec")]
    pub attributes: Vec<u8>,
    #[serde(with = "hex_vec")]
    pub cpu_svn: Vec<u8>,
}

/// A kind of trusted execution environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TeeKind {
    /// AMD SEV-SNP confidential VM.
    SevSnp,
    /// Intel TDX trust domain.
    Tdx,
    /// Intel SGX enclave.
    Sgx,
    /// The dev attester: no hardware.
    Simulated,
}

impl TeeKind {
    /// All kinds, in tag order.
    pub const ALL: [TeeKind; 4] = [Self::SevSnp, Self::Tdx, Self::Sgx, Self::Simulated];

    /// The stable name used in configuration, JSON and the CLI.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::SevSnp => "sev-snp",
            Self::Tdx => "tdx",
            Self::Sgx => "sgx",
            Self::Simulated => "simulated",
        }
    }
}

impl fmt::Display for TeeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TeeKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| Error::Malformed(format!("unknown TEE kind {s:?}")))
    }
}

/// The vendor's verdict on a platform's trusted computing base.
///
/// The Intel statuses are those of Intel's TCB info; they are ranked from best to worst in the
/// order of the variants here (see [`TcbStatus::rank`]), which is how a policy's minimum is
/// applied. AMD publishes no status for an SEV-SNP TCB, so SNP evidence is `Unrated` and a policy
/// constrains it with a minimum TCB version instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TcbStatus {
    UpToDate,
    SWHardeningNeeded,
    ConfigurationNeeded,
    ConfigurationAndSWHardeningNeeded,
    TDRelaunchAdvised,
    TDRelaunchAdvisedConfigurationNeeded,
    OutOfDate,
    OutOfDateConfigurationNeeded,
    Revoked,
    /// No vendor status: SEV-SNP or simulated evidence.
    Unrated,
}

impl TcbStatus {
    /// All statuses, best first.
    pub const ALL: [TcbStatus; 10] = [
        Self::UpToDate,
        Self::SWHardeningNeeded,
        Self::ConfigurationNeeded,
        Self::ConfigurationAndSWHardeningNeeded,
        Self::TDRelaunchAdvised,
        Self::TDRelaunchAdvisedConfigurationNeeded,
        Self::OutOfDate,
        Self::OutOfDateConfigurationNeeded,
        Self::Revoked,
        Self::Unrated,
    ];

    /// Intel's name for the status.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::UpToDate => "UpToDate",
            Self::SWHardeningNeeded => "SWHardeningNeeded",
            Self::ConfigurationNeeded => "ConfigurationNeeded",
            Self::ConfigurationAndSWHardeningNeeded => "ConfigurationAndSWHardeningNeeded",
            Self::TDRelaunchAdvised => "TDRelaunchAdvised",
            Self::TDRelaunchAdvisedConfigurationNeeded => "TDRelaunchAdvisedConfigurationNeeded",
            Self::OutOfDate => "OutOfDate",
            Self::OutOfDateConfigurationNeeded => "OutOfDateConfigurationNeeded",
            Self::Revoked => "Revoked",
            Self::Unrated => "Unrated",
        }
    }

    /// Rank, higher is better; `None` for statuses that can never meet a minimum.
    pub const fn rank(self) -> Option<u8> {
        match self {
            Self::UpToDate => Some(7),
            Self::SWHardeningNeeded => Some(6),
            Self::ConfigurationNeeded => Some(5),
            Self::ConfigurationAndSWHardeningNeeded => Some(4),
            Self::TDRelaunchAdvised => Some(3),
            Self::TDRelaunchAdvisedConfigurationNeeded => Some(2),
            Self::OutOfDate => Some(1),
            Self::OutOfDateConfigurationNeeded => Some(0),
            Self::Revoked | Self::Unrated => None,
        }
    }

    /// Whether this status is at least as good as `minimum`.
    pub fn meets(self, minimum: TcbStatus) -> bool {
        match (self.rank(), minimum.rank()) {
            (Some(have), Some(need)) => have >= need,
            _ => false,
        }
    }
}

impl fmt::Display for TcbStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TcbStatus {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| Error::UnknownTcbStatus(s.to_owned()))
    }
}

/// The SEV-SNP processor families whose AMD root keys are pinned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SnpProduct {
    Milan,
    Genoa,
    Turin,
}

impl SnpProduct {
    pub const ALL: [SnpProduct; 3] = [Self::Milan, Self::Genoa, Self::Turin];
}

impl fmt::Display for SnpProduct {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Milan => "Milan",
            Self::Genoa => "Genoa",
            Self::Turin => "Turin",
        })
    }
}

/// Security version numbers of an SEV-SNP platform's firmware components.
///
/// A policy minimum is met when every component is at least the minimum's (`fmc` only exists from
/// Turin on and is compared when both sides have it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SnpTcb {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fmc: Option<u8>,
    pub bootloader: u8,
    pub tee: u8,
    pub snp: u8,
    pub microcode: u8,
}

impl SnpTcb {
    /// Whether every component is at least `minimum`'s.
    pub fn meets(&self, minimum: &SnpTcb) -> bool {
        let fmc_ok = match (self.fmc, minimum.fmc) {
            (Some(have), Some(need)) => have >= need,
            (None, Some(need)) => need == 0,
            _ => true,
        };
        fmc_ok
            && self.bootloader >= minimum.bootloader
            && self.tee >= minimum.tee
            && self.snp >= minimum.snp
            && self.microcode >= minimum.microcode
    }
}

impl fmt::Display for SnpTcb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(fmc) = self.fmc {
            write!(f, "fmc={fmc} ")?;
        }
        write!(
            f,
            "bl={} tee={} snp={} ucode={}",
            self.bootloader, self.tee, self.snp, self.microcode
        )
    }
}

/// Serde as a lower-case hex string.
pub(crate) mod hex_vec {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(s).map_err(serde::de::Error::custom)
    }
}

/// Serde of a list of byte strings as hex strings.
pub(crate) mod hex_vecs {
    use serde::{Deserialize, Deserializer, Serializer, ser::SerializeSeq};

    pub fn serialize<S: Serializer>(items: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(items.len()))?;
        for item in items {
            seq.serialize_element(&hex::encode(item))?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        Vec::<String>::deserialize(d)?
            .into_iter()
            .map(|s| hex::decode(s).map_err(serde::de::Error::custom))
            .collect()
    }
}

/// Serde of a fixed-size byte array as a hex string.
pub(crate) mod hex_array {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer, const N: usize>(
        bytes: &[u8; N],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[u8; N], D::Error> {
        let s = String::deserialize(d)?;
        let bytes = hex::decode(s).map_err(serde::de::Error::custom)?;
        bytes
            .try_into()
            .map_err(|v: Vec<u8>| serde::de::Error::invalid_length(v.len(), &"a fixed-size array"))
    }
}

/// Serde of an optional set of byte strings as hex strings.
pub(crate) mod hex_set_opt {
    use std::collections::BTreeSet;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        items: &Option<BTreeSet<Vec<u8>>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match items {
            None => s.serialize_none(),
            Some(set) => s.collect_seq(set.iter().map(hex::encode)),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<BTreeSet<Vec<u8>>>, D::Error> {
        Option::<Vec<String>>::deserialize(d)?
            .map(|v| {
                v.into_iter()
                    .map(|s| hex::decode(s).map_err(serde::de::Error::custom))
                    .collect()
            })
            .transpose()
    }
}
