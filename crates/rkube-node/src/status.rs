//! A pod's status as the kubelet reports it (pkg/kubelet/kubelet_pods.go getPhase,
//! pkg/kubelet/status/generate.go, convertToAPIContainerStatuses): a pure function of the
//! pod and what its containers did.

use serde_json::{json, Value};

/// What one container is doing.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    Waiting {
        reason: String,
        message: Option<String>,
    },
    Running {
        started_at: String,
    },
    Terminated {
        exit_code: i32,
        signal: Option<i32>,
        reason: String,
        message: Option<String>,
        started_at: Option<String>,
        finished_at: String,
        container_id: Option<String>,
    },
}

impl State {
    fn to_json(&self) -> Value {
        match self {
            State::Waiting { reason, message } => {
                let mut w = json!({"reason": reason});
                if let Some(m) = message {
                    w["message"] = json!(m);
                }
                json!({"waiting": w})
            }
            State::Running { started_at } => json!({"running": {"startedAt": started_at}}),
            State::Terminated { exit_code, signal, reason, message, started_at, finished_at, container_id } => {
                let mut t = json!({"exitCode": exit_code, "reason": reason, "finishedAt": finished_at});
                if let Some(s) = signal {
                    t["signal"] = json!(s);
                }
                if let Some(m) = message {
                    t["message"] = json!(m);
                }
                // A container that never started has a null startedAt, as the kubelet reports it.
                t["startedAt"] = started_at.as_ref().map(|s| json!(s)).unwrap_or(Value::Null);
                if let Some(id) = container_id {
                    t["containerID"] = json!(id);
                }
                json!({"terminated": t})
            }
        }
    }
}

/// One container's status.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerStatus {
    pub name: String,
    pub image: String,
    pub state: State,
    pub last_state: Option<State>,
    pub restart_count: i32,
    pub ready: bool,
    pub started: bool,
    pub container_id: Option<String>,
    /// restartPolicy Always on an init container (a sidecar).
    pub sidecar: bool,
    /// An ephemeral container: no `started` (the prober does not track it).
    pub ephemeral: bool,
}

impl ContainerStatus {
    /// The status before anything ran: waiting, ContainerCreating (or PodInitializing for a
    /// regular container of a pod with init containers).
    pub fn initial(name: &str, image: &str, init_pending: bool, sidecar: bool) -> ContainerStatus {
        ContainerStatus {
            name: name.into(),
            image: image.into(),
            state: State::Waiting {
                reason: if init_pending { "PodInitializing" } else { "ContainerCreating" }.into(),
                message: None,
            },
            last_state: None,
            restart_count: 0,
            ready: false,
            started: false,
            container_id: None,
            sidecar,
            ephemeral: false,
        }
    }

    fn to_json(&self) -> Value {
        let mut v = json!({
            "name": self.name,
            "state": self.state.to_json(),
            "lastState": self.last_state.as_ref().map(State::to_json).unwrap_or_else(|| json!({})),
            "ready": self.ready,
            "restartCount": self.restart_count,
            "image": self.image,
            // No image is pulled: the ID names the image as recorded.
            "imageID": "",
        });
        if !self.ephemeral {
            v["started"] = json!(self.started);
        }
        if let Some(id) = &self.container_id {
            v["containerID"] = json!(id);
        }
        v
    }
}

/// The phase (getPhase, kubelet ~1.31).
pub fn phase(
    restart_policy: &str,
    init: &[ContainerStatus],
    regular: &[ContainerStatus],
    terminal: bool,
) -> &'static str {
    let mut pending_init = 0;
    let mut failed_init = 0;
    for c in init {
        if c.sidecar {
            match &c.state {
                State::Running { .. } if !c.started => pending_init += 1,
                State::Waiting { .. } if c.last_state.is_none() => pending_init += 1,
                _ => {}
            }
            continue;
        }
        match &c.state {
            State::Running { .. } => pending_init += 1,
            State::Waiting { .. } if c.last_state.is_none() => pending_init += 1,
            State::Terminated { exit_code, .. } if *exit_code != 0 => failed_init += 1,
            State::Waiting { .. } => {
                if matches!(c.last_state, Some(State::Terminated { exit_code, .. }) if exit_code != 0) {
                    failed_init += 1;
                }
            }
            _ => {}
        }
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for c in regular {
        match &c.state {
            State::Running { .. } => running += 1,
            State::Terminated { exit_code, .. } => {
                stopped += 1;
                if *exit_code == 0 {
                    succeeded += 1;
                }
            }
            State::Waiting { .. } if c.last_state.is_some() => stopped += 1,
            State::Waiting { .. } => waiting += 1,
        }
    }
    let any_started =
        regular.iter().any(|c| c.started || !matches!(c.state, State::Waiting { .. }) || c.last_state.is_some());
    if failed_init > 0 && restart_policy == "Never" {
        return "Failed";
    }
    if (pending_init > 0 && !any_started) || waiting > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped > 0 {
        if terminal {
            return if stopped == succeeded { "Succeeded" } else { "Failed" };
        }
        return match restart_policy {
            "Always" => "Running",
            _ if stopped == succeeded => "Succeeded",
            "Never" => "Failed",
            _ => "Running",
        };
    }
    "Pending"
}

