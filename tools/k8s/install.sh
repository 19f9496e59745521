#!/usr/bin/env bash
# Build the Kubernetes test toolchain from the Go module proxy into a cache outside the repository,
# one directory per tool and version, so a warm run skips every build:
#   helm (with the ldflags that set its Kubernetes version), kubeconform, kube-apiserver,
#   kube-controller-manager, kube-scheduler, kubelet, kube-proxy (wrapper module kube/), etcd
#   (wrapper module etcd/), kwok, CoreDNS, KServe's controller manager, KServe's CRDs (config/crd/full
#   of the pinned KServe module), prometheus-operator's ServiceMonitor/PodMonitor CRDs, and the pause
#   binary of the node's sandbox image (pause.c of the k8s.io/kubernetes module, static), the Gateway
#   API's CRDs, the node's Ingress controller (Traefik), skaffold and the loopback registry (crane) of
#   the dev loop, and KEDA (operator and metrics adapter) for queue-depth autoscaling.
# Prints the bin directory on the last line.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$HERE/versions.env"
CACHE=${K8S_TOOLS_CACHE:-$HOME/.cache/speech-stack/k8s-tools}
BIN="$CACHE/bin"
mkdir -p "$BIN"
export GOFLAGS="-buildvcs=false -mod=mod" CGO_ENABLED=0
K8S_MINOR=$(echo "$KUBERNETES_VERSION" | cut -d. -f2)

timed() { local what=$1 start=$SECONDS; shift; "$@"; echo "  built $what in $((SECONDS - start)) s" >&2; }

# build NAME VERSION CMD...: run CMD (which writes $OUT) unless $CACHE/NAME-VERSION/NAME exists; link it into bin/.
build() {
  local name=$1 version=$2; shift 2
  local dir="$CACHE/$name-$version"
  if [ ! -x "$dir/$name" ]; then
    mkdir -p "$dir"
    OUT="$dir/$name" timed "$name $version" "$@"
  fi
  ln -sf "$dir/$name" "$BIN/$name"
}

