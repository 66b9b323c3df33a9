//! Warnings for the client: kube-apiserver answers `Warning: 299 - "…"`
//! headers for what it accepted but wants the client to know, such as
//! unknown fields dropped under `fieldValidation=Warn`; kubectl prints
//! them. Code deep in a request adds them with [`add`]; the REST handler
//! runs each request inside [`collect`] and turns them into headers.

use std::cell::RefCell;
use std::future::Future;

tokio::task_local! {
    static WARNINGS: RefCell<Vec<String>>;
}

/// Records a warning for the request being served (none outside one).
pub fn add(text: String) {
    let _ = WARNINGS.try_with(|w| w.borrow_mut().push(text));
}

/// Runs `request`, returning its result and the warnings it recorded.
pub async fn collect<F: Future>(request: F) -> (F::Output, Vec<String>) {
    WARNINGS
        .scope(RefCell::new(Vec::new()), async {
            let out = request.await;
            let warnings = WARNINGS.with(|w| w.take());
            (out, warnings)
        })
        .await
}

/// A `Warning` header value (RFC 7234: code 299, agent `-`, quoted text).
pub fn header_value(text: &str) -> String {
    format!("299 - \"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn warnings_are_collected_per_request() {
        add("outside".into());
        let ((), warnings) = collect(async { add("unknown field \"x\"".into()) }).await;
        assert_eq!(warnings, ["unknown field \"x\""]);
        assert_eq!(header_value(&warnings[0]), r#"299 - "unknown field \"x\"""#);
    }
}
