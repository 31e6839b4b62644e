#!/bin/sh
# The tuner writes a file that the next process uses, and a malformed file is
# ignored with a warning, never a crash.
# usage: check.sh CLATTN_TUNE CLATTN_INFO SCRATCH_DIR
set -u
tune=$1 info=$2 dir=$3
rm -rf "$dir"
mkdir -p "$dir"
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok: $1"; }
bad() { fail=$((fail + 1)); echo "FAILED: $1"; }

file="$dir/sub/tuning.txt"
if "$tune" --variant softmax,sigmoid --dim 16 --seq 48 --no-causal --repeat 1 \
  --out "$file" 2>"$dir/tune.err"; then
  ok "clattn-tune ran"
else
  bad "clattn-tune failed: $(tail -n 3 "$dir/tune.err")"
fi
if [ -s "$file" ] && head -n 3 "$file" | grep -q '^clattn-tuning 1$' &&
  [ "$(grep -c '	softmax	f32	16	16	0	48	SHAPE=' "$file")" = 1 ]; then
  ok "the file has a header and one softmax line"
else
  bad "tuning file content: $(cat "$file" 2>/dev/null)"
fi
# A second run keeps the first run's lines and replaces its own bucket.
"$tune" --variant softmax --dim 16 --seq 48 --no-causal --repeat 1 \
  --out "$file" 2>/dev/null
if [ "$(grep -c '	48	SHAPE=' "$file")" = 2 ]; then
  ok "a second run keeps the other lines and replaces its bucket"
else
  bad "after a second run: $(cat "$file")"
fi

out=$(CLATTN_TUNE_FILE="$file" "$info" --variant softmax --dim 16 --seq 40 \
  2>&1)
if echo "$out" | grep -q "softmax f32 shape=.*(from tuning file)"; then
  ok "a plan in the next process takes its tiles from the file"
else
  bad "clattn-info did not use the file: $out"
fi

printf 'clattn-tuning 1\nthis line\tis not\tvalid\n' >"$dir/bad.txt"
out=$(CLATTN_TUNE_FILE="$dir/bad.txt" CLATTN_LOG=1 "$info" --variant softmax \
  --dim 16 --seq 40 2>&1)
rc=$?
if [ $rc -eq 0 ] && echo "$out" | grep -q "(from heuristic\|(from builtin" &&
  echo "$out" | grep -q "ignored: line 2 does not parse"; then
  ok "a malformed file is ignored with a warning"
else
  bad "malformed file (exit $rc): $out"
fi
head -c 3000 /dev/urandom >"$dir/noise.txt"
if CLATTN_TUNE_FILE="$dir/noise.txt" "$info" --variant softmax --dim 16 \
  --seq 40 >/dev/null 2>&1; then
  ok "a file of random bytes is ignored"
else
  bad "a file of random bytes broke clattn-info"
fi
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
