#!/bin/sh
# check_wrapped.sh LIBRARY HEADER - fails when the library calls an OpenCL
# function that the fault-injection shim (HEADER's FAULT_FUNCTIONS) does not
# wrap, so that a new call cannot escape test_fault unnoticed.
set -eu
lib=$1
header=$2
command -v nm >/dev/null || { echo "nm not found"; exit 77; }
used=$(nm -u "$lib" 2>/dev/null | sed -n 's/^ *U \(cl[A-Z][A-Za-z0-9]*\)$/\1/p' | sort -u)
wrapped=$(sed -n 's/^ *X(\(cl[A-Za-z0-9]*\)).*/\1/p' "$header" | sort -u)
[ -n "$used" ] || { echo "no OpenCL calls found in $lib"; exit 1; }
missing=$(printf '%s\n' "$used" | while read -r f; do
  printf '%s\n' "$wrapped" | grep -qx "$f" || echo "$f"
done)
if [ -n "$missing" ]; then
  echo "OpenCL functions clattn calls that tests/fault/fault_cl.c does not wrap:"
  echo "$missing"
  exit 1
fi
echo "all $(printf '%s\n' "$used" | wc -l) OpenCL functions clattn calls are wrapped"
