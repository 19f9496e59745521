#!/usr/bin/env bash
# skaffold's custom builder for the `node` profile (skaffold.yaml): builds services/NAME/Dockerfile
# exactly as tools/images/build.sh does (the same mmdebstrap base, offline wheelhouse and buildah
# layer cache, so an unchanged step costs nothing) under the name skaffold chose ($IMAGE), and pushes
# it to the loopback registry when skaffold asks ($PUSH_IMAGE: buildah gzips new layers once; a layer
# the registry holds is not sent again).
#   skaffold sets IMAGE, PUSH_IMAGE, BUILD_CONTEXT; usage: skaffold-build.sh NAME
set -euo pipefail
NAME=$1
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=common.sh
source "$HERE/common.sh"
need buildah
: "${IMAGE:?skaffold sets IMAGE}"
BASE=$("$HERE/base.sh" | tail -n 1)
WHEELS=$("$HERE/wheels.sh" | tail -n 1)
timed "$NAME image" dockerfile_build "$NAME" "$IMAGE" "$BASE" "$WHEELS" "${BUILD_CONTEXT:-$(cd "$HERE/../.." && pwd)}"
if [ "${PUSH_IMAGE:-false}" = true ]; then
  timed "$NAME push" buildah push --quiet --tls-verify=false "$IMAGE" "docker://$IMAGE" > /dev/null
fi
# keep one generation per artifact in buildah's storage (each dev iteration tags a new one)
for old in $(buildah images --format '{{.Name}}:{{.Tag}}' | grep -F "${IMAGE%:*}:" | grep -vxF "$IMAGE" || true); do
  buildah rmi "$old" > /dev/null 2>&1 || true
done
