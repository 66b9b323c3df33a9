//! Compiles the store's own protocols: the peer protocol between members,
//! and etcd's Lock and Election services (whose server side etcd-client
//! does not generate), reusing etcd-client's message types.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/peer.proto",
        "proto/etcd/v3lock.proto",
        "proto/etcd/v3election.proto",
    ];
    println!("cargo:rerun-if-changed=proto");
    tonic_prost_build::configure()
        .build_client(true)
        .extern_path(".etcdserverpb.ResponseHeader", "::etcd_client::proto::PbResponseHeader")
        .extern_path(".mvccpb.KeyValue", "::etcd_client::proto::PbKeyValue")
        .compile_protos(&protos, &["proto"])?;
    Ok(())
}
