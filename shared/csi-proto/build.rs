//! Compiles `proto/csi.proto` with protox (pure Rust, so no `protoc` on the build machine) and
//! generates prost messages plus tonic clients and servers.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/csi.proto");
    println!("cargo:rerun-if-changed=build.rs");

    // The google/protobuf imports must be in the set (prost-build inspects them when deriving),
    // but map to prost-types through prost-build's default extern paths, so no code is generated
    // for them. descriptor.proto is only there for the option markers, which prost ignores.
    let mut compiler = protox::Compiler::new(["proto"])?;
    compiler
        .include_source_info(true)
        .include_imports(true)
        .open_files(["proto/csi.proto"])?;
    let fds = compiler.file_descriptor_set();

    // Keep the descriptor set for gRPC reflection and the layout tests, without source info.
    compiler.include_source_info(false);
    let full = compiler.encode_file_descriptor_set();
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("csi_descriptor.bin"), full)?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
