//! Compiles proto/agent.proto with protox (pure Rust), so no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/agent.proto";
    println!("cargo:rerun-if-changed={proto}");
    // The shared messages (crates/wire) are imported, not generated again.
    println!("cargo:rerun-if-changed=../wire/proto/container/wire/v1/wire.proto");
    let descriptors = protox::compile([proto], ["proto", "../wire/proto"])?;
    tonic_prost_build::configure()
        .extern_path(".container.wire.v1", "::wire::v1")
        .build_transport(false)
        .compile_fds(descriptors)?;
    Ok(())
}
