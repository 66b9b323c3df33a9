//! Compiles the internal gRPC protocol with protoc (Debian's
//! protobuf-compiler; set PROTOC to use another one).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/kubernate/resource/v1/resource.proto";
    println!("cargo:rerun-if-changed={proto}");
    tonic_prost_build::configure().compile_protos(&[proto], &["proto"])?;
    Ok(())
}
