"""PersistentVolumes for the chart on the project's single-node cluster: local volumes on the node
holding the models at the chart's cache paths (Whisper base from ``.models``, a tiny wav2vec2 aligner,
a tiny multi-speaker VITS and a tiny XTTS built offline), owned by the images' user, and the claims
``asr.cache.existingClaim`` / ``tts.cache.existingClaim`` name (tools/node/chart-values.yaml).

    python -m scripts.node_volumes NODE_DIR NAMESPACE | kubectl apply -f -    (make node-volumes)
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import yaml

from scripts.devstack import ROOT

WHISPER = ROOT / ".models" / "faster-whisper-base"
APP_UID = 10001
NODE_NAME = "speech-node"


def build(volumes: Path) -> tuple[Path, Path]:
    """The volumes' contents under ``volumes`` (asr/, tts/), made once."""
    from tests.support import tiny_models

    asr, tts = volumes / "asr", volumes / "tts"
    if not (asr / "faster-whisper-base").exists():
        shutil.copytree(WHISPER, asr / "faster-whisper-base")
    if not (asr / "wav2vec2").exists():
        tiny_models.build_wav2vec2(asr / "wav2vec2")
    if not (tts / "vits").exists():
        tiny_models.build_vits(tts / "vits", ["alloy", "echo", "fable"])
    if not (tts / "xtts").exists():  # a model that clones voices (the scale-out tests)
        tiny_models.build_xtts(tts / "xtts")
    for root in (asr, tts):
        for path in [root, *root.rglob("*")]:
            shutil.chown(path, APP_UID, APP_UID)
    return asr, tts


def manifests(volumes: Path, namespace: str) -> str:
    asr, tts = build(volumes)
    docs: list[dict] = []
    for name, path in (("asr-models", asr), ("tts-models", tts)):
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": f"{namespace}-{name}"},
                "spec": {
                    "capacity": {"storage": "5Gi"},
                    "accessModes": ["ReadWriteOnce"],
                    "persistentVolumeReclaimPolicy": "Retain",
                    "storageClassName": "local-models",
                    "local": {"path": str(path)},
                    "nodeAffinity": {
                        "required": {
                            "nodeSelectorTerms": [
                                {
                                    "matchExpressions": [
                                        {"key": "kubernetes.io/hostname", "operator": "In", "values": [NODE_NAME]}
                                    ]
                                }
                            ]
                        }
                    },
                },
            }
        )
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "storageClassName": "local-models",
                    "volumeName": f"{namespace}-{name}",
                    "resources": {"requests": {"storage": "5Gi"}},
                },
            }
        )
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    return yaml.safe_dump_all([ns, *docs])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("node_dir", type=Path)
    parser.add_argument("namespace")
    args = parser.parse_args()
    sys.stdout.write(manifests(args.node_dir.resolve() / "state" / "volumes", args.namespace))


if __name__ == "__main__":
    main()
