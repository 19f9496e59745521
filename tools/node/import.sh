#!/usr/bin/env bash
# import.sh: bring the images named in images.env (tools/images/build.sh) from buildah's storage
# into the node's containerd (namespace k8s.io, what the CRI sees), with no registry: each missing
# image is streamed through a named pipe, `buildah push docker-archive:` (uncompressed layers: an
# OCI layout would gzip the 4 GB torch layer on every import) into `ctr images import`; containerd
# keeps a layer it already has once. Images the store already holds are skipped (containerd's root
# is a cache across clusters); older speech-stack images, their CRI references and what an earlier
# skaffold run pulled from the loopback registry are removed first, so the store holds one generation.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=env.sh
source "$HERE/env.sh"
# shellcheck source=../images/common.sh
source "$HERE/../images/common.sh"
IMAGES_ENV=${IMAGES_ENV:-$IMAGES_CACHE/images.env}
[ -s "$IMAGES_ENV" ] || { echo "no $IMAGES_ENV: run \`make images\`" >&2; exit 1; }
wanted=$(cut -d= -f2- "$IMAGES_ENV")
drop_stale() {  # speech-stack images not wanted, and the CRI's sha256:<id> references to them;
  # --sync: containerd frees their layers now, before the next import needs the room
  local listing keep
  listing=$(ctr_cri images ls)
  keep=$(awk 'NR > 1 {print $1, $3}' <<< "$listing" | grep -F -f <(echo "$wanted") | awk '{print $2}' || true)
  awk 'NR > 1 {print $1, $3}' <<< "$listing" | while read -r ref digest; do
    case $ref in
      localhost/speech-stack/*) grep -qxF "$ref" <<< "$wanted" || ctr_cri images rm --sync "$ref" > /dev/null ;;
      "$REGISTRY"/*) ctr_cri images rm --sync "$ref" > /dev/null ;;  # pulled by an earlier skaffold run
      sha256:*) grep -qxF "$digest" <<< "$keep" || ctr_cri images rm --sync "$ref" > /dev/null ;;
    esac
  done
}
drop_stale
# buildah spools each layer through a temporary file: a private directory, removed however this ends
TMPDIR=$(mktemp -d "$IMAGES_CACHE/tmp/import.XXXXXX")
export TMPDIR
trap 'rm -rf "$TMPDIR"' EXIT
present=$(ctr_cri images ls -q)
fifo=$NODE_DIR/import.fifo
for image in $wanted; do
  grep -qxF "$image" <<< "$present" && continue
  rm -f "$fifo" && mkfifo "$fifo"
  start=$SECONDS
  buildah push --quiet "$image" "docker-archive:$fifo:$image" &
  ctr_cri images import "$fifo" > /dev/null
  wait $!
  echo "  imported $image in $((SECONDS - start)) s" >&2
done
rm -f "$fifo"
[ "$(ctr_cri images ls -q | grep -cxF "$wanted")" = "$(wc -w <<< "$wanted")" ] ||
  { echo "images missing in containerd after import" >&2; exit 1; }
