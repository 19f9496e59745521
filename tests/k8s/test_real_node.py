"""End to end on a real node: the chart installed with Helm on a single-node cluster of this
machine (tools/node: containerd + runc, kubelet, kube-proxy, CoreDNS, KServe's controller in
RawDeployment mode) running the images built by buildah from the Dockerfiles (`make images`).
KServe turns both InferenceServices into pods that must pass their real probes; the gateway calls
them by the Services KServe creates; the official openai client talks to the gateway through
`kubectl port-forward svc/...`. Real Whisper base and a tiny VITS model sit on PersistentVolumes
the chart mounts through existingClaim. Fails (never skips) when the images or tools are missing."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, cast

import httpx
import openai
import pytest
import yaml

from scripts import node_volumes
from scripts.devstack import ROOT
from tests.conftest import SENTENCES
from tests.k8s.node import NODE_NAME, RealNode, healthy
from tests.k8s.tls import make_certificate, resolved
from tests.k8s.tools import CHART, run, tool, venv_tool
from tests.support.espeak import speak
from tests.support.text import normalize, wer

pytestmark = pytest.mark.timeout(3600)
NS, RELEASE = "speech", "speech"
HOST, ROUTE_HOST = "speech.example.com", "route.speech.example.com"  # the Ingress's and the HTTPRoute's
NODE_IP, HTTP_PORT, HTTPS_PORT = "10.213.0.1", 21080, 21444  # Traefik's hostPorts (tools/node/traefik.yaml)
REGISTRY = "127.0.0.1:21500"  # the node's loopback registry (tools/node/up.sh)
TLS_SECRET = "tls-cert"  # (a name without the release's: the uninstall test looks for those)
WER_BOUND = 0.25  # as tests/test_transcriptions.py (Whisper base int8 on espeak-ng speech: 0.068)
APP_UID = node_volumes.APP_UID
# What a container that cannot write where it wants, or lacks a library, prints on the way.
LOG_FAULTS = (
    "Read-only file system",
    "Permission denied",
    "cannot open shared object file",
    "Could not load libtorchcodec",
)


def values(images: dict[str, str]) -> dict:
    """tools/node/chart-values.yaml (CPU mode, models on existing claims, one thread per model
    process, requests that fit a 2-core node, the Traefik Ingress), with the locally imported images."""

    def image(name: str) -> dict:
        repository, tag = images[name].rsplit(":", 1)
        return {"repository": repository, "tag": tag, "pullPolicy": "Never"}

    vals = yaml.safe_load((ROOT / "tools" / "node" / "chart-values.yaml").read_text())
    for name in ("gateway", "asr", "tts"):
        vals[name]["image"] = image(name)
    vals["gateway"]["ingress"]["tls"] = [{"secretName": TLS_SECRET}]
    vals["gateway"]["httpRoute"] = {  # the same gateway through the Gateway API, on Traefik's entryPoints
        "enabled": True,
        "hostnames": [ROUTE_HOST],
        "gateway": {"create": True, "className": "traefik", "httpPort": 8000, "httpsPort": 8443,
                    "certificateSecret": TLS_SECRET},
    }  # fmt: skip
    return vals


@pytest.fixture(scope="module")
def node(real_node: RealNode) -> RealNode:
    """The session's node with this module's namespace: the models' volumes and the Ingress's TLS Secret."""
    real_node.kubectl("apply", "-f", "-", input=node_volumes.manifests(real_node.state / "volumes", NS))
    real_node.namespaces.append(NS)
    real_node.certificate = make_certificate(real_node.state / "tls", [HOST, ROUTE_HOST])
    real_node.kubectl("create", "secret", "tls", TLS_SECRET, "-n", NS, f"--cert={real_node.certificate.cert}",
                      f"--key={real_node.certificate.key}")  # fmt: skip
    return real_node


@pytest.fixture(scope="module")
def spoken(tmp_path_factory) -> dict[str, object]:
    out = tmp_path_factory.mktemp("node-audio")
    return {text: speak(text, out / f"s{i}.wav") for i, text in enumerate(SENTENCES)}


def ready(obj: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in obj.get("status", {}).get("conditions", []))


def pods(node: RealNode, component: str) -> list[dict]:
    return node.get("pods", "-n", NS, "-l", f"app.kubernetes.io/component={component}")["items"]


def serving(node: RealNode) -> bool:
    """Both InferenceServices Ready, and exactly one Ready pod per component (a rollout is over)."""
    isvcs = node.get("isvc", "-n", NS)["items"]
    return (
        len(isvcs) == 2
        and all(map(ready, isvcs))
        and all(len(p := pods(node, c)) == 1 and ready(p[0]) for c in ("gateway", "asr", "tts"))
    )


def client_through_port_forward(node: RealNode) -> openai.OpenAI:
    port = node.port_forward(f"svc/{RELEASE}-speech-stack-gateway", NS, 80)
    node.wait("the gateway through port-forward", lambda: healthy(f"http://127.0.0.1:{port}/healthz"), timeout=60)
    return openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=600)


def ffprobe(path) -> dict:
    entries = "stream=codec_name,sample_rate,channels:format=duration"
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", entries, "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    info = json.loads(out)
    return info["streams"][0] | {"duration": float(info["format"]["duration"])}


def set_args(vals: dict, prefix: str = "") -> list[str]:
    return [
        a
        for k, v in vals.items()
        for a in (
            set_args(v, f"{prefix}{k}.") if isinstance(v, dict) else ["--set-json", f"{prefix}{k}={json.dumps(v)}"]
        )
    ]


def test_helm_install_on_the_real_node_becomes_ready_through_real_probes(node):
    node.helm("install", RELEASE, str(CHART), "-n", NS, *set_args(values(node.images)))
    node.wait("InferenceServices and pods Ready", lambda: serving(node), timeout=900)
    gateway = node.get("deployment", f"{RELEASE}-speech-stack-gateway", "-n", NS)["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in gateway["containers"][0]["env"]}
    for component in ("asr", "tts"):
        service = node.get("service", f"{RELEASE}-speech-stack-{component}-predictor", "-n", NS)
        assert service["metadata"]["ownerReferences"][0]["kind"] == "InferenceService"  # made by KServe
        assert env[f"GATEWAY_{component.upper()}_URL"] == f"http://{service['metadata']['name']}.{NS}.svc.cluster.local"
        pod = pods(node, component)[0]
        assert pod["spec"]["nodeName"] == NODE_NAME
        assert pod["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True


@pytest.mark.parametrize(("component", "cache"), [("asr", "/app/models"), ("tts", "/app/tts-cache"), ("gateway", None)])
def test_containers_run_as_the_app_user_with_only_scratch_and_cache_writable(node, component, cache):
    probe = (
        "import os, sys\n"
        "def writable(d):\n"
        "    try:\n"
        "        open(os.path.join(d, '.probe'), 'w').close(); os.remove(os.path.join(d, '.probe')); return True\n"
        "    except OSError:\n"
        "        return False\n"
        "print(os.getuid(), os.getgid(), *(writable(d) for d in sys.argv[1:]))"
    )
    dirs = ["/app", "/tmp", *([cache] if cache else [])]
    out = node.kubectl(
        "exec", "-n", NS, pods(node, component)[0]["metadata"]["name"], "--", "python", "-c", probe, *dirs
    ).stdout.split()
    assert out == [str(APP_UID), str(APP_UID), "False", "True", *(["True"] if cache else [])]


def test_openai_client_through_port_forward(node, spoken, tmp_path):
    client = client_through_port_forward(node)
    texts = list(spoken)
    hyps = [client.audio.transcriptions.create(model="whisper-1", file=spoken[t].open("rb")).text for t in texts]
    score = wer(texts, hyps)
    assert score < WER_BOUND
    words = client.audio.transcriptions.create(
        model="whisper-1",
        file=spoken[texts[0]].open("rb"),
        response_format="verbose_json",
        timestamp_granularities=["word"],
    )
    assert words.words and all(0 <= w.start <= w.end <= words.duration + 0.01 for w in words.words)
    for fmt, codec in (("mp3", "mp3"), ("wav", "pcm_s16le")):
        out = tmp_path / f"speech.{fmt}"
        client.audio.speech.create(
            model="tts-1", voice="alloy", input="Hello from the real node.", response_format=cast(Any, fmt)
        ).write_to_file(out)
        info = ffprobe(out)
        assert info["codec_name"] == codec and info["sample_rate"] == "24000" and info["duration"] > 0.3
    node.stop_forwards()
    node.dump(NS)  # pod logs into the tmp dir, also when all is well
    for component in ("gateway", "asr", "tts"):
        log = node.kubectl("logs", "-n", NS, "-l", f"app.kubernetes.io/component={component}", "--tail=-1").stdout
        assert "Uvicorn running" in log
        assert not [fault for fault in LOG_FAULTS if fault in log], f"{component} log:\n{log[-3000:]}"


def test_the_ingress_and_the_gateway_show_where_clients_go(node):
    """Traefik writes its address into the Ingress's and the Gateway's status (`kubectl get ingress`)."""

    def addresses() -> tuple[list, list]:
        ingress = node.get("ingress", f"{RELEASE}-speech-stack-gateway", "-n", NS)
        gateway = node.get("gateway", f"{RELEASE}-speech-stack-gateway", "-n", NS)
        return (
            [i.get("ip") for i in ingress.get("status", {}).get("loadBalancer", {}).get("ingress", [])],
            [a.get("value") for a in gateway.get("status", {}).get("addresses", [])],
        )

    node.wait("Traefik's address in the status", lambda: addresses() == ([NODE_IP], [NODE_IP]), timeout=120)
    route = node.get("httproute", f"{RELEASE}-speech-stack-gateway", "-n", NS)
    (parent,) = route["status"]["parents"]
    assert {c["type"]: c["status"] for c in parent["conditions"]}["Accepted"] == "True"


@pytest.fixture(scope="module")
def long_speech(tmp_path_factory, spoken) -> Path:
    """About 70 s of speech (three of Whisper's 30 s windows): the streamed deltas come one window at a time."""
    import numpy as np
    import soundfile as sf

    pause = np.zeros(8000, np.float32)
    parts = [x for _ in range(4) for wav in spoken.values() for x in (sf.read(wav, dtype="float32")[0], pause)]
    out = tmp_path_factory.mktemp("long") / "long.wav"
    sf.write(out, np.concatenate(parts), 16000)
    return out


@pytest.fixture(params=[HOST, ROUTE_HOST], ids=["ingress", "httproute"])
def tls_client(request, node, monkeypatch):
    """The official client on Traefik's TLS entryPoint, by the Ingress's host or the HTTPRoute's: the
    names resolve to the node in this process, the test CA is trusted (httpx explicitly, websockets
    through SSL_CERT_FILE)."""
    monkeypatch.setenv("SSL_CERT_FILE", str(node.certificate.ca))
    with resolved({HOST: NODE_IP, ROUTE_HOST: NODE_IP}):
        yield openai.OpenAI(
            base_url=f"https://{request.param}:{HTTPS_PORT}/v1",
            api_key="unused",
            http_client=openai.DefaultHttpxClient(verify=str(node.certificate.ca), timeout=600),
            max_retries=0,
        )


def test_openai_clients_through_traefik_over_tls(tls_client, spoken, long_speech, tmp_path):
    client = tls_client
    assert {m.id for m in client.models.list()} >= {"whisper-1", "tts-1"}
    texts = list(spoken)[:3]
    hyps = [client.audio.transcriptions.create(model="whisper-1", file=spoken[t].open("rb")).text for t in texts]
    assert wer(texts, hyps) < WER_BOUND
    # a streamed transcription of 70 s: deltas leave as windows are decoded, not buffered by the proxy
    started = time.monotonic()
    stream = client.audio.transcriptions.create(model="whisper-1", file=long_speech.open("rb"), stream=True)
    arrivals = [(event.type, time.monotonic() - started) for event in stream]
    deltas = [t for kind, t in arrivals if kind == "transcript.text.delta"]
    assert arrivals[-1][0] == "transcript.text.done" and len(deltas) >= 2
    assert arrivals[-1][1] - deltas[0] > 2.0, arrivals  # buffered, they would all arrive with the done event
    out = tmp_path / "streamed.mp3"
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input="Streamed through the Ingress. " * 3, response_format="mp3"
    ) as response:
        chunks = list(response.iter_bytes())
    out.write_bytes(b"".join(chunks))
    assert ffprobe(out)["codec_name"] == "mp3"
    text = next(iter(spoken))
    with client.realtime.connect(extra_query={"intent": "transcription"}) as conn:  # wss://
        conn.session.update(session=cast(Any, {"type": "transcription", "audio": {"input": {
            "format": {"type": "audio/pcm", "rate": 24000}, "turn_detection": None,
            "transcription": {"model": "whisper-1", "language": "en"}}}}))  # fmt: skip
        conn.input_audio_buffer.append(audio=base64.b64encode(pcm24(spoken[text])).decode())
        conn.input_audio_buffer.commit()
        completed = next(e for e in conn if e.type == "conversation.item.input_audio_transcription.completed")
    assert wer([text], [completed.transcript]) < WER_BOUND


