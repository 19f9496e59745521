"""The chart on a working control plane: kube-controller-manager, kube-scheduler, kwok fake nodes
(one tainted GPU node with nvidia.com/gpu capacity, one CPU node) and KServe's own controller in
RawDeployment mode, which turns each InferenceService into the Deployment and Service the gateway
is configured to call."""

from __future__ import annotations

import json

import pytest

from tests.k8s.cluster import LocalCluster
from tests.k8s.tools import CHART
from tests.k8s.values_sets import VALUES_SETS

GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = LocalCluster(tmp_path_factory.mktemp("cluster")).start(controllers_follow=True)
    try:
        c.apply_kserve_crds()  # before the controllers, so the garbage collector knows the kind
        c.start_controllers()
        c.add_node(
            "gpu-node",
            {"nvidia.com/gpu.present": "true"},
            {"cpu": "32", "memory": "256Gi", "pods": "110", "nvidia.com/gpu": "4"},
            [GPU_TAINT],
        )
        c.add_node("cpu-node", {}, {"cpu": "32", "memory": "256Gi", "pods": "110"})
        c.add_volumes(6)
        c.start_kserve()
        yield c
    finally:
        c.stop()


def get(cluster, *args) -> dict:
    return json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)


def install(cluster, release: str, values: dict) -> None:
    args = [arg for k, v in values.items() for arg in ("--set-json", f"{k}={json.dumps(v)}")]
    cluster.helm(
        "install",
        release,
        str(CHART),
        "-n",
        release,
        "--create-namespace",
        "--wait",
        "--timeout",
        "120s",
        *args,
        timeout=180,
    )


def predictor_pods_ready(cluster, ns: str) -> bool:
    pods = get(cluster, "pods", "-n", ns, "-l", "component=predictor")["items"]
    return len(pods) == 2 and all(
        any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", [])) for p in pods
    )


def nodes_by_component(cluster, ns: str) -> dict[str, set[str]]:
    placed: dict[str, set[str]] = {}
    for pod in get(cluster, "pods", "-n", ns)["items"]:
        component = pod["metadata"]["labels"]["app.kubernetes.io/component"]
        placed.setdefault(component, set()).add(pod["spec"]["nodeName"])
    return placed


def test_gpu_mode_places_predictors_on_the_gpu_node(cluster):
    install(cluster, "gpu", VALUES_SETS["ha-gateway"])
    cluster.wait("predictor pods Ready", lambda: predictor_pods_ready(cluster, "gpu"), timeout=90)
    assert nodes_by_component(cluster, "gpu") == {"gateway": {"cpu-node"}, "asr": {"gpu-node"}, "tts": {"gpu-node"}}
    assert get(cluster, "hpa", "gpu-speech-stack-gateway", "-n", "gpu")["spec"]["maxReplicas"] == 4
    assert get(cluster, "pdb", "gpu-speech-stack-gateway", "-n", "gpu")["spec"]["maxUnavailable"] == 1


def test_kserve_creates_the_services_the_gateway_calls(cluster):
    gateway = get(cluster, "deployment", "gpu-speech-stack-gateway", "-n", "gpu")
    env = {e["name"]: e.get("value") for e in gateway["spec"]["template"]["spec"]["containers"][0]["env"]}
    for component, var in (("asr", "GATEWAY_ASR_URL"), ("tts", "GATEWAY_TTS_URL")):
        isvc_name = f"gpu-speech-stack-{component}"

        def ready(name: str = isvc_name) -> bool:
            conditions = get(cluster, "isvc", name, "-n", "gpu").get("status", {}).get("conditions", [])
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

        cluster.wait(f"{isvc_name} Ready", ready, timeout=60)
        service = get(cluster, "service", f"{isvc_name}-predictor", "-n", "gpu")  # created by KServe
        assert service["metadata"]["ownerReferences"][0]["kind"] == "InferenceService"
        assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(80, 8080)]
        assert env[var] == f"http://{service['metadata']['name']}.gpu.svc.cluster.local"
        pods = get(cluster, "pods", "-n", "gpu", "-l", f"app.kubernetes.io/component={component}")["items"]
        assert pods, "the NetworkPolicy's selector matches no predictor pod"
        assert pods[0]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_cpu_mode_places_predictors_on_the_cpu_node(cluster):
    install(cluster, "cpu", VALUES_SETS["cpu-only"])
    cluster.wait("predictor pods Ready", lambda: predictor_pods_ready(cluster, "cpu"), timeout=90)
    assert nodes_by_component(cluster, "cpu") == {"gateway": {"cpu-node"}, "asr": {"cpu-node"}, "tts": {"cpu-node"}}


def test_uninstall_removes_everything_including_what_kserve_made(cluster):
    for release in ("gpu", "cpu"):
        cluster.helm("uninstall", release, "-n", release, "--wait", "--timeout", "120s", timeout=180)

        def empty(ns=release) -> bool:
            out = cluster.kubectl(
                "get", "isvc,deploy,svc,pods,pvc,netpol,hpa,pdb,secret", "-n", ns, "-o", "name", check=False
            ).stdout.split()
            return not [name for name in out if "speech-stack" in name]

        cluster.wait(f"{release} emptied", empty, timeout=120)
