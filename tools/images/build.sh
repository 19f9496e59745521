#!/usr/bin/env bash
# Build the three images from their Dockerfiles, unchanged, with buildah (no Docker engine, no
# registry): FROM the local Debian base of base.sh (build argument BASE_IMAGE), pip installing
# offline from the wheelhouse of wheels.sh (bind-mounted with a pip.conf, for the RUN steps only),
# buildah's layer cache (--layers) so the predictors' identical torch layer is built and stored once. Each image is tagged localhost/speech-stack/<name>:<key>, the key
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
printf '[global]\nno-index = true\nfind-links = /wheels\n' > "$IMAGES_CACHE/pip.conf"
BASE_ID=$(buildah inspect --type image --format '{{.FromImageID}}' "$BASE")
NAMES=("${@:-gateway}")
[ $# -gt 0 ] || NAMES=(gateway asr tts)
# pip needs no network (and no TLS trust) inside the build; apt (TTS image) uses Debian's http mirror.
MOUNTS=(-v "$WHEELS:/wheels:ro" -v "$IMAGES_CACHE/pip.conf:/etc/pip.conf:ro")

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

# The node's sandbox ("pause") image: one static binary (tools/k8s/install.sh builds it from the
# k8s.io/kubernetes module), made with buildah from scratch, so containerd never pulls one.
PAUSE_BIN=${K8S_TOOLS_BIN:-$HOME/.cache/speech-stack/k8s-tools/bin}/pause
if [ -x "$PAUSE_BIN" ]; then
  pause="localhost/speech-stack/pause:$(sha256sum < "$PAUSE_BIN" | cut -c1-12)"
  if ! buildah inspect --type image "$pause" > /dev/null 2>&1; then
    ctr=$(buildah from scratch)
    buildah copy --quiet --chmod 0755 "$ctr" "$PAUSE_BIN" /pause > /dev/null
    buildah config --entrypoint '["/pause"]' --user 65535:65535 "$ctr"
    buildah commit --quiet --rm "$ctr" "$pause" > /dev/null
  fi
  record pause "$pause"
fi
for name in "${NAMES[@]}"; do
  image="localhost/speech-stack/$name:$(key_of "$name")"
  if buildah inspect --type image "$image" > /dev/null 2>&1; then
    echo "  $name: $image is up to date" >&2
  else
    (cd "$ROOT" && timed "$name image" buildah build --quiet --layers --pull=never --network host --isolation chroot \
      --build-arg "BASE_IMAGE=$BASE" "${MOUNTS[@]}" -f "services/$name/Dockerfile" -t "$image" . > /dev/null)
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
  chain=$(layers "$id")
  grep -qF "$chain" <<< "$current" || buildah rmi "$id" > /dev/null 2>&1 || true
done
cat "$ENV_FILE"
