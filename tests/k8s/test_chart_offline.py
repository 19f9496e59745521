"""The chart without a cluster: lint, renders validated by kubeconform, schema rejections, and
what the rendered objects must say (probes, ports, GPU placement, caches, secrets, policies)."""

from __future__ import annotations

import json
import os
import re
import typing
from pathlib import Path

import pytest

from services.asr.settings import AsrSettings
from services.gateway.settings import GatewaySettings
from services.tts.settings import TtsSettings
from tests.k8s.conftest import find, kubeconform, objects
from tests.k8s.tools import CHART, KUBE_VERSION, ROOT, helm, render, run, venv_tool
from tests.k8s.values_sets import BAD_VALUES, VALUES_SETS


def test_helm_lint_strict():
    helm("lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION)


@pytest.mark.parametrize("name", VALUES_SETS)
def test_render_is_valid_for_kubernetes_and_kserve(name, schema_dir):
    out = kubeconform(render(values=VALUES_SETS[name]).stdout, schema_dir)
    assert "Invalid: 0, Errors: 0" in out.stdout, out.stdout


def test_kubeconform_catches_a_bad_inferenceservice(schema_dir):
    manifest = render().stdout.replace("maxReplicas: 1", 'maxReplicas: "one"', 1)
    out = kubeconform(manifest, schema_dir, check=False)
    assert out.returncode != 0 and "maxReplicas" in out.stdout


@pytest.mark.parametrize("case", BAD_VALUES)
def test_bad_values_are_rejected(case):
    values, needle = BAD_VALUES[case]
    out = render(values=values, check=False)
    assert out.returncode != 0, f"{case} was accepted"
    assert needle in out.stderr, out.stderr


def predictor(docs, component):
    isvc = find(docs, "InferenceService", f"-{component}")
    return isvc, isvc["spec"]["predictor"], isvc["spec"]["predictor"]["containers"][0]


def env_of(container) -> dict:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_predictors_probe_healthz_on_8080_with_gpu_placement():
    docs = objects(render().stdout)
    for component in ("asr", "tts"):
        isvc, spec, c = predictor(docs, component)
        assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment"
        assert c["name"] == "kserve-container" and c["ports"][0]["containerPort"] == 8080
        for probe in ("startupProbe", "livenessProbe"):
            assert c[probe]["httpGet"]["path"] == "/healthz"
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"  # 503 while draining
        assert c["startupProbe"]["periodSeconds"] * c["startupProbe"]["failureThreshold"] >= 600
        assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
        assert env_of(c)[f"{component.upper()}_DEVICE"] == "cuda"
        assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]


def test_cpu_mode_has_no_gpu_anything():
    docs = objects(render(values=VALUES_SETS["cpu-only"]).stdout)
    for component in ("asr", "tts"):
        _, spec, c = predictor(docs, component)
        assert "nvidia.com/gpu" not in c["resources"]["limits"]
        assert "nodeSelector" not in spec and "tolerations" not in spec
        assert env_of(c)[f"{component.upper()}_DEVICE"] == "cpu"


def test_caches_are_mounted_where_the_services_read_them():
    docs = objects(render().stdout)
    _, asr_spec, asr = predictor(docs, "asr")
    _, tts_spec, tts = predictor(docs, "tts")
    assert {"name": "cache", "mountPath": "/app/models"} in asr["volumeMounts"]
    assert env_of(asr)["HF_HOME"] == "/app/models/hf-cache"
    assert {"name": "cache", "mountPath": "/app/tts-cache"} in tts["volumeMounts"]
    tts_env = env_of(tts)
    # Coqui keeps its models under $TTS_HOME/tts; the HF cache and default speaker sit under it (seed layout)
    assert tts_env["TTS_HOME"] == "/app/tts-cache" and tts_env["HF_HOME"].startswith("/app/tts-cache/tts/")
    assert tts_env["COQUI_TOS_AGREED"] == "1" and tts_env["TTS_MODEL"].endswith("xtts_v2")
    for spec in (asr_spec, tts_spec):
        claim = next(v for v in spec["volumes"] if v["name"] == "cache")["persistentVolumeClaim"]["claimName"]
        assert find(docs, "PersistentVolumeClaim", claim.split("speech-stack")[-1])