def test_the_node_sdk_realtime_client_through_the_tls_ingress(node, spoken, tmp_path):
    """The official Node SDK's realtime client dials only wss://: one committed turn transcribed
    (tests/clients/node, `make js-clients`)."""
    text = next(iter(spoken))
    audio = tmp_path / "turn.pcm"
    audio.write_bytes(pcm24(spoken[text]))
    env = os.environ | {"SPEECH_HOST": HOST, "SPEECH_IP": NODE_IP, "SPEECH_PORT": str(HTTPS_PORT),
                        "SPEECH_CA": str(node.certificate.ca), "AUDIO": str(audio)}  # fmt: skip
    script = ROOT / "tests" / "clients" / "node" / "realtime-transcribe.mjs"
    out = subprocess.run(["node", str(script)], env=env, capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.splitlines()[-1])
    assert result["url"] == f"wss://{HOST}:{HTTPS_PORT}/v1/realtime?intent=transcription"
    assert wer([text], [result["transcript"]]) < WER_BOUND and result["usage"]["type"] == "duration"


def pcm24(wav: Path) -> bytes:
    """The clip as 24 kHz PCM16, what the Realtime API takes."""
    return subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(wav), "-f", "s16le", "-ac", "1", "-ar", "24000", "-"],
        capture_output=True,
        check=True,
    ).stdout


