//! Compiles proto/runtime.proto and proto/builder.proto with protox (pure Rust), so no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/runtime.proto", "proto/builder.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    // The shared messages (crates/wire) are imported, not generated again.
    println!("cargo:rerun-if-changed=../wire/proto/container/wire/v1/wire.proto");
    let descriptors = protox::compile(protos, ["proto", "../wire/proto"])?;
    tonic_prost_build::configure()
        .extern_path(".container.wire.v1", "::wire::v1")
        .compile_fds(descriptors)?;
    Ok(())
}
