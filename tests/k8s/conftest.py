from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.k8s.cluster import LocalCluster
from tests.k8s.node import RealNode, built_images
from tests.k8s.tools import CACHE, KUBE_VERSION, ROOT, render, run, tool


@pytest.fixture(scope="session")
def schema_dir(tmp_path_factory) -> Path:
    """kubernetes-validate's schemas made readable by kubeconform, plus the InferenceService schema."""
    import json

    import kubernetes_validate

    out = tmp_path_factory.mktemp("schemas")
    src = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    for sub in (f"v{KUBE_VERSION}-local", f"v{KUBE_VERSION}-local-strict"):
        (out / sub).mkdir()
        for f in (src / sub).glob("*.json"):
            doc = json.loads(f.read_text().replace('"/api/_definitions.json#', '"_definitions.json#'))
            doc.pop("$id", None)
            (out / sub / f.name).write_text(json.dumps(doc))
    crd = out / "crd"
    crd.mkdir()
    crds = sorted(str(p) for p in (CACHE / "kserve-crds").glob("serving.kserve.io_*.yaml"))
    crds += sorted(str(p) for p in (CACHE / "prometheus-operator-crds").glob("monitoring.coreos.com_*.yaml"))
    crds += sorted(str(p) for p in (CACHE / "gateway-api-crds").glob("gateway.networking.k8s.io_*.yaml"))
    crds += sorted(str(p) for p in (CACHE / "keda-crds").glob("keda.sh_*.yaml"))
    subprocess.run(
        [sys.executable, str(CACHE / "openapi2jsonschema.py"), *crds],
        cwd=crd,
        check=True,
        capture_output=True,
        env=os.environ | {"FILENAME_FORMAT": "{kind}-{group}-{version}"},
    )
    assert (crd / "inferenceservice-serving-v1beta1.json").exists()
    assert (crd / "servicemonitor-monitoring-v1.json").exists() and (crd / "podmonitor-monitoring-v1.json").exists()
    assert (crd / "httproute-gateway-v1.json").exists() and (crd / "gateway-gateway-v1.json").exists()
    assert (crd / "scaledobject-keda-v1alpha1.json").exists()
    return out


def kubeconform(manifest: str, schema_dir: Path, check: bool = True) -> subprocess.CompletedProcess:
    return run(
        tool("kubeconform"),
        "-strict",
        "-summary",
        "-kubernetes-version",
        KUBE_VERSION,
        "-schema-location",
        f"{schema_dir}/{{{{ .NormalizedKubernetesVersion }}}}-local{{{{ .StrictSuffix }}}}/"
        "{{ .ResourceKind }}{{ .KindSuffix }}.json",
        "-schema-location",
        f"{schema_dir}/crd/{{{{ .ResourceKind }}}}{{{{ .KindSuffix }}}}.json",
        "-",
        input=manifest,
        check=check,
    )


def objects(manifest: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(manifest) if d]


def find(docs: list[dict], kind: str, suffix: str = "") -> dict:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(suffix)]
    assert len(matches) == 1, f"expected one {kind} *{suffix}, found {[d['metadata']['name'] for d in matches]}"
    return matches[0]


@pytest.fixture(scope="module")
def apiserver(tmp_path_factory):
    cluster = LocalCluster(tmp_path_factory.mktemp("apiserver")).start()
    try:
        cluster.apply_kserve_crds()
        for crd in [  # the optional monitors, the Gateway API's route and gateway
            *sorted((CACHE / "prometheus-operator-crds").glob("*.yaml")),
            *sorted((CACHE / "gateway-api-crds").glob("*.yaml")),
            *sorted((CACHE / "keda-crds").glob("*.yaml")),
        ]:
            cluster.kubectl("apply", "--server-side", "-f", str(crd))
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def real_node(tmp_path_factory):
    """The real single-node cluster (tools/node), once per session for every real-node module; the pods'
    logs of each test namespace are kept in the tmp dir, and the cluster is torn down even on failure."""
    images = built_images()
    node = RealNode(tmp_path_factory.mktemp("real-node"))
    try:
        node.up()
        node.images = images
        yield node
    finally:
        try:
            for namespace in node.namespaces:
                node.dump(namespace)
        finally:
            node.down()


__all__ = ["ROOT", "find", "kubeconform", "objects", "render"]
