#!/usr/bin/env bash
# down.sh: stop what up.sh started, each process by the PID it saved, and remove what the node left
# on the host: pods' mounts and network namespaces, the bridge and its veths, the kubelet's cgroups,
# every KUBE-*/CNI-* iptables and ip6tables chain, the paths the kubelet, containerd and libcni
# hard-code, and the kernel settings they changed (restored to the values up.sh saved).
# containerd's image store (a cache) and $NODE_DIR's logs stay.
set -uo pipefail
# shellcheck source=env.sh
source "$(dirname "$0")/env.sh"
stop() {  # stop NAME: SIGTERM, up to 20 s, then SIGKILL
  local f=$NODE_DIR/pids/$1.pid pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2> /dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 40); do kill -0 "$pid" 2> /dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2> /dev/null && kill -KILL "$pid"
  fi
  rm -f "$f"
}
api_up() { [ -f "$NODE_DIR/pids/kube-apiserver.pid" ] && kc get --raw /readyz > /dev/null 2>&1; }
# 1. workloads first, while the kubelet runs, so that CNI DEL and volume unmounts happen properly
if api_up; then
  stop kserve-manager
  stop keda-operator  # before the workloads go: it would scale them back
  for ns in $(kc get ns -o name | cut -d/ -f2 | grep -vxE 'kube-system|kube-public|kube-node-lease'); do
    kc delete deploy,rs,pod --all -n "$ns" --grace-period=1 --wait=true --timeout=60s > /dev/null 2>&1
  done
  kc delete pvc --all -A --wait=true --timeout=30s > /dev/null 2>&1
  kc delete pv --all --wait=true --timeout=30s > /dev/null 2>&1
fi
for name in registry keda-adapter keda-operator kserve-manager kube-proxy; do stop "$name"; done
[ -x "$KBIN/kube-proxy" ] && "$KBIN/kube-proxy" --cleanup --proxy-mode iptables > "$NODE_DIR/logs/kube-proxy-cleanup.log" 2>&1
stop kubelet
# 2. containers the kubelet left (crictl is not in Debian 12: ctr's task API on the CRI namespace)
if [ -S "$CTD_SOCK" ]; then
  for c in $(ctr_cri containers ls -q 2> /dev/null); do
    ctr_cri tasks kill -s KILL "$c" > /dev/null 2>&1
    sleep 0.2
    ctr_cri tasks delete "$c" > /dev/null 2>&1
    ctr_cri containers delete "$c" > /dev/null 2>&1
  done
fi
for name in coredns kube-scheduler kube-controller-manager kube-apiserver etcd containerd; do stop "$name"; done
# 3. shims that outlived containerd (each in its own session), by the PID each wrote into its bundle
for f in "$RUN_DIR"/containerd/io.containerd.runtime.v2.task/k8s.io/*/shim.pid; do
  [ -f "$f" ] && kill -KILL "$(cat "$f")" 2> /dev/null
done
sleep 0.5
# 4. mounts under the node's directories (rootfs overlays, shm, volumes, netns), deepest first
grep -E " ($NODE_DIR|$RUN_DIR|$CTD_ROOT)" /proc/mounts | awk '{print $2}' | sort -r | while read -r m; do umount -l "$m"; done
for ns in /run/netns/cni-*; do [ -e "$ns" ] && { umount "$ns" 2> /dev/null; rm -f "$ns"; }; done
# 5. the bridge and any veth still attached to it
for ifc in $(ip -o link show type veth 2> /dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
  ip link show "$ifc" 2> /dev/null | grep -q "master $BRIDGE" && ip link del "$ifc"
done
ip link show "$BRIDGE" > /dev/null 2>&1 && ip link del "$BRIDGE"
# 6. the kubelet's cgroups (cgroupfs driver; v1 hierarchies and the unified one), deepest first
for h in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
  [ -d "$h/kubepods" ] && find "$h/kubepods" -depth -type d -exec rmdir {} \; 2> /dev/null
done
# 7. iptables/ip6tables: jumps into KUBE-*/CNI-* chains, then the chains themselves
for ipt in iptables ip6tables; do
  command -v $ipt > /dev/null || continue
  for t in filter nat mangle; do
    $ipt-save -t $t 2> /dev/null | grep -E '^-A [A-Z]+ .*-j (KUBE|CNI)-' | grep -vE '^-A (KUBE|CNI)-' | sed 's/^-A /-D /' |
      while read -r rule; do eval "$ipt -t $t $rule"; done
    for c in $($ipt-save -t $t 2> /dev/null | sed -nE 's/^:((KUBE|CNI)-[^ ]*) .*/\1/p'); do $ipt -t $t -F "$c"; done
    for c in $($ipt-save -t $t 2> /dev/null | sed -nE 's/^:((KUBE|CNI)-[^ ]*) .*/\1/p'); do $ipt -t $t -X "$c"; done
  done
done
# 8. kernel settings: back to the host's values
[ -f "$NODE_DIR/sysctl-saved.conf" ] && sysctl -q -p "$NODE_DIR/sysctl-saved.conf" && rm -f "$NODE_DIR/sysctl-saved.conf"
# 9. runtime state and paths hard-coded in kubelet 1.37 / containerd 1.6 / libcni, outside NODE_DIR
rm -rf "$RUN_DIR"
if [ -f "$NODE_DIR/preexisting-paths" ]; then  # written by up.sh: what existed before the node
  for p in /var/lib/kubelet /var/log/containers /var/log/pods /run/containerd /var/lib/cni; do
    grep -qxF "$p" "$NODE_DIR/preexisting-paths" || rm -rf "$p"
  done
  grep -qxF /run/netns "$NODE_DIR/preexisting-paths" || rmdir /run/netns 2> /dev/null
  rm -f "$NODE_DIR/preexisting-paths"
fi
rm -rf "$NODE_DIR/state" "$NODE_DIR/pki" "$NODE_DIR/pids"
echo "node down"
