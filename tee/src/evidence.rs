use crate::attestation::TeeKind;
use crate::error::{Error, Result};

/// Largest encoded evidence accepted, checked before anything is parsed. A TDX quote is about
/// 5 KiB and its collateral (with a large PCK CRL) up to about 20 KiB; an SNP report with its
/// certificates about 6 KiB.
pub const MAX_EVIDENCE_LEN: usize = 64 * 1024;

/// Largest collateral JSON accepted by [`Collateral::from_json`].
pub const MAX_COLLATERAL_JSON_LEN: usize = 128 * 1024;

/// Version of the byte encoding written by [`Evidence::encode`].
pub const EVIDENCE_ENCODING_VERSION: u8 = 1;

const MAGIC: &[u8; 4] = b"VTEE";

/// Attestation evidence as a worker submits it: everything a verifier needs, with no network
/// access and no trust in the worker.
///
/// Evidence travels in transactions as the bounded, versioned byte encoding of
/// [`Evidence::encode`] / [`Evidence::decode`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evidence {
    /// An AMD SEV-SNP attestation report with the VCEK that signed it.
    SevSnp(SnpEvidence),
    /// An Intel TDX quote with its collateral.
    Tdx(DcapEvidence),
    /// An Intel SGX quote with its collateral.
    Sgx(DcapEvidence),
    /// Evidence from the dev attester.
    Simulated(SimulatedEvidence),
}

/// An SEV-SNP report and the certificates that lead to AMD's root key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnpEvidence {
    /// The raw 1184-byte attestation report.
    pub report: Vec<u8>,
    /// The VCEK certificate (DER) that signed the report.
    pub vcek: Vec<u8>,
    /// Optional AMD CA chain (DER) as fetched from AMD's KDS. The ARK must be one of the pinned
    /// AMD root keys; without a chain the built-in ASK of each product is used.
    pub ca: Option<SnpCaChain>,
}

/// AMD's CA certificates for one product, DER encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnpCaChain {
    /// AMD SEV signing key, issued by the ARK, issuer of the VCEK.
    pub ask: Vec<u8>,
    /// AMD root key; must be byte-identical to a pinned one.
    pub ark: Vec<u8>,
}

/// An Intel DCAP quote (TDX or SGX) with the collateral to verify it offline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DcapEvidence {
    pub quote: Vec<u8>,
    pub collateral: Collateral,
}

/// Intel PCS/PCCS collateral for a quote: TCB info, QE identity, CRLs and their issuer chains.
///
/// Mirrors `dcap_qvl::QuoteCollateralV3`, whose JSON form [`Collateral::from_json`] reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collateral {
    pub pck_crl_issuer_chain: String,
    pub root_ca_crl: Vec<u8>,
    pub pck_crl: Vec<u8>,
    pub tcb_info_issuer_chain: String,
    pub tcb_info: String,
    pub tcb_info_signature: Vec<u8>,
    pub qe_identity_issuer_chain: String,
    pub qe_identity: String,
    pub qe_identity_signature: Vec<u8>,
    pub pck_certificate_chain: Option<String>,
}

/// Evidence from the dev attester: an ed25519 signature over the claims, with no hardware behind
/// it. Accepted only where simulated evidence is enabled, and always labelled as simulated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimulatedEvidence {
    pub public_key: [u8; 32],
    pub measurement: Vec<u8>,
    pub report_data: [u8; 64],
    /// Unix seconds after which the evidence is no longer valid.
    pub expires_at: u64,
    pub signature: [u8; 64],
}

impl Evidence {
    /// The kind of TEE this evidence claims to come from.
    pub fn kind(&self) -> TeeKind {
        match self {
            Self::SevSnp(_) => TeeKind::SevSnp,
            Self::Tdx(_) => TeeKind::Tdx,
            Self::Sgx(_) => TeeKind::Sgx,
            Self::Simulated(_) => TeeKind::Simulated,
        }
    }

