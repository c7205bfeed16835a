//! Generates the gRPC code with a vendored protoc, so a fresh machine needs
//! no protobuf install.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .bytes(".")
        // For gRPC server reflection.
        .file_descriptor_set_path(out.join("strata_descriptor.bin"))
        .compile_with_config(config, &["proto/strata.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto/strata.proto");
    Ok(())
}
