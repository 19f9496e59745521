#!/usr/bin/env bash
# import.sh: bring the images named in images.env (tools/images/build.sh) from buildah's storage
# into the node's containerd (namespace k8s.io, what the CRI sees), with no registry: the missing
# ones are pushed into one OCI layout (blobs shared, so the predictors' torch layer is written
# once), streamed into `ctr images import`, and the layout is deleted. Images the store already
# holds are skipped (containerd's root is a cache); older speech-stack images are removed.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=env.sh
source "$HERE/env.sh"
# shellcheck source=../images/common.sh
source "$HERE/../images/common.sh"
IMAGES_ENV=${IMAGES_ENV:-$IMAGES_CACHE/images.env}
[ -s "$IMAGES_ENV" ] || { echo "no $IMAGES_ENV: run \`make images\`" >&2; exit 1; }
wanted=$(cut -d= -f2- "$IMAGES_ENV")
present=$(ctr_cri images ls -q)
LAYOUT=$NODE_DIR/oci-layout
rm -rf "$LAYOUT"
missing=0
for image in $wanted; do
  grep -qxF "$image" <<< "$present" && continue
  timed "buildah push $image" buildah push --quiet --disable-compression "$image" "oci:$LAYOUT:$image"
  missing=1
done
if [ $missing = 1 ]; then
  # the OCI layout names each image by its ref.name annotation; containerd's importer wants the full
  # name in its own annotation
  python3 - "$LAYOUT/index.json" <<'PY'
import json, sys
index = json.load(open(sys.argv[1]))
for m in index["manifests"]:
    m.setdefault("annotations", {})["io.containerd.image.name"] = m["annotations"]["org.opencontainers.image.ref.name"]
json.dump(index, open(sys.argv[1], "w"))
PY
  tar -C "$LAYOUT" -cf - oci-layout index.json blobs | timed "ctr images import" ctr_cri images import - > /dev/null
  rm -rf "$LAYOUT"
fi
for image in $(ctr_cri images ls -q | grep '^localhost/speech-stack/' || true); do
  grep -qxF "$image" <<< "$wanted" || ctr_cri images rm "$image" > /dev/null
done
ctr_cri images ls -q | grep -cxF "$wanted" | grep -qx "$(wc -w <<< "$wanted")" ||
  { echo "images missing in containerd after import" >&2; exit 1; }
