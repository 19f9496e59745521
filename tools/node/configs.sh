#!/usr/bin/env bash
# configs.sh: the node's configuration files under $NODE_DIR/etc (containerd, CNI, kubelet, CoreDNS,
# KServe), written from env.sh's addresses. Called by up.sh.
set -euo pipefail
# shellcheck source=env.sh
source "$(dirname "$0")/env.sh"
E=$NODE_DIR/etc S=$NODE_DIR/state P=$NODE_DIR/pki
IMAGES_ENV=${IMAGES_ENV:-$HOME/.cache/speech-stack/images/images.env}
PAUSE_IMAGE=$(sed -n 's/^pause=//p' "$IMAGES_ENV")
[ -n "$PAUSE_IMAGE" ] || { echo "no pause image in $IMAGES_ENV: run \`make images\`" >&2; exit 1; }
mkdir -p "$E/cni" "$S/kserve/k8s-webhook-server/serving-certs"

# containerd 1.6: private socket, state and runc root; the CRI's sandbox image is the local pause
# image (nothing is ever pulled); the process may not lower oom_score_adj (no CAP_SYS_RESOURCE).
cat > "$E/containerd.toml" <<EOC
version = 2
root = "$CTD_ROOT"
state = "$RUN_DIR/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "$CTD_SOCK"
[ttrpc]
  address = "$CTD_SOCK.ttrpc"
[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "$S/containerd-opt"
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "$PAUSE_IMAGE"
    restrict_oom_score_adj = true
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = false
          BinaryName = "/usr/sbin/runc"
          Root = "$RUN_DIR/runc"
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/usr/lib/cni"
      conf_dir = "$E/cni"
EOC

cat > "$E/cni/10-speech-node.conflist" <<EOC
{
  "cniVersion": "1.0.0",
  "name": "speech-node",
  "plugins": [
    {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR", "rangeStart": "${NODE_IP%.1}.10", "gateway": "$NODE_IP"}]],
              "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$S/cni-ipam"}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOC

# kubelet: hybrid cgroups here (failCgroupV1: false), cgroupfs driver, NOFILE capped at the
# process limit, image garbage collection and disk eviction effectively off (the images are
# imported, never pulled: a collected image could not come back).
cat > "$E/kubelet.yaml" <<EOC
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 21248
tlsCertFile: $P/kubelet-serving.crt
tlsPrivateKeyFile: $P/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $P/ca.crt}
authorization: {mode: AlwaysAllow}
cgroupDriver: cgroupfs
failCgroupV1: false
containerRuntimeEndpoint: unix://$CTD_SOCK
clusterDomain: cluster.local
clusterDNS: [$NODE_IP]
resolvConf: /etc/resolv.conf
podLogsDir: $S/pod-logs
maxOpenFiles: 20000
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 200Mi, nodefs.available: 1%, imagefs.available: 1%}
# The images import.sh loads never came from a registry. Once the kubelet pulls an image with the
# same id under another name (skaffold's node profile builds byte-identical images into the loopback
# registry), it keeps a pull record for that id naming only the registry's image, no longer counts
# the imported name as preloaded, and refuses it under imagePullPolicy Never (ErrImageNeverPull):
# the imported names are exempt from that check, every other image keeps it.
imagePullCredentialsVerificationPolicy: NeverVerifyAllowlistedImages
preloadedImagesVerificationAllowlist: ["localhost/speech-stack/*"]
EOC

# CoreDNS on the host, bound to the node address only, answering cluster.local; nothing is forwarded
cat > "$E/Corefile" <<EOC
.:53 {
    bind $NODE_IP
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $P/admin.kubeconfig speech-node
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 30
}
EOC

cat > "$E/kserve-config.yaml" <<'EOC'
apiVersion: v1
kind: ConfigMap
metadata: {name: inferenceservice-config, namespace: kserve}
data:
  deploy: '{"defaultDeploymentMode": "RawDeployment"}'
  storageInitializer: '{"image": "kserve/storage-initializer:v0.20.0", "memoryRequest": "100Mi", "memoryLimit": "1Gi", "cpuRequest": "100m", "cpuLimit": "1"}'
  ingress: '{"ingressGateway": "kserve/kserve-ingress-gateway", "ingressDomain": "example.com", "disableIstioVirtualHost": true, "disableIngressCreation": true}'
EOC
certs=$S/kserve/k8s-webhook-server/serving-certs
[ -f "$certs/tls.crt" ] || openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 7 \
  -keyout "$certs/tls.key" -out "$certs/tls.crt" -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 2> /dev/null
