//! Generates the gRPC code from `proto/*.proto` at build time.
//!
//! `protox` parses the `.proto` files in pure Rust, so no `protoc` binary is
//! needed on a fresh machine; `tonic-prost-build` turns the resulting file
//! descriptor set into Rust messages, clients and servers.

const PROTO_FILES: [&str; 4] =
    ["proto/raft.proto", "proto/controlplane.proto", "proto/admin.proto", "proto/peer.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for file in PROTO_FILES {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(PROTO_FILES, ["proto"])?;
    // Payloads and correlation data of forwarded messages stay `Bytes`, shared
    // with the broker's message rather than copied.
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .bytes(".mqttd.peer.v1")
        .compile_fds(descriptors)?;
    Ok(())
}
