//! `kubernate-proxy`: the component's entry point. The component itself is not built
//! yet, so the binary prints its usage and exits non-zero rather than pretend.

fn main() -> std::process::ExitCode {
    common::unimplemented::exit(
        "kubernate-proxy",
        "Service virtual IPs and load balancing on each node.",
    )
}
