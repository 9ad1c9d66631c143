//! Compiles the worker network's p2p messages with a vendored `protoc`, so a fresh machine
//! needs no system protobuf compiler.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["vichain/split/v1/split.proto"];
    println!("cargo:rerun-if-changed=proto/vichain/split/v1/split.proto");
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    config.compile_protos(&protos, &["proto"])?;
    Ok(())
}