def test_helm_upgrade_rolls_the_pods_and_the_next_request_succeeds(node, spoken, tmp_path):
    before = {c: pods(node, c)[0]["metadata"]["uid"] for c in ("gateway", "asr")}
    changed = values(node.images)
    changed["gateway"]["speechSampleRate"] = 16000  # the gateway's env: a new ReplicaSet
    changed["asr"]["batchSize"] = 2  # the predictor's env: KServe rolls its Deployment
    node.helm("upgrade", RELEASE, str(CHART), "-n", NS, *set_args(changed))
    node.wait(
        "the rollout",
        lambda: serving(node) and all(pods(node, c)[0]["metadata"]["uid"] != uid for c, uid in before.items()),
        timeout=900,
    )
    client = client_through_port_forward(node)
    text = next(iter(spoken))
    result = client.audio.transcriptions.create(model="whisper-1", file=spoken[text].open("rb"))
    assert "lazy dog" in normalize(result.text)
    out = tmp_path / "after-upgrade.mp3"
    client.audio.speech.create(
        model="tts-1", voice="echo", input="Still here after the upgrade.", response_format="mp3"
    ).write_to_file(out)
    assert ffprobe(out)["sample_rate"] == "16000"
    node.stop_forwards()


def test_helm_uninstall_leaves_nothing(node):
    node.helm("uninstall", RELEASE, "-n", NS, "--wait", "--timeout", "300s")

    def leftovers() -> list[str]:
        names = node.kubectl(
            "get",
            "isvc,deploy,rs,pods,svc,endpointslices,secret,cm,netpol,hpa,pdb,sa,ingress,httproute,gateway",
            "-n",
            NS,
            "-o",
            "name",
        ).stdout.split()
        return [n for n in names if RELEASE in n.split("/", 1)[1] or n.startswith("pod/")]

    node.wait("the release's objects gone", lambda: not leftovers(), timeout=300)
    assert {p["metadata"]["name"] for p in node.get("pvc", "-n", NS)["items"]} == {"asr-models", "tts-models"}


