#!/usr/bin/env bash
# up.sh: a real single-node Kubernetes cluster on this machine, every process in its own session
# with its PID in $NODE_DIR/pids (down.sh stops them by PID): containerd (Debian's, own socket and
# config) with runc and the bridge CNI plugins, etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, CoreDNS, kubelet, kube-proxy (the project's Go-module builds), KServe's
# controller (RawDeployment), KEDA (keda.sh), Traefik as the Ingress and Gateway API controller (a pod,
# traefik.yaml) and a loopback registry for skaffold (crane). Imports the images of tools/images/build.sh (import.sh). Saves the
# kernel settings the kubelet and the bridge plugin change, so down.sh can restore them.
set -euo pipefail
# shellcheck source=env.sh
source "$(dirname "$0")/env.sh"
for f in "$NODE_DIR"/pids/*.pid; do  # never start a second cluster over a running one
  [ -f "$f" ] && kill -0 "$(cat "$f")" 2> /dev/null && { echo "already running: $f (run down.sh)" >&2; exit 1; }
done
for tool in etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy coredns kserve-manager crane \
  keda-operator keda-adapter; do
  [ -x "$KBIN/$tool" ] || { echo "missing $KBIN/$tool: run \`make k8s-tools\`" >&2; exit 1; }
done
for tool in containerd ctr runc /usr/lib/cni/bridge iptables conntrack openssl "$KUBECTL"; do
  command -v "$tool" > /dev/null || { echo "missing $tool: run \`make node-packages\` / \`make venv\`" >&2; exit 1; }
done
START=$SECONDS
say() { echo "[$((SECONDS - START)) s] $*"; }
spawn() {  # spawn NAME CMD...: start CMD in its own session, log to logs/NAME.log
  local name=$1
  shift
  setsid "$@" > "$NODE_DIR/logs/$name.log" 2>&1 < /dev/null &
  echo $! > "$NODE_DIR/pids/$name.pid"
}
waitfor() {  # waitfor WHAT SECONDS CMD...: poll CMD until it succeeds; fail if a started process died
  local what=$1 end=$((SECONDS + $2)) f
  shift 2
  until "$@" > /dev/null 2>&1; do
    for f in "$NODE_DIR"/pids/*.pid; do
      kill -0 "$(cat "$f")" 2> /dev/null ||
        { echo "$(basename "$f" .pid) exited while waiting for $what:" >&2; tail -n 20 "$NODE_DIR/logs/$(basename "$f" .pid).log" >&2; return 1; }
    done
    [ $SECONDS -lt $end ] || { echo "timed out waiting for $what" >&2; return 1; }
    sleep 0.5
  done
  say "$what"
}
S=$NODE_DIR/state P=$NODE_DIR/pki E=$NODE_DIR/etc
mkdir -p "$S" "$E" "$RUN_DIR" "$CTD_ROOT"
# paths the kubelet, containerd and libcni hard-code: down.sh removes only those that were not there
[ -f "$NODE_DIR/preexisting-paths" ] || for p in /var/lib/kubelet /var/log/containers /var/log/pods /run/containerd /var/lib/cni /run/netns; do
  [ -e "$p" ] && echo "$p"
done > "$NODE_DIR/preexisting-paths"
[ -f "$NODE_DIR/sysctl-saved.conf" ] ||
  sysctl vm.overcommit_memory kernel.panic kernel.panic_on_oops net.ipv4.ip_forward > "$NODE_DIR/sysctl-saved.conf"
[ -f "$P/front-proxy-client.crt" ] || "$(dirname "$0")/pki.sh" "$P" "$NODE_IP" "${SERVICE_CIDR%.0/24}.1" "$NODE_NAME" "$API_PORT"
if ! ip link show "$BRIDGE" > /dev/null 2>&1; then
  ip link add "$BRIDGE" type bridge
  ip addr add "$NODE_IP/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
fi
"$(dirname "$0")/configs.sh"
say "pki, bridge $BRIDGE, configs"

spawn containerd containerd --config "$E/containerd.toml"
waitfor "containerd" 30 ctr_cri version
"$(dirname "$0")/import.sh"
say "images imported"

spawn etcd "$KBIN/etcd" --name node --data-dir "$S/etcd" --listen-client-urls http://127.0.0.1:21379 \
  --advertise-client-urls http://127.0.0.1:21379 --listen-peer-urls http://127.0.0.1:21380 \
  --initial-advertise-peer-urls http://127.0.0.1:21380 --initial-cluster node=http://127.0.0.1:21380 \
  --listen-metrics-urls http://127.0.0.1:21381
spawn kube-apiserver "$KBIN/kube-apiserver" --etcd-servers http://127.0.0.1:21379 \
  --bind-address "$NODE_IP" --advertise-address "$NODE_IP" --secure-port "$API_PORT" \
  --tls-cert-file "$P/apiserver.crt" --tls-private-key-file "$P/apiserver.key" --client-ca-file "$P/ca.crt" \
  --cert-dir "$P/generated" --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
  --kubelet-client-certificate "$P/apiserver-kubelet-client.crt" --kubelet-client-key "$P/apiserver-kubelet-client.key" \
  --kubelet-certificate-authority "$P/ca.crt" --kubelet-preferred-address-types InternalIP \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-account-key-file "$P/sa.pub" --service-account-signing-key-file "$P/sa.key" \
  --service-cluster-ip-range "$SERVICE_CIDR" \
  --requestheader-client-ca-file "$P/front-proxy-ca.crt" --requestheader-allowed-names front-proxy-client \
  --requestheader-username-headers X-Remote-User --requestheader-group-headers X-Remote-Group \
  --requestheader-extra-headers-prefix X-Remote-Extra- --proxy-client-cert-file "$P/front-proxy-client.crt" \
  --proxy-client-key-file "$P/front-proxy-client.key" --enable-aggregator-routing=true
waitfor "kube-apiserver ready" 120 kc get --raw /readyz
# KServe's CRDs before the controllers start, so the garbage collector knows the kind
for crd in "$KBIN"/../kserve-crds/serving.kserve.io_*.yaml; do kc apply --server-side -f "$crd" > /dev/null; done
spawn kube-controller-manager "$KBIN/kube-controller-manager" --kubeconfig "$P/kube-controller-manager.kubeconfig" \
  --authentication-kubeconfig "$P/kube-controller-manager.kubeconfig" \
  --authorization-kubeconfig "$P/kube-controller-manager.kubeconfig" --bind-address 127.0.0.1 --secure-port 0 \
  --leader-elect=false --use-service-account-credentials=true --service-account-private-key-file "$P/sa.key" \
  --root-ca-file "$P/ca.crt" --cluster-signing-cert-file "$P/ca.crt" --cluster-signing-key-file "$P/ca.key" \
  --flex-volume-plugin-dir "$S/kcm-flex"
spawn kube-scheduler "$KBIN/kube-scheduler" --kubeconfig "$P/kube-scheduler.kubeconfig" \
  --authentication-kubeconfig "$P/kube-scheduler.kubeconfig" --authorization-kubeconfig "$P/kube-scheduler.kubeconfig" \
  --bind-address 127.0.0.1 --secure-port 0 --leader-elect=false
spawn coredns "$KBIN/coredns" -conf "$E/Corefile"
spawn kubelet "$KBIN/kubelet" --config "$E/kubelet.yaml" --kubeconfig "$P/kubelet.kubeconfig" \
  --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" --root-dir "$S/kubelet" \
  --volume-plugin-dir "$S/kubelet-plugins"
spawn kube-proxy "$KBIN/kube-proxy" --kubeconfig "$P/kube-proxy.kubeconfig" --proxy-mode iptables \
  --hostname-override "$NODE_NAME" --cluster-cidr "$POD_CIDR" \
  --healthz-bind-address 127.0.0.1:21256 --metrics-bind-address 127.0.0.1:21249 \
  --conntrack-max-per-core 0 --conntrack-tcp-timeout-established 0 --conntrack-tcp-timeout-close-wait 0 \
  --iptables-localhost-nodeports=false
waitfor "default service account" 120 kc get serviceaccount default -n default
node_ready() { [ "$(kc get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]; }
waitfor "node $NODE_NAME Ready" 180 node_ready

# KServe's controller manager on the host (webhooks not registered), RawDeployment by default
kc create namespace kserve > /dev/null
kc apply -f "$E/kserve-config.yaml" > /dev/null
spawn kserve-manager env KUBECONFIG="$P/admin.kubeconfig" POD_NAMESPACE=kserve TMPDIR="$S/kserve" \
  KSERVE_WEBHOOK_HOST=127.0.0.1 "$KBIN/kserve-manager" --metrics-addr 127.0.0.1:21282 \
  --health-probe-addr 127.0.0.1:21281 --webhook-port 21283 --leader-elect=false
waitfor "KServe controller ready" 120 curl -sf http://127.0.0.1:21281/readyz

# KEDA (operator and metrics adapter, host processes): queue-depth autoscaling of the predictors
# shellcheck source=keda.sh
source "$(dirname "$0")/keda.sh"

# The Ingress controller (Traefik, a pod on hostPorts 21080/21444 of the node's address), the Gateway
# API's CRDs before it (its Gateway provider watches them)
for crd in "$KBIN"/../gateway-api-crds/gateway.networking.k8s.io_*.yaml; do kc apply --server-side -f "$crd" > /dev/null; done
TRAEFIK_IMAGE=$(sed -n 's/^traefik=//p' "${IMAGES_ENV:-$HOME/.cache/speech-stack/images/images.env}")
[ -n "$TRAEFIK_IMAGE" ] || { echo "no traefik image in images.env: run \`make images\`" >&2; exit 1; }
sed -e "s|@TRAEFIK_IMAGE@|$TRAEFIK_IMAGE|g" -e "s|@NODE_IP@|$NODE_IP|g" "$(dirname "$0")/traefik.yaml" | kc apply -f - > /dev/null
waitfor "Traefik ready" 180 kc -n ingress rollout status deployment/traefik --timeout=2s

# A registry on the node's loopback for skaffold's dev loop (containerd's CRI pulls from a loopback
# registry over plain HTTP with no configuration); its blobs are a cache kept across clusters.
mkdir -p "$REGISTRY_DIR"
# the registry keeps manifests in memory and blobs on disk, with no garbage collection: past a budget
# the blobs go (the next skaffold push sends the layers again)
if [ "$(du -sm "$REGISTRY_DIR" | cut -f1)" -gt $((${REGISTRY_MAX_GB:-10} * 1024)) ]; then
  rm -rf "${REGISTRY_DIR:?}"/* && say "registry blobs over ${REGISTRY_MAX_GB:-10} GB: cleared"
fi
spawn registry "$KBIN/crane" registry serve --address "$REGISTRY" --disk "$REGISTRY_DIR"
waitfor "registry on $REGISTRY" 30 curl -sf "http://$REGISTRY/v2/"
say "cluster up: KUBECONFIG=$P/admin.kubeconfig"
