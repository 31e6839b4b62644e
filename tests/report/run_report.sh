#!/bin/sh
# Smoke test of tools/clattn-report on the JSON samples beside this script,
# and, when a clattn-recall binary is given, of clattn-recall feeding it.
#
#   run_report.sh CLATTN_REPORT SCRATCH_DIR [CLATTN_RECALL]
#
# Exit status: 0 passed, 1 failed, 77 skipped (no python3, or no matplotlib
# for it). PYTHON names the interpreter (default python3).
set -u
report=$1
scratch=$2
recall=${3:-}
here=$(cd "$(dirname "$0")" && pwd)
python=${PYTHON:-python3}
failures=0

fail() {
  echo "FAILED: $*"
  failures=$((failures + 1))
}

# Files that must exist, be non-empty, and (for .png) start with the PNG
# signature.
check_files() {
  dir=$1
  shift
  for f in "$@"; do
    if [ ! -s "$dir/$f" ]; then
      fail "$dir/$f is missing or empty"
    elif [ "${f%.png}" != "$f" ] &&
      [ "$(od -An -tx1 -N4 "$dir/$f" | tr -d ' \n')" != "89504e47" ]; then
      fail "$dir/$f is not a PNG file"
    fi
  done
}

# The report must contain a line matching each pattern (grep -E).
check_md() {
  md=$1
  shift
  for pat in "$@"; do
    grep -Eq -- "$pat" "$md" || fail "$md has no line matching: $pat"
  done
}

if ! command -v "$python" >/dev/null 2>&1; then
  echo "SKIPPED: no $python"
  exit 77
fi
rm -rf "$scratch"
mkdir -p "$scratch" || exit 1

# Tables alone: needs no matplotlib.
out=$scratch/tables
if "$python" "$report" --no-plots --out "$out" "$here/sample-gpu.jsonl" \
  "$here/sample-cpu.jsonl" --recall "$here/sample-recall.jsonl"; then
  check_files "$out" report.md
  check_md "$out/report.md" '^## Example GPU \(Example OpenCL\)' \
    '^## Example CPU' '^\| softmax \| yes \| 1024 \| 0\.5 \|' \
    'speedup' 'baseline bytes' '^- cosformer N=1024: out of memory' '^Ceiling: 10000 GFLOP/s from clblast' \
    '^## Across devices' '^## Exact retrieval' '^\| linear \| 16 \| 31\.2 %'
  [ -e "$out/time.png" ] && fail "--no-plots wrote time.png"
else
  fail "clattn-report --no-plots exited with $?"
fi

# With plots. The tool says so when matplotlib is missing: that skips.
out=$scratch/plots
log=$scratch/plots.log
if "$python" "$report" --out "$out" "$here/sample-gpu.jsonl" \
  "$here/sample-cpu.jsonl" --recall "$here/sample-recall.jsonl" >"$log" 2>&1; then
  check_files "$out" report.md time.png memory.png ceiling.png speedup.png \
    recall.png
  check_md "$out/report.md" '^!\[time\]\(time\.png\)' \
    '^!\[recall\]\(recall\.png\)'
elif grep -q matplotlib "$log"; then
  cat "$log"
  echo "SKIPPED: the plots need matplotlib (Debian: python3-matplotlib)"
  [ "$failures" -eq 0 ] && exit 77
  exit 1
else
  cat "$log"
  fail "clattn-report exited with an error"
fi

# A file without the baseline and ceiling fields leaves out their columns
# and plots.
out=$scratch/cpu
if "$python" "$report" --out "$out" "$here/sample-cpu.jsonl"; then
  check_files "$out" report.md time.png memory.png
  for f in ceiling.png speedup.png recall.png; do
    [ -e "$out/$f" ] && fail "$f written without data for it"
  done
  grep -q 'speedup' "$out/report.md" && fail "a speedup column without data"
else
  fail "clattn-report on the CPU sample exited with $?"
fi

# Bad input: an error, not a traceback.
printf 'not json\n' >"$scratch/bad.jsonl"
if "$python" "$report" --out "$scratch/bad" "$scratch/bad.jsonl" \
  >"$scratch/bad.log" 2>&1; then
  fail "clattn-report accepted a file with no results"
fi
grep -q Traceback "$scratch/bad.log" && fail "a traceback on bad input"

# clattn-recall on the default device, small enough to be quick: softmax
# must retrieve every pair, and its JSON must make a report.
if [ -n "$recall" ]; then
  json=$scratch/recall.jsonl
  if "$recall" --pairs 16,64 --dim 16,32 --variant softmax,linear \
    --json >"$json"; then
    n=$(grep -c '"variant":"softmax"' "$json")
    ok=$(grep -c '"variant":"softmax".*"accuracy":1,' "$json")
    [ "$n" -eq 4 ] && [ "$ok" -eq 4 ] ||
      fail "softmax retrieved less than every pair: $(cat "$json")"
    "$python" "$report" --out "$scratch/recall" --recall "$json" ||
      fail "clattn-report on clattn-recall output exited with $?"
    check_files "$scratch/recall" report.md recall.png
  else
    fail "clattn-recall exited with $?"
  fi
fi

if [ "$failures" -ne 0 ]; then
  echo "$failures check(s) failed"
  exit 1
fi
echo "clattn-report smoke test passed"
exit 0
