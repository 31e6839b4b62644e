#!/bin/sh
# set_arg.sh SRC_DIR - every kernel argument of the host library is set
# through CLATTN_SET_ARG (host/plan.h), which keeps the first failing OpenCL
# code; a direct clSetKernelArg, with an OR of codes (err |= ...), would
# report a code that no call returned.
src=${1:?usage: set_arg.sh SRC_DIR}
bad=$(grep -n 'clSetKernelArg *(' "$src"/host/*.c "$src"/host/*.h |
  grep -v '/plan\.h:[0-9]*: *: clSetKernelArg((kernel), (index), (size), (value)))$')
if [ -n "$bad" ]; then
  echo "set_arg.sh: set kernel arguments with CLATTN_SET_ARG:" >&2
  echo "$bad" >&2
  exit 1
fi
n=$(cat "$src"/host/*.c | grep -c 'CLATTN_SET_ARG(err')
echo "set_arg.sh: $n kernel arguments, all set through CLATTN_SET_ARG"
