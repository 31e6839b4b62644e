#!/usr/bin/env bash
# clattn.sh - set up, build and run clattn on a fresh Debian/Ubuntu machine.
#
#   ./clattn.sh         install what is missing, build, and run the main job:
#                       the device list, then on each test device the API
#                       example checked against a CPU reference and a
#                       benchmark of every variant.
#   ./clattn.sh test    install, build and run the whole test suite on each
#                       test device, then the Oclgrind checks.
#
# The test devices are PoCL and Intel's OpenCL CPU runtime, two independent
# implementations on the same CPU. Intel's runtime comes from PyPI into a
# virtual environment under the build directory; a private ICD vendors folder
# (OCL_ICD_VENDORS) names it next to copies of the system's own .icd files,
# so nothing under /etc/OpenCL changes.
#
# Environment: BUILD_DIR (default: build); CLATTN_TEST_DEVICES, the device
# selectors to run on (default: "pocl intel"); CLATTN_INTEL_OCL=0 skips
# installing Intel's runtime (and drops "intel" from the default devices).
set -euo pipefail
cd "$(dirname "$0")"
BUILD_DIR=${BUILD_DIR:-build}
INTEL_OCL=${CLATTN_INTEL_OCL:-1}
INTEL_OCL_VERSION=2026.2.0

PACKAGES=(build-essential cmake pkg-config ocl-icd-opencl-dev opencl-headers
  ocl-icd-libopencl1 pocl-opencl-icd libclblast-dev libopenblas-dev
  libcmocka-dev oclgrind clinfo python3-matplotlib gnuplot-nox)
# Intel's runtime is installed with pip into a venv; Debian splits both out
# of python3.
[ "$INTEL_OCL" = 1 ] && PACKAGES+=(python3-venv python3-pip)

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

