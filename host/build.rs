//! Generates the gRPC code from `proto/` and a file descriptor set for
//! server reflection.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("switchyard_descriptor.bin"))
        .compile_protos(
            &[
                "proto/switchyard/v1/events.proto",
                "proto/switchyard/v1/plugins.proto",
                "proto/switchyard/v1/routes.proto",
            ],
            &["proto"],
        )?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
