#!/usr/bin/env bash
# clattn.sh - set up, build and run clattn on a fresh Debian/Ubuntu machine.
#
#   ./clattn.sh         install what is missing, build, and run the main job on
#                       the default device (PoCL on a machine without a GPU):
#                       the device list, the API example checked against a
#                       CPU reference, and a benchmark of every variant.
#   ./clattn.sh test    install, build and run the whole test suite, including
#                       the Oclgrind checks, after the kernel tests with the gpu
#                       tile shape forced.
#
# BUILD_DIR (default: build) and CLATTN_DEVICE (a device selector) are read
# from the environment.
set -euo pipefail
cd "$(dirname "$0")"
BUILD_DIR=${BUILD_DIR:-build}

PACKAGES=(build-essential cmake pkg-config ocl-icd-opencl-dev opencl-headers
  ocl-icd-libopencl1 pocl-opencl-icd libclblast-dev libopenblas-dev
  libcmocka-dev oclgrind clinfo python3-matplotlib gnuplot-nox)

install_packages() {
  local missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
      missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "clattn.sh: installing ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
    --no-install-recommends "${missing[@]}" >/dev/null
}

build() {
  cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$BUILD_DIR" -j "$(nproc)"
}

main_job() {
  "$BUILD_DIR/tools/clattn-info"
  echo
  echo "== examples/hello: softmax attention against a CPU reference =="
  "$BUILD_DIR/examples/hello"
  echo
  echo "== clattn-bench: every variant, B=1 H=8 D=64 =="
  "$BUILD_DIR/tools/clattn-bench" --variant all --seq 1024 --causal-both \
    --repeat 5
}

install_packages
build
case "${1:-run}" in
run) main_job ;;
test)
  # The kernel tests run twice: with the tiles chosen for this device, and
  # with the gpu shape forced (cases that name their own tiles keep them),
  # so that both shapes are checked on every device.
  CLATTN_TUNE=SHAPE=gpu ctest --test-dir "$BUILD_DIR" --output-on-failure \
    --timeout 1200 -R "^test_(softmax|sigmoid|linear|cosformer|tiny)$"
  ctest --test-dir "$BUILD_DIR" -L "unit|oclgrind" --output-on-failure \
    --timeout 1200
  ;;
*)
  echo "usage: ./clattn.sh [run|test]" >&2
  exit 2
  ;;
esac
