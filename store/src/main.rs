//! `kubernate-store`: the component's entry point. The component itself is not built
//! yet, so the binary prints its usage and exits non-zero rather than pretend.

fn main() -> std::process::ExitCode {
    common::unimplemented::exit(
        "kubernate-store",
        "The cluster's etcd v3 compatible key-value store, replicated by Raft.",
    )
}
