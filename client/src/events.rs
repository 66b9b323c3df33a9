//! The event recorder: core/v1 Events about objects ("Scheduled",
//! "FailedScheduling", "BackOff" …), what `kubectl describe` shows.
//!
//! A controller that fails the same way every second must not write an
//! Event every second. As client-go's recorder does, an Event repeated
//! with the same object, type, reason and message updates the existing
//! Event instead (its `count` goes up, its `lastTimestamp` moves) and only
//! a new combination creates a new one.

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};

use crate::api::{is_namespaced, timestamp_now, Api, Object, Patch};
use crate::connection::Client;
use crate::error::Result;

/// Repeats of the same event are folded into one of these.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Fold {
    uid: String,
    kind: String,
    namespace: String,
    name: String,
    event_type: String,
    reason: String,
    message: String,
}

/// How many distinct events are remembered for folding; beyond it the
/// memory starts over (a repeat then creates one more Event).
const REMEMBERED: usize = 4096;

pub struct EventRecorder {
    client: Client,
    component: String,
    host: Option<String>,
    /// fold → (event name, namespace, count so far).
    seen: Mutex<HashMap<Fold, (String, String, i32)>>,
}

impl EventRecorder {
    /// Events reported by `component` (e.g. "default-scheduler").
    pub fn new(client: Client, component: &str) -> EventRecorder {
        EventRecorder {
            client,
            component: component.to_string(),
            host: None,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Names the node the component runs on (kubelets do).
    pub fn with_host(mut self, host: &str) -> EventRecorder {
        self.host = Some(host.to_string());
        self
    }

    /// Records an event about `object`; `event_type` is "Normal" or "Warning".
    pub async fn record<K: Object>(&self, object: &K, event_type: &str, reason: &str, message: &str) -> Result<()> {
        let meta = object.metadata();
        let namespace = match (&meta.namespace, is_namespaced::<K>()) {
            (Some(ns), true) => ns.clone(),
            _ => "default".to_string(),
        };
        let fold = Fold {
            uid: meta.uid.clone().unwrap_or_default(),
            kind: K::KIND.to_string(),
            namespace: namespace.clone(),
            name: meta.name.clone().unwrap_or_default(),
            event_type: event_type.to_string(),
            reason: reason.to_string(),
            message: message.to_string(),
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let known = self.lock().get(&fold).cloned();
        if let Some((name, _, count)) = known {
            let patch = serde_json::json!({
                "count": count + 1,
                "lastTimestamp": Time(timestamp_now()),
            });
            match api.patch(&name, &Patch::Merge(patch)).await {
                Ok(_) => {
                    self.lock().insert(fold, (name, namespace, count + 1));
                    return Ok(());
                }
                // Gone (expired or deleted): start a new one.
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        let now = timestamp_now();
        let object_name = fold.name.clone();
        let event = Event {
            metadata: ObjectMeta {
                name: Some(format!("{object_name}.{:x}", now.as_nanosecond())),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                api_version: Some(K::API_VERSION.to_string()),
                kind: Some(K::KIND.to_string()),
                name: meta.name.clone(),
                namespace: meta.namespace.clone(),
                uid: meta.uid.clone(),
                resource_version: meta.resource_version.clone(),
                ..Default::default()
            },
            type_: Some(event_type.to_string()),
            reason: Some(reason.to_string()),
            message: Some(message.to_string()),
            count: Some(1),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            event_time: None::<MicroTime>,
            source: Some(EventSource {
                component: Some(self.component.clone()),
                host: self.host.clone(),
            }),
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(self.host.clone().unwrap_or_else(|| self.component.clone())),
            ..Default::default()
        };
        let created = api.create(&event).await?;
        let mut seen = self.lock();
        if seen.len() >= REMEMBERED {
            seen.clear();
        }
        seen.insert(fold, (created.metadata.name.unwrap_or_default(), namespace, 1));
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Fold, (String, String, i32)>> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }
}
