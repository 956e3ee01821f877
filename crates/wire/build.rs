//! Compiles proto/container/wire/v1/wire.proto with protox (pure Rust), so no system `protoc`
//! is needed. Messages only: the protocols that import them generate their own services.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/container/wire/v1/wire.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(false)
        .compile_fds(descriptors)?;
    Ok(())
}