# Installs Intel's OpenCL CPU runtime into $BUILD_DIR/intel-ocl (once) and
# writes $BUILD_DIR/ocl-vendors. The wheel's own .icd file names a path that
# does not exist, so the .icd written here holds the library's full path.
install_intel_runtime() {
  local venv="$BUILD_DIR/intel-ocl" vendors="$BUILD_DIR/ocl-vendors" lib
  if [ "$(uname -m)" != x86_64 ]; then
    echo "clattn.sh: Intel's OpenCL CPU runtime is x86-64 only; skipped" >&2
    return 1
  fi
  if [ ! -x "$venv/bin/pip" ]; then
    rm -rf "$venv"
    python3 -m venv "$venv"
  fi
  if ! find "$venv" -name libintelocl.so -print -quit | grep -q .; then
    echo "clattn.sh: installing Intel's OpenCL CPU runtime from PyPI into $venv"
    # Pinned: the version the suite was last run on; a newer runtime is a
    # change to test, not something to pick up unnoticed.
    "$venv/bin/pip" install -q --disable-pip-version-check \
      "intel-opencl-rt==$INTEL_OCL_VERSION" \
      "intel-cmplr-lib-rt==$INTEL_OCL_VERSION"
  fi
  lib=$(find "$(cd "$venv" && pwd)" -name libintelocl.so -print -quit)
  [ -n "$lib" ] || return 1
  rm -rf "$vendors"
  mkdir -p "$vendors"
  # Copies of the vendors already seen (OCL_ICD_VENDORS when it names a
  # folder, else the system's), since OCL_ICD_VENDORS replaces that folder.
  # Another Intel CPU runtime among them would show its platform twice.
  local system=/etc/OpenCL/vendors icd
  if [ -d "${OCL_ICD_VENDORS:-}" ] &&
    [ "$(cd "$OCL_ICD_VENDORS" && pwd)" != "$(cd "$vendors" && pwd)" ]; then
    system=$OCL_ICD_VENDORS
  fi
  for icd in "$system"/*.icd; do
    if [ -e "$icd" ] && ! grep -q libintelocl "$icd"; then
      cp "$icd" "$vendors/"
    fi
  done
  echo "$lib" >"$vendors/intel-cpu.icd"
  export OCL_ICD_VENDORS
  OCL_ICD_VENDORS=$(cd "$vendors" && pwd)
  # libintelocl.so finds its neighbours through its $ORIGIN run path; only a
  # libsvml.so installed elsewhere needs the loader's path.
  local svml
  svml=$(find "$(cd "$venv" && pwd)" -name libsvml.so -print -quit)
  if [ -n "$svml" ] && [ "$(dirname "$svml")" != "$(dirname "$lib")" ]; then
    LD_LIBRARY_PATH="$(dirname "$svml")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export LD_LIBRARY_PATH
  fi
}

build() {
  cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$BUILD_DIR" -j "$(nproc)"
}

# Prints "device name on platform (version)", or nothing when no device
# matches the selector.
device_line() {
  "$BUILD_DIR/tools/clattn-info" --device "$1" 2>/dev/null |
    awk '/^device /{sub(/^device [0-9]+ \([0-9:]+\): /, ""); n = $0}
         /^  platform /{sub(/^  platform +/, ""); print n " on " $0; exit}'
}

main_job() {
  "$BUILD_DIR/tools/clattn-info"
  for dev in "${DEVICES[@]}"; do
    echo
    echo "== $dev: $(device_line "$dev") =="
    echo "-- examples/hello: softmax attention against a CPU reference --"
    CLATTN_DEVICE=$dev "$BUILD_DIR/examples/hello"
    echo "-- clattn-bench: every variant, B=1 H=8 D=64 --"
    "$BUILD_DIR/tools/clattn-bench" --device "$dev" --variant all --seq 1024 \
      --causal-both --repeat 5
  done
}

test_job() {
  local failed=() dev line tested=()
  for dev in "${DEVICES[@]}"; do
    if ! line=$(device_line "$dev") || [ -z "$line" ]; then
      echo "clattn.sh: no device matches \"$dev\"" >&2
      failed+=("$dev (no such device)")
      continue
    fi
    echo "== tests on $dev: $line =="
    tested+=("$dev: $line")
    # Tests run two at a time: much of their time is single-threaded kernel
    # compilation. The fault-injection sweep (test_fault) fails clattn's own
    # OpenCL calls one by one, which does not depend on the runtime under
    # them: it runs on the first device only.
    local skip=()
    [ ${#tested[@]} -gt 1 ] && skip=(-E '^test_fault$')
    # PoCL compiles every kernel twice: a work-group function for any local
    # size when the program is built, and one specialised to the local size
    # at the first launch. clattn's CPU kernels run with local size 1, where
    # the generic function is as fast, so the tests use it and PoCL compiles
    # a third less (the sanitizer run in CI keeps PoCL's default).
    POCL_WORK_GROUP_SPECIALIZATION=${POCL_WORK_GROUP_SPECIALIZATION:-0} \
      CLATTN_DEVICE=$dev ctest --test-dir "$BUILD_DIR" -L unit -j 2 \
      "${skip[@]}" --output-on-failure --timeout 1200 || failed+=("$dev")
  done
  # Oclgrind is a device of its own: it replaces every other platform.
  echo "== Oclgrind =="
  env -u CLATTN_DEVICE ctest --test-dir "$BUILD_DIR" -L oclgrind -j 2 \
    --output-on-failure --timeout 1200 || failed+=("oclgrind")
  echo
  echo "clattn.sh: tested on:"
  printf '  %s\n' "${tested[@]}" "oclgrind (simulated device, tiny shapes)"
  if [ ${#failed[@]} -gt 0 ]; then
    echo "clattn.sh: FAILED on: ${failed[*]}" >&2
    return 1
  fi
  echo "clattn.sh: every test passed on every device"
}

MODE=${1:-run}
case "$MODE" in
run | test) ;;
*)
  echo "usage: ./clattn.sh [run|test]" >&2
  exit 2
  ;;
esac

install_packages
DEVICES=(pocl)
if [ "$INTEL_OCL" = 1 ]; then
  if install_intel_runtime; then
    DEVICES+=(intel)
  elif [ "$MODE" = test ]; then
    echo "clattn.sh: could not install Intel's OpenCL CPU runtime" >&2
    exit 1
  else
    echo "clattn.sh: Intel's OpenCL CPU runtime not installed; PoCL only" >&2
  fi
fi
if [ -n "${CLATTN_TEST_DEVICES:-}" ]; then
  read -r -a DEVICES <<<"$CLATTN_TEST_DEVICES"
fi
build
case "$MODE" in
run) main_job ;;
test) test_job ;;
esac
