//! `pods/{name}/eviction`: a pod deletion that respects its PodDisruptionBudget, as
//! kube-apiserver's `EvictionREST.Create` (`pkg/registry/core/pod/storage/eviction.go`)
//! decides it: a pod that is not running (Pending, Succeeded, Failed) or already being deleted
//! goes at once; a running pod covered by one budget goes only if the budget's status (kept
//! by a disruption controller) allows a disruption, which the eviction then takes (and records
//! in `disruptedPods`); more than one budget is refused. The evicted pod gets the
//! `DisruptionTarget` condition before its deletion.

use super::*;

/// kube-apiserver's refusal when a budget does not allow the eviction (a 429, for clients
/// such as `kubectl drain` to retry).
fn too_many_requests(cause: String, retry_after: u32) -> ApiError {
    let mut e =
        ApiError::new(429, "TooManyRequests", "Cannot evict pod as it would violate the pod's disruption budget.")
            .with_details(rkube_api::status::Details {
                causes: vec![rkube_api::status::Cause {
                    reason: "DisruptionBudget".into(),
                    message: cause,
                    field: String::new(),
                }],
                ..Default::default()
            });
    e.retry_after_seconds = Some(retry_after);
    e
}

fn phase(pod: &Value) -> &str {
    pod.pointer("/status/phase").and_then(Value::as_str).unwrap_or("")
}

fn deleting(pod: &Value) -> bool {
    pod.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null())
}

fn ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

fn int(v: &Value, path: &str) -> i64 {
    v.pointer(path).and_then(Value::as_i64).unwrap_or(0)
}