def test_existing_claims_and_secrets_are_referenced_not_created():
    docs = objects(render(values=VALUES_SETS["existing-secret-and-claims"]).stdout)
    assert not [d for d in docs if d["kind"] in ("PersistentVolumeClaim", "Secret")]
    _, asr_spec, asr = predictor(docs, "asr")
    cache = next(v for v in asr_spec["volumes"] if v["name"] == "cache")
    assert cache["persistentVolumeClaim"]["claimName"] == "asr-models"
    assert env_of(asr)["HF_TOKEN"] == {"secretKeyRef": {"name": "my-hf-token", "key": "HF_TOKEN"}}
    gw = find(docs, "Deployment", "-gateway")["spec"]["template"]["spec"]["containers"][0]
    assert env_of(gw)["GATEWAY_API_KEYS"] == {"secretKeyRef": {"name": "my-api-keys", "key": "api-keys"}}


def test_secret_values_live_only_in_secrets():
    manifest = render(values=VALUES_SETS["ingress-tls"]).stdout
    docs = objects(manifest)
    secrets = [d for d in docs if d["kind"] == "Secret"]
    assert len(secrets) == 3  # HF token, API keys, predictor token
    outside = "\n".join(str(d) for d in docs if d["kind"] != "Secret")
    assert "hf_test_token_value" not in outside and "sk-test-key-1" not in outside
    ingress = find(docs, "Ingress", "-gateway")
    assert ingress["spec"]["tls"][0]["hosts"] == ["speech.test.example"]
    assert ingress["spec"]["ingressClassName"] == "nginx"


def test_ingress_keeps_realtime_websockets_open_as_long_as_a_session():
    docs = objects(render(values=VALUES_SETS["ingress-tls"]).stdout)
    annotations = find(docs, "Ingress", "-gateway")["metadata"]["annotations"]
    gw = find(docs, "Deployment", "-gateway")["spec"]["template"]["spec"]["containers"][0]
    longest = float(env_of(gw)["GATEWAY_REALTIME_MAX_SESSION_SECONDS"])
    for key in ("proxy-read-timeout", "proxy-send-timeout"):
        assert float(annotations[f"nginx.ingress.kubernetes.io/{key}"]) >= longest
    assert annotations["nginx.ingress.kubernetes.io/proxy-body-size"] == "30m"


def test_ingress_takes_cert_manager_style_tls_and_several_hosts():
    docs = objects(
        render(
            values={
                "gateway.ingress.enabled": True,
                "gateway.ingress.hosts": ["a.example", "b.example"],
                "gateway.ingress.tls": [{"secretName": "certs"}],
            }
        ).stdout
    )
    spec = find(docs, "Ingress", "-gateway")["spec"]
    assert spec["tls"] == [{"secretName": "certs", "hosts": ["a.example", "b.example"]}]  # hosts default to all
    assert [r["host"] for r in spec["rules"]] == ["a.example", "b.example"]
    plain = find(objects(render(values={"gateway.ingress.enabled": True}).stdout), "Ingress", "-gateway")
    assert "tls" not in plain["spec"]


def test_httproute_and_its_gateway():
    docs = objects(render(values=VALUES_SETS["gateway-api"]).stdout)
    route, gw = find(docs, "HTTPRoute", "-gateway"), find(docs, "Gateway", "-gateway")
    service = find(docs, "Service", "-gateway")
    (rule,) = route["spec"]["rules"]
    assert rule["backendRefs"] == [{"name": service["metadata"]["name"], "port": service["spec"]["ports"][0]["port"]}]
    assert rule["timeouts"] == {"request": "3600s", "backendRequest": "3600s"}  # a realtime session, at least
    assert route["spec"]["parentRefs"] == [{"name": gw["metadata"]["name"]}]
    assert gw["spec"]["gatewayClassName"] == "traefik"
    assert [(listener["protocol"], listener["port"]) for listener in gw["spec"]["listeners"]] == [
        ("HTTP", 8000),
        ("HTTPS", 8443),
    ]
    attached = objects(
        render(values={"gateway.httpRoute.enabled": True, "gateway.httpRoute.parentRefs": [{"name": "shared"}]}).stdout
    )
    assert find(attached, "HTTPRoute")["spec"]["parentRefs"] == [{"name": "shared"}]
    assert not [d for d in attached if d["kind"] == "Gateway"]


