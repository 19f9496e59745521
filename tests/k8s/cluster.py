"""A real Kubernetes control plane on loopback for the chart tests.

etcd + kube-apiserver (always); with ``controllers=True`` also kube-controller-manager,
kube-scheduler and kwok (fake nodes whose pods become Running/Ready), and optionally KServe's own
controller manager. Fresh state per cluster, free ports, every process stopped by its PID.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import yaml

from scripts.devstack import free_port
from tests.k8s.tools import CACHE, run, tool, venv_tool

TOKEN = "speech-stack-admin-token"


class LocalCluster:
    def __init__(self, state: Path) -> None:
        self.state = state
        self.kubeconfig = state / "kubeconfig"
        self.procs: dict[str, subprocess.Popen] = {}
        (state / "logs").mkdir(parents=True, exist_ok=True)

    # -- processes --------------------------------------------------------------------------
    def spawn(self, name: str, *cmd: str, env: dict | None = None) -> None:
        log = (self.state / "logs" / f"{name}.log").open("w")
        self.procs[name] = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.state,
            env=(os.environ | (env or {})),
            start_new_session=True,
        )

    def stop(self) -> None:
        for _name, proc in reversed(list(self.procs.items())):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.procs.clear()

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.state / "logs" / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def wait(self, what: str, check, timeout: float = 120, watch: tuple[str, ...] = ()) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name in watch:
                if self.procs[name].poll() is not None:
                    raise RuntimeError(f"{name} exited while waiting for {what}:\n{self.log_tail(name)}")
            if check():
                return
            time.sleep(0.25)
        raise TimeoutError(f"timed out waiting for {what}")

    # -- control plane ----------------------------------------------------------------------
    def _pki(self) -> Path:
        pki = self.state / "pki"
        pki.mkdir()

        def sh(*a):
            return run("openssl", *a)

        sh(
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            f"{pki}/ca.key",
            "-out",
            f"{pki}/ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=speech-stack-test-ca",
        )
        sh(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            f"{pki}/apiserver.key",
            "-out",
            f"{pki}/apiserver.csr",
            "-subj",
            "/CN=kube-apiserver",
        )
        (pki / "ext.cnf").write_text(
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
            "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
        )
        sh(
            "x509",
            "-req",
            "-in",
            f"{pki}/apiserver.csr",
            "-CA",
            f"{pki}/ca.crt",
            "-CAkey",
            f"{pki}/ca.key",
            "-CAcreateserial",
            "-out",
            f"{pki}/apiserver.crt",
            "-days",
            "2",
            "-extfile",
            f"{pki}/ext.cnf",
        )
        sh("genrsa", "-out", f"{pki}/sa.key", "2048")
        sh("rsa", "-in", f"{pki}/sa.key", "-pubout", "-out", f"{pki}/sa.pub")
        (pki / "tokens.csv").write_text(f'{TOKEN},admin,admin-uid,"system:masters"\n')
        return pki

    def start(self, controllers_follow: bool = False) -> LocalCluster:
        """Without controllers nothing removes the pvc-protection finalizer, so that admission
        plugin is off unless controllers will run (then PVC deletion behaves as in a cluster)."""
        pki = self._pki()
        etcd_port, peer, metrics, self.port = free_port(), free_port(), free_port(), free_port()
        self.spawn(
            "etcd",
            tool("etcd"),
            "--name",
            "test",
            "--data-dir",
            str(self.state / "etcd"),
            "--listen-client-urls",
            f"http://127.0.0.1:{etcd_port}",
            "--advertise-client-urls",
            f"http://127.0.0.1:{etcd_port}",
            "--listen-peer-urls",
            f"http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls",
            f"http://127.0.0.1:{peer}",
            "--initial-cluster",
            f"test=http://127.0.0.1:{peer}",
            "--listen-metrics-urls",
            f"http://127.0.0.1:{metrics}",
        )
        self.spawn(
            "kube-apiserver",
            tool("kube-apiserver"),
            "--etcd-servers",
            f"http://127.0.0.1:{etcd_port}",
            "--bind-address",
            "127.0.0.1",
            "--advertise-address",
            "127.0.0.1",
            "--secure-port",
            str(self.port),
            "--tls-cert-file",
            f"{pki}/apiserver.crt",
            "--tls-private-key-file",
            f"{pki}/apiserver.key",
            "--cert-dir",
            f"{pki}/generated",
            "--token-auth-file",
            f"{pki}/tokens.csv",
            "--authorization-mode",
            "RBAC",
            "--service-account-issuer",
            "https://kubernetes.default.svc.cluster.local",
            "--service-account-key-file",
            f"{pki}/sa.pub",
            "--service-account-signing-key-file",
            f"{pki}/sa.key",
            "--service-cluster-ip-range",
            "10.96.0.0/16",
            "--endpoint-reconciler-type",
            "none",
            *([] if controllers_follow else ["--disable-admission-plugins", "StorageObjectInUseProtection"]),
        )
        self.kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "test",
                    "clusters": [
                        {
                            "name": "test",
                            "cluster": {
                                "server": f"https://127.0.0.1:{self.port}",
                                "certificate-authority": str(pki / "ca.crt"),
                            },
                        }
                    ],
                    "users": [{"name": "admin", "user": {"token": TOKEN}}],
                    "contexts": [{"name": "test", "context": {"cluster": "test", "user": "admin"}}],
                }
            )
        )

        def ready() -> bool:
            return self.kubectl("get", "--raw", "/readyz", check=False).returncode == 0

        self.wait("kube-apiserver /readyz", ready, watch=("etcd", "kube-apiserver"))
        return self

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        return run(venv_tool("kubectl"), "--kubeconfig", str(self.kubeconfig), *args, input=input, check=check)

    def helm(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        return run(tool("helm"), "--kubeconfig", str(self.kubeconfig), *args, check=check, timeout=timeout)

    def apply_kserve_crds(self) -> None:
        for crd in sorted((CACHE / "kserve-crds").glob("serving.kserve.io_*.yaml")):
            self.kubectl("apply", "--server-side", "-f", str(crd))
        # `kubectl wait --for condition=established` fails while .status.conditions is empty: poll discovery
        self.wait(
            "InferenceService served",
            lambda: (
                '"inferenceservices"'
                in self.kubectl("get", "--raw", "/apis/serving.kserve.io/v1beta1", check=False).stdout
            ),
        )

    # -- controllers, scheduler, fake nodes ---------------------------------------------------
    def start_controllers(self) -> None:
        kc, pki = str(self.kubeconfig), self.state / "pki"
        self.spawn(
            "kube-controller-manager",
            tool("kube-controller-manager"),
            "--kubeconfig",
            kc,
            "--authentication-kubeconfig",
            kc,
            "--authorization-kubeconfig",
            kc,
            "--bind-address",
            "127.0.0.1",
            "--secure-port",
            "0",
            "--leader-elect=false",
            "--service-account-private-key-file",
            f"{pki}/sa.key",
            "--root-ca-file",
            f"{pki}/ca.crt",
            "--use-service-account-credentials=false",
            "--controllers",
            "*,-nodeipam,-nodelifecycle,-attachdetach,-persistentvolume-expander,-ephemeral-volume",
        )
        self.spawn(
            "kube-scheduler",
            tool("kube-scheduler"),
            "--kubeconfig",
            kc,
            "--authentication-kubeconfig",
            kc,
            "--authorization-kubeconfig",
            kc,
            "--bind-address",
            "127.0.0.1",
            "--secure-port",
            "0",
            "--leader-elect=false",
        )
        self.spawn(
            "kwok",
            tool("kwok"),
            "--kubeconfig",
            kc,
            "-c",
            str(CACHE / "kwok-stages.yaml"),
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector",
            "kwok.x-k8s.io/node=fake",
            "--cidr",
            "10.244.0.0/24",
            "--node-ip",
            "10.244.0.1",
        )
        self.wait(
            "default service account",
            lambda: self.kubectl("get", "sa", "default", "-n", "default", check=False).returncode == 0,
            watch=("kube-controller-manager", "kube-scheduler", "kwok"),
        )

    def add_node(
        self, name: str, labels: dict[str, str], capacity: dict[str, str], taints: list[dict] | None = None
    ) -> None:
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "annotations": {"kwok.x-k8s.io/node": "fake"},
                "labels": {
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "type": "kwok",
                }
                | labels,
            },
            "spec": {"taints": taints or []},
            "status": {"allocatable": capacity, "capacity": capacity},
        }
        self.kubectl("apply", "-f", "-", input=yaml.safe_dump(node))
        self.wait(
            f"node {name} Ready",
            lambda: (
                self.kubectl(
                    "get", "node", name, "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}", check=False
                ).stdout
                == "True"
            ),
            watch=("kwok",),
        )
        # TaintNodesByCondition added not-ready while kwok initialised the node; no controller lifts it here
        self.kubectl("taint", "node", name, "node.kubernetes.io/not-ready:NoSchedule-", check=False)

    def add_volumes(self, count: int) -> None:
        """Static PVs (never mounted: kwok pods do not run) so the chart's PVCs bind."""
        pvs = [
            {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": f"test-pv-{i}"},
                "spec": {
                    "capacity": {"storage": "100Gi"},
                    "accessModes": ["ReadWriteOnce", "ReadWriteMany"],
                    "hostPath": {"path": f"/nonexistent/test-pv-{i}"},
                    "persistentVolumeReclaimPolicy": "Retain",
                },
            }
            for i in range(count)
        ]
        self.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(pvs))

    def start_kserve(self, namespace: str = "kserve") -> None:
        """KServe's own controller (RawDeployment), webhooks not registered, minimal configuration."""
        self.kubectl("create", "namespace", namespace)
        config = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "inferenceservice-config", "namespace": namespace},
            "data": {
                "deploy": '{"defaultDeploymentMode": "RawDeployment"}',
                "storageInitializer": '{"image": "kserve/storage-initializer:v0.20.0", '
                '"memoryRequest": "100Mi", "memoryLimit": "1Gi", '
                '"cpuRequest": "100m", "cpuLimit": "1"}',
                "ingress": '{"ingressGateway": "kserve/kserve-ingress-gateway", '
                '"ingressDomain": "example.com", "disableIstioVirtualHost": true, '
                '"disableIngressCreation": true}',
            },
        }
        self.kubectl("apply", "-f", "-", input=yaml.safe_dump(config))
        certs = self.state / "tmp" / "k8s-webhook-server" / "serving-certs"
        certs.mkdir(parents=True)
        run(
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            f"{certs}/tls.key",
            "-out",
            f"{certs}/tls.crt",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        )
        health = free_port()
        self.spawn(
            "kserve-manager",
            tool("kserve-manager"),
            "--metrics-addr",
            f"127.0.0.1:{free_port()}",
            "--health-probe-addr",
            f"127.0.0.1:{health}",
            "--webhook-port",
            str(free_port()),
            "--leader-elect=false",
            env={
                "KUBECONFIG": str(self.kubeconfig),
                "POD_NAMESPACE": namespace,
                "TMPDIR": str(self.state / "tmp"),
                "KSERVE_WEBHOOK_HOST": "127.0.0.1",
            },
        )
        import httpx

        def ready() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{health}/readyz", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        self.wait("kserve manager /readyz", ready, watch=("kserve-manager",))
