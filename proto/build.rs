//! Compiles the wire contract at build time with a vendored `protoc`, so a fresh
//! machine needs no system protobuf compiler.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "vichain/v1/tx.proto",
        "vichain/v1/state.proto",
        "vichain/v1/node.proto",
    ];
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("vichain_descriptor.bin"))
        .compile_with_config(config, &protos, &["."])?;
    Ok(())
}