    /// A DCAP quote with its collateral, labelled TDX or SGX from the quote header.
    pub fn dcap(quote: Vec<u8>, collateral: Collateral) -> Result<Self> {
        let parsed = dcap_qvl::quote::Quote::parse(&quote)
            .map_err(|e| Error::Malformed(format!("DCAP quote: {e:#}")))?;
        let evidence = DcapEvidence { quote, collateral };
        Ok(if parsed.header.is_sgx() {
            Self::Sgx(evidence)
        } else {
            Self::Tdx(evidence)
        })
    }

    /// The versioned byte encoding carried in transactions.
    ///
    /// Layout: `"VTEE" || version (u8) || kind tag (u8) || fields`, each variable-length field as a
    /// big-endian u32 length and its bytes, optional fields behind a 0/1 byte.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer(Vec::with_capacity(4096));
        w.0.extend_from_slice(MAGIC);
        w.0.push(EVIDENCE_ENCODING_VERSION);
        match self {
            Self::SevSnp(e) => {
                w.0.push(TAG_SEV_SNP);
                w.bytes(&e.report);
                w.bytes(&e.vcek);
                match &e.ca {
                    None => w.0.push(0),
                    Some(ca) => {
                        w.0.push(1);
                        w.bytes(&ca.ask);
                        w.bytes(&ca.ark);
                    }
                }
            }
            Self::Tdx(e) | Self::Sgx(e) => {
                w.0.push(if matches!(self, Self::Tdx(_)) {
                    TAG_TDX
                } else {
                    TAG_SGX
                });
                w.bytes(&e.quote);
                let c = &e.collateral;
                w.bytes(c.pck_crl_issuer_chain.as_bytes());
                w.bytes(&c.root_ca_crl);
                w.bytes(&c.pck_crl);
                w.bytes(c.tcb_info_issuer_chain.as_bytes());
                w.bytes(c.tcb_info.as_bytes());
                w.bytes(&c.tcb_info_signature);
                w.bytes(c.qe_identity_issuer_chain.as_bytes());
                w.bytes(c.qe_identity.as_bytes());
                w.bytes(&c.qe_identity_signature);
                match &c.pck_certificate_chain {
                    None => w.0.push(0),
                    Some(chain) => {
                        w.0.push(1);
                        w.bytes(chain.as_bytes());
                    }
                }
            }
            Self::Simulated(e) => {
                w.0.push(TAG_SIMULATED);
                w.0.extend_from_slice(&e.public_key);
                w.bytes(&e.measurement);
                w.0.extend_from_slice(&e.report_data);
                w.0.extend_from_slice(&e.expires_at.to_be_bytes());
                w.0.extend_from_slice(&e.signature);
            }
        }
        w.0
    }

    /// Decodes [`Evidence::encode`]'s output, rejecting oversize input before reading it, and any
    /// truncation, unknown version or kind, or trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        if bytes.len() > MAX_EVIDENCE_LEN {
            return Err(Error::TooLarge {
                len: bytes.len(),
                max: MAX_EVIDENCE_LEN,
            });
        }
        let mut r = Reader { buf: bytes };
        if r.array::<4>("magic")? != *MAGIC {
            return Err(Error::Malformed("missing VTEE magic".into()));
        }
        let version = r.u8("version")?;
        if version != EVIDENCE_ENCODING_VERSION {
            return Err(Error::UnsupportedVersion(version));
        }
        let evidence = match r.u8("kind")? {
            TAG_SEV_SNP => {
                let report = r.bytes("report")?;
                let vcek = r.bytes("vcek")?;
                let ca = if r.flag("ca")? {
                    Some(SnpCaChain {
                        ask: r.bytes("ask")?,
                        ark: r.bytes("ark")?,
                    })
                } else {
                    None
                };
                Self::SevSnp(SnpEvidence { report, vcek, ca })
            }
            tag @ (TAG_TDX | TAG_SGX) => {
                let quote = r.bytes("quote")?;
                let collateral = Collateral {
                    pck_crl_issuer_chain: r.string("pck_crl_issuer_chain")?,
                    root_ca_crl: r.bytes("root_ca_crl")?,
                    pck_crl: r.bytes("pck_crl")?,
                    tcb_info_issuer_chain: r.string("tcb_info_issuer_chain")?,
                    tcb_info: r.string("tcb_info")?,
                    tcb_info_signature: r.bytes("tcb_info_signature")?,
                    qe_identity_issuer_chain: r.string("qe_identity_issuer_chain")?,
                    qe_identity: r.string("qe_identity")?,
                    qe_identity_signature: r.bytes("qe_identity_signature")?,
                    pck_certificate_chain: if r.flag("pck_certificate_chain")? {
                        Some(r.string("pck_certificate_chain")?)
                    } else {
                        None
                    },
                };
                let e = DcapEvidence { quote, collateral };
                if tag == TAG_TDX {
                    Self::Tdx(e)
                } else {
                    Self::Sgx(e)
                }
            }
            TAG_SIMULATED => Self::Simulated(SimulatedEvidence {
                public_key: r.array("public_key")?,
                measurement: r.bytes("measurement")?,
                report_data: r.array("report_data")?,
                expires_at: u64::from_be_bytes(r.array("expires_at")?),
                signature: r.array("signature")?,
            }),
            tag => return Err(Error::Malformed(format!("unknown evidence kind tag {tag}"))),
        };
        if !r.buf.is_empty() {
            return Err(Error::Malformed(format!(
                "{} trailing bytes after evidence",
                r.buf.len()
            )));
        }
        Ok(evidence)
    }
}