def test_tenants_read_a_mounted_key_file_and_share_counts_in_the_releases_redis():
    docs = objects(render(values=VALUES_SETS["tenants"]).stdout)
    pod = find(docs, "Deployment", "-gateway")["spec"]["template"]["spec"]
    env = env_of(pod["containers"][0])
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "api-keys")
    assert env["GATEWAY_API_KEYS_FILE"] == f"{mount['mountPath']}/keys.json" and mount["readOnly"]
    assert next(v for v in pod["volumes"] if v["name"] == "api-keys")["secret"]["secretName"] == "tenant-keys"
    redis_service = find(docs, "Service", "-redis")["metadata"]["name"]
    assert env["GATEWAY_QUOTA_REDIS_URL"] == f"redis://{redis_service}:6379/0"
    assert env["GATEWAY_QUOTA_STORE_FAILURE"] == "closed"
    policy = find(docs, "NetworkPolicy", "-redis")["spec"]
    assert policy["ingress"][0]["ports"] == [{"port": 6379, "protocol": "TCP"}]


def test_queue_depth_autoscaling_is_a_keda_scaledobject_on_what_kserve_deploys():
    docs = objects(render(values=VALUES_SETS["keda-autoscaling"]).stdout)
    for component, most in (("asr", 4), ("tts", 2)):
        isvc, _, _ = predictor(docs, component)
        assert isvc["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"] == "external"
        scaled = find(docs, "ScaledObject", f"-{component}")
        assert scaled["spec"]["scaleTargetRef"]["name"] == f"{isvc['metadata']['name']}-predictor"  # KServe's name
        assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (1, most)
        (trigger,) = scaled["spec"]["triggers"]
        meta = trigger["metadata"]
        replicas = find(docs, "Service", f"-{component}-replicas")["metadata"]["name"]
        assert meta["url"].startswith(f"http://{replicas}.") and meta["url"].endswith(":8080/metrics")
        assert meta["valueLocation"] == f"speech_{component}_load" and meta["aggregationType"] == "sum"
    assert {"speech_asr_load", "speech_tts_load"} <= _exported_metric_names()  # the gauges KEDA reads
    plain = objects(render().stdout)
    assert not [d for d in plain if d["kind"] == "ScaledObject"]
    assert "serving.kserve.io/autoscalerClass" not in predictor(plain, "asr")[0]["metadata"]["annotations"]


def test_the_gateway_finds_every_predictor_replica_through_a_headless_service():
    docs = objects(render(release="rel", namespace="ns1").stdout)
    gw = env_of(find(docs, "Deployment", "-gateway")["spec"]["template"]["spec"]["containers"][0])
    for component in ("asr", "tts"):
        service = find(docs, "Service", f"-{component}-replicas")
        assert service["spec"]["clusterIP"] == "None" and service["spec"]["ports"][0]["port"] == 8080
        _, spec, _ = predictor(docs, component)
        assert service["spec"]["selector"].items() <= spec["labels"].items()  # the predictor's pods
        name = service["metadata"]["name"]
        assert gw[f"GATEWAY_{component.upper()}_REPLICAS_URL"] == f"http://{name}.ns1.svc.cluster.local:8080"


