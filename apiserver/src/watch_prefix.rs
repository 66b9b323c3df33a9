//! Keeps an in-memory copy of everything under a store prefix: a list,
//! then the store's watch from that revision, relisting after an error or
//! the end of the watch. The API server follows the few kinds it needs on
//! every request this way (CRDs, RBAC objects) instead of reading them
//! from the store each time — the apiserver's own small informer.

use crate::storage::{Change, Storage};

/// What the follower is told.
pub enum Update {
    /// Everything under the prefix, by key (after a (re)list).
    Reset(Vec<(String, Vec<u8>)>),
    Put(String, Vec<u8>),
    Delete(String),
}

/// Lists the prefix once; `None` when the store cannot be read.
pub async fn list(storage: &Storage, prefix: &str) -> Option<(Vec<(String, Vec<u8>)>, i64)> {
    match storage.list(prefix.as_bytes(), 0).await {
        Ok((items, at)) => Some((
            items
                .into_iter()
                .map(|i| (String::from_utf8_lossy(&i.key).to_string(), i.value))
                .collect(),
            at,
        )),
        Err(e) => {
            tracing::warn!(prefix, error = %e, "cannot list");
            None
        }
    }
}

/// Follows `prefix` until `stop`, telling `on` every change.
pub async fn follow(
    storage: Storage,
    prefix: &'static str,
    stop: tokio_util::sync::CancellationToken,
    mut on: impl FnMut(Update) + Send,
) {
    loop {
        if stop.is_cancelled() {
            return;
        }
        let Some((items, at)) = list(&storage, prefix).await else {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            continue;
        };
        on(Update::Reset(items));
        let Ok(mut changes) = storage.watch(prefix.as_bytes(), at, None).await else {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            continue;
        };
        loop {
            let change = tokio::select! {
                _ = stop.cancelled() => return,
                change = changes.recv() => change,
            };
            match change {
                Some(Ok(Change::Put { object, .. })) => {
                    on(Update::Put(
                        String::from_utf8_lossy(&object.key).to_string(),
                        object.value,
                    ));
                }
                Some(Ok(Change::Delete { object })) => {
                    on(Update::Delete(String::from_utf8_lossy(&object.key).to_string()));
                }
                Some(Ok(Change::Progress { .. })) => {}
                Some(Err(_)) | None => break,
            }
        }
    }
}