fn names(list: &[&ContainerStatus]) -> String {
    format!("[{}]", list.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(" "))
}

/// Everything the kubelet writes in `status`, in its order: phase, conditions
/// (PodReadyToStartContainers, Initialized, Ready, ContainersReady, PodScheduled), IPs,
/// startTime, init and regular container statuses (regular ones sorted by name).
pub struct PodStatusInput<'a> {
    pub restart_policy: &'a str,
    pub init: &'a [ContainerStatus],
    pub regular: &'a [ContainerStatus],
    pub ephemeral: &'a [ContainerStatus],
    pub sandbox_ready: bool,
    pub terminal: bool,
    pub host_ip: &'a str,
    pub pod_ip: Option<&'a str>,
    pub start_time: &'a str,
    /// The stored status: conditions keep their lastTransitionTime while their status holds,
    /// conditions the kubelet does not own are kept, and a terminal phase never changes.
    pub previous: Option<&'a Value>,
    pub now: &'a str,
    pub readiness_gates: &'a [String],
}

pub fn pod_status(input: &PodStatusInput) -> Value {
    let mut phase = phase(input.restart_policy, input.init, input.regular, input.terminal);
    let prev_phase = input.previous.and_then(|p| p.get("phase")).and_then(Value::as_str).unwrap_or("");
    if matches!(prev_phase, "Succeeded" | "Failed") && phase != prev_phase {
        phase = if prev_phase == "Succeeded" { "Succeeded" } else { "Failed" };
    }
    let succeeded = phase == "Succeeded";

    let mut conds: Vec<(String, &str, Option<String>, Option<String>)> = Vec::new();
    conds.push(("PodReadyToStartContainers".into(), if input.sandbox_ready { "True" } else { "False" }, None, None));
    let init_unready: Vec<&ContainerStatus> = input
        .init
        .iter()
        .filter(|c| !(c.ready || matches!(c.state, State::Terminated { exit_code: 0, .. }) && !c.sidecar))
        .collect();
    if succeeded {
        conds.push(("Initialized".into(), "True", Some("PodCompleted".into()), None));
    } else if init_unready.is_empty() {
        conds.push(("Initialized".into(), "True", None, None));
    } else {
        conds.push((
            "Initialized".into(),
            "False",
            Some("ContainersNotInitialized".into()),
            Some(format!("containers with incomplete status: {}", names(&init_unready))),
        ));
    }
    let unready: Vec<&ContainerStatus> = input.regular.iter().filter(|c| !c.ready).collect();
    let containers_ready = if succeeded {
        ("False", Some("PodCompleted".to_string()), None)
    } else if unready.is_empty() {
        ("True", None, None)
    } else {
        (
            "False",
            Some("ContainersNotReady".to_string()),
            Some(format!("containers with unready status: {}", names(&unready))),
        )
    };
    let mut ready = containers_ready.clone();
    if ready.0 == "True" {
        let prev_conds = input.previous.and_then(|p| p.get("conditions")).and_then(Value::as_array);
        for gate in input.readiness_gates {
            let found =
                prev_conds.and_then(|cs| cs.iter().find(|c| c.get("type").and_then(Value::as_str) == Some(gate)));
            match found.and_then(|c| c.get("status")).and_then(Value::as_str) {
                None => {
                    ready = (
                        "False",
                        Some("ReadinessGatesNotReady".into()),
                        Some(format!("corresponding condition of pod readiness gate \"{gate}\" does not exist.")),
                    );
                    break;
                }
                Some("True") => {}
                Some(s) => {
                    ready = (
                        "False",
                        Some("ReadinessGatesNotReady".into()),
                        Some(format!("the status of pod readiness gate \"{gate}\" is not \"True\", but {s}")),
                    );
                    break;
                }
            }
        }
    }
    conds.push(("Ready".into(), ready.0, ready.1, ready.2));
    conds.push(("ContainersReady".into(), containers_ready.0, containers_ready.1, containers_ready.2));
    conds.push(("PodScheduled".into(), "True", None, None));

    let prev_conds: Vec<Value> =
        input.previous.and_then(|p| p.get("conditions")).and_then(Value::as_array).cloned().unwrap_or_default();
    let owned: Vec<String> = conds.iter().map(|c| c.0.clone()).collect();
    let mut out: Vec<Value> = Vec::new();
    // Conditions set by others (readiness gates, DisruptionTarget) stay.
    for c in &prev_conds {
        if !owned.iter().any(|o| Some(o.as_str()) == c.get("type").and_then(Value::as_str)) {
            out.push(c.clone());
        }
    }
    for (kind, status, reason, message) in conds {
        let prev = prev_conds.iter().find(|c| c.get("type").and_then(Value::as_str) == Some(kind.as_str()));
        let transition = prev
            .filter(|p| p.get("status").and_then(Value::as_str) == Some(status))
            .and_then(|p| p.get("lastTransitionTime").cloned())
            .unwrap_or_else(|| json!(input.now));
        let mut c = json!({"type": kind, "status": status, "lastProbeTime": null, "lastTransitionTime": transition});
        if let Some(r) = reason {
            c["reason"] = json!(r);
        }
        if let Some(m) = message {
            c["message"] = json!(m);
        }
        out.push(c);
    }

    let mut regular: Vec<&ContainerStatus> = input.regular.iter().collect();
    regular.sort_by(|a, b| a.name.cmp(&b.name));
    let mut status = json!({
        "phase": phase,
        "conditions": out,
        "hostIP": input.host_ip,
        "hostIPs": [{"ip": input.host_ip}],
        "startTime": input.start_time,
        "containerStatuses": regular.iter().map(|c| c.to_json()).collect::<Vec<_>>(),
    });
    if let Some(ip) = input.pod_ip {
        status["podIP"] = json!(ip);
        status["podIPs"] = json!([{"ip": ip}]);
    }
    if !input.init.is_empty() {
        status["initContainerStatuses"] = json!(input.init.iter().map(|c| c.to_json()).collect::<Vec<_>>());
    }
    if !input.ephemeral.is_empty() {
        let mut ephemeral: Vec<&ContainerStatus> = input.ephemeral.iter().collect();
        ephemeral.sort_by(|a, b| a.name.cmp(&b.name));
        status["ephemeralContainerStatuses"] = json!(ephemeral.iter().map(|c| c.to_json()).collect::<Vec<_>>());
    }
    status
}