# -- the skaffold dev loop on the node (skaffold.yaml's `node` profile) --------------------------------
SKAFFOLD_RELEASE = "speech-stack"  # skaffold.yaml's release


def skaffold_args(node: RealNode, command: str) -> list[str]:
    config = node.state / "skaffold-config.yaml"  # no update check, no usage data, no survey
    config.write_text("global:\n  update-check: false\n  collect-metrics: false\n  survey:\n    disable-prompt: true\n")
    cache = ["--cache-file", str(node.state / "skaffold-cache")] if command != "delete" else []
    return [tool("skaffold"), command, "-p", "node", "--default-repo", REGISTRY, "--kubeconfig",
            str(node.kubeconfig), "--config", str(config), *cache]  # fmt: skip


def skaffold_env() -> dict[str, str]:
    """skaffold runs helm and kubectl from PATH: the project's."""
    return os.environ | {
        "PATH": f"{Path(venv_tool('kubectl')).parent}:{Path(tool('helm')).parent}:{os.environ['PATH']}"
    }


def through_ingress(path: str) -> httpx.Response:
    with resolved({HOST: NODE_IP}):
        return httpx.get(f"http://{HOST}:{HTTP_PORT}{path}", timeout=30)


def gateway_image_ids(node: RealNode) -> set[str]:
    return {s["imageID"] for p in pods(node, "gateway") for s in p.get("status", {}).get("containerStatuses", [])}