def test_gateway_points_at_the_services_kserve_creates():
    docs = objects(render(release="rel", namespace="ns1").stdout)
    gw = find(docs, "Deployment", "-gateway")["spec"]["template"]["spec"]["containers"][0]
    env = env_of(gw)
    assert env["GATEWAY_ASR_URL"] == "http://rel-speech-stack-asr-predictor.ns1.svc.cluster.local"
    assert env["GATEWAY_TTS_URL"] == "http://rel-speech-stack-tts-predictor.ns1.svc.cluster.local"
    assert gw["ports"][0]["containerPort"] == 5148 and gw["readinessProbe"]["httpGet"]["path"] == "/readyz"
    service = find(docs, "Service", "-gateway")
    assert service["spec"]["ports"][0]["targetPort"] == "http"


def test_network_policies_let_only_the_gateway_in():
    docs = objects(render().stdout)
    gateway_labels = find(docs, "Deployment", "-gateway")["spec"]["template"]["metadata"]["labels"]
    for component in ("asr", "tts"):
        _, spec, _ = predictor(docs, component)
        policy = find(docs, "NetworkPolicy", f"-{component}")
        selector = policy["spec"]["podSelector"]["matchLabels"]
        assert selector.items() <= spec["labels"].items()  # selects the predictor pods
        source = policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]
        assert source.items() <= gateway_labels.items() and source["app.kubernetes.io/component"] == "gateway"
        assert policy["spec"]["ingress"][0]["ports"] == [{"port": 8080, "protocol": "TCP"}]


def test_every_workload_is_hardened():
    docs = objects(render().stdout)
    pods = [find(docs, "Deployment", "-gateway")["spec"]["template"]["spec"]]
    pods += [predictor(docs, c)[1] for c in ("asr", "tts")]
    for pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["automountServiceAccountToken"] is False
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"]
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert c["resources"]["requests"] and c["resources"]["limits"]
            assert ":" in c["image"] and not c["image"].endswith(":latest")


def test_serverless_allows_scale_to_zero():
    docs = objects(render(values=VALUES_SETS["serverless-scale-to-zero"]).stdout)
    isvc, spec, _ = predictor(docs, "asr")
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Serverless"
    assert spec["minReplicas"] == 0 and spec["maxReplicas"] == 3


def test_custom_voices_and_unload_policy_reach_the_predictors():
    docs = objects(render(values=VALUES_SETS["custom-voices"]).stdout)
    tts = env_of(predictor(docs, "tts")[2])
    assert TtsSettings(voices=json.loads(tts["TTS_VOICES"])).voices["alloy"].name == "alloy.wav"
    assert tts["TTS_UNLOAD_POLICY"] == "300"
    assert env_of(predictor(docs, "asr")[2])["ASR_UNLOAD_POLICY"] == "after_request"
    defaults = objects(render().stdout)
    for component in ("asr", "tts"):  # one GPU per predictor: models stay loaded by default in the chart
        assert env_of(predictor(defaults, component)[2])[f"{component.upper()}_UNLOAD_POLICY"] == "never"


EXTERNAL_VARS = {"TTS_HOME"}  # Coqui's own cache root, read by Coqui, not by TtsSettings


@pytest.mark.parametrize(
    ("component", "settings_cls"), [("asr", AsrSettings), ("tts", TtsSettings), ("gateway", GatewaySettings)]
)
def test_chart_env_vars_are_settings_the_services_read(component, settings_cls):
    """Every ASR_/TTS_/GATEWAY_ variable the chart sets is a field of that service's settings,
    and the rendered values parse with it."""
    docs = objects(render(values=VALUES_SETS["ingress-tls"] | VALUES_SETS["custom-voices"]).stdout)
    container = (
        find(docs, "Deployment", "-gateway")["spec"]["template"]["spec"]["containers"][0]
        if component == "gateway"
        else predictor(docs, component)[2]
    )
    prefix = settings_cls.model_config["env_prefix"]
    env = {k: v for k, v in env_of(container).items() if k.startswith(prefix)}
    assert env
    fields = set(settings_cls.model_fields)
    for key in set(env) - EXTERNAL_VARS:
        assert key[len(prefix) :].lower() in fields, f"{key} is not read by {settings_cls.__name__}"
    plain = {k[len(prefix) :].lower(): v for k, v in env.items() if isinstance(v, str) and k not in EXTERNAL_VARS}
    settings_cls.model_validate({k: _json_or_str(v, settings_cls.model_fields[k].annotation) for k, v in plain.items()})


