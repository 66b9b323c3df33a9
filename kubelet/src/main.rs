//! `kubernate-kubelet`: the component's entry point. The component itself is not built
//! yet, so the binary prints its usage and exits non-zero rather than pretend.

fn main() -> std::process::ExitCode {
    common::unimplemented::exit(
        "kubernate-kubelet",
        "The node agent: runs the pods bound to its node and reports their status.",
    )
}
