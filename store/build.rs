//! Compiles the store's peer protocol (Raft messages between members).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/peer.proto";
    println!("cargo:rerun-if-changed={proto}");
    tonic_prost_build::configure().compile_protos(&[proto], &["proto"])?;
    Ok(())
}
