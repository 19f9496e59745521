# shellcheck shell=bash disable=SC2034
# Shared settings of the single-node cluster scripts (sourced by up.sh, down.sh, import.sh).
# NODE_DIR: this cluster's state, config, logs and PID files (default <repo>/.k8s/node).
# The node's address is a bridge this cluster creates (the kubelet refuses a loopback node IP):
# pods 10.213.0.0/24 on ssbr0 (10.213.0.1 is the node, the API server, CoreDNS and the kubelet),
# Services 10.214.0.0/24. Nothing is routed off the machine (no masquerading).
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
NODE_DIR=${NODE_DIR:-$ROOT/.k8s/node}
NODE_DIR=$(mkdir -p "$NODE_DIR" && cd "$NODE_DIR" && pwd)
KBIN=${K8S_TOOLS_BIN:-$HOME/.cache/speech-stack/k8s-tools/bin}
KUBECTL=${KUBECTL:-$ROOT/.venv/bin/kubectl}
# containerd's root (content store, unpacked images) is a cache kept across clusters, so a warm
# run imports no image; its runtime state lives under RUN_DIR.
CTD_ROOT=${NODE_IMAGE_STORE:-$HOME/.cache/speech-stack/node-containerd}
RUN_DIR=/run/speech-stack-node
CTD_SOCK=$RUN_DIR/containerd.sock
BRIDGE=ssbr0
NODE_IP=10.213.0.1
POD_CIDR=10.213.0.0/24
SERVICE_CIDR=10.214.0.0/24
NODE_NAME=speech-node
API_PORT=21443
KUBELET_PORT=21250
INGRESS_HTTP_PORT=21080   # Traefik's hostPorts on NODE_IP (traefik.yaml)
INGRESS_HTTPS_PORT=21444
REGISTRY=127.0.0.1:21500  # the loopback registry of skaffold's dev loop
KEDA_ADAPTER_PORT=21600   # KEDA's metrics adapter on NODE_IP (the aggregated external metrics API)
KEDA_OPERATOR_GRPC_PORT=21601  # the operator's metrics service, on loopback
REGISTRY_DIR=${NODE_REGISTRY_DIR:-$HOME/.cache/speech-stack/registry}
kc() { "$KUBECTL" --kubeconfig "$NODE_DIR/pki/admin.kubeconfig" "$@"; }
ctr_cri() { ctr --address "$CTD_SOCK" --namespace k8s.io "$@"; }  # the namespace the CRI uses
mkdir -p "$NODE_DIR/logs" "$NODE_DIR/pids"