impl Collateral {
    /// Reads collateral in dcap-qvl's JSON form (as `dcap_qvl::collateral::get_collateral`
    /// returns and its `sample/*_collateral.json` files hold).
    pub fn from_json(json: &[u8]) -> Result<Self> {
        if json.len() > MAX_COLLATERAL_JSON_LEN {
            return Err(Error::TooLarge {
                len: json.len(),
                max: MAX_COLLATERAL_JSON_LEN,
            });
        }
        let c: dcap_qvl::QuoteCollateralV3 =
            serde_json::from_slice(json).map_err(|e| Error::Collateral(e.to_string()))?;
        Ok(c.into())
    }

    /// The JSON form read by [`Collateral::from_json`].
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing plain strings and byte vectors cannot fail.
        serde_json::to_vec(&self.to_dcap()).unwrap_or_default()
    }

    pub(crate) fn to_dcap(&self) -> dcap_qvl::QuoteCollateralV3 {
        dcap_qvl::QuoteCollateralV3 {
            pck_crl_issuer_chain: self.pck_crl_issuer_chain.clone(),
            root_ca_crl: self.root_ca_crl.clone(),
            pck_crl: self.pck_crl.clone(),
            tcb_info_issuer_chain: self.tcb_info_issuer_chain.clone(),
            tcb_info: self.tcb_info.clone(),
            tcb_info_signature: self.tcb_info_signature.clone(),
            qe_identity_issuer_chain: self.qe_identity_issuer_chain.clone(),
            qe_identity: self.qe_identity.clone(),
            qe_identity_signature: self.qe_identity_signature.clone(),
            pck_certificate_chain: self.pck_certificate_chain.clone(),
        }
    }
}

impl From<dcap_qvl::QuoteCollateralV3> for Collateral {
    fn from(c: dcap_qvl::QuoteCollateralV3) -> Self {
        Self {
            pck_crl_issuer_chain: c.pck_crl_issuer_chain,
            root_ca_crl: c.root_ca_crl,
            pck_crl: c.pck_crl,
            tcb_info_issuer_chain: c.tcb_info_issuer_chain,
            tcb_info: c.tcb_info,
            tcb_info_signature: c.tcb_info_signature,
            qe_identity_issuer_chain: c.qe_identity_issuer_chain,
            qe_identity: c.qe_identity,
            qe_identity_signature: c.qe_identity_signature,
            pck_certificate_chain: c.pck_certificate_chain,
        }
    }
}

