#!/usr/bin/env bash
# Build the three images from their Dockerfiles, unchanged, with buildah (no Docker engine, no
# registry): FROM the local Debian base of base.sh (build argument BASE_IMAGE), pip installing
# offline from the wheelhouse of wheels.sh (bind-mounted with a pip.conf, for the RUN steps only),
# buildah's layer cache (--layers) so the predictors' identical torch layer is built and stored once.
# Each image is tagged localhost/speech-stack/<name>:<key>, the key
# being a hash of its inputs (Dockerfile, the files its COPY lines name, the base image), so an
# unchanged image is not rebuilt. Writes NAME=IMAGE lines to $IMAGES_CACHE/images.env and prints them.
#   tools/images/build.sh [gateway asr tts]
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source=common.sh
source "$HERE/common.sh"
need buildah
BASE=$("$HERE/base.sh" | tail -n 1)
WHEELS=$("$HERE/wheels.sh" | tail -n 1)
BASE_ID=$(buildah inspect --type image --format '{{.FromImageID}}' "$BASE")
NAMES=("${@:-gateway}")
[ $# -gt 0 ] || NAMES=(gateway asr tts)

key_of() {  # key_of NAME: hash of the Dockerfile, the sources its COPY lines name, and the base image
  local dockerfile="services/$1/Dockerfile"
  (cd "$ROOT" && {
    echo "$BASE_ID"
    sha256sum "$dockerfile" .dockerignore
    awk '/^COPY /{for (i = 2; i < NF; i++) if ($i !~ /^--/) print $i}' "$dockerfile" |
      xargs -I{} find {} -type f ! -path '*/__pycache__/*' ! -name '*.pyc' | LC_ALL=C sort | xargs sha256sum
  } | sha256sum | cut -c1-12)
}

ENV_FILE="$IMAGES_CACHE/images.env"
touch "$ENV_FILE"
record() {  # record NAME IMAGE: images.env line and size
  sed -i "/^$1=/d" "$ENV_FILE"
  echo "$1=$2" >> "$ENV_FILE"
  echo "  $1: $2 ($(buildah images --format '{{.Size}}' "$2" | head -n 1))" >&2
}

# Images of one static binary from tools/k8s/install.sh, made with buildah from scratch, so containerd
# never pulls one: the node's sandbox ("pause") image, and its Ingress controller (Traefik).
binary_image() {  # binary_image NAME USER: localhost/speech-stack/NAME:<sha of the binary>
  local name=$1 user=$2 bin image ctr
  bin=${K8S_TOOLS_BIN:-$HOME/.cache/speech-stack/k8s-tools/bin}/$name
  [ -x "$bin" ] || return 0
  image="localhost/speech-stack/$name:$(sha256sum < "$bin" | cut -c1-12)"
  if ! buildah inspect --type image "$image" > /dev/null 2>&1; then
    ctr=$(buildah from scratch)
    buildah copy --quiet --chmod 0755 "$ctr" "$bin" "/$name" > /dev/null
    buildah config --entrypoint "[\"/$name\"]" --user "$user:$user" "$ctr"
    buildah commit --quiet --rm "$ctr" "$image" > /dev/null
  fi
  record "$name" "$image"
}
binary_image pause 65535
binary_image traefik 65532
for name in "${NAMES[@]}"; do
  image="localhost/speech-stack/$name:$(key_of "$name")"
  if buildah inspect --type image "$image" > /dev/null 2>&1; then
    echo "  $name: $image is up to date" >&2
  else
    timed "$name image" dockerfile_build "$name" "$image" "$BASE" "$WHEELS" "$ROOT"
  fi
  record "$name" "$image"
done
# Drop what no longer serves: speech-stack images not named in images.env (older bases included),
# then the untagged intermediate images of --layers whose layers are no prefix of a current image's
# (the build cache of older sources; a predictor's old top layers are GBs).
buildah rm --all > /dev/null  # working containers an interrupted build left behind
for old in $(buildah images --format '{{.Name}}:{{.Tag}}' | grep '^localhost/speech-stack/'); do
  [ "$old" = "$BASE" ] || grep -qx "[a-z]*=$old" "$ENV_FILE" || buildah rmi "$old" > /dev/null 2>&1 || true
done
layers() { buildah inspect --type image --format '{{range .OCIv1.RootFS.DiffIDs}}{{.}} {{end}}' "$1"; }
current=$(for image in $(cut -d= -f2 "$ENV_FILE") "$BASE"; do layers "$image"; echo; done)
for id in $(buildah images --all --format '{{.ID}} {{.Name}}' | awk '$2 == "<none>" {print $1}'); do
  chain=$(layers "$id" 2> /dev/null) || continue  # gone with an image removed before it
  grep -qF "$chain" <<< "$current" || buildah rmi "$id" > /dev/null 2>&1 || true
done
cat "$ENV_FILE"
