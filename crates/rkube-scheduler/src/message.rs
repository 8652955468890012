//! The texts kube-scheduler (1.28 to 1.33) writes when a pod fits nowhere: the FitError
//! summary (`pkg/scheduler/framework/types.go`, `FitError.Error`) and the DefaultPreemption
//! post-filter's part (`pkg/scheduler/framework/preemption`, `plugins/defaultpreemption`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

use crate::filters::{self, Code, NodeInfo, Rejection};

/// The error when the cluster has no nodes at all (`ErrNoNodesAvailable`).
pub const NO_NODES: &str = "no nodes available to schedule pods";
/// DefaultPreemption's status for a node where no filter failure can be resolved by
/// preemption.
pub const PREEMPTION_NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
/// DefaultPreemption's status for a node with no pod of lower priority to evict.
pub const NO_VICTIMS: &str = "No preemption victims found for incoming pod";
/// DefaultPreemption's answer for a pod that may not preempt.
pub const NOT_ELIGIBLE_NEVER: &str = "not eligible due to preemptionPolicy=Never.";

/// The longest note an events.k8s.io/v1 Event may carry.
pub const NOTE_LENGTH_LIMIT: usize = 1024;

/// `0/N nodes are available: <count reason, ...>.` with the "count reason" strings sorted
/// as strings (so "10 x" sorts before "2 y", as in Go), then ` <post-filter message>`.
pub fn fit_error(num_nodes: usize, reasons: &BTreeMap<String, usize>, post_filter: &str) -> String {
    let mut items: Vec<String> = reasons.iter().map(|(reason, n)| format!("{n} {reason}")).collect();
    items.sort();
    let mut msg = format!("0/{num_nodes} nodes are available:");
    if !items.is_empty() {
        msg.push_str(&format!(" {}.", items.join(", ")));
    }
    if !post_filter.is_empty() {
        msg.push(' ');
        msg.push_str(post_filter);
    }
    msg
}

/// Reason counts over the nodes' rejections (a node may give several reasons).
pub fn histogram<'a>(rejections: impl IntoIterator<Item = &'a Rejection>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for r in rejections {
        for reason in &r.reasons {
            *counts.entry(reason.clone()).or_insert(0) += 1;
        }
    }
    counts
}

fn priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

/// What DefaultPreemption reports after the filters rejected every node, prefixed with
/// `preemption: ` as the plugin does. rkube does not evict: a node where evicting every pod
/// of lower priority would make room is reported like one without victims.
pub fn preemption(pod: &Pod, nodes: &[(NodeInfo, Rejection)]) -> String {
    let never = pod.spec.as_ref().and_then(|s| s.preemption_policy.as_deref()) == Some("Never");
    if never {
        return format!("preemption: {NOT_ELIGIBLE_NEVER}");
    }
    let req = filters::pod_requests(pod, false);
    let mut statuses = Vec::with_capacity(nodes.len());
    for (info, rejection) in nodes {
        if rejection.code == Code::Unresolvable {
            statuses.push(Rejection { code: Code::Unresolvable, reasons: vec![PREEMPTION_NOT_HELPFUL.into()] });
            continue;
        }
        let victims: Vec<&Pod> = info.pods.iter().copied().filter(|p| priority(p) < priority(pod)).collect();
        if victims.is_empty() {
            statuses.push(Rejection { code: Code::Unresolvable, reasons: vec![NO_VICTIMS.into()] });
            continue;
        }
        match filters::filter(pod, &req, &info.without(&victims)) {
            Err(still) => statuses.push(still),
            Ok(()) => statuses.push(Rejection { code: Code::Unresolvable, reasons: vec![NO_VICTIMS.into()] }),
        }
    }
    format!("preemption: {}", fit_error(nodes.len(), &histogram(&statuses), ""))
}

/// The message as an Event note: cut to the limit with ` ...` (kube-scheduler's
/// `truncateMessage`), on a character boundary.
pub fn truncate_note(message: &str) -> String {
    if message.len() <= NOTE_LENGTH_LIMIT {
        return message.to_string();
    }
    let mut end = NOTE_LENGTH_LIMIT - " ...".len();
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{} ...", &message[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_error_forms_upstreams_text() {
        let mut reasons = BTreeMap::new();
        reasons.insert("Insufficient cpu".to_string(), 1);
        let post = format!("preemption: {}", fit_error(1, &[(NO_VICTIMS.to_string(), 1)].into(), ""));
        assert_eq!(
            fit_error(1, &reasons, &post),
            "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
        );
        let mut many = BTreeMap::new();
        many.insert("node(s) had untolerated taint {a: b}".to_string(), 10);
        many.insert("Insufficient memory".to_string(), 2);
        many.insert("Insufficient cpu".to_string(), 2);
        assert_eq!(
            fit_error(14, &many, ""),
            "0/14 nodes are available: 10 node(s) had untolerated taint {a: b}, 2 Insufficient cpu, 2 Insufficient memory."
        );
    }

    #[test]
    fn notes_are_truncated_on_a_character_boundary() {
        assert_eq!(truncate_note("short"), "short");
        let long = "é".repeat(600);
        let t = truncate_note(&long);
        assert!(t.len() <= NOTE_LENGTH_LIMIT && t.ends_with(" ..."), "{}", t.len());
    }
}
