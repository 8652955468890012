#!/bin/sh
# Captures the objects of this directory from a real kube-apiserver: each is created as
# JSON, then read back as JSON (NAME.json) and as protobuf (NAME.pb). The objects hold zero
# values whose handling differs by Go field (pointers keep them, omitempty drops them).
#   SKIP_KCM=1 ../shared/e2e/start-baseline.sh   # kube-apiserver on 127.0.0.1:16443
#   sh crates/rkube-proto/testdata/kube-apiserver/capture.sh
set -eu
cd "$(dirname "$0")"
E2E_HOME=${E2E_HOME:-/tmp/k8s-e2e}
API=https://127.0.0.1:16443
k() { curl -sS --fail-with-body -w "%{stderr}%{http_code} %{url}\n" --cacert "$E2E_HOME/pki/ca.crt" --cert "$E2E_HOME/pki/admin.crt" --key "$E2E_HOME/pki/admin.key" "$@"; }
# A fresh namespace each time (without kube-controller-manager a deleted one stays Terminating).
NS=zeros-$(date +%s)
k -X POST -H 'Content-Type: application/json' "$API/api/v1/namespaces" -d "{\"metadata\":{\"name\":\"$NS\"}}" >/dev/null
k -X POST -H 'Content-Type: application/json' "$API/api/v1/namespaces/$NS/serviceaccounts" -d '{"metadata":{"name":"default"}}' >/dev/null
# name collection-path body [status-body]
put() {
  name=$1 path=$2 body=$3
  k -X POST -H 'Content-Type: application/json' "$API$path" -d "$body" >"$name.json"
  obj=$(printf '%s' "$body" | sed -n 's/.*"metadata":{"name":"\([^"]*\)".*/\1/p')
  if [ $# -ge 4 ]; then
    k -X PATCH -H 'Content-Type: application/merge-patch+json' "$API$path/$obj/status" -d "$4" >/dev/null
  fi
  k -H 'Accept: application/json' "$API$path/$obj" > "$name.json"
  k -H 'Accept: application/vnd.kubernetes.protobuf' "$API$path/$obj" > "$name.pb"
}
put lease "/apis/coordination.k8s.io/v1/namespaces/$NS/leases" \
  '{"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{"name":"l"},"spec":{"holderIdentity":"","leaseDurationSeconds":15,"leaseTransitions":0}}'
put deployment "/apis/apps/v1/namespaces/$NS/deployments" \
  '{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d","generation":0},"spec":{"replicas":0,"minReadySeconds":0,"revisionHistoryLimit":0,"paused":false,"progressDeadlineSeconds":600,"selector":{"matchLabels":{"a":"b"}},"strategy":{"rollingUpdate":{"maxSurge":0,"maxUnavailable":"25%"}},"template":{"metadata":{"labels":{"a":"b"}},"spec":{"terminationGracePeriodSeconds":0,"automountServiceAccountToken":false,"enableServiceLinks":false,"securityContext":{"runAsUser":0,"runAsNonRoot":false,"fsGroup":0},"containers":[{"name":"c","image":"i","stdin":false,"tty":false,"ports":[{"containerPort":80,"hostPort":0}],"securityContext":{"privileged":false,"allowPrivilegeEscalation":false,"readOnlyRootFilesystem":false},"readinessProbe":{"tcpSocket":{"port":8080},"initialDelaySeconds":0,"periodSeconds":10,"successThreshold":1,"failureThreshold":3,"timeoutSeconds":1}}]}}}}' \
  '{"status":{"replicas":0,"readyReplicas":0,"observedGeneration":1,"collisionCount":0}}'
put statefulset "/apis/apps/v1/namespaces/$NS/statefulsets" \
  '{"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"name":"s"},"spec":{"replicas":0,"serviceName":"s","minReadySeconds":0,"selector":{"matchLabels":{"a":"b"}},"updateStrategy":{"rollingUpdate":{"partition":0,"maxUnavailable":1}},"template":{"metadata":{"labels":{"a":"b"}},"spec":{"containers":[{"name":"c","image":"i"}]}}}}' \
  '{"status":{"replicas":0,"availableReplicas":0,"collisionCount":0}}'
put job "/apis/batch/v1/namespaces/$NS/jobs" \
  '{"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"j"},"spec":{"parallelism":0,"completions":0,"backoffLimit":0,"activeDeadlineSeconds":5,"suspend":false,"manualSelector":false,"ttlSecondsAfterFinished":0,"template":{"spec":{"restartPolicy":"Never","containers":[{"name":"c","image":"i"}]}}}}' \
  '{"status":{"active":0,"succeeded":0,"failed":0,"ready":0,"terminating":0}}'
put pod "/api/v1/namespaces/$NS/pods" \
  '{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"priority":0,"hostNetwork":false,"containers":[{"name":"c","image":"i","resources":{"limits":{"cpu":"0"}}}],"tolerations":[{"key":"k","operator":"Exists","effect":"NoExecute","tolerationSeconds":0}]}}' \
  '{"status":{"phase":"Pending","conditions":[{"type":"Ready","status":"False"}],"containerStatuses":[{"name":"c","image":"i","imageID":"","ready":false,"started":false,"restartCount":0,"state":{"waiting":{"reason":"ContainerCreating"}}}]}}'
put pdb "/apis/policy/v1/namespaces/$NS/poddisruptionbudgets" \
  '{"apiVersion":"policy/v1","kind":"PodDisruptionBudget","metadata":{"name":"b"},"spec":{"minAvailable":0,"selector":{"matchLabels":{"a":"b"}}}}'
put configmap "/api/v1/namespaces/$NS/configmaps" \
  '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"},"immutable":false,"data":{"empty":""}}'
put service "/api/v1/namespaces/$NS/services" \
  '{"apiVersion":"v1","kind":"Service","metadata":{"name":"svc"},"spec":{"type":"LoadBalancer","ports":[{"port":80,"targetPort":0,"nodePort":0}],"publishNotReadyAddresses":false,"allocateLoadBalancerNodePorts":false}}'
k -X DELETE "$API/api/v1/namespaces/$NS" >/dev/null
