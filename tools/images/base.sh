#!/usr/bin/env bash
# The Debian 12 base image the CI builds start FROM (BASE_IMAGE build argument), made without a
# registry: mmdebstrap writes a minimal bookworm root filesystem with Python 3.11 and a venv at
# /opt/venv (Debian's Python is externally managed, so pip installs go into the venv, first on PATH),
# buildah turns it into localhost/speech-stack/base:<key>. Keyed by this script and the apt sources;
# a warm run only prints the name. Differences from python:3.11-slim-bookworm: Debian's 3.11.2,
# the interpreter in /opt/venv/bin, pip 23.0.1.
# Prints the image name on the last line.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=common.sh
source "$HERE/common.sh"
need mmdebstrap buildah
SOURCES=${APT_SOURCES:-/etc/apt/sources.list.d/debian.sources}
# libpython3.11: the shared libpython that python:3.11-slim also has (torchcodec's extension links it)
PACKAGES=python3,python3.11-venv,python-is-python3,libpython3.11,ca-certificates
KEY=$(cat "$0" "$SOURCES" <(echo "$PACKAGES") | sha256sum | cut -c1-12)
NAME=localhost/speech-stack/base:$KEY

if ! buildah inspect --type image "$NAME" > /dev/null 2>&1; then
  tar="$IMAGES_CACHE/base-$KEY.tar"
  timed "mmdebstrap (bookworm minbase + python3.11)" mmdebstrap --quiet --variant=minbase --include="$PACKAGES" \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --customize-hook='chroot "$1" python3 -m venv /opt/venv' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
    bookworm "$tar" "$SOURCES"
  ctr=$(buildah from scratch)
  buildah add --quiet "$ctr" "$tar" / > /dev/null
  buildah config --env PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 --cmd python3 "$ctr"
  timed "base image commit" buildah commit --quiet --rm "$ctr" "$NAME" > /dev/null
  rm -f "$tar"
fi
echo "$NAME"
