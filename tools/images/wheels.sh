#!/usr/bin/env bash
# A wheelhouse for the image builds, outside the repository and keyed by constraints.txt and
# pyproject.toml: every wheel the three images install (torch and its CUDA wheels included), built
# or downloaded once by the project's own pip. The builds then install from it offline (build.sh
# mounts it with a pip.conf saying no-index), so a rebuild after a source change downloads nothing.
# This is also the only pip cache that works here: the registry answers through a proxy whose
# responses pip's HTTP cache does not keep. Prints the wheelhouse directory on the last line.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source=common.sh
source "$HERE/common.sh"
PIP_PYTHON=${PIP_PYTHON:-$ROOT/.venv/bin/python}
KEY=$(cat "$ROOT/constraints.txt" "$ROOT/pyproject.toml" "$0" | sha256sum | cut -c1-12)
WH="$IMAGES_CACHE/wheels-$KEY"
if [ ! -f "$WH/.complete" ]; then
  rm -rf "$WH" && mkdir -p "$WH"
  # setuptools: the build backend of the project itself (pyproject.toml), installed from here too
  (cd "$ROOT" && timed "wheelhouse" "$PIP_PYTHON" -m pip wheel --quiet --wheel-dir "$WH" -c constraints.txt \
    ".[asr,tts]" "setuptools>=68" "wheel")
  rm -f "$WH"/speech_stack-*.whl  # the images build the project from their copy of the sources
  touch "$WH/.complete"
  for old in "$IMAGES_CACHE"/wheels-*; do [ "$old" = "$WH" ] || rm -rf "$old"; done
fi
echo "$WH"