# Settings the chart leaves to the services' defaults or sets under another name, and why.
NOT_FROM_THE_CHART = {
    "ASR_HF_TOKEN": "the chart sets HF_TOKEN (the same field's other name) from its Secret",
    "ASR_DOWNLOAD_ROOT": "HF_HOME on the model volume decides where weights go",
}


@pytest.mark.parametrize(
    ("component", "settings_cls"), [("asr", AsrSettings), ("tts", TtsSettings), ("gateway", GatewaySettings)]
)
def test_every_setting_is_set_by_the_chart(component, settings_cls):
    """The README promises every setting is a Helm value: each field's variable is in the rendered pod
    (with the values that are empty by default given)."""
    given = {
        "gateway.apiKeys.values": ["sk-aaaaaaaa"],
        "gateway.keyFile.existingSecret": "tenant-keys",
        "gateway.quotas.redis.url": "redis://redis:6379/0",
        "gateway.quotas.redis.passwordSecret": "redis",
        "asr.computeType": "int8",
        "gateway.translation.speechModel": "tts-1",
    }
    docs = objects(render(values=given).stdout)
    container = (
        find(docs, "Deployment", "-gateway")["spec"]["template"]["spec"]["containers"][0]
        if component == "gateway"
        else predictor(docs, component)[2]
    )
    prefix = settings_cls.model_config["env_prefix"]
    env = set(env_of(container))
    missing = {f"{prefix}{name}".upper() for name in settings_cls.model_fields} - env - set(NOT_FROM_THE_CHART)
    assert not missing, f"settings the chart cannot set: {sorted(missing)}"


def _json_or_str(value: str, annotation) -> typing.Any:
    origin = typing.get_origin(annotation)
    return json.loads(value) if origin in (dict, list) else value


def test_dockerfiles_pass_hadolint():
    dockerfiles = sorted(str(p) for p in (ROOT / "services").glob("*/Dockerfile"))
    assert len(dockerfiles) == 3
    run(venv_tool("hadolint"), "--config", str(ROOT / ".hadolint.yaml"), *dockerfiles)


def test_dockerfiles_install_from_the_same_pins():
    for path in (ROOT / "services").glob("*/Dockerfile"):
        text = path.read_text()
        assert re.search(r"^COPY .*constraints\.txt", text, re.MULTILINE) and "pip install -c constraints.txt" in text
        assert re.search(r"^USER 10001$", text, re.MULTILINE)
        assert "ARG BASE_IMAGE=python:3.11-slim-bookworm\nFROM ${BASE_IMAGE}\n" in text


def test_the_torch_layer_pins_are_those_of_constraints_txt():
    run(str(ROOT / ".venv" / "bin" / "python"), str(ROOT / "scripts" / "torch_constraints.py"), "--check")
    pins = set((ROOT / "constraints.txt").read_text().splitlines())
    torch = [line for line in (ROOT / "constraints-torch.txt").read_text().splitlines() if "==" in line]
    assert "torch==2.8.0" in torch and set(torch) <= pins


def test_predictor_images_share_the_torch_layer():
    """Builders reuse a layer only when every instruction up to it is the same."""

    def prefix(component: str) -> list[str]:
        lines = [
            ln
            for ln in (ROOT / "services" / component / "Dockerfile").read_text().splitlines()
            if ln and not ln.startswith("#")
        ]
        return lines[: lines.index(next(ln for ln in lines if "torch torchaudio" in ln)) + 1]

    assert prefix("asr") == prefix("tts") and len(prefix("asr")) == 6