helm_build() {
  GOBIN=$(dirname "$OUT") go install -trimpath -ldflags "-s -w \
    -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean \
    -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$K8S_MINOR \
    -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$K8S_MINOR" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
}
kubeconform_build() {
  GOBIN=$(dirname "$OUT") go install -trimpath -ldflags "-s -w" "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION"
}
kwok_build() {
  GOBIN=$(dirname "$OUT") go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
}
kube_build() {  # $1: cmd name
  (cd "$HERE/kube" && go build -trimpath -ldflags "-s -w \
    -X k8s.io/component-base/version.gitVersion=$KUBERNETES_VERSION -X k8s.io/component-base/version.gitMajor=1 \
    -X k8s.io/component-base/version.gitMinor=$K8S_MINOR -X k8s.io/component-base/version.gitTreeState=clean \
    -X k8s.io/component-base/version.buildDate=2026-01-01T00:00:00Z -X k8s.io/client-go/pkg/version.gitVersion=$KUBERNETES_VERSION" \
    -o "$OUT" "k8s.io/kubernetes/cmd/$1")
}
coredns_build() {
  GOBIN=$(dirname "$OUT") go install -trimpath -ldflags "-s -w" "github.com/coredns/coredns@$COREDNS_VERSION"
}
pause_build() {  # needs gcc and glibc's static libc (libc6-dev)
  local dir
  dir=$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  gcc -Os -Wall -Werror -static -DVERSION="$KUBERNETES_VERSION" -o "$OUT" "$dir/build/pause/linux/pause.c"
}
etcd_build() { (cd "$HERE/etcd" && go build -trimpath -ldflags "-s -w" -o "$OUT" go.etcd.io/etcd/server/v3); }
# mod_copy MODULE VERSION: a writable copy of a module, for tools whose go.mod has replace directives
# (\`go install\` refuses them) or whose version list the proxy refuses; prints its directory.
mod_copy() {
  local src="$CACHE/src/${1//\//_}@$2"
  if [ ! -d "$src" ]; then
    mkdir -p "$CACHE/src"
    cp -r "$(go mod download -json "$1@$2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')" "$src.partial"
    chmod -R u+w "$src.partial"
    mv "$src.partial" "$src"
  fi
  echo "$src"
}
traefik_build() {  # upstream's ldflags; the web UI is a placeholder in the module (no dashboard)
  local src
  src=$(mod_copy github.com/traefik/traefik/v3 "$TRAEFIK_VERSION")
  (cd "$src" && go build -trimpath -ldflags "-s -w -X github.com/traefik/traefik/v3/pkg/version.Version=$TRAEFIK_VERSION \
    -X github.com/traefik/traefik/v3/pkg/version.Codename=speech-stack \
    -X github.com/traefik/traefik/v3/pkg/version.BuildDate=2026-01-01T00:00:00Z" -o "$OUT" ./cmd/traefik)
}
skaffold_build() {  # upstream's Linux release tags
  local src v=github.com/GoogleContainerTools/skaffold/v2/pkg/skaffold/version
  src=$(mod_copy github.com/GoogleContainerTools/skaffold/v2 "$SKAFFOLD_VERSION")
  (cd "$src" && go build -trimpath -tags "timetzdata osusergo netgo static_build release" -ldflags "-s -w \
    -X $v.version=$SKAFFOLD_VERSION -X $v.buildDate=2026-01-01T00:00:00Z" -o "$OUT" ./cmd/skaffold)
}
crane_build() {
  GOBIN=$(dirname "$OUT") go install -trimpath -ldflags "-s -w" "github.com/google/go-containerregistry/cmd/crane@$CRANE_VERSION"
}
keda_build() {  # $1: operator or adapter
  local src
  src=$(mod_copy github.com/kedacore/keda/v2 "$KEDA_VERSION")
  (cd "$src" && go build -trimpath -ldflags "-s -w -X github.com/kedacore/keda/v2/version.Version=${KEDA_VERSION#v} \
    -X github.com/kedacore/keda/v2/version.GitCommit=release" -o "$OUT" "./cmd/$1")
}
kserve_dir() { go mod download -json "github.com/kserve/kserve@$KSERVE_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])'; }
kserve_build() {
  # KServe's go.mod carries replace directives, so build inside a writable copy of the module.
  # One-line patch: the webhook server's host comes from KSERVE_WEBHOOK_HOST (unset: upstream's
  # all-interfaces default), so the tests can keep it on loopback.
  local src="$CACHE/kserve-src-$KSERVE_VERSION"
  [ -d "$src" ] || { cp -r "$(kserve_dir)" "$src"; chmod -R u+w "$src"; }
  grep -q KSERVE_WEBHOOK_HOST "$src/cmd/manager/main.go" || sed -i \
    's|WebhookServer: webhook.NewServer(webhook.Options{|WebhookServer: webhook.NewServer(webhook.Options{\n\t\t\tHost: os.Getenv("KSERVE_WEBHOOK_HOST"),|' \
    "$src/cmd/manager/main.go"
  grep -q KSERVE_WEBHOOK_HOST "$src/cmd/manager/main.go"
  (cd "$src" && go build -trimpath -ldflags "-s -w" -o "$OUT" ./cmd/manager)
}

build helm "$HELM_VERSION" helm_build
build kubeconform "$KUBECONFORM_VERSION" kubeconform_build
build etcd "$ETCD_VERSION" etcd_build
for cmd in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy; do
  build "$cmd" "$KUBERNETES_VERSION" kube_build "$cmd"
done
build kwok "$KWOK_VERSION" kwok_build
build coredns "$COREDNS_VERSION" coredns_build
build pause "$KUBERNETES_VERSION" pause_build
build kserve-manager "$KSERVE_VERSION-loopback" kserve_build
build crane "$CRANE_VERSION" crane_build
build traefik "$TRAEFIK_VERSION" traefik_build
build skaffold "$SKAFFOLD_VERSION" skaffold_build
build keda-operator "$KEDA_VERSION" keda_build operator
build keda-adapter "$KEDA_VERSION" keda_build adapter

# KServe CRDs (full schemas) and its webhook manifests, plus kubeconform's CRD-to-JSON-schema converter.
CRDS="$CACHE/kserve-crds-$KSERVE_VERSION"
if [ ! -f "$CRDS/.done" ]; then
  mkdir -p "$CRDS"
  cp "$(kserve_dir)"/config/crd/full/serving.kserve.io_*.yaml "$CRDS/"
  chmod u+w "$CRDS"/*.yaml
  touch "$CRDS/.done"
fi
ln -sfn "$CRDS" "$CACHE/kserve-crds"
# The Gateway API's standard CRDs (the chart's HTTPRoute and Gateway; Traefik's Gateway provider).
GWAPI="$CACHE/gateway-api-crds-$GATEWAY_API_VERSION"
if [ ! -f "$GWAPI/.done" ]; then
  mkdir -p "$GWAPI"
  GWAPI_DIR=$(go mod download -json "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  cp "$GWAPI_DIR"/config/crd/standard/gateway.networking.k8s.io_*.yaml "$GWAPI/"
  chmod u+w "$GWAPI"/*.yaml
  touch "$GWAPI/.done"
fi
ln -sfn "$GWAPI" "$CACHE/gateway-api-crds"
# KEDA's CRDs (ScaledObject and friends, and the eventing ones its operator waits for at start: without
# CloudEventSource it exits after a minute), from the module copy its build used.
KCRDS="$CACHE/keda-crds-$KEDA_VERSION-with-eventing"
if [ ! -f "$KCRDS/.done" ]; then
  mkdir -p "$KCRDS"
  cp "$(mod_copy github.com/kedacore/keda/v2 "$KEDA_VERSION")"/config/crd/bases/*.yaml "$KCRDS/"
  chmod u+w "$KCRDS"/*.yaml
  touch "$KCRDS/.done"
fi
ln -sfn "$KCRDS" "$CACHE/keda-crds"
# prometheus-operator's ServiceMonitor and PodMonitor CRDs (the chart's optional monitoring objects).
PROM="$CACHE/prometheus-operator-crds-$PROMETHEUS_OPERATOR_VERSION"
if [ ! -f "$PROM/.done" ]; then
  mkdir -p "$PROM"
  PROM_DIR=$(go mod download -json "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  cp "$PROM_DIR"/example/prometheus-operator-crd/monitoring.coreos.com_{servicemonitors,podmonitors}.yaml "$PROM/"
  chmod u+w "$PROM"/*.yaml
  touch "$PROM/.done"
fi
ln -sfn "$PROM" "$CACHE/prometheus-operator-crds"
# kwok's "fast" stages: nodes become Ready, pods Running/Ready at once, deleted pods go away.
STAGES="$CACHE/kwok-stages-$KWOK_VERSION.yaml"
if [ ! -f "$STAGES" ]; then
  KWOK_DIR=$(go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  for f in node/fast/node-initialize pod/fast/pod-ready pod/fast/pod-complete pod/fast/pod-delete; do
    cat "$KWOK_DIR/kustomize/stage/$f.yaml"; echo "---"
  done > "$STAGES"
fi
ln -sf "$STAGES" "$CACHE/kwok-stages.yaml"
# skaffold's JSON schema for skaffold.yaml (from the skaffold module; skaffold itself is not built).
SK="$CACHE/skaffold-schema-$SKAFFOLD_VERSION.json"
if [ ! -f "$SK" ]; then
  SK_DIR=$(go mod download -json "github.com/GoogleContainerTools/skaffold/v2@$SKAFFOLD_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  cp "$SK_DIR/docs-v2/content/en/schemas/$SKAFFOLD_SCHEMA.json" "$SK"
fi
ln -sf "$SK" "$CACHE/skaffold-schema.json"
KC_DIR=$(go mod download -json "github.com/yannh/kubeconform@$KUBECONFORM_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
cp -f "$KC_DIR/scripts/openapi2jsonschema.py" "$CACHE/openapi2jsonschema.py"
echo "$BIN"
