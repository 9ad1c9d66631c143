//! Compiles the wire contract at build time with a vendored `protoc`, so a fresh
//! machine needs no system protobuf compiler, and generates the one JSON view of the
//! wire types: serde implementations whose rules are read from the descriptors here.
//!
//! The JSON view (shared by the CLI's `--json`, the dashboard's API and the tests):
//! field names as in the `.proto` files; integers as JSON numbers; `bytes` as lowercase
//! hex, except the fields in [`ADDRESS_FIELDS`], which hold 20-byte account addresses
//! and read as bech32 (`vichain1...`); enum fields by their proto name
//! (`JOB_STATUS_FINALIZED`); a oneof as an object with one key, the chosen field's name.
//! Decoding accepts what encoding produces (and numbers for enums, hex for addresses).

use std::{fmt::Write as _, path::PathBuf};

use prost_types::{
    DescriptorProto, FileDescriptorSet,
    field_descriptor_proto::{Label, Type},
};

/// Fields holding an account address (20 bytes), shown as bech32.
const ADDRESS_FIELDS: &[&str] = &[
    ".vichain.v1.Account.address",
    ".vichain.v1.Model.owner",
    ".vichain.v1.Worker.operator",
    ".vichain.v1.Assignment.operator",
    ".vichain.v1.OperatorSet.operators",
    ".vichain.v1.Job.client",
    ".vichain.v1.Job.prover",
    ".vichain.v1.TxBody.signer",
    ".vichain.v1.Transfer.to",
    ".vichain.v1.Stage.operator",
    ".vichain.v1.SealedCopy.operator",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "vichain/v1/tx.proto",
        "vichain/v1/state.proto",
        "vichain/v1/node.proto",
    ];
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    config.file_descriptor_set_path(out_dir.join("vichain_descriptor.bin"));
    let fds = config.load_fds(&protos, &["."])?;
    let helpers = json_view(&fds, &mut config)?;
    std::fs::write(out_dir.join("vichain.v1.json.rs"), helpers)?;
    tonic_prost_build::configure().compile_fds_with_config(fds, config)?;
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    Ok(())
}

/// Adds the serde attributes of the JSON view to `config`, and returns the code of
/// the per-enum (de)serializers the attributes name.
fn json_view(
    fds: &FileDescriptorSet,
    config: &mut prost_build::Config,
) -> Result<String, Box<dyn std::error::Error>> {
    let mut code = String::new();
    let mut seen_addresses = Vec::new();
    for file in fds.file.iter().filter(|f| f.package() == "vichain.v1") {
        for e in &file.enum_type {
            let name = e.name();
            writeln!(
                code,
                "crate::json::enum_field!({}, {name});",
                enum_module(name)
            )?;
        }
        for m in &file.message_type {
            message(
                &format!(".vichain.v1.{}", m.name()),
                m,
                config,
                &mut seen_addresses,
            )?;
        }
    }
    for a in ADDRESS_FIELDS {
        if !seen_addresses.contains(&a.to_string()) {
            return Err(format!("ADDRESS_FIELDS names {a}, which is not a bytes field").into());
        }
    }
    Ok(code)
}

fn message(
    path: &str,
    m: &DescriptorProto,
    config: &mut prost_build::Config,
    addresses: &mut Vec<String>,
) -> Result<(), Box<dyn std::error::Error>> {
    config.message_attribute(
        path,
        "#[derive(serde::Serialize, serde::Deserialize)] #[serde(default)]",
    );
    for o in &m.oneof_decl {
        config.enum_attribute(
            format!("{path}.{}", o.name()),
            "#[derive(serde::Serialize, serde::Deserialize)] #[serde(rename_all = \"snake_case\")]",
        );
    }
    for f in &m.field {
        let field = format!("{path}.{}", f.name());
        // A oneof member's attribute goes on its variant: `.Message.oneof.field`.
        let target = match f.oneof_index {
            Some(i) if !f.proto3_optional() => {
                let oneof = m.oneof_decl[usize::try_from(i)?].name();
                format!("{path}.{oneof}.{}", f.name())
            }
            _ => field.clone(),
        };
        let repeated = f.label() == Label::Repeated;
        let with = match f.r#type() {
            Type::Bytes if ADDRESS_FIELDS.contains(&field.as_str()) => {
                addresses.push(field.clone());
                Some(
                    if repeated {
                        "crate::json::address_list"
                    } else {
                        "crate::json::address"
                    }
                    .to_owned(),
                )
            }
            Type::Bytes => Some(
                if repeated {
                    "crate::json::hex_list"
                } else {
                    "crate::json::hex"
                }
                .to_owned(),
            ),
            Type::Enum if repeated => {
                return Err(format!("{field}: a repeated enum field has no JSON view yet").into());
            }
            Type::Enum => {
                let name = f.type_name().rsplit('.').next().unwrap_or_default();
                Some(format!("crate::v1::{}", enum_module(name)))
            }
            _ => None,
        };
        if let Some(with) = with {
            config.field_attribute(target, format!("#[serde(with = \"{with}\")]"));
        }
    }
    for nested in &m.nested_type {
        message(
            &format!("{path}.{}", nested.name()),
            nested,
            config,
            addresses,
        )?;
    }
    Ok(())
}

/// `JobStatus` -> `serde_job_status`.
fn enum_module(name: &str) -> String {
    let mut s = String::from("serde");
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            s.push('_');
            s.push(c.to_ascii_lowercase());
        } else {
            s.push(c);
        }
    }
    s
}