def test_skaffold_yaml_matches_its_schema_and_rewrites_isvc_images(tmp_path):
    from tests.k8s.tools import CACHE

    schema = str(CACHE / "skaffold-schema.json")
    run(venv_tool("check-jsonschema"), "--schemafile", schema, str(ROOT / "skaffold.yaml"))
    import yaml

    config = yaml.safe_load((ROOT / "skaffold.yaml").read_text())
    assert {"groupKind": "InferenceService.serving.kserve.io", "image": [".*"]} in config["resourceSelector"]["allow"]
    images = {a["image"] for a in config["build"]["artifacts"]}
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert images == {values[c]["image"]["repository"] for c in ("gateway", "asr", "tts")}
    assert {p["name"] for p in config["profiles"]} == {"gpu", "cpu", "node"}
    (node,) = [p for p in config["profiles"] if p["name"] == "node"]
    assert node["build"]["local"]["push"] is True  # skaffold asks a Docker daemon for kept images' ids
    for artifact in node["build"]["artifacts"]:
        name = artifact["image"].rsplit("/", 1)[1]
        assert artifact["custom"]["buildCommand"] == f"tools/images/skaffold-build.sh {name}"
        assert artifact["custom"]["dependencies"]["dockerfile"]["buildArgs"] == {"BASE_IMAGE": "scratch"}
    bad = tmp_path / "skaffold.yaml"
    bad.write_text((ROOT / "skaffold.yaml").read_text().replace("build:", "biuld:", 1))
    assert run(venv_tool("check-jsonschema"), "--schemafile", schema, str(bad), check=False).returncode != 0


def test_skaffold_renders_the_node_profile_with_every_image_rewritten(tmp_path):
    """skaffold itself (offline, nothing built): the chart through its Helm deployer with the node's
    values, and every image, the InferenceServices' too, on the node's registry."""
    from tests.k8s.tools import tool

    env = os.environ | {"HOME": str(tmp_path), "PATH": f"{Path(tool('helm')).parent}:{os.environ['PATH']}"}
    out = run(
        tool("skaffold"), "render", "-p", "node", "--default-repo", "127.0.0.1:21500", "--digest-source=tag",
        "--offline=true", env=env, timeout=120,
    ).stdout  # fmt: skip
    docs = objects(out)
    isvcs = [d for d in docs if d["kind"] == "InferenceService"]
    images = [c["image"] for d in isvcs for c in d["spec"]["predictor"]["containers"]]
    images += [find(docs, "Deployment", "-gateway")["spec"]["template"]["spec"]["containers"][0]["image"]]
    assert len(images) == 3 and all(i.startswith("127.0.0.1:21500/ghcr_io_speech-stack_") for i in images), images
    ingress = find(docs, "Ingress", "-gateway")
    assert (
        ingress["spec"]["ingressClassName"] == "traefik" and ingress["spec"]["rules"][0]["host"] == "speech.example.com"
    )


def test_predictors_listen_on_the_pod_network_behind_a_shared_token():
    docs = objects(render().stdout)
    gateway = env_of(find(docs, "Deployment", "-gateway")["spec"]["template"]["spec"]["containers"][0])
    secret = find(docs, "Secret", "-predictor-token")
    for component in ("asr", "tts"):
        env = env_of(predictor(docs, component)[2])
        prefix = component.upper()
        assert env[f"{prefix}_HOST"] == "0.0.0.0"  # the service default is loopback
        token = env[f"{prefix}_AUTH_TOKEN"]["secretKeyRef"]
        assert (
            token
            == gateway[f"GATEWAY_{prefix}_TOKEN"]["secretKeyRef"]
            == {"name": secret["metadata"]["name"], "key": "token"}
        )
    assert len(secret["data"]["token"]) >= 48
    off = objects(render(values={"predictorAuth.enabled": False}).stdout)
    assert "ASR_AUTH_TOKEN" not in env_of(predictor(off, "asr")[2])
    assert not [d for d in off if d["kind"] == "Secret"]