impl Ctx<'_> {
    pub(super) async fn evict(&mut self, eviction: Value) -> ApiResult<Response<Body>> {
        let name = self.name().to_string();
        if eviction.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("") != name {
            return Err(ApiError::bad_request("name in URL does not match name in Eviction object"));
        }
        let mut opts = match eviction.get("deleteOptions") {
            Some(o) if o.is_object() => o.clone(),
            _ => json!({}),
        };
        // propagateDryRun: the request's dryRun and the options' must agree.
        let query_dry: Vec<Value> =
            self.query.get("dryRun").filter(|d| !d.is_empty()).map(|d| json!(d)).into_iter().collect();
        let opts_dry = opts.get("dryRun").and_then(Value::as_array).cloned().unwrap_or_default();
        if !query_dry.is_empty() && !opts_dry.is_empty() && query_dry != opts_dry {
            return Err(ApiError::bad_request(format!(
                "Non-matching dry-run options in request and content: {query_dry:?} and {opts_dry:?}"
            )));
        }
        if opts_dry.is_empty() && !query_dry.is_empty() {
            opts["dryRun"] = Value::Array(query_dry);
        }
        let dry = opts.get("dryRun").and_then(Value::as_array).is_some_and(|a| !a.is_empty());
        let own_rv = opts.pointer("/preconditions/resourceVersion").is_some_and(|v| !v.is_null());

        let key = self.key();
        let def = self.def.clone();
        let kv = self.server.store.get(&key).ok_or_else(|| ApiError::not_found(&def.group, &def.plural, &name))?;
        let pod = parse_stored(&kv)?;
        let ns = pod.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("").to_string();
        let pinned = |opts: &Value| {
            // The pod must still be the one the decision was made on.
            let mut o = opts.clone();
            if !own_rv {
                rkube_api::strategy::ensure_map(&mut o, &["preconditions"])
                    .insert("resourceVersion".into(), json!(kv.mod_revision.to_string()));
            }
            o
        };
        if matches!(phase(&pod), "Succeeded" | "Failed" | "Pending") || deleting(&pod) {
            let enforce = phase(&pod) == "Pending" && !deleting(&pod);
            let o = if enforce { pinned(&opts) } else { opts.clone() };
            return self.condition_and_delete(&o, dry).await;
        }

        let prefix = format!("/registry/policy/poddisruptionbudgets/{ns}/");
        let pdbs: Vec<(rkube_store::KeyValue, Value)> = self
            .server
            .store
            .list(&prefix, &ListOptions::default())
            .map(|l| l.items)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|kv| {
                let pdb = parse_stored(&kv).ok()?;
                let sel = pdb.pointer("/spec/selector").filter(|s| !s.is_null())?;
                let sel = LabelSelector::from_object(sel).ok()?;
                sel.matches(pod.pointer("/metadata/labels").and_then(Value::as_object)).then_some((kv, pdb))
            })
            .collect();
        if pdbs.len() > 1 {
            return Err(ApiError::new(
                500,
                "",
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
            ));
        }
        let Some((pdb_kv, mut pdb)) = pdbs.into_iter().next() else {
            return self.condition_and_delete(&opts, dry).await;
        };
        let pdb_name = pdb.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
        if !ready(&pod) {
            let always = pdb.pointer("/spec/unhealthyPodEvictionPolicy").and_then(Value::as_str) == Some("AlwaysAllow");
            let (current, desired) = (int(&pdb, "/status/currentHealthy"), int(&pdb, "/status/desiredHealthy"));
            if always || (current >= desired && desired > 0) {
                // An unready pod does not count: it goes without taking a disruption.
                return self.condition_and_delete(&pinned(&opts), dry).await;
            }
        }
        // checkAndDecrement.
        if int(&pdb, "/status/observedGeneration") < int(&pdb, "/metadata/generation") {
            return Err(too_many_requests(
                format!("The disruption budget {pdb_name} is still being processed by the server."),
                10,
            ));
        }
        let allowed = int(&pdb, "/status/disruptionsAllowed");
        if allowed < 0 {
            return Err(ApiError::forbidden_object(
                "policy",
                "poddisruptionbudget",
                &pdb_name,
                "pdb disruptions allowed is negative",
            ));
        }
        let disrupted = pdb.pointer("/status/disruptedPods").and_then(Value::as_object).map_or(0, |m| m.len());
        if disrupted > MAX_DISRUPTED_PODS {
            return Err(ApiError::forbidden_object(
                "policy",
                "poddisruptionbudget",
                &pdb_name,
                "DisruptedPods map too big - too many evictions not confirmed by PDB controller",
            ));
        }
        if allowed == 0 {
            let (current, desired) = (int(&pdb, "/status/currentHealthy"), int(&pdb, "/status/desiredHealthy"));
            return Err(too_many_requests(
                format!("The disruption budget {pdb_name} needs {desired} healthy pods and has {current} currently"),
                0,
            ));
        }
        if !dry {
            let status = rkube_api::strategy::ensure_map(&mut pdb, &["status"]);
            status.insert("disruptionsAllowed".into(), json!(allowed - 1));
            let disrupted = status.entry("disruptedPods").or_insert_with(|| json!({}));
            if !disrupted.is_object() {
                *disrupted = json!({});
            }
            disrupted[name.as_str()] = json!(now_rfc3339());
            if allowed - 1 == 0 {
                set_disruption_allowed(&mut pdb, false);
            }
            let op = Op::Update { key: pdb_kv.key.to_string(), expected: Some(pdb_kv.mod_revision), value: stamp(pdb) };
            match self.server.store.txn(op).await {
                Ok(_) => {}
                // Someone else changed the budget: the client tries again.
                Err(StoreError::Conflict { .. }) => {
                    return Err(too_many_requests(
                        format!("The disruption budget {pdb_name} is still being processed by the server."),
                        10,
                    ))
                }
                Err(e) => return Err(store_error(&def, &name, e)),
            }
        }
        self.condition_and_delete(&opts, dry).await
    }

    /// `addConditionAndDeletePod`: the DisruptionTarget condition, then the deletion (with its
    /// preconditions, which the condition's write moves along).
    async fn condition_and_delete(&mut self, opts: &Value, dry: bool) -> ApiResult<Response<Body>> {
        let mut opts = opts.clone();
        if !dry {
            let key = self.key();
            let def = self.def.clone();
            let name = self.name().to_string();
            let kv = self.server.store.get(&key).ok_or_else(|| ApiError::not_found(&def.group, &def.plural, &name))?;
            let mut pod = parse_stored(&kv)?;
            let uid = pod.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("").to_string();
            if let Some(want) = opts.pointer("/preconditions/uid").and_then(Value::as_str).filter(|u| !u.is_empty()) {
                if want != uid {
                    return Err(ApiError::conflict("", "Pod", &name, &format!("the UID in the precondition ({want}) does not match the UID in record ({uid}). The object might have been deleted and then recreated")));
                }
            }
            let rv = kv.mod_revision.to_string();
            if let Some(want) =
                opts.pointer("/preconditions/resourceVersion").and_then(Value::as_str).filter(|r| !r.is_empty())
            {
                if want != rv {
                    return Err(ApiError::conflict("", "Pod", &name, &format!("the ResourceVersion in the precondition ({want}) does not match the ResourceVersion in record ({rv}). The object might have been modified")));
                }
            }
            set_condition(&mut pod, "DisruptionTarget", "True", "EvictionByEvictionAPI", "Eviction API: evicting");
            let op = Op::Update { key: key.clone(), expected: Some(kv.mod_revision), value: stamp(pod) };
            let done = match self.server.store.txn(op).await {
                Ok(done) => done,
                Err(e) => return Err(store_error(&def, &name, e)),
            };
            if opts.pointer("/preconditions/resourceVersion").is_some_and(|v| !v.is_null()) {
                opts["preconditions"]["resourceVersion"] = json!(done.mod_revision.to_string());
            }
        }
        self.delete_with(&opts).await?;
        let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201});
        Ok(self.respond_value(StatusCode::CREATED, &status))
    }
}

