#!/usr/bin/env bash
# isa.sh - runs a command with the AVX2 code of every component on a host
# that has AVX-512, so that clattn's AVX2 tiles and their speed against
# PyTorch and OpenBLAS can be measured there: the same cores, each side held
# to 256-bit vectors and 16 vector registers.
#
#   bench/isa.sh avx2 COMMAND [ARGS...]
#   e.g. bench/isa.sh avx2 build/tools/clattn-bench --ceiling --seq 4096
#        bench/isa.sh avx2 python3 bench/vs_torch.py --device pocl,intel
#
# What it sets:
#   LD_PRELOAD                 bench/narrow_width.c, built into the cache
#                              folder: CPU devices report float width 8, so
#                              clattn chooses AVX2 tiles
#   POCL_LLVM_CPU_NAME=haswell PoCL generates AVX2 code
#   CL_CONFIG_CPU_TARGET_ARCH  core-avx2: so does Intel's CPU runtime
#   OPENBLAS_CORETYPE=Haswell  the SGEMM ceiling runs AVX2 kernels
#   ATEN_CPU_CAPABILITY=avx2, MKL_ENABLE_INSTRUCTIONS=AVX2,
#   ONEDNN_MAX_CPU_ISA=AVX2    PyTorch's kernels, MKL and oneDNN too
#   CLATTN_CACHE_DIR, POCL_CACHE_DIR
#                              caches of their own (clattn's key holds the
#                              code-generation settings anyway)
# AVX2 code on an AVX-512 core is not an AVX2 CPU: the caches, the clock and
# the number of 256-bit pipes are the host's. Read the ratios (clattn against
# PyTorch, against the ceiling), not the times, as the AVX2 figures.
set -euo pipefail

usage() { sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; }
[ $# -ge 2 ] || { usage >&2; exit 2; }
isa=$1
shift
[ "$isa" = avx2 ] || { echo "isa.sh: unknown ISA '$isa' (avx2)" >&2; exit 2; }

here=$(cd "$(dirname "$0")" && pwd)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/clattn-isa-avx2
mkdir -p "$cache"
shim=$cache/narrow_width.so
if [ ! -e "$shim" ] || [ "$here/narrow_width.c" -nt "$shim" ]; then
  ${CC:-cc} -shared -fPIC -O2 -Wall -Werror -o "$shim" "$here/narrow_width.c" \
    -ldl
fi

export LD_PRELOAD=$shim${LD_PRELOAD:+:$LD_PRELOAD}
export CLATTN_NARROW_WIDTH=8
export POCL_LLVM_CPU_NAME=haswell
export CL_CONFIG_CPU_TARGET_ARCH=core-avx2
export OPENBLAS_CORETYPE=Haswell
export ATEN_CPU_CAPABILITY=avx2
export MKL_ENABLE_INSTRUCTIONS=AVX2
export ONEDNN_MAX_CPU_ISA=AVX2
export CLATTN_CACHE_DIR=$cache/programs
export POCL_CACHE_DIR=$cache/pocl
exec "$@"
