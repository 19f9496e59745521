"""The chart against a real kube-apiserver (etcd, KServe CRDs, no controllers): install every
values set into a fresh namespace, read the objects back with the kubernetes client, upgrade,
server-side rejection of an invalid render, and uninstall leaving nothing behind."""

from __future__ import annotations

import kubernetes
import pytest

from tests.k8s.tools import CHART, render
from tests.k8s.values_sets import VALUES_SETS

LABEL = "app.kubernetes.io/instance"


@pytest.fixture(scope="module")
def api(apiserver):
    client = kubernetes.config.new_client_from_config(str(apiserver.kubeconfig))
    yield {
        "core": kubernetes.client.CoreV1Api(client),
        "apps": kubernetes.client.AppsV1Api(client),
        "net": kubernetes.client.NetworkingV1Api(client),
        "custom": kubernetes.client.CustomObjectsApi(client),
        "policy": kubernetes.client.PolicyV1Api(client),
        "hpa": kubernetes.client.AutoscalingV2Api(client),
    }
    client.close()


def install_args(values: dict) -> list[str]:
    import json

    args = []
    for key, value in values.items():
        args += ["--set-json", f"{key}={json.dumps(value)}"]
    return args


def isvc(api, namespace: str, name: str) -> dict:
    return api["custom"].get_namespaced_custom_object(
        "serving.kserve.io", "v1beta1", namespace, "inferenceservices", name
    )


def leftovers(api, namespace: str, release: str) -> list[str]:
    selector = f"{LABEL}={release}"
    found = [
        i.metadata.name
        for lister in (
            api["apps"].list_namespaced_deployment,
            api["core"].list_namespaced_service,
            api["core"].list_namespaced_secret,
            api["core"].list_namespaced_persistent_volume_claim,
            api["net"].list_namespaced_network_policy,
        )
        for i in lister(namespace, label_selector=selector).items
    ]
    found += [
        i["metadata"]["name"]
        for i in api["custom"].list_namespaced_custom_object(
            "serving.kserve.io", "v1beta1", namespace, "inferenceservices", label_selector=selector
        )["items"]
    ]
    return found


@pytest.mark.parametrize("name", VALUES_SETS)
def test_install_read_back_upgrade_uninstall(apiserver, api, name):
    namespace, release = f"t-{name}", f"r{list(VALUES_SETS).index(name)}"
    values = VALUES_SETS[name]
    out = apiserver.helm(
        "install", release, str(CHART), "-n", namespace, "--create-namespace", *install_args(values)
    ).stdout
    assert "STATUS: deployed" in out and 'base_url="http://localhost:5148/v1"' in out  # NOTES
    reach = (
        "https://speech.test.example/v1"
        if values.get("gateway.ingress.enabled")
        else "http(s)://speech.test.example/v1"
        if values.get("gateway.httpRoute.enabled")
        else f"kubectl port-forward -n {namespace} svc/{release}-speech-stack-gateway 5148:80"
    )
    assert reach in out
    prefix = f"{release}-speech-stack"
    asr = isvc(api, namespace, f"{prefix}-asr")
    container = asr["spec"]["predictor"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    gpu = values.get("asr.gpu.enabled", True)
    assert ("nvidia.com/gpu" in container["resources"]["limits"]) == gpu
    assert asr["spec"]["predictor"]["minReplicas"] == values.get("asr.minReplicas", 1)
    gateway = api["apps"].read_namespaced_deployment(f"{prefix}-gateway", namespace)
    env = {e.name: e for e in gateway.spec.template.spec.containers[0].env}
    assert env["GATEWAY_ASR_URL"].value == f"http://{prefix}-asr-predictor.{namespace}.svc.cluster.local"
    if "hfToken.value" in values:
        secret = api["core"].read_namespaced_secret(f"{prefix}-hf-token", namespace)
        assert set(secret.data) == {"HF_TOKEN"}
    if values.get("gateway.autoscaling.enabled"):
        hpa = api["hpa"].read_namespaced_horizontal_pod_autoscaler(f"{prefix}-gateway", namespace)
        assert hpa.spec.max_replicas == 4
        pdb = api["policy"].read_namespaced_pod_disruption_budget(f"{prefix}-gateway", namespace)
        assert pdb.spec.max_unavailable == 1
    policies = api["net"].list_namespaced_network_policy(namespace).items
    expected = [f"{prefix}-asr", f"{prefix}-tts"]
    if values.get("gateway.quotas.redis.deploy"):
        expected.insert(1, f"{prefix}-redis")
    assert sorted(p.metadata.name for p in policies) == expected

    apiserver.helm(
        "upgrade",
        release,
        str(CHART),
        "-n",
        namespace,
        *install_args(values),
        "--set",
        "tts.maxQueue=3",
        "--set",
        "gateway.readTimeout=900",
    )
    tts_env = isvc(api, namespace, f"{prefix}-tts")["spec"]["predictor"]["containers"][0]["env"]
    assert {"name": "TTS_MAX_QUEUE", "value": "3"} in tts_env
    gateway = api["apps"].read_namespaced_deployment(f"{prefix}-gateway", namespace)
    assert {e.name: e.value for e in gateway.spec.template.spec.containers[0].env}["GATEWAY_READ_TIMEOUT"] == "900"
    assert "REVISION: 2" in apiserver.helm("status", release, "-n", namespace).stdout

    apiserver.helm("uninstall", release, "-n", namespace)
    apiserver.wait("uninstall", lambda: not leftovers(api, namespace, release), timeout=30)


def test_server_rejects_an_invalid_render(apiserver):
    """helm v3 would let the server prune unknown fields silently; a strict server-side dry run refuses."""
    apiserver.kubectl("create", "namespace", "t-invalid")
    good = render(release="bad", namespace="t-invalid").stdout
    assert apiserver.kubectl("apply", "-n", "t-invalid", "--dry-run=server", "-f", "-", input=good).returncode == 0
    for broken, needle in (
        (good.replace("maxReplicas: 1", 'maxReplicas: "one"', 1), "maxReplicas"),
        (good.replace("minReplicas: 1", "minReplicas: 1\n    bogusField: true", 1), "bogusField"),
        (good.replace("- port: 8080", "- port: 70000", 1), "between 1 and 65535"),
    ):
        out = apiserver.kubectl("apply", "-n", "t-invalid", "--dry-run=server", "-f", "-", input=broken, check=False)
        assert out.returncode != 0 and needle in out.stderr, out.stderr
