//! The max-in-flight filter: at most `--max-requests-inflight` read-only
//! and `--max-mutating-requests-inflight` mutating requests at once.
//!
//! Beyond that, requests are turned away at once with 429 TooManyRequests
//! and `Retry-After: 1` rather than queued, so an overloaded API server
//! sheds load instead of building a backlog that makes every request slow
//! (client-go backs off and retries on 429). Watches are long-running and
//! not counted, as in kube-apiserver; a limit of 0 means unlimited.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::status::ApiError;

pub struct MaxInFlight {
    read_only: Option<Arc<Semaphore>>,
    mutating: Option<Arc<Semaphore>>,
}

/// Held while a request runs; dropping it frees the slot.
pub type Slot = Option<OwnedSemaphorePermit>;

fn limit(n: usize) -> Option<Arc<Semaphore>> {
    (n > 0).then(|| Arc::new(Semaphore::new(n)))
}

impl MaxInFlight {
    pub fn new(read_only: usize, mutating: usize) -> MaxInFlight {
        MaxInFlight {
            read_only: limit(read_only),
            mutating: limit(mutating),
        }
    }

    /// A slot for a request with this verb, or 429.
    pub fn admit(&self, verb: &str) -> Result<Slot, ApiError> {
        let pool = match verb {
            "watch" => return Ok(None),
            "get" | "list" => &self.read_only,
            _ => &self.mutating,
        };
        let Some(pool) = pool else { return Ok(None) };
        pool.clone()
            .try_acquire_owned()
            .map(Some)
            .map_err(|_| ApiError::too_many_requests("Too many requests, please try again later."))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_run_out_per_kind_and_come_back() {
        let limits = MaxInFlight::new(1, 1);
        let read = limits.admit("list").unwrap();
        assert_eq!(limits.admit("get").unwrap_err().code, 429);
        let write = limits.admit("create").unwrap();
        assert_eq!(limits.admit("delete").unwrap_err().code, 429);
        assert!(limits.admit("watch").is_ok(), "watches are not counted");
        drop(read);
        assert!(limits.admit("get").is_ok());
        drop(write);
        assert!(
            MaxInFlight::new(0, 0).admit("create").unwrap().is_none(),
            "0 is unlimited"
        );
    }
}
