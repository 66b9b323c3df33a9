//! `kubernate-controller-manager`: the component's entry point. The component itself is not built
//! yet, so the binary prints its usage and exits non-zero rather than pretend.

fn main() -> std::process::ExitCode {
    common::unimplemented::exit(
        "kubernate-controller-manager",
        "The control loops that move actual state toward desired state.",
    )
}