/// `MaxDisruptedPodSize`: past this many evictions the disruption controller has not yet
/// confirmed, a budget's pods are not evicted.
const MAX_DISRUPTED_PODS: usize = 2000;

/// `podutil.UpdatePodCondition`: replaces the condition of that type (its transition time
/// kept when the status does not change) or adds it.
fn set_condition(obj: &mut Value, kind: &str, status: &str, reason: &str, message: &str) {
    let s = rkube_api::strategy::ensure_map(obj, &["status"]);
    let list = s.entry("conditions").or_insert_with(|| json!([]));
    if !list.is_array() {
        *list = json!([]);
    }
    let Some(list) = list.as_array_mut() else { return };
    let mut c = json!({"type": kind, "status": status, "reason": reason, "message": message,
                       "lastProbeTime": null, "lastTransitionTime": now_rfc3339()});
    match list.iter_mut().find(|x| x["type"] == kind) {
        Some(old) => {
            if old["status"] == status {
                if let Some(t) = old.get("lastTransitionTime").filter(|t| !t.is_null()) {
                    c["lastTransitionTime"] = t.clone();
                }
            }
            *old = c;
        }
        None => list.push(c),
    }
}

/// `UpdateDisruptionAllowedCondition`: the budget's DisruptionAllowed condition.
fn set_disruption_allowed(pdb: &mut Value, allowed: bool) {
    let (status, reason) = if allowed { ("True", "SufficientPods") } else { ("False", "InsufficientPods") };
    let generation = pdb.pointer("/metadata/generation").cloned().unwrap_or(json!(0));
    set_condition(pdb, "DisruptionAllowed", status, reason, "");
    if let Some(list) = pdb.pointer_mut("/status/conditions").and_then(Value::as_array_mut) {
        for c in list.iter_mut().filter(|c| c["type"] == "DisruptionAllowed") {
            if let Some(m) = c.as_object_mut() {
                m.remove("lastProbeTime");
                m.insert("observedGeneration".into(), generation.clone());
            }
        }
    }
}
