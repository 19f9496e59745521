# shellcheck shell=bash
# Shared settings of the image scripts (sourced): buildah's storage and the image cache live outside
# the repository, in IMAGES_CACHE (default ~/.cache/speech-stack/images).
IMAGES_CACHE=${IMAGES_CACHE:-$HOME/.cache/speech-stack/images}
export CONTAINERS_STORAGE_CONF="$IMAGES_CACHE/storage.conf" CONTAINERS_CONF="$IMAGES_CACHE/containers.conf"
# buildah keeps RUN --mount=type=cache directories under $TMPDIR (here: the pip cache of the builds)
export TMPDIR="$IMAGES_CACHE/tmp"
mkdir -p "$IMAGES_CACHE/storage" "$IMAGES_CACHE/tmp" /run/speech-stack-buildah
# overlay storage (vfs would copy the multi-GB predictor images per step); runc, because crun
# refuses hybrid cgroup hosts; ulimits the process may set without CAP_SYS_RESOURCE.
cat > "$CONTAINERS_STORAGE_CONF" <<EOC
[storage]
driver = "overlay"
graphroot = "$IMAGES_CACHE/storage"
runroot = "/run/speech-stack-buildah"
EOC
cat > "$CONTAINERS_CONF" <<'EOC'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
EOC

timed() {  # timed WHAT CMD...: run CMD, print its wall time
  local what=$1 start=$SECONDS
  shift
  "$@"
  echo "  $what: $((SECONDS - start)) s" >&2
}

need() {  # need CMD...: fail loudly when a tool of `make image-packages` is missing
  local c
  for c in "$@"; do
    command -v "$c" > /dev/null || { echo "missing $c: run \`make image-packages\`" >&2; exit 1; }
  done
}

# dockerfile_build NAME IMAGE BASE WHEELS CONTEXT: services/NAME/Dockerfile with buildah, unchanged:
# FROM the local base (build argument BASE_IMAGE), pip installing offline from the wheelhouse (mounted
# with a pip.conf saying no-index, for the RUN steps only), buildah's layer cache (--layers).
dockerfile_build() {
  local name=$1 image=$2 base=$3 wheels=$4 context=$5
  printf '[global]\nno-index = true\nfind-links = /wheels\n' > "$IMAGES_CACHE/pip.conf"
  # pip needs no network (and no TLS trust) inside the build; apt (TTS image) uses Debian's http mirror.
  (cd "$context" && buildah build --quiet --layers --pull=never --network host --isolation chroot \
    --build-arg "BASE_IMAGE=$base" -v "$wheels:/wheels:ro" -v "$IMAGES_CACHE/pip.conf:/etc/pip.conf:ro" \
    -f "services/$name/Dockerfile" -t "$image" . > /dev/null)
}
