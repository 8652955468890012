//! Core v1 Events, as client-go's `record.EventRecorder` (the one kube-controller-manager's
//! controllers use) writes them: named `<object>.<unix nanoseconds in hex>`, with the
//! controller as `source.component` and `reportingComponent`; the same event again (same
//! object, type, reason and message) increments the first one's `count` and
//! `lastTimestamp` instead of creating another.
//!
//! Not done: the recorder's aggregation of similar events (same reason, differing messages)
//! and its per-object spam filter.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Event, ObjectReference};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

/// Distinct events remembered for counting repeats (client-go's cache holds 4096).
const MEMO_MAX: usize = 4096;

/// Who records, and the events recorded so far.
pub struct Recorder {
    client: kube::Client,
    component: String,
    memo: HashMap<String, (String, i32)>,
}

fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

impl Recorder {
    pub fn new(client: kube::Client, component: &str) -> Recorder {
        Recorder { client, component: component.to_string(), memo: HashMap::new() }
    }

    /// Records a Warning about `object` (namespaced; its namespace is the event's).
    pub async fn warning(&mut self, object: &ObjectReference, reason: &str, message: &str) {
        self.record(object, "Warning", reason, message).await;
    }

    /// Records an event of `type_` about `object`.
    pub async fn record(&mut self, object: &ObjectReference, type_: &str, reason: &str, message: &str) {
        let ns = object.namespace.clone().unwrap_or_else(|| "default".into());
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        let memo_key = serde_json::to_string(&(
            &object.kind,
            &object.namespace,
            &object.name,
            &object.uid,
            &object.api_version,
            type_,
            reason,
            message,
        ))
        .unwrap_or_default();
        if let Some((name, count)) = self.memo.get(&memo_key).cloned() {
            let patch = json!({"count": count + 1, "lastTimestamp": now()});
            match api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => {
                    self.memo.insert(memo_key, (name, count + 1));
                    return;
                }
                Err(e) => {
                    // Gone (or expired): a new one is created below.
                    tracing::debug!(error = %e, event = %name, "counting a repeated event failed");
                    self.memo.remove(&memo_key);
                }
            }
        }
        let nanos = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
        let name = format!("{}.{nanos:x}", object.name.as_deref().unwrap_or(""));
        let t = now();
        let event = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": ns},
            "involvedObject": object,
            "reason": reason,
            "message": message,
            "source": {"component": self.component},
            "firstTimestamp": t,
            "lastTimestamp": t,
            "count": 1,
            "type": type_,
            "reportingComponent": self.component,
            "reportingInstance": "",
        });
        let event: Event = match serde_json::from_value(event) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "building event failed");
                return;
            }
        };
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => {
                if self.memo.len() >= MEMO_MAX {
                    self.memo.clear();
                }
                self.memo.insert(memo_key, (name, 1));
            }
            Err(e) => tracing::warn!(error = %e, reason, "recording event failed"),
        }
    }
}
