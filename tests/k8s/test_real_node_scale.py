"""Scale-out on the real node: two replicas of each predictor behind the gateway's replica-aware routing
(services/gateway/replicas.py, the chart's headless replica Services). Eight official-SDK clients
share two ASR replicas whose queues hold exactly eight requests in all, so every 429 would be a
routing mistake; a replica deleted in the middle of that load; a voice uploaded once and spoken by
both TTS replicas (one store on a shared volume), then gone from both."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from scripts import node_volumes
from tests.conftest import SENTENCES
from tests.k8s.node import RealNode
from tests.k8s.test_real_node import CHART, HTTP_PORT, NODE_IP, ready, set_args, values
from tests.k8s.tls import resolved
from tests.support.espeak import speak
from tests.support.text import wer

pytestmark = pytest.mark.timeout(3600)
NS, RELEASE = "scale", "scale"
CLIENTS, SECONDS = 8, 45.0
SCALE_HOST = "scale.speech.example.com"


@pytest.fixture(scope="module")
def node(real_node: RealNode) -> RealNode:
    real_node.kubectl("apply", "-f", "-", input=node_volumes.manifests(real_node.state / "volumes", NS))
    real_node.namespaces.append(NS)
    return real_node


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[tuple[str, Path]]:
    out = tmp_path_factory.mktemp("scale-audio")
    return [(text, speak(text, out / f"c{i}.wav")) for i, text in enumerate(SENTENCES[:4])]


def component_pods(node: RealNode, component: str) -> list[dict]:
    return node.get("pods", "-n", NS, "-l", f"app.kubernetes.io/component={component}")["items"]


def two_of_each(node: RealNode) -> bool:
    ready_pods = {c: [p for p in component_pods(node, c) if ready(p)] for c in ("asr", "tts")}
    return all(len(ready_pods[c]) == 2 and len(component_pods(node, c)) == 2 for c in ready_pods)


def pod_metric(pod: dict, name: str, **labels: str) -> float:
    """A counter of one predictor pod, read from its own /metrics (pod IPs are reachable from the node)."""
    text = httpx.get(f"http://{pod['status']['podIP']}:8080/metrics", timeout=10).text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def client() -> openai.OpenAI:
    return openai.OpenAI(base_url=f"http://{SCALE_HOST}:{HTTP_PORT}/v1", api_key="unused", max_retries=0, timeout=120)


def routed() -> bool:
    """The gateway answers through the Ingress (Traefik adds the route once the gateway is Ready: before
    that, its 404 is the Ingress's, not the API's)."""
    with resolved({SCALE_HOST: NODE_IP}):
        try:
            return httpx.get(f"http://{SCALE_HOST}:{HTTP_PORT}/readyz", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False


def test_two_replicas_of_each_predictor_become_ready(node):
    node.helm("install", RELEASE, str(CHART), "-n", NS, *set_args(scale_values(node)))
    node.wait("two Ready replicas of each predictor", lambda: two_of_each(node), timeout=900)
    node.wait("the gateway through the Ingress", routed, timeout=120)


def load(clips: list[tuple[str, Path]], during: float, action=None) -> list[tuple[int, str]]:
    """``CLIENTS`` SDK clients transcribing back to back for ``during`` seconds (``action`` runs in the
    middle); every outcome as (status, detail)."""
    outcomes: list[tuple[int, str]] = []
    deadline = time.monotonic() + during

    def worker(i: int) -> None:
        sdk = client()
        n = i
        while time.monotonic() < deadline:
            text, wav = clips[n % len(clips)]
            n += 1
            try:
                result = sdk.audio.transcriptions.create(model="whisper-1", file=wav.open("rb"))
                # each client gets its own clip's text (another's would be a WER near 1; Whisper base
                # hears espeak-ng's "lets teams build ... of" as "that seems built ... on": 0.4)
                outcomes.append((200, "ok" if wer([text], [result.text]) < 0.5 else result.text))
            except openai.APIStatusError as err:
                retry_after = err.response.headers.get("retry-after", "")
                outcomes.append((err.status_code, retry_after + " " + err.message))
                time.sleep(float(retry_after or 1))  # as the SDKs do
            except openai.APIConnectionError as err:
                outcomes.append((0, type(err).__name__))

    with resolved({SCALE_HOST: NODE_IP}), ThreadPoolExecutor(CLIENTS) as pool:
        futures = [pool.submit(worker, i) for i in range(CLIENTS)]
        if action is not None:
            time.sleep(during / 3)
            action()
        for f in futures:
            f.result(timeout=during + 300)  # none hangs
    return outcomes


def test_eight_clients_share_the_replicas_and_none_gets_a_429(node, clips):
    """Capacity in all: 2 x (1 working + 3 queued) = 8 places for 8 clients waiting for their answers.
    kube-proxy's choice per connection would overfill one replica; the gateway's never does (a
    refusal it meets anyway goes to the other replica, counted in speech_gateway_rerouted_total)."""
    asr = component_pods(node, "asr")
    before = [pod_metric(p, "speech_asr_requests_total", route="infer", status="200") for p in asr]
    outcomes = load(clips, SECONDS)
    after = [pod_metric(p, "speech_asr_requests_total", route="infer", status="200") for p in asr]
    statuses = {status for status, _ in outcomes}
    assert statuses == {200}, [o for o in outcomes if o[0] != 200][:5]
    assert all(detail == "ok" for _, detail in outcomes), [o for o in outcomes if o[1] != "ok"][:3]
    served = [b - a for a, b in zip(before, after, strict=True)]
    assert all(n > 0 for n in served) and sum(served) == len(outcomes), served  # both did work


def test_a_replica_deleted_under_load_ends_its_requests_cleanly(node, clips):
    """Its requests in flight finish (the pod drains) or fail with an error the client can read; new ones
    go to the other replica, which alone has half the places: until the new pod is Ready, the clients
    beyond them get 429 with Retry-After (the server is full, not broken); none hangs; KServe's
    Deployment brings a new pod."""
    victim = component_pods(node, "asr")[0]["metadata"]["name"]

    def delete() -> None:
        node.kubectl("delete", "pod", victim, "-n", NS, "--wait=false")

    outcomes = load(clips, SECONDS, action=delete)
    errors = [o for o in outcomes if o[0] != 200]
    assert all(status in (429, 502, 503) and detail.strip() for status, detail in errors), errors[:5]
    busy = [detail for status, detail in errors if status == 429]
    assert all(detail.split()[0].isdigit() for detail in busy), busy[:3]  # each with its Retry-After
    lost = [o for o in errors if o[0] != 429]
    assert len(lost) <= 4, lost  # at most what the deleted replica held (1 working + 3 queued)
    assert sum(status == 200 for status, _ in outcomes) >= CLIENTS
    node.wait("a replacement replica", lambda: two_of_each(node), timeout=600)
    assert victim not in {p["metadata"]["name"] for p in component_pods(node, "asr")}


def test_a_voice_is_spoken_by_every_tts_replica_and_gone_from_all_after_delete(node, clips):
    tts = component_pods(node, "tts")
    counted = [pod_metric(p, "speech_tts_requests_total", route="infer", status="200") for p in tts]
    sdk = client()
    with resolved({SCALE_HOST: NODE_IP}):
        voice = sdk.audio.voices.create(name="Shared Narrator", audio_sample=clips[0][1].open("rb"), consent="cons_1")
        for _ in range(10):
            speech = sdk.audio.speech.create(
                model="tts-1", voice={"id": voice.id}, input="Hello.", response_format="wav"
            )
            assert speech.content[:4] == b"RIFF"
        served = [
            pod_metric(p, "speech_tts_requests_total", route="infer", status="200") - c
            for p, c in zip(tts, counted, strict=True)
        ]
        assert all(n > 0 for n in served) and sum(served) == 10, served  # both replicas spoke the voice
        sdk.audio.voices.delete(voice.id)
        for _ in range(6):  # each replica, with high probability, is asked again: none knows the voice
            with pytest.raises(openai.BadRequestError) as err:
                sdk.audio.speech.create(model="tts-1", voice={"id": voice.id}, input="Hello.", response_format="wav")
            assert err.value.code == "voice_not_found"


def test_queue_depth_autoscaling_adds_a_replica_under_load_and_removes_it_after(node, clips):
    """KEDA (tools/node/keda.sh) scales the ASR predictor on speech_asr_load: from one replica, sustained
    load makes it add one that becomes Ready and takes work; after the load it goes back to one."""
    vals = scale_values(node)
    vals["asr"] |= {"minReplicas": 1, "maxReplicas": 2}
    vals["asr"]["autoscaling"] = {"enabled": True, "targetLoad": 2, "pollingInterval": 5,
                                  "scaleDownStabilizationSeconds": 20}  # fmt: skip
    node.helm("upgrade", RELEASE, str(CHART), "-n", NS, *set_args(vals))
    deployment = f"{RELEASE}-speech-stack-asr-predictor"
    node.wait("one ASR replica under KEDA", lambda: replicas(node, deployment) == (1, 1), timeout=600)
    scaled = node.get("scaledobject", f"{RELEASE}-speech-stack-asr", "-n", NS)
    assert {c["type"]: c["status"] for c in scaled["status"]["conditions"]}["Ready"] == "True"
    first = component_pods(node, "asr")[0]["metadata"]["name"]
    seen: dict[str, float] = {}

    def two_serving() -> bool:
        pods_now = [p for p in component_pods(node, "asr") if ready(p)]
        for p in pods_now:
            seen[p["metadata"]["name"]] = pod_metric(p, "speech_asr_requests_total", route="infer", status="200")
        return len(pods_now) == 2 and all(seen.get(p["metadata"]["name"], 0) > 0 for p in pods_now)

    result: dict[str, bool] = {}

    def watch() -> None:
        try:
            node.wait("a second ASR replica Ready and serving", two_serving, timeout=240)
            result["scaled up"] = True
        except TimeoutError:
            result["scaled up"] = False

    outcomes = load(clips, 150, action=watch)
    assert result.get("scaled up"), (replicas(node, deployment), seen)
    assert {status for status, _ in outcomes} <= {200, 429}
    assert [name for name in seen if name != first], seen  # the new replica took work
    node.wait("back to one ASR replica after the load", lambda: replicas(node, deployment) == (1, 1), timeout=600)


def scale_values(node: RealNode) -> dict:
    vals = values(node.images)
    vals["gateway"]["ingress"] |= {"hosts": [SCALE_HOST], "tls": []}
    vals["gateway"]["httpRoute"]["enabled"] = False
    for component in ("asr", "tts"):
        vals[component] |= {"minReplicas": 2, "maxReplicas": 2, "maxActive": 1, "maxQueue": 3}
    vals["tts"]["model"] = "/app/tts-cache/xtts"  # a model that clones: the voice test
    return vals


def replicas(node: RealNode, deployment: str) -> tuple[int, int]:
    """(wanted, ready) replicas of a Deployment."""
    status = node.get("deployment", deployment, "-n", NS)
    return status["spec"].get("replicas", 0), status.get("status", {}).get("readyReplicas", 0)


def test_uninstall(node):
    node.helm("uninstall", RELEASE, "-n", NS, "--wait", "--timeout", "300s")
    node.wait("the scale release gone", lambda: not node.get("pods", "-n", NS)["items"], timeout=300)
