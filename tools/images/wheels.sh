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
  # Start from the previous wheelhouse (hard links: no copy, no download of what is unchanged, and
  # a torch bump is the only way to need two torches on disk), then let pip fill in the rest; the
  # wheelhouse is itself a find-links source, so pip takes an unchanged pin from it.
  for old in "$IMAGES_CACHE"/wheels-*; do
    [ "$old" != "$WH" ] && [ -f "$old/.complete" ] && cp -al "$old"/*.whl "$WH"/ 2> /dev/null && break
  done
  # setuptools: the build backend of the project itself (pyproject.toml), installed from here too
  # async-timeout: redis needs it on the images' Python (Debian's 3.11.2) and not on the venv's, whose
  # markers this resolution follows
  reqs=(".[asr,tts]" "setuptools>=68" "wheel" "async-timeout")
  (cd "$ROOT" && timed "wheelhouse" "$PIP_PYTHON" -m pip wheel --quiet --find-links "$WH" --wheel-dir "$WH" \
    -c constraints.txt "${reqs[@]}")
  rm -f "$WH"/speech_stack-*.whl  # the images build the project from their copy of the sources
  # Keep only what the images resolve to now (the previous wheelhouse's leftovers go): an offline
  # dry run from the wheelhouse alone names every wheel an install takes.
  (cd "$ROOT" && "$PIP_PYTHON" -m pip install --quiet --dry-run --ignore-installed --no-index --find-links "$WH" \
    -c constraints.txt --report "$WH/.report.json" "${reqs[@]}")
  "$PIP_PYTHON" - "$WH" <<'EOP'
import json, pathlib, sys, urllib.parse
wh = pathlib.Path(sys.argv[1])
report = json.loads((wh / ".report.json").read_text())
used = {pathlib.PurePosixPath(urllib.parse.urlparse(i["download_info"]["url"]).path).name for i in report["install"]}
for wheel in wh.glob("*.whl"):
    if wheel.name not in used:
        wheel.unlink()
EOP
  rm -f "$WH/.report.json"
  touch "$WH/.complete"
  for old in "$IMAGES_CACHE"/wheels-*; do [ "$old" = "$WH" ] || rm -rf "$old"; done
fi
echo "$WH"
