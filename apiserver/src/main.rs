//! `kubernate-apiserver`: the component's entry point. The component itself is not built
//! yet, so the binary prints its usage and exits non-zero rather than pretend.

fn main() -> std::process::ExitCode {
    common::unimplemented::exit(
        "kubernate-apiserver",
        "The Kubernetes REST API and the internal gRPC API over the store.",
    )
}