impl SnpCaChain {
    /// Reads AMD KDS's `cert_chain` PEM bundle (ASK first, then ARK).
    pub fn from_pem(pem: &[u8]) -> Result<Self> {
        let text = std::str::from_utf8(pem)
            .map_err(|_| Error::Malformed("AMD cert chain is not PEM text".into()))?;
        const END: &str = "-----END CERTIFICATE-----";
        let mut certs = Vec::new();
        let mut rest = text;
        while let Some(end) = rest.find(END) {
            let (block, tail) = rest.split_at(end + END.len());
            let cert = sev::certs::snp::Certificate::from_pem(block.trim().as_bytes())
                .and_then(|c| c.to_der())
                .map_err(|e| Error::CertificateMalformed {
                    cert: "CA chain",
                    reason: e.to_string(),
                })?;
            certs.push(cert);
            rest = tail;
        }
        match <[Vec<u8>; 2]>::try_from(certs) {
            Ok([ask, ark]) => Ok(Self { ask, ark }),
            Err(certs) => Err(Error::Malformed(format!(
                "AMD cert chain holds {} certificates, expected ASK and ARK",
                certs.len()
            ))),
        }
    }
}

const TAG_SEV_SNP: u8 = 1;
const TAG_TDX: u8 = 2;
const TAG_SGX: u8 = 3;
const TAG_SIMULATED: u8 = 4;

struct Writer(Vec<u8>);

impl Writer {
    fn bytes(&mut self, b: &[u8]) {
        // Every field of decodable evidence is shorter than MAX_EVIDENCE_LEN, so fits in a u32;
        // a longer one is written with a saturated length that decode rejects.
        let len = u32::try_from(b.len()).unwrap_or(u32::MAX);
        self.0.extend_from_slice(&len.to_be_bytes());
        self.0.extend_from_slice(b);
    }
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &str) -> Result<&'a [u8]> {
        if self.buf.len() < n {
            return Err(Error::Malformed(format!(
                "truncated at {field}: needs {n} bytes, {} left",
                self.buf.len()
            )));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, field: &str) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    fn u8(&mut self, field: &str) -> Result<u8> {
        Ok(self.array::<1>(field)?[0])
    }

    fn flag(&mut self, field: &str) -> Result<bool> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(Error::Malformed(format!("{field}: presence byte {b}"))),
        }
    }

    fn bytes(&mut self, field: &str) -> Result<Vec<u8>> {
        let len = u32::from_be_bytes(self.array(field)?);
        let len = usize::try_from(len).map_err(|_| Error::Malformed(format!("{field}: length")))?;
        Ok(self.take(len, field)?.to_vec())
    }

    fn string(&mut self, field: &str) -> Result<String> {
        String::from_utf8(self.bytes(field)?)
            .map_err(|_| Error::Malformed(format!("{field} is not UTF-8")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn simulated() -> Evidence {
        Evidence::Simulated(SimulatedEvidence {
            public_key: [1; 32],
            measurement: vec![2; 48],
            report_data: [3; 64],
            expires_at: 1_700_000_000,
            signature: [4; 64],
        })
    }

    #[test]
    fn encoding_round_trips() {
        let snp = Evidence::SevSnp(SnpEvidence {
            report: vec![1, 2, 3],
            vcek: vec![4, 5],
            ca: Some(SnpCaChain {
                ask: vec![6],
                ark: vec![7],
            }),
        });
        for e in [simulated(), snp] {
            assert_eq!(Evidence::decode(&e.encode()), Ok(e));
        }
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = simulated().encode();
        for n in 0..bytes.len() {
            assert!(Evidence::decode(&bytes[..n]).is_err(), "prefix {n}");
        }
    }

    #[test]
    fn trailing_bytes_unknown_version_and_kind_are_rejected() {
        let mut bytes = simulated().encode();
        bytes.push(0);
        assert!(matches!(Evidence::decode(&bytes), Err(Error::Malformed(_))));
        let mut bytes = simulated().encode();
        bytes[4] = 9;
        assert_eq!(Evidence::decode(&bytes), Err(Error::UnsupportedVersion(9)));
        let mut bytes = simulated().encode();
        bytes[5] = 99;
        assert!(matches!(Evidence::decode(&bytes), Err(Error::Malformed(_))));
    }

    #[test]
    fn huge_length_prefix_does_not_allocate_or_panic() {
        let mut bytes = b"VTEE\x01\x01".to_vec();
        bytes.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(Evidence::decode(&bytes), Err(Error::Malformed(_))));
    }
}