/// The reason a runtime gives a terminated container.
pub fn exit_reason(exit_code: i32, oom: bool) -> &'static str {
    if oom {
        "OOMKilled"
    } else if exit_code == 0 {
        "Completed"
    } else {
        "Error"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(name: &str) -> ContainerStatus {
        ContainerStatus {
            state: State::Running { started_at: "t".into() },
            ready: true,
            started: true,
            ..ContainerStatus::initial(name, "busybox", false, false)
        }
    }

    fn exited(name: &str, code: i32) -> ContainerStatus {
        ContainerStatus {
            state: State::Terminated {
                exit_code: code,
                signal: None,
                reason: exit_reason(code, false).into(),
                message: None,
                started_at: Some("t".into()),
                finished_at: "t".into(),
                container_id: None,
            },
            ..ContainerStatus::initial(name, "busybox", false, false)
        }
    }

    #[test]
    fn phases_follow_get_phase() {
        let creating = ContainerStatus::initial("a", "x", false, false);
        assert_eq!(phase("Always", &[], std::slice::from_ref(&creating), false), "Pending");
        assert_eq!(phase("Always", &[], &[running("a")], false), "Running");
        assert_eq!(phase("Never", &[], &[exited("a", 0)], false), "Succeeded");
        assert_eq!(phase("Never", &[], &[exited("a", 1)], false), "Failed");
        assert_eq!(phase("OnFailure", &[], &[exited("a", 1)], false), "Running");
        assert_eq!(phase("Always", &[], &[exited("a", 0)], false), "Running");
        assert_eq!(phase("Always", &[], &[exited("a", 0), exited("b", 1)], true), "Failed");
        assert_eq!(phase("Never", &[exited("init", 1)], std::slice::from_ref(&creating), false), "Failed");
        assert_eq!(phase("Always", &[running("init")], &[creating], false), "Pending");
    }

    #[test]
    fn conditions_come_in_the_kubelets_order_with_its_messages() {
        let mut web = running("web");
        web.ready = false;
        let input = PodStatusInput {
            restart_policy: "Always",
            init: &[],
            regular: &[running("sidecar"), web],
            ephemeral: &[],
            sandbox_ready: true,
            terminal: false,
            host_ip: "192.0.2.1",
            pod_ip: Some("10.244.0.5"),
            start_time: "2026-12-02T10:00:00Z",
            previous: None,
            now: "2026-12-02T10:00:01Z",
            readiness_gates: &[],
        };
        let s = pod_status(&input);
        let types: Vec<&str> =
            s["conditions"].as_array().unwrap().iter().map(|c| c["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"]);
        assert_eq!(s["conditions"][2]["reason"], "ContainersNotReady");
        assert_eq!(s["conditions"][2]["message"], "containers with unready status: [web]");
        assert_eq!(s["phase"], "Running");
        assert_eq!(s["containerStatuses"][0]["name"], "sidecar", "sorted by name");
        assert_eq!(s["podIPs"], json!([{"ip": "10.244.0.5"}]));
    }

    #[test]
    fn a_terminal_phase_is_never_left() {
        let prev = json!({"phase": "Succeeded"});
        let input = PodStatusInput {
            restart_policy: "Always",
            init: &[],
            regular: &[running("a")],
            ephemeral: &[],
            sandbox_ready: true,
            terminal: false,
            host_ip: "h",
            pod_ip: None,
            start_time: "t",
            previous: Some(&prev),
            now: "t",
            readiness_gates: &[],
        };
        assert_eq!(pod_status(&input)["phase"], "Succeeded");
    }
}
