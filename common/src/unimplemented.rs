//! The behaviour of a component binary whose component is not written yet.
//!
//! A binary that is built but does nothing must never look as if it worked:
//! it prints what it will be and exits with a failure status, so scripts and
//! supervisors notice at once.

use std::process::ExitCode;

/// Prints `binary`'s usage and the fact that it is not implemented to
/// standard error, and returns the exit code 2 (usage error).
pub fn exit(binary: &str, purpose: &str) -> ExitCode {
    eprintln!("{}", usage(binary, purpose));
    ExitCode::from(2)
}

/// The text [`exit`] prints.
pub fn usage(binary: &str, purpose: &str) -> String {
    format!(
        "{binary}: {purpose}\n\n\
         Usage: {binary} [OPTIONS]\n\n\
         This component is not implemented in this build of Kubernate yet; \
         it accepts no options and runs nothing."
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn usage_names_the_binary_and_says_it_is_not_implemented() {
        let text = super::usage("kubernate-store", "The store.");
        assert!(text.contains("Usage: kubernate-store"));
        assert!(text.contains("not implemented"));
    }
}
