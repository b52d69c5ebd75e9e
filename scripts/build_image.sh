#!/usr/bin/env bash
# Build vsa's image for one target and save it as a tarball for scripts/deploy.sh.
#
#   scripts/build_image.sh [--dry-run] [--push REPOSITORY] TARGET
#
# TARGET: x86_64  images/Dockerfile         linux/amd64  (NVIDIA GPU, CUDA torch)
#         jetson  images/Dockerfile.jetson  linux/arm64  (JetPack 6 / L4T r36.4, Jetson torch)
# Tags vsa:<version>-<target>, <version> being pyproject.toml's, and writes
# dist/vsa-<version>-<target>.tar.gz (docker save | gzip; `docker load` reads it as it is).
#   --push REPOSITORY  also tag REPOSITORY:<version>-<target> and push it (e.g. ghcr.io/org/vsa)
#   --dry-run          print the commands, run none (no Docker needed)
# An arm64 image on an x86_64 host is built under QEMU: register its binfmt handler once with
#   docker run --privileged --rm tonistiigi/binfmt --install arm64
# (or build on an arm64 host, natively).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  echo "usage: scripts/build_image.sh [--dry-run] [--push REPOSITORY] TARGET" >&2
  echo "  TARGET: x86_64 | jetson" >&2
  exit 2
}
die() {
  echo "build_image.sh: $*" >&2
  exit 1
}

dry_run=0
repository=""
target=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry_run=1 ;;
    --push)
      [ $# -ge 2 ] || usage
      repository=$2
      shift
      ;;
    -h | --help) usage ;;
    -*)
      echo "build_image.sh: unknown option $1" >&2
      usage
      ;;
    *)
      [ -z "$target" ] || usage
      target=$1
      ;;
  esac
  shift
done
case "$target" in
  x86_64)
    dockerfile=images/Dockerfile
    platform=linux/amd64
    ;;
  jetson)
    dockerfile=images/Dockerfile.jetson
    platform=linux/arm64
    ;;
  "")
    echo "build_image.sh: no TARGET" >&2
    usage
    ;;
  *)
    echo "build_image.sh: unknown TARGET '$target' (x86_64 or jetson)" >&2
    usage
    ;;
esac
if [ -n "$repository" ] && ! [[ "$repository" =~ ^[a-z0-9][a-z0-9._/:-]*$ ]]; then
  die "not an image repository: '$repository' (lower case, e.g. ghcr.io/org/vsa)"
fi

# The version of [project] in pyproject.toml, the package's own.
version=$(awk -F'"' '/^\[/ { section = $0 } section == "[project]" && /^version *=/ { print $2; exit }' pyproject.toml)
[[ "$version" =~ ^[0-9A-Za-z][0-9A-Za-z.+_-]*$ ]] || die "no usable [project] version in pyproject.toml: '$version'"
tag="vsa:$version-$target"
tarball="dist/vsa-$version-$target.tar.gz"

run() {
  echo "$*"
  [ "$dry_run" = 1 ] || bash -euo pipefail -c "$*"
}

if [ "$dry_run" = 0 ]; then
  command -v docker >/dev/null || die "docker is not installed"
  docker buildx version >/dev/null 2>&1 || die "docker buildx is not available (the buildx plugin)"
  if [ "$platform" = linux/arm64 ] && [ "$(uname -m)" != aarch64 ] && [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    die "building linux/arm64 on $(uname -m) needs QEMU: docker run --privileged --rm tonistiigi/binfmt --install arm64"
  fi
fi

echo "# vsa $version, $target ($platform) -> $tag, $tarball"
run docker buildx build --platform "$platform" --file "$dockerfile" \
  --build-arg "VSA_VERSION=$version" --tag "$tag" --load .
run mkdir -p dist
run "docker save $tag | gzip > $tarball.partial && mv $tarball.partial $tarball"
if [ -n "$repository" ]; then
  run docker tag "$tag" "$repository:$version-$target"
  run docker push "$repository:$version-$target"
fi
[ "$dry_run" = 1 ] || echo "build_image.sh: $tag saved to $tarball ($(du -h "$tarball" | cut -f1))"