def test_shutdown_grace_fits_the_pod_grace_period_and_scratch_is_bounded():
    docs = objects(render().stdout)
    gateway_pod = find(docs, "Deployment", "-gateway")["spec"]["template"]["spec"]
    grace = int(env_of(gateway_pod["containers"][0])["GATEWAY_SHUTDOWN_GRACE_SECONDS"])
    assert gateway_pod["terminationGracePeriodSeconds"] > grace + 5
    assert gateway_pod["containers"][0]["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]
    for pod in [gateway_pod] + [predictor(docs, c)[1] for c in ("asr", "tts")]:
        tmp = next(v for v in pod["volumes"] if v["name"] == "tmp")
        assert tmp["emptyDir"]["sizeLimit"]
    for component in ("asr", "tts"):
        _, spec, c = predictor(docs, component)
        assert spec["terminationGracePeriodSeconds"] > int(env_of(c)[f"{component.upper()}_SHUTDOWN_GRACE_SECONDS"])


def test_a_new_api_key_restarts_the_gateway():
    def checksum(values):
        docs = objects(render(values=values).stdout)
        return find(docs, "Deployment", "-gateway")["spec"]["template"]["metadata"]["annotations"]["checksum/secrets"]

    first, second = (
        {"predictorAuth.enabled": False, "gateway.apiKeys.values": [key]} for key in ("sk-aaaaaaaa", "sk-bbbbbbbb")
    )
    assert checksum(first) != checksum(second) and checksum(first) == checksum(first)
    gw = find(
        objects(render(values={"gateway.extraEnv": [{"name": "EXTRA", "value": "1"}]}).stdout), "Deployment", "-gateway"
    )["spec"]["template"]["spec"]["containers"][0]
    assert env_of(gw)["EXTRA"] == "1"


def test_pdb_lets_a_single_gateway_be_drained():
    docs = objects(render(values={"gateway.podDisruptionBudget.enabled": True}).stdout)
    assert find(docs, "PodDisruptionBudget", "-gateway")["spec"] == {
        "maxUnavailable": 1,
        "selector": find(docs, "PodDisruptionBudget", "-gateway")["spec"]["selector"],
    }


def test_monitoring_objects_and_scrape_annotations():
    docs = objects(render(values=VALUES_SETS["monitoring"]).stdout)
    monitor = find(docs, "ServiceMonitor", "-gateway")
    service = find(docs, "Service", "-gateway")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["metadata"]["labels"]["release"] == "prom"
    pods = find(docs, "PodMonitor", "-predictors")
    for component in ("asr", "tts"):
        _, spec, c = predictor(docs, component)
        assert pods["spec"]["selector"]["matchLabels"].items() <= spec["labels"].items()
        annotations = spec["annotations"]
        assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/port"] == "8080"
        assert env_of(c)[f"{component.upper()}_LOG_FORMAT"] == "json"
    gateway_pod = find(docs, "Deployment", "-gateway")["spec"]["template"]
    assert gateway_pod["metadata"]["annotations"]["prometheus.io/port"] == "5148"
    assert not [d for d in objects(render().stdout) if d["kind"] in ("ServiceMonitor", "PodMonitor", "ConfigMap")]


def test_grafana_dashboard_is_valid_json_over_metrics_the_services_export():
    docs = objects(render(values=VALUES_SETS["monitoring"]).stdout)
    dashboard = json.loads(find(docs, "ConfigMap", "-dashboard")["data"]["speech-stack.json"])
    titles = " ".join(p["title"] for p in dashboard["panels"]).lower()
    for topic in ("requests", "error", "latency", "real-time factor", "queue", "model loads", "batching", "fallback"):
        assert topic in titles, topic
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    used = set(re.findall(r"speech_[a-z_]+", exprs))
    exported = _exported_metric_names()
    assert used and used <= exported, used - exported


def _exported_metric_names() -> set[str]:
    """Every series name the services' registries can export (counters as *_total, histograms as
    *_bucket/_count/_sum), read from the registries themselves."""
    from services.asr.metrics import AsrMetrics
    from services.common.predictor_metrics import PredictorMetrics
    from services.gateway.metrics import GatewayMetrics

    registries = [GatewayMetrics().registry]
    for metrics in (AsrMetrics("asr"), PredictorMetrics("tts")):
        metrics.watch(lambda: {"waiting": 0, "active": 0, "models": {}})
        registries.append(metrics.registry)
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    return {
        family.name + suffix
        for registry in registries
        for family in registry.collect()
        for suffix in suffixes.get(family.type, ("",))
    }