def test_skaffold_run_deploys_the_chart_from_freshly_built_images(node, spoken):
    """Built by buildah as `make images` builds, pushed to the node's loopback registry, deployed by
    skaffold's Helm deployer with every image (the InferenceServices' too) rewritten to its digest."""
    out = run(*skaffold_args(node, "run"), env=skaffold_env(), timeout=3600, check=False)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    node.wait("the skaffold release serving", lambda: serving(node), timeout=900)
    for component in ("gateway", "asr", "tts"):
        image = pods(node, component)[0]["spec"]["containers"][0]["image"]
        assert image.startswith(f"{REGISTRY}/ghcr_io_speech-stack_{component}:") and "@sha256:" in image, image
    with resolved({HOST: NODE_IP}):
        client = openai.OpenAI(base_url=f"http://{HOST}:{HTTP_PORT}/v1", api_key="unused", max_retries=0, timeout=600)
        text = next(iter(spoken))
        result = client.audio.transcriptions.create(model="whisper-1", file=spoken[text].open("rb"))
    assert wer([text], [result.text]) < WER_BOUND


def test_skaffold_dev_rolls_an_edited_gateway_and_skaffold_delete_leaves_nothing(node):
    """`skaffold dev`: an edit of a gateway file is rebuilt, pushed and rolled out, and the next request is
    served by the new image (another digest); then `skaffold delete` removes the release."""
    probe = f"/* skaffold dev probe {time.time_ns()} */\n"
    edited = ROOT / "services" / "gateway" / "playground" / "style.css"
    original = edited.read_text()
    before = gateway_image_ids(node)
    log = (node.state / "logs" / "skaffold-dev.log").open("w")
    dev = subprocess.Popen(
        [*skaffold_args(node, "dev"), "--port-forward=off", "--cleanup=false"],
        env=skaffold_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        node.wait("skaffold dev watching", lambda: "Watching for changes" in log_text(node), timeout=900)
        edited.write_text(original + probe)
        node.wait(
            "the edited gateway served",
            lambda: probe.strip() in through_ingress("/playground/style.css").text,
            timeout=1200,
        )
        node.wait(  # the old pod drains away; what runs then is the new image only
            "only the new gateway image running",
            lambda: bool(ids := gateway_image_ids(node)) and not ids & before,
            timeout=300,
        )
    finally:
        edited.write_text(original)
        dev.send_signal(signal.SIGINT)
        dev.wait(120)
        log.close()
    out = run(*skaffold_args(node, "delete"), env=skaffold_env(), timeout=600, check=False)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]

    def leftovers() -> list[str]:
        names = node.kubectl(
            "get", "isvc,deploy,rs,pods,svc,ingress,secret,cm,netpol", "-n", NS, "-o", "name"
        ).stdout.split()
        return [n for n in names if SKAFFOLD_RELEASE in n or n.startswith("pod/")]

    node.wait("skaffold's release gone", lambda: not leftovers(), timeout=300)


def log_text(node: RealNode) -> str:
    return (node.state / "logs" / "skaffold-dev.log").read_text(errors="replace")
