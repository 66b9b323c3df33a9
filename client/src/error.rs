//! What can go wrong talking to the API server, typed so callers can
//! branch on it: the API's own answer (a `metav1.Status`: not found,
//! conflict, gone, forbidden …) is kept apart from "could not reach it".

use tonic::Code;

/// The API server's answer to a failed call, as in a `metav1.Status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The HTTP status the REST API would have answered with.
    pub code: u16,
    /// Kubernetes' machine-readable reason (`NotFound`, `Conflict`, …).
    pub reason: String,
    pub message: String,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({} {})", self.message, self.code, self.reason)
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The API server answered, and refused.
    #[error("{0}")]
    Api(Status),
    /// The API server could not be reached or did not answer in time.
    #[error("API server unreachable: {0}")]
    Transport(String),
    /// A body that is not the object it should be.
    #[error("cannot decode {what}: {message}")]
    Decode { what: String, message: String },
    /// The kubeconfig or the connection settings are unusable.
    #[error("client configuration: {0}")]
    Config(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The HTTP-style code of an API answer.
    pub fn code(&self) -> Option<u16> {
        match self {
            Error::Api(s) => Some(s.code),
            _ => None,
        }
    }
    pub fn is_not_found(&self) -> bool {
        self.code() == Some(404)
    }
    pub fn is_already_exists(&self) -> bool {
        matches!(self, Error::Api(s) if s.reason == "AlreadyExists")
    }
    /// A write against a stale resourceVersion (or a failed precondition).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Api(s) if s.code == 409 && s.reason != "AlreadyExists")
    }
    /// The resourceVersion asked for is too old: relist.
    pub fn is_gone(&self) -> bool {
        self.code() == Some(410)
    }
    /// Worth retrying as is: unreachable, overloaded or timed out.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Transport(_)) || matches!(self.code(), Some(429 | 500 | 503 | 504))
    }

    /// An object or message that could not be encoded or decoded.
    pub fn decode(what: impl Into<String>, e: impl std::fmt::Display) -> Error {
        Error::Decode {
            what: what.into(),
            message: e.to_string(),
        }
    }

    /// The Status JSON (a WatchEvent of type ERROR carries one).
    pub fn from_status_json(value: &serde_json::Value) -> Error {
        Error::Api(Status {
            code: value["code"]
                .as_u64()
                .and_then(|c| u16::try_from(c).ok())
                .unwrap_or(500),
            reason: value["reason"].as_str().unwrap_or_default().to_string(),
            message: value["message"].as_str().unwrap_or_default().to_string(),
        })
    }
}

impl From<tonic::Status> for Error {
    fn from(status: tonic::Status) -> Error {
        // The API server puts the metav1.Status JSON in the details.
        if let Ok(value) = serde_json::from_slice::<serde_json::Value>(status.details()) {
            if value["kind"] == "Status" || value["code"].is_u64() {
                return Error::from_status_json(&value);
            }
        }
        let code = match status.code() {
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown => {
                return Error::Transport(status.message().to_string())
            }
            Code::NotFound => 404,
            Code::AlreadyExists | Code::Aborted => 409,
            Code::PermissionDenied => 403,
            Code::Unauthenticated => 401,
            Code::InvalidArgument => 400,
            // The API server says 410 with a Status in the details (above);
            // a bare OutOfRange is gRPC's own "message too large".
            Code::OutOfRange => 413,
            Code::ResourceExhausted => 429,
            Code::Unimplemented => 405,
            _ => 500,
        };
        Error::Api(Status {
            code,
            reason: format!("{:?}", status.code()),
            message: status.message().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_keep_the_api_servers_words() {
        let details = br#"{"kind":"Status","code":409,"reason":"AlreadyExists","message":"pods \"p\" already exists"}"#;
        let e: Error = tonic::Status::with_details(Code::AlreadyExists, "x", details.to_vec().into()).into();
        assert!(e.is_already_exists() && !e.is_conflict(), "{e:?}");
        assert_eq!(e.to_string(), "pods \"p\" already exists (409 AlreadyExists)");
        let e: Error = tonic::Status::unavailable("connection refused").into();
        assert!(e.is_transient() && e.code().is_none());
        let details = br#"{"kind":"Status","code":410,"reason":"Expired","message":"too old resource version"}"#;
        let e: Error = tonic::Status::with_details(Code::OutOfRange, "x", details.to_vec().into()).into();
        assert!(e.is_gone());
        let e: Error = tonic::Status::out_of_range("decoded message length too large").into();
        assert_eq!(e.code(), Some(413));
    }
}
