# shellcheck shell=bash
# keda.sh, sourced by up.sh (its spawn, waitfor, say and kc) once the API server, the controllers and
# the kubelet run: KEDA on the node:
# its CRDs, the operator and the metrics adapter as host processes of this cluster (the project's
# Go-module builds, like KServe's controller), the adapter serving external.metrics.k8s.io to the
# HPA controller through the API server's aggregation layer (front-proxy certificates: pki.sh; the
# APIService reaches the adapter on the node's address through a Service without selector).
# Certificates are made here, signed by the cluster CA, with no rotation.
K=$NODE_DIR/pki/keda
[ -d "$KBIN/../keda-crds" ] || { echo "no KEDA CRDs in $KBIN/..: run \`make k8s-tools\`" >&2; exit 1; }

# 1. certificates: one for both KEDA services (the operator's gRPC metrics service and the adapter)
if [ ! -f "$K/tls.crt" ]; then
  mkdir -p "$K"
  openssl req -newkey rsa:2048 -nodes -keyout "$K/tls.key" -out "$K/tls.csr" -subj "/CN=keda" 2> /dev/null
  names=""
  for svc in keda-operator keda-metrics-apiserver; do
    names="$names,DNS:$svc,DNS:$svc.keda,DNS:$svc.keda.svc,DNS:$svc.keda.svc.cluster.local"
  done
  printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' "${names#,}" > "$K/ext.cnf"
  openssl x509 -req -in "$K/tls.csr" -CA "$P/ca.crt" -CAkey "$P/ca.key" -CAcreateserial -out "$K/tls.crt" \
    -days 365 -extfile "$K/ext.cnf" 2> /dev/null
  cp "$P/ca.crt" "$K/ca.crt"
fi

# 2. CRDs, namespace, the aggregated API and the HPA controller's right to read it
for crd in "$KBIN"/../keda-crds/*.yaml; do kc apply --server-side -f "$crd" > /dev/null; done
kc apply -f - > /dev/null <<EOF
apiVersion: v1
kind: Namespace
metadata: {name: keda}
---
apiVersion: v1
kind: Service
metadata: {name: keda-metrics-apiserver, namespace: keda}
spec:
  ports: [{name: https, port: 443, targetPort: $KEDA_ADAPTER_PORT, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: keda-metrics-apiserver-node
  namespace: keda
  labels: {kubernetes.io/service-name: keda-metrics-apiserver}
addressType: IPv4
endpoints: [{addresses: ["$NODE_IP"], conditions: {ready: true}}]
ports: [{name: https, port: $KEDA_ADAPTER_PORT, protocol: TCP}]
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: v1beta1.external.metrics.k8s.io}
spec:
  service: {name: keda-metrics-apiserver, namespace: keda, port: 443}
  group: external.metrics.k8s.io
  version: v1beta1
  caBundle: $(base64 -w0 < "$K/ca.crt")
  groupPriorityMinimum: 100
  versionPriority: 100
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: keda-external-metrics-reader}
rules: [{apiGroups: [external.metrics.k8s.io], resources: ["*"], verbs: ["*"]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: keda-hpa-controller-external-metrics}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: keda-external-metrics-reader}
subjects: [{kind: ServiceAccount, name: horizontal-pod-autoscaler, namespace: kube-system}]
EOF

# 3. the operator (controllers and the metrics service) and the adapter, with the admin kubeconfig
common=(env KUBECONFIG="$P/admin.kubeconfig" WATCH_NAMESPACE="" POD_NAMESPACE=keda KEDA_CLUSTER_OBJECT_NAMESPACE=keda)
spawn keda-operator "${common[@]}" "$KBIN/keda-operator" --leader-elect=false --enable-cert-rotation=false \
  --cert-dir "$K" --enable-webhook-patching=false --enable-apiservice-patching=false \
  --metrics-service-bind-address "127.0.0.1:$KEDA_OPERATOR_GRPC_PORT" --metrics-bind-address 127.0.0.1:21602 \
  --health-probe-bind-address 127.0.0.1:21603
spawn keda-adapter "${common[@]}" "$KBIN/keda-adapter" --secure-port "$KEDA_ADAPTER_PORT" --bind-address "$NODE_IP" \
  --tls-cert-file "$K/tls.crt" --tls-private-key-file "$K/tls.key" --cert-dir "$K" --client-ca-file "$P/ca.crt" \
  --authentication-kubeconfig "$P/admin.kubeconfig" --authorization-kubeconfig "$P/admin.kubeconfig" \
  --lister-kubeconfig "$P/admin.kubeconfig" --port 21604 \
  --metrics-service-address "127.0.0.1:$KEDA_OPERATOR_GRPC_PORT" --metrics-service-grpc-authority keda-operator.keda.svc
apiservice_available() {
  [ "$(kc get apiservice v1beta1.external.metrics.k8s.io -o jsonpath='{.status.conditions[?(@.type=="Available")].status}')" = True ]
}
waitfor "KEDA's external metrics API available" 120 apiservice_available
