#!/bin/sh
# run_bad_inputs.sh - checks clattn-run's error contract from the outside.
#
# usage: run_bad_inputs.sh CLATTN_RUN SCRATCH_DIR [NPY_MAKE]
#
# Crafts bad .npy files and command lines in SCRATCH_DIR and checks that each
# exits with the documented status (2 for a usage error, 1 for bad input or a
# failure), prints exactly one stderr line starting "clattn-run: ", prints
# nothing on stdout and does not crash. Then runs small good cases of every
# variant, which need an OpenCL device, and checks the outputs' headers and
# sizes. Bad files are written with printf, so that each byte is the one
# meant; the good inputs are random arrays from NPY_MAKE (tests/cli/npy_make.c)
# when it is given, else a repeating pattern from printf, so the script needs
# no Python.
#
# Environment: CLATTN_DEVICE selects the device for the good cases; when it is
# unset and no device exists, the good cases are skipped. CLATTN_RUN_WRAPPER
# runs the binary under a tool, for example
#   CLATTN_RUN_WRAPPER="valgrind -q --leak-check=full --error-exitcode=99"
# (a leak then shows as an exit status or an extra stderr line).
# CLATTN_RUN_GOOD_ONLY=1 runs only the good cases (and --help, --version),
# for example to fill a kernel cache before a slower wrapper runs them all.
#
# The last line is "N passed, M failed"; the exit status is 1 if any failed.

# The command lines below split $QKV into words on purpose, and printf
# formats are built from octal escapes on purpose.
# shellcheck disable=SC2086,SC2059
set -u

if [ $# -lt 2 ] || [ $# -gt 3 ]; then
  echo "usage: $0 CLATTN_RUN SCRATCH_DIR [NPY_MAKE]" >&2
  exit 2
fi
BIN=$1
DIR=$2
MAKE=${3:-}
WRAPPER=${CLATTN_RUN_WRAPPER:-}
# $QKV below is split into words, so the paths in it must not hold white
# space, and globbing stays off.
case $DIR in
*[[:space:]]*)
  echo "$0: the scratch directory must not contain white space" >&2
  exit 2
  ;;
esac
set -f
mkdir -p "$DIR" || exit 2
# A crash must show as an exit status, not leave a core file behind.
# shellcheck disable=SC3045
ulimit -c 0 2>/dev/null || :

passed=0
failed=0
skipped=0

# ---- Writing .npy files --------------------------------------------------

# Octal escapes for printf of the little-endian integer $1 in $2 bytes.
le_bytes() {
  _v=$1
  _n=$2
  _s=""
  while [ "$_n" -gt 0 ]; do
    _s="$_s$(printf '\\%03o' $((_v % 256)))"
    _v=$((_v / 256))
    _n=$((_n - 1))
  done
  printf '%s' "$_s"
}

# Eight distinct float32 values (0.5, -0.25, 1, -1, 0.125, 0.75, -0.5, 0.375)
# as little-endian bytes, so that scores differ between keys.
PATTERN='\000\000\000\077\000\000\200\276\000\000\200\077\000\000\200\277'
PATTERN="$PATTERN"'\000\000\000\076\000\000\100\077\000\000\000\277\000\000\300\076'

# Writes $1 float32 values to stdout.
floats() {
  _n=$1
  while [ "$_n" -ge 8 ]; do
    printf "$PATTERN"
    _n=$((_n - 8))
  done
  while [ "$_n" -gt 0 ]; do
    printf '\000\000\000\077'
    _n=$((_n - 1))
  done
}

# Product of a shape written "2, 3, 4".
count_of() {
  _c=1
  _ifs=$IFS
  IFS=', '
  for _d in $1; do
    _c=$((_c * _d))
  done
  IFS=$_ifs
  echo "$_c"
}

