#!/usr/bin/env bash
# device-deps.sh - gather what clattn needs to build and test on a machine
# that has an OpenCL driver but no packages and no network.
#
#   bench/device-deps.sh [--arch ARCH] [--update] DIR
#
# Run it on a Debian or Ubuntu machine with apt and network, ideally of the
# same release as the target (or an older one: the libraries must not need a
# newer C library than the target has). It downloads, without installing,
# the .deb files of the OpenCL ICD loader and headers, CLBlast, CMocka and
# pkgconf for ARCH (default amd64), unpacks them into DIR with `dpkg -x`, and
# drops what a build does not need (documentation, static libraries), so that
# DIR stays small enough to copy along with the source tree. Then
# `bench/device-run.sh --deps DIR` builds and runs clattn on the target.
#
# --update runs `apt-get update` first. It is done into a private list folder
# (no root needed), which is also the way when this machine's architecture is
# not ARCH.
set -euo pipefail

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
  exit "${1:-2}"
}

arch=amd64
update=0
dir=""
while [ $# -gt 0 ]; do
  case "$1" in
  --arch) arch=$2; shift 2 ;;
  --update) update=1; shift ;;
  -h | --help) usage 0 ;;
  -*) echo "device-deps.sh: unknown option $1" >&2; usage ;;
  *) [ -z "$dir" ] || usage; dir=$1; shift ;;
  esac
done
[ -n "$dir" ] || usage

# Required packages, then those that only some releases split out (their
# content is in a required package elsewhere, e.g. pkgconf-bin in pkgconf).
# Runtime dependencies outside this list (libc6, libstdc++6, libgcc-s1) are
# part of any system with a C++ compiler.
required=(ocl-icd-libopencl1 ocl-icd-opencl-dev opencl-c-headers
  libclblast1 libclblast-dev libcmocka0 libcmocka-dev pkgconf libpkgconf3)
optional=(opencl-headers opencl-clhpp-headers pkgconf-bin)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

apt_opts=()
host_arch=$(dpkg --print-architecture)
if [ "$update" = 1 ] || [ "$host_arch" != "$arch" ]; then
  mkdir -p "$work/lists/partial" "$work/cache/archives/partial"
  apt_opts=(-o "APT::Architecture=$arch" -o "APT::Architectures=$arch"
    -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache"
    -o "Dir::State::status=/dev/null")
  echo "device-deps.sh: apt-get update (private lists, $arch)"
  apt-get "${apt_opts[@]}" -q update >"$work/update.log" 2>&1 || {
    cat "$work/update.log" >&2
    exit 1
  }
fi

has_candidate() {
  local policy
  policy=$(apt-cache "${apt_opts[@]}" policy "$1" 2>/dev/null) || return 1
  [[ $policy == *"Candidate: "[!\(]* ]]
}

pkgs=()
for p in "${required[@]}"; do
  if ! has_candidate "$p"; then
    echo "device-deps.sh: no candidate for $p (try --update)" >&2
    exit 1
  fi
  pkgs+=("$p")
done
for p in "${optional[@]}"; do
  if has_candidate "$p"; then pkgs+=("$p"); else echo "device-deps.sh: skip $p (not in this release)"; fi
done

mkdir -p "$work/debs"
# apt downloads as its own unprivileged user when it can write the folder.
chmod 755 "$work" && chmod 777 "$work/debs"
(cd "$work/debs" && apt-get "${apt_opts[@]}" -q download "${pkgs[@]}")

mkdir -p "$dir"
for deb in "$work"/debs/*.deb; do
  echo "device-deps.sh: unpack $(basename "$deb")"
  dpkg -x "$deb" "$dir"
done
# What a build and a test run do not read.
rm -rf "$dir/usr/share/doc" "$dir/usr/share/man" "$dir/usr/share/lintian"
find "$dir" -name '*.a' -delete
# The .deb lists stay as a record of what DIR holds.
for deb in "$work"/debs/*.deb; do basename "$deb"; done >"$dir/PACKAGES"

# The newest C and C++ library versions the unpacked code needs: the target
# must have at least these (`ldd --version` there).
need() {
  find "$dir" -type f \( -name '*.so*' -o -path '*/bin/*' \) -exec \
    objdump -T {} + 2>/dev/null | grep -o "$1"'_[0-9.]*' | sort -Vu | tail -n 1
}
if command -v objdump >/dev/null; then
  echo "device-deps.sh: needs $(need GLIBC) and $(need GLIBCXX) on the target"
fi
echo "device-deps.sh: $dir holds $(du -sh "$dir" | cut -f1)"
