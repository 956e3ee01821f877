//! Compiles the daemon's protos with protox (pure Rust), so no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/container/api/v1/builds.proto",
        "proto/container/api/v1/common.proto",
        "proto/container/api/v1/containers.proto",
        "proto/container/api/v1/images.proto",
        "proto/container/api/v1/networks.proto",
        "proto/container/api/v1/registry.proto",
        "proto/container/api/v1/system.proto",
        "proto/container/api/v1/volumes.proto",
    ];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    // The shared messages (crates/wire) are imported, not generated again.
    println!("cargo:rerun-if-changed=../wire/proto/container/wire/v1/wire.proto");
    let descriptors = protox::compile(protos, ["proto", "../wire/proto"])?;
    tonic_prost_build::configure()
        .extern_path(".container.wire.v1", "::wire::v1")
        .build_transport(false)
        // Unimplemented rpcs answer UNIMPLEMENTED by default, so the daemon can grow one
        // service method at a time; streaming rpcs return boxed streams.
        .generate_default_stubs(true)
        .compile_fds(descriptors)?;
    Ok(())
}