# npy_raw FILE MAJOR MINOR HEADER NFLOATS: a preamble whose length field is
# exactly the header's length, the header as given, then NFLOATS values.
npy_raw() {
  _len=${#4}
  {
    printf '\223NUMPY'
    printf "$(le_bytes "$2" 1)$(le_bytes "$3" 1)"
    if [ "$2" -eq 1 ]; then
      printf "$(le_bytes "$_len" 2)"
    else
      printf "$(le_bytes "$_len" 4)"
    fi
    printf '%s' "$4"
    floats "$5"
  } >"$1"
}

# npy FILE SHAPE [DESCR [FORTRAN [NFLOATS]]]: a file laid out as NumPy writes
# it; NFLOATS defaults to what the shape needs in float32.
npy() {
  _h="{'descr': '${3:-<f4}', 'fortran_order': ${4:-False}, 'shape': ($2), }"
  _pad=$(((64 - (10 + ${#_h} + 1) % 64) % 64))
  while [ "$_pad" -gt 0 ]; do
    _h="$_h "
    _pad=$((_pad - 1))
  done
  _h="$_h
"
  npy_raw "$1" 1 0 "$_h" "${5:-$(count_of "$2")}"
}

# ---- Checking ------------------------------------------------------------

ok() {
  passed=$((passed + 1))
  echo "ok   $1"
}

not_ok() {
  failed=$((failed + 1))
  echo "FAIL $1: $2"
  sed 's/^/       stderr: /' "$DIR/stderr.txt" | head -n 5
}

# bad NAME STATUS ARGS...: clattn-run ARGS must exit STATUS with one line.
bad() {
  [ "${CLATTN_RUN_GOOD_ONLY:-}" = 1 ] && return 0
  _name=$1
  _want=$2
  shift 2
  $WRAPPER "$BIN" "$@" >"$DIR/stdout.txt" 2>"$DIR/stderr.txt"
  _code=$?
  _lines=$(wc -l <"$DIR/stderr.txt" | tr -d ' ')
  if [ "$_code" -ge 128 ]; then
    not_ok "$_name" "crashed (exit status $_code)"
  elif [ "$_code" -ne "$_want" ]; then
    not_ok "$_name" "exit status $_code, expected $_want"
  elif [ "$_lines" != 1 ]; then
    not_ok "$_name" "$_lines lines on stderr, expected 1"
  elif ! grep -q '^clattn-run: ' "$DIR/stderr.txt"; then
    not_ok "$_name" "stderr does not start with 'clattn-run: '"
  elif [ -s "$DIR/stdout.txt" ]; then
    not_ok "$_name" "wrote to stdout"
  elif [ -n "${MATCH:-}" ] && ! grep -q -- "$MATCH" "$DIR/stderr.txt"; then
    not_ok "$_name" "the message does not match '$MATCH'"
  else
    ok "$_name"
  fi
}

# header_ok FILE SHAPE: FILE is a float32 .npy file of that shape and size.
header_ok() {
  [ -f "$1" ] || return 1
  # Magic and version 1.0, then the header length.
  [ "$(od -An -tu1 -N8 "$1" | tr -s ' \n' '  ')" = " 147 78 85 77 80 89 1 0 " ] ||
    return 1
  # shellcheck disable=SC2046
  set -- "$1" "$2" $(od -An -tu1 -j8 -N2 "$1")
  _hlen=$(($3 + 256 * $4))
  _text=$(dd if="$1" bs=1 skip=10 count="$_hlen" 2>/dev/null)
  case $_text in
  *"'descr': '<f4'"*"'fortran_order': False"*"'shape': ($2)"*) ;;
  *) return 1 ;;
  esac
  [ "$(wc -c <"$1" | tr -d ' ')" -eq $((10 + _hlen + 4 * $(count_of "$2"))) ]
}

# good NAME "OUT SHAPE" "LSE SHAPE" ARGS...: must exit 0 silently and write
# O (and L when the second shape is not empty) with those shapes.
good() {
  _name=$1
  _oshape=$2
  _lshape=$3
  shift 3
  rm -f "$DIR/o.npy" "$DIR/l.npy"
  if [ -n "${CLATTN_DEVICE:-}" ]; then
    set -- "$@" --device "$CLATTN_DEVICE"
  fi
  $WRAPPER "$BIN" "$@" >"$DIR/stdout.txt" 2>"$DIR/stderr.txt"
  _code=$?
  if [ "$_code" -eq 1 ] && [ -z "${CLATTN_DEVICE:-}" ] &&
    grep -q 'DEVICE_NOT_FOUND' "$DIR/stderr.txt"; then
    skipped=$((skipped + 1))
    echo "skip $_name (no OpenCL device)"
  elif [ "$_code" -ne 0 ]; then
    not_ok "$_name" "exit status $_code, expected 0"
  elif [ -s "$DIR/stderr.txt" ] || [ -s "$DIR/stdout.txt" ]; then
    not_ok "$_name" "printed something on success"
  elif ! header_ok "$DIR/o.npy" "$_oshape"; then
    not_ok "$_name" "output is not float32 ($_oshape)"
  elif [ -n "$_lshape" ] && ! header_ok "$DIR/l.npy" "$_lshape"; then
    not_ok "$_name" "LSE is not float32 ($_lshape)"
  else
    ok "$_name"
  fi
}

# ---- Good inputs ---------------------------------------------------------

# good_input FILE SEED SHAPE: a valid float32 array for the good cases.
good_input() {
  if [ -z "$MAKE" ]; then
    npy "$1" "$3"
    return
  fi
  _file=$1
  _seed=$2
  _ifs=$IFS
  IFS=', '
  set -- $3
  IFS=$_ifs
  if ! "$MAKE" --seed "$_seed" "$_file" "$@"; then
    echo "$0: $MAKE failed" >&2
    exit 2
  fi
}

D=$DIR
# Q [1,4,8,16], K [1,2,12,16], V [1,2,12,8]: grouped heads, Nq != Nk, D != Dv.
good_input "$D/q.npy" 1 "1, 4, 8, 16"
good_input "$D/k.npy" 2 "1, 2, 12, 16"
good_input "$D/v.npy" 3 "1, 2, 12, 8"
QKV="--q $D/q.npy --k $D/k.npy --v $D/v.npy --out $D/o.npy"

# ---- Usage errors: exit 2 ------------------------------------------------

bad "no arguments" 2
bad "unknown option" 2 --variant softmax $QKV --frobnicate
bad "positional argument" 2 --variant softmax $QKV extra
bad "missing value at the end" 2 --variant softmax $QKV --scale
bad "missing value before an option" 2 --variant softmax --q --k "$D/k.npy"
bad "missing --out" 2 --variant softmax --q "$D/q.npy" --k "$D/k.npy" \
  --v "$D/v.npy"
bad "missing --variant" 2 $QKV
bad "unknown variant" 2 --variant tanh $QKV
bad "unknown dtype" 2 --variant softmax $QKV --dtype f64
bad "unknown feature map" 2 --variant linear $QKV --feature-map tanh
bad "repeated option" 2 --variant softmax $QKV --q "$D/q.npy"
bad "value given to a flag" 2 --variant softmax $QKV --causal=1
bad "unparsable scale" 2 --variant softmax $QKV --scale abc
bad "scale with trailing text" 2 --variant softmax $QKV --scale 0.5x
bad "empty scale" 2 --variant softmax $QKV --scale=
bad "NaN scale" 2 --variant softmax $QKV --scale nan
bad "infinite scale" 2 --variant softmax $QKV --scale inf
bad "scale beyond float32" 2 --variant softmax $QKV --scale 1e39
bad "zero scale" 2 --variant sigmoid $QKV --scale 0
bad "negative eps" 2 --variant linear $QKV --eps -1
bad "zero cos-m" 2 --variant cosformer $QKV --cos-m 0
bad "infinite bias" 2 --variant sigmoid $QKV --bias -inf
bad "--bias with softmax" 2 --variant softmax $QKV --bias 1
bad "--lse with sigmoid" 2 --variant sigmoid $QKV --lse "$D/l.npy"
bad "--lse with linear" 2 --variant linear $QKV --lse "$D/l.npy"
bad "--scale with linear" 2 --variant linear $QKV --scale 1
bad "--scale with cosformer" 2 --variant cosformer $QKV --scale 1
bad "--feature-map with softmax" 2 --variant softmax $QKV --feature-map relu
bad "--eps with sigmoid" 2 --variant sigmoid $QKV --eps 1e-6
bad "--cos-m with linear" 2 --variant linear $QKV --cos-m 4
bad "--lse same as --out" 2 --variant softmax $QKV --lse "$D/o.npy"

# ---- Bad files: exit 1 ---------------------------------------------------

# bad_q NAME: clattn-run on $D/bad.npy as Q must exit 1.
bad_q() {
  bad "$1" 1 --variant softmax --q "$D/bad.npy" --k "$D/k.npy" \
    --v "$D/v.npy" --out "$D/o.npy"
}

HDR="'descr': '<f4', 'fortran_order': False"
rm -f "$D/bad.npy"
bad_q "missing file"
mkdir -p "$D/bad.npy"
bad_q "directory"
rmdir "$D/bad.npy"
: >"$D/bad.npy"
bad_q "empty file"
printf 'hello, this is not an array\n' >"$D/bad.npy"
bad_q "bad magic"
printf '\223NUMPY\001' >"$D/bad.npy"
bad_q "file ends in the preamble"
npy_raw "$D/bad.npy" 4 0 "{$HDR, 'shape': (1, 4, 8, 16), }" 512
bad_q "version 4.0"
npy_raw "$D/bad.npy" 1 1 "{$HDR, 'shape': (1, 4, 8, 16), }" 512
bad_q "version 1.1"
printf '\223NUMPY\001\000\377\177{}' >"$D/bad.npy"
bad_q "header length past the end"
printf '\223NUMPY\002\000\377\377\377\177{}' >"$D/bad.npy"
bad_q "absurd header length"
npy_raw "$D/bad.npy" 1 0 "hello" 512
bad_q "garbage header"
npy_raw "$D/bad.npy" 1 0 "{$HDR}" 512
bad_q "header without shape"
npy_raw "$D/bad.npy" 1 0 "{'shape': (1, 4, 8, 16), 'fortran_order': False}" 512
bad_q "header without descr"
npy_raw "$D/bad.npy" 1 0 "{$HDR, 'shape': (1, 4, 8, 16" 512
bad_q "unbalanced header"
npy_raw "$D/bad.npy" 1 0 "{$HDR, 'shape': (1, 4, 8, 16)}}" 512
bad_q "extra brace in header"
npy_raw "$D/bad.npy" 1 0 "{$HDR, 'shape': (1, 4, -8, 16)}" 512
bad_q "negative dimension"
npy "$D/bad.npy" "1, 4, 8, 16" "<f8" False 1024
bad_q "float64 data"
npy "$D/bad.npy" "1, 4, 8, 16" ">f4"
bad_q "big-endian float32"
npy "$D/bad.npy" "1, 4, 8, 16" "<f2" False 256
bad_q "float16 data"
npy "$D/bad.npy" "1, 4, 8, 16" "<i4"
bad_q "int32 data"
npy "$D/bad.npy" "1, 4, 8, 16" "<f4" True
bad_q "Fortran order"
npy "$D/bad.npy" "4, 8, 16"
bad_q "rank 3"
npy "$D/bad.npy" "1, 1, 4, 8, 16"
bad_q "rank 5"
npy "$D/bad.npy" ""
bad_q "scalar"
npy "$D/bad.npy" "4294967296, 4294967296, 4294967296, 16" "<f4" False 16
bad_q "shape overflows"
npy "$D/bad.npy" "1, 1, 1048576, 2048" "<f4" False 16
bad_q "over the size cap"
npy "$D/bad.npy" "1, 4, 8, 16" "<f4" False 500
bad_q "truncated data"
npy "$D/bad.npy" "1, 4, 8, 16" "<f4" False 0
bad_q "no data at all"
npy "$D/bad.npy" "1, 4, 8, 16" "<f4" False 520
bad_q "trailing data"
npy "$D/bad.npy" "1, 0, 8, 16"
bad_q "zero dimension"

# ---- Bad shapes: exit 1 --------------------------------------------------

# shapes NAME QSHAPE KSHAPE VSHAPE: those three files together must exit 1.
shapes() {
  npy "$D/sq.npy" "$2"
  npy "$D/sk.npy" "$3"
  npy "$D/sv.npy" "$4"
  bad "$1" 1 --variant softmax --q "$D/sq.npy" --k "$D/sk.npy" \
    --v "$D/sv.npy" --out "$D/o.npy"
}

shapes "batch of K differs" "1, 2, 4, 8" "2, 2, 4, 8" "1, 2, 4, 8"
shapes "batch of V differs" "1, 2, 4, 8" "1, 2, 4, 8" "2, 2, 4, 8"
shapes "D of K differs" "1, 2, 4, 8" "1, 2, 4, 16" "1, 2, 4, 8"
shapes "Nk of V differs" "1, 2, 4, 8" "1, 2, 4, 8" "1, 2, 5, 8"
shapes "Hkv of V differs" "1, 2, 4, 8" "1, 2, 4, 8" "1, 1, 4, 8"
shapes "Hq not a multiple of Hkv" "1, 3, 4, 8" "1, 2, 4, 8" "1, 2, 4, 8"
shapes "Hkv larger than Hq" "1, 2, 4, 8" "1, 4, 4, 8" "1, 4, 4, 8"
shapes "D over 256" "1, 1, 2, 257" "1, 1, 2, 257" "1, 1, 2, 8"
shapes "Dv over 256" "1, 1, 2, 8" "1, 1, 2, 8" "1, 1, 2, 300"
shapes "zero Nk" "1, 1, 2, 8" "1, 1, 0, 8" "1, 1, 0, 8"

# An output of 4194305 x 256 floats is over the 4 GiB cap although every
# input is small; it must be refused before anything is allocated.
_h="{$HDR, 'shape': (1, 1, 4194305, 1), }"
npy_raw "$D/big.npy" 1 0 "$_h" 0
dd if=/dev/zero bs=1048576 count=16 2>/dev/null >>"$D/big.npy"
printf '\000\000\000\000' >>"$D/big.npy"
npy "$D/sk.npy" "1, 1, 2, 1"
npy "$D/sv.npy" "1, 1, 2, 256"
bad "output over the size cap" 1 --variant softmax --q "$D/big.npy" \
  --k "$D/sk.npy" --v "$D/sv.npy" --out "$D/o.npy"
rm -f "$D/big.npy"

# ---- Failures past the files: exit 1 -------------------------------------

bad "no such device" 1 --variant softmax $QKV --device no-such-device-xyz
bad "bad tile override" 1 --variant softmax $QKV --tiles NO_SUCH_TILE=-1
bad "unwritable output" 1 --variant softmax --q "$D/q.npy" --k "$D/k.npy" \
  --v "$D/v.npy" --out "$D/no/such/dir/o.npy"

# ---- The backward pass ---------------------------------------------------

good_input "$D/do.npy" 4 "1, 4, 8, 8"
bad "gradient without --do" 2 --variant softmax $QKV --dq "$D/dq.npy"
bad "--do without a gradient" 2 --variant softmax $QKV --do "$D/do.npy"
bad "gradient over an input" 2 --variant softmax $QKV --do "$D/do.npy" \
  --dq "$D/q.npy"
bad "two gradients in one file" 2 --variant softmax $QKV --do "$D/do.npy" \
  --dq "$D/g.npy" --dk "$D/g.npy"
bad "dO of the wrong shape" 1 --variant softmax $QKV --do "$D/q.npy" \
  --dq "$D/dq.npy"
bad "missing dO file" 1 --variant sigmoid $QKV --do "$D/no-such.npy" \
  --dv "$D/dv.npy"
bad "--lse without --out" 2 --variant softmax --q "$D/q.npy" \
  --k "$D/k.npy" --v "$D/v.npy" --lse "$D/l.npy" --do "$D/do.npy" \
  --dq "$D/dq.npy"

# grads NAME ARGS...: the backward must exit 0 silently and write dQ, dK and
# dV with the shapes of Q, K and V.
grads() {
  _name=$1
  shift
  rm -f "$DIR/dq.npy" "$DIR/dk.npy" "$DIR/dv.npy"
  if [ -n "${CLATTN_DEVICE:-}" ]; then
    set -- "$@" --device "$CLATTN_DEVICE"
  fi
  $WRAPPER "$BIN" "$@" --do "$DIR/do.npy" --dq "$DIR/dq.npy" \
    --dk "$DIR/dk.npy" --dv "$DIR/dv.npy" >"$DIR/stdout.txt" \
    2>"$DIR/stderr.txt"
  _code=$?
  if [ "$_code" -ne 0 ]; then
    not_ok "$_name" "exit status $_code, expected 0"
  elif [ -s "$DIR/stderr.txt" ] || [ -s "$DIR/stdout.txt" ]; then
    not_ok "$_name" "printed something on success"
  elif ! header_ok "$DIR/dq.npy" "1, 4, 8, 16" ||
    ! header_ok "$DIR/dk.npy" "1, 2, 12, 16" ||
    ! header_ok "$DIR/dv.npy" "1, 2, 12, 8"; then
    not_ok "$_name" "gradients are not float32 with the inputs' shapes"
  else
    ok "$_name"
  fi
}
QKV_IN="--q $D/q.npy --k $D/k.npy --v $D/v.npy"
grads "softmax backward" --variant softmax $QKV_IN --causal
grads "sigmoid backward f16" --variant sigmoid $QKV_IN --dtype f16
grads "linear backward with --out" --variant linear $QKV
grads "cosformer backward" --variant cosformer $QKV_IN --causal --cos-m 9

# ---- The score pipeline and per-sequence lengths: bad values ------------

bad "--window with linear" 2 --variant linear $QKV --window 2,0
bad "--alibi with cosformer" 2 --variant cosformer $QKV --alibi "$D/sl.npy"
bad "--softcap with linear" 2 --variant linear $QKV --softcap 5
bad "--score-mod with linear" 2 --variant linear $QKV --score-mod score
bad "--mask-mod with cosformer" 2 --variant cosformer $QKV --mask-mod 'j<i'
bad "window of one number" 2 --variant softmax $QKV --window 3
bad "window below -1" 2 --variant softmax $QKV --window 1,-2
bad "window of three numbers" 2 --variant softmax $QKV --window 1,2,3
bad "window not numbers" 2 --variant softmax $QKV --window a,b
bad "window with a space" 2 --variant softmax $QKV --window "1, 2"
bad "empty window" 2 --variant softmax $QKV --window=
bad "zero softcap" 2 --variant softmax $QKV --softcap 0
bad "negative softcap" 2 --variant sigmoid $QKV --softcap -3
bad "empty score mod" 2 --variant softmax $QKV --score-mod=
bad "empty mask mod" 2 --variant softmax $QKV --mask-mod=
bad "--out over the lengths" 2 --variant softmax $QKV --seq-lens-q "$D/o.npy"
bad "--out over the slopes" 2 --variant softmax $QKV --alibi "$D/o.npy"

# bad_msg NAME STATUS PATTERN ARGS...: as bad, and the line must match the
# grep pattern too.
bad_msg() {
  MATCH=$3
  _bm_name=$1
  _bm_want=$2
  shift 3
  bad "$_bm_name" "$_bm_want" "$@"
  MATCH=
}

# Lengths and slopes: Q has B=1, Hq=4, Nq=8 and K Nk=12.
mk_ints() {
  _f=$1
  shift
  if [ -n "$MAKE" ]; then
    "$MAKE" --i32 "$_f" "$@" || exit 2
  else
    _n=$#
    _h="{'descr': '<i4', 'fortran_order': False, 'shape': ($_n,), }"
    npy_raw "$_f" 1 0 "$_h" 0
    for _v in "$@"; do
      printf "$(le_bytes "$_v" 4)" >>"$_f"
    done
  fi
}
# int64 lengths, written byte by byte (non-negative values only).
mk_i64() {
  _f=$1
  shift
  _h="{'descr': '<i8', 'fortran_order': False, 'shape': ($#,), }"
  npy_raw "$_f" 1 0 "$_h" 0
  for _v in "$@"; do
    printf "$(le_bytes "$_v" 8)" >>"$_f"
  done
}
LQ="--seq-lens-q $D/lens.npy"
LK="--seq-lens-k $D/lens.npy"
mk_ints "$D/lens.npy" 9
bad_msg "query length past Nq" 1 'seq-lens-q\[0\] = 9 is outside 0..8' \
  --variant softmax $QKV $LQ
mk_i64 "$D/lens.npy" 13
bad_msg "int64 key length past Nk" 1 'seq-lens-k\[0\] = 13 is outside 0..12' \
  --variant softmax $QKV $LK
if [ -n "$MAKE" ]; then
  mk_ints "$D/lens.npy" -1
  bad_msg "negative length" 1 'seq-lens-k\[0\] = -1' --variant sigmoid $QKV $LK
  mk_ints "$D/lens.npy" 3 4
  bad_msg "two lengths for one sequence" 1 'one per sequence' \
    --variant softmax $QKV $LQ
fi
npy "$D/lens.npy" "1, 1" "<i4"
bad "2-D lengths" 1 --variant softmax $QKV $LQ
npy "$D/lens.npy" "1,"
bad_msg "float32 lengths" 1 "int32 '<i4' or int64" --variant linear $QKV $LQ
npy "$D/lens.npy" "1" "<i2" False 1
bad "int16 lengths" 1 --variant softmax $QKV $LQ
bad "missing lengths file" 1 --variant softmax $QKV \
  --seq-lens-q "$D/no-such.npy"
npy "$D/sl.npy" "3,"
bad_msg "three slopes for four heads" 1 'one per query head, Hq=4' \
  --variant softmax $QKV --alibi "$D/sl.npy"
npy "$D/sl.npy" "4," "<i4"
bad "int32 slopes" 1 --variant softmax $QKV --alibi "$D/sl.npy"
npy "$D/sl.npy" "1, 4"
bad "2-D slopes" 1 --variant sigmoid $QKV --alibi "$D/sl.npy"
bad "score mod with a semicolon" 1 --variant softmax $QKV \
  --score-mod 'score; return 0'
bad "mask mod with a stray parenthesis" 1 --variant softmax $QKV \
  --mask-mod 'j < i)'
# A mod that does not compile: one line, with the status and the build log.
# The skip test in good() does not apply here, so it needs a device.
if [ -n "${CLATTN_DEVICE:-}" ]; then
  bad_msg "score mod that does not compile" 1 \
    'CLATTN_ERROR_BUILD_FAILED.*no_such_function' --variant softmax $QKV \
    --score-mod 'no_such_function(score)'
  bad_msg "mask mod that does not compile" 1 'CLATTN_ERROR_BUILD_FAILED' \
    --variant sigmoid $QKV --mask-mod 'j <<>> i'
fi

# ---- Good cases: exit 0 --------------------------------------------------

good "softmax with LSE" "1, 4, 8, 8" "1, 4, 8" --variant softmax $QKV \
  --lse "$D/l.npy"
good "softmax causal f16" "1, 4, 8, 8" "" --variant softmax $QKV --causal \
  --dtype f16 --scale 0.125
good "sigmoid" "1, 4, 8, 8" "" --variant sigmoid $QKV --bias -2.5 --scale 0.25
good "linear bf16" "1, 4, 8, 8" "" --variant linear $QKV --dtype bf16
good "linear" "1, 4, 8, 8" "" --variant linear $QKV --feature-map relu \
  --eps 1e-5
good "cosformer causal" "1, 4, 8, 8" "" --variant cosformer $QKV --causal \
  --cos-m 16
good "option=value form" "1, 4, 8, 8" "" --variant=softmax --q="$D/q.npy" \
  --k="$D/k.npy" --v="$D/v.npy" --out="$D/o.npy"

# ---- Good cases of the pipeline, checked against equivalent runs ---------

# With NPY_MAKE, outputs of two command lines that must agree are compared
# (npy_make --compare: max |A - B| <= TOL max(1, max |B|)); a padded batch
# with lengths is compared with its first sequence run alone, cut out and
# padded back with npy_make --resize.

# run_to NAME FILE ARGS...: clattn-run ARGS --out FILE must succeed
# silently. Returns 0 when it did, 1 when it failed (counted), 2 when there
# is no device (skipped).
run_to() {
  _rt_name=$1
  _rt_out=$2
  shift 2
  rm -f "$_rt_out"
  if [ -n "${CLATTN_DEVICE:-}" ]; then
    set -- "$@" --device "$CLATTN_DEVICE"
  fi
  $WRAPPER "$BIN" "$@" --out "$_rt_out" >"$DIR/stdout.txt" 2>"$DIR/stderr.txt"
  _code=$?
  if [ "$_code" -eq 1 ] && [ -z "${CLATTN_DEVICE:-}" ] &&
    grep -q 'DEVICE_NOT_FOUND' "$DIR/stderr.txt"; then
    skipped=$((skipped + 1))
    echo "skip $_rt_name (no OpenCL device)"
    return 2
  fi
  if [ "$_code" -ne 0 ]; then
    not_ok "$_rt_name" "exit status $_code, expected 0"
    return 1
  fi
  if [ -s "$DIR/stderr.txt" ] || [ -s "$DIR/stdout.txt" ]; then
    not_ok "$_rt_name" "printed something on success"
    return 1
  fi
  return 0
}

# agree NAME TOL A B: the files A and B agree within TOL.
agree() {
  if "$MAKE" --compare "$3" "$4" "$2" 2>"$DIR/stderr.txt"; then
    ok "$1"
  else
    not_ok "$1" "outputs differ"
  fi
}

# same_as NAME TOL "ARGS A" "ARGS B": both runs succeed with outputs that
# agree.
same_as() {
  run_to "$1" "$DIR/oa.npy" $3 || return 0
  run_to "$1" "$DIR/ob.npy" $4 || return 0
  agree "$1" "$2" "$DIR/oa.npy" "$DIR/ob.npy"
}

# first_alone NAME TOL LQ LK SHAPES "ARGS": a run of the padded batch in
# $D/pq.npy, pk.npy, pv.npy (or $FA_Q instead of pq.npy) with lengths [LQ, ...] and [LK, ...] (in
# $D/plq.npy and $D/plk.npy) must give, for sequence 0, what that sequence
# gives alone: Q, K and V cut to LQ and LK rows, output padded back to Nq
# rows with zeros. SHAPES is "HQ HKV NQ D DV".
first_alone() {
  _fa_name=$1
  _fa_tol=$2
  set -- "$3" "$4" $5 "$6"
  # $1 LQ, $2 LK, $3 HQ, $4 HKV, $5 NQ, $6 D, $7 DV, $8 ARGS
  _fa_q=${FA_Q:-$D/pq.npy}
  "$MAKE" --resize "$_fa_q" "$D/aq.npy" 1 "$3" "$1" "$6" &&
    "$MAKE" --resize "$D/pk.npy" "$D/ak.npy" 1 "$4" "$2" "$6" &&
    "$MAKE" --resize "$D/pv.npy" "$D/av.npy" 1 "$4" "$2" "$7" || exit 2
  run_to "$_fa_name" "$D/oa.npy" --q "$D/aq.npy" --k "$D/ak.npy" \
    --v "$D/av.npy" $8 || return 0
  run_to "$_fa_name" "$D/ob.npy" --q "$_fa_q" --k "$D/pk.npy" \
    --v "$D/pv.npy" --seq-lens-q "$D/plq.npy" --seq-lens-k "$D/plk.npy" \
    $8 || return 0
  "$MAKE" --resize "$D/oa.npy" "$D/oa1.npy" 1 "$3" "$5" "$7" &&
    "$MAKE" --resize "$D/ob.npy" "$D/ob1.npy" 1 "$3" "$5" "$7" || exit 2
  agree "$_fa_name" "$_fa_tol" "$D/oa1.npy" "$D/ob1.npy"
}

if [ -n "$MAKE" ]; then
  # Nq = 8, Nk = 12: i' = i + 4.
  same_as "window equals its mask mod" 1e-6 \
    "--variant softmax $QKV_IN --window 3,0" \
    "--variant softmax $QKV_IN --mask-mod j>=i+1&&j<=i+4"
  same_as "sigmoid window equals its mask mod" 1e-6 \
    "--variant sigmoid $QKV_IN --window 2,1 --bias -1" \
    "--variant sigmoid $QKV_IN --mask-mod j>=i+2&&j<=i+5 --bias -1"
  same_as "causal bounds the window's right side" 1e-6 \
    "--variant softmax $QKV_IN --causal --window 2,5" \
    "--variant softmax $QKV_IN --window 2,0"
  same_as "softcap equals its score mod" 1e-5 \
    "--variant softmax $QKV_IN --softcap 0.5" \
    "--variant softmax $QKV_IN --score-mod 0.5f*tanh(score/0.5f)"
  "$MAKE" --f32 "$D/sl.npy" 0.25 0.5 0.125 1 || exit 2
  same_as "ALiBi equals its score mod" 1e-5 \
    "--variant softmax $QKV_IN --alibi $D/sl.npy --dtype f16" \
    "--variant softmax $QKV_IN --dtype f16 --score-mod \
score-(h==0?0.25f:h==1?0.5f:h==2?0.125f:1.0f)*fabs((float)(i+4-j))"
  same_as "sigmoid softcap, ALiBi and window together" 1e-5 \
    "--variant sigmoid $QKV_IN --alibi $D/sl.npy --softcap 2 --window 4,-1" \
    "--variant sigmoid $QKV_IN --mask-mod j>=i --score-mod \
2.0f*tanh(score/2.0f)-(h==0?0.25f:h==1?0.5f:h==2?0.125f:1.0f)*fabs((float)(i+4-j))"

  # A padded batch: B=2, Nq=20, Nk=24 (more rows than a decode plan takes).
  good_input "$D/pq.npy" 11 "2, 4, 20, 16"
  good_input "$D/pk.npy" 12 "2, 2, 24, 16"
  good_input "$D/pv.npy" 13 "2, 2, 24, 8"
  PQKV="--q $D/pq.npy --k $D/pk.npy --v $D/pv.npy"
  mk_i64 "$D/plq.npy" 20 20
  mk_ints "$D/plk.npy" 24 24
  same_as "full lengths equal no lengths" 1e-6 \
    "--variant softmax $PQKV --seq-lens-q $D/plq.npy --seq-lens-k $D/plk.npy" \
    "--variant softmax $PQKV"
  mk_ints "$D/plq.npy" 13 20
  mk_i64 "$D/plk.npy" 17 24
  first_alone "softmax lengths equal the sequence alone" 1e-5 13 17 \
    "4 2 20 16 8" "--variant softmax"
  first_alone "causal lengths equal the sequence alone" 1e-5 13 17 \
    "4 2 20 16 8" "--variant softmax --causal"
  first_alone "sigmoid lengths (default bias) equal the sequence alone" 1e-5 \
    13 17 "4 2 20 16 8" "--variant sigmoid"
  first_alone "windowed bf16 lengths equal the sequence alone" 1e-5 13 17 \
    "4 2 20 16 8" "--variant softmax --window 5,2 --dtype bf16"
  mk_ints "$D/plq.npy" 0 20
  if run_to "an empty sequence gives zeros" "$D/ob.npy" --variant softmax \
    $PQKV --seq-lens-q "$D/plq.npy" --seq-lens-k "$D/plk.npy"; then
    "$MAKE" --resize "$D/ob.npy" "$D/ob1.npy" 1 4 20 8 &&
      "$MAKE" --zeros "$D/zero.npy" 1 4 20 8 || exit 2
    agree "an empty sequence gives zeros" 0 "$D/ob1.npy" "$D/zero.npy"
  fi

  # Decode plans (few query rows) and linear/cosformer with lengths.
  "$MAKE" --resize "$D/pq.npy" "$D/dq4.npy" 2 4 4 16 || exit 2
  mk_ints "$D/plq.npy" 1 4
  FA_Q=$D/dq4.npy
  first_alone "decode lengths equal the sequence alone" 1e-5 1 17 \
    "4 2 4 16 8" "--variant softmax"
  first_alone "decode sigmoid lengths equal the sequence alone" 1e-5 1 17 \
    "4 2 4 16 8" "--variant sigmoid --causal"
  FA_Q=
  mk_ints "$D/plq.npy" 13 20
  first_alone "cosformer lengths (default M) equal the sequence alone" 1e-5 \
    13 17 "4 2 20 16 8" "--variant cosformer --causal"
  first_alone "linear lengths equal the sequence alone" 1e-5 13 17 \
    "4 2 20 16 8" "--variant linear"

  # The backward pass with lengths: gradients of sequence 0 equal its
  # gradients alone.
  good_input "$D/pdo.npy" 14 "2, 4, 20, 8"
  "$MAKE" --resize "$D/pdo.npy" "$D/ado.npy" 1 4 13 8 &&
    "$MAKE" --resize "$D/pq.npy" "$D/aq.npy" 1 4 13 16 &&
    "$MAKE" --resize "$D/pk.npy" "$D/ak.npy" 1 2 17 16 &&
    "$MAKE" --resize "$D/pv.npy" "$D/av.npy" 1 2 17 8 || exit 2
  for _bw in softmax sigmoid; do
    _name="$_bw backward with lengths equals the sequence alone"
    rm -f "$D"/adq.npy "$D"/bdq.npy
    if run_to "$_name" "$D/oa.npy" --variant $_bw --q "$D/aq.npy" \
      --k "$D/ak.npy" --v "$D/av.npy" --do "$D/ado.npy" --dq "$D/adq.npy" \
      --dk "$D/adk.npy" --dv "$D/adv.npy" &&
      run_to "$_name" "$D/ob.npy" --variant $_bw $PQKV --seq-lens-q \
        "$D/plq.npy" --seq-lens-k "$D/plk.npy" --do "$D/pdo.npy" \
        --dq "$D/bdq.npy" --dk "$D/bdk.npy" --dv "$D/bdv.npy"; then
      _same=1
      for _g in "dq 4 20 16" "dk 2 24 16" "dv 2 24 8"; do
        set -- $_g
        "$MAKE" --resize "$D/a$1.npy" "$D/a${1}1.npy" 1 "$2" "$3" "$4" &&
          "$MAKE" --resize "$D/b$1.npy" "$D/b${1}1.npy" 1 "$2" "$3" "$4" ||
          exit 2
        "$MAKE" --compare "$D/a${1}1.npy" "$D/b${1}1.npy" 1e-4 \
          2>"$DIR/stderr.txt" || _same=0
      done
      if [ "$_same" = 1 ]; then ok "$_name"; else not_ok "$_name" "differ"; fi
    fi
  done
fi

# --help and --version go to stdout and succeed.
if $WRAPPER "$BIN" --help >"$DIR/stdout.txt" 2>"$DIR/stderr.txt" &&
  grep -q '^usage: clattn-run' "$DIR/stdout.txt" && [ ! -s "$DIR/stderr.txt" ]; then
  ok "--help"
else
  not_ok "--help" "no usage on stdout, or not exit 0"
fi
if $WRAPPER "$BIN" --version >"$DIR/stdout.txt" 2>"$DIR/stderr.txt" &&
  grep -q '^clattn-run [0-9]' "$DIR/stdout.txt" && [ ! -s "$DIR/stderr.txt" ]; then
  ok "--version"
else
  not_ok "--version" "no version on stdout, or not exit 0"
fi

[ "$skipped" -gt 0 ] && echo "($skipped skipped: no OpenCL device)"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
