#!/usr/bin/env bash
# device-run.sh - build clattn on a machine with an OpenCL driver, test it on
# one device and run the benchmark sweep there, in one bounded command.
#
#   CLATTN_DEVICE=SEL bench/device-run.sh [--deps DIR] [--out DIR] [options]
#
# Meant for a machine that has a GPU driver but none of clattn's build
# dependencies and no way to install them: give --deps a folder made by
# bench/device-deps.sh (the OpenCL ICD loader and headers, CLBlast, CMocka
# and pkgconf unpacked with `dpkg -x`) and the build uses only that folder.
# Without --deps the system's packages are used.
#
# Steps, each under its own time limit so that partial results come out, and
# each run even when an earlier one failed:
#   build   configure and build into --build (build.log)
#   info    the host, the OpenCL driver and `clattn-info` (info.txt)
#   tests   `ctest -L unit` on the device, CLATTN_TEST_REQUIRE_DEVICE=1
#           (test.log), but for the fault-injection sweep (test_fault)
#   bench   `clattn-bench --sweep --baseline naive --ceiling --json`
#           (NAME-DATE.jsonl, named after the device, and bench.log)
# then a table of the steps, printed last and written to summary.txt. All
# files land in --out under plain names. Exit status: 0 when every step
# passed, 1 otherwise, 2 on a usage error.
#
# Options:
#   --deps DIR         prefix of unpacked packages (DIR/usr/include, ...)
#   --out DIR          where the results go (default: device-run-out)
#   --build DIR        build folder (default: build-device)
#   --icd-lib LIB      the OpenCL driver library for a private ICD vendors
#                      folder (OCL_ICD_VENDORS); a name is looked up on the
#                      loader path and in the usual driver folders (default:
#                      libnvidia-opencl.so.1); `none` keeps the system's
#   --time S           the whole run's budget in seconds (default 540); each
#                      step gets at most what is left
#   --build-time S     limit of the build step (default 240)
#   --test-time S      limit of the tests step (default 300;
#                      test_linear alone took 228 s on an H200)
#   --bench-time S     limit of the bench step (default: what is left)
#   --tests REGEX      run only the unit tests matching REGEX (ctest -R)
#   --no-tests, --no-bench
#   --jobs N           parallel build jobs and tests (default: cores, tests
#                      at most 8)
#   --bench-args ARGS  more clattn-bench options, after the defaults
#                      (--repeat 5 --max-seconds 3 --max-case-seconds 5
#                      --ceiling-size 4096), which they override
set -uo pipefail

usage() {
  sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'
  exit "${1:-2}"
}

src=$(cd "$(dirname "$0")/.." && pwd)
deps="" out=device-run-out build=build-device icd_lib=libnvidia-opencl.so.1
budget=540 build_cap=240 test_cap=300 bench_cap=100000 test_regex=""
do_tests=1 do_bench=1 jobs=$(nproc 2>/dev/null || echo 2) bench_args=""
while [ $# -gt 0 ]; do
  case "$1" in
  --deps) deps=$2; shift 2 ;;
  --out) out=$2; shift 2 ;;
  --build) build=$2; shift 2 ;;
  --icd-lib) icd_lib=$2; shift 2 ;;
  --time) budget=$2; shift 2 ;;
  --build-time) build_cap=$2; shift 2 ;;
  --test-time) test_cap=$2; shift 2 ;;
  --bench-time) bench_cap=$2; shift 2 ;;
  --tests) test_regex=$2; shift 2 ;;
  --no-tests) do_tests=0; shift ;;
  --no-bench) do_bench=0; shift ;;
  --jobs) jobs=$2; shift 2 ;;
  --bench-args) bench_args=$2; shift 2 ;;
  -h | --help) usage 0 ;;
  *) echo "device-run.sh: unknown option $1" >&2; usage ;;
  esac
done
test_jobs=$((jobs > 8 ? 8 : jobs))

mkdir -p "$out" "$build" || exit 2
out=$(cd "$out" && pwd)
build=$(cd "$build" && pwd)
rm -f "$out"/{build.log,info.txt,test.log,bench.log,bench.jsonl,summary.txt}
start=$SECONDS
deadline=$((start + budget))

# One row per step: name, status, seconds, note.
rows=()
row() { rows+=("$(printf '%-6s %-12s %5s  %s' "$1" "$2" "$3" "$4")"); }

# The time a step may take: its cap, or what is left of the budget minus a
# few seconds for the summary. Prints 0 when too little is left.
limit() {
  local left=$((deadline - SECONDS - 5))
  local l=$(($1 < left ? $1 : left))
  [ "$l" -ge 10 ] && echo "$l" || echo 0
}

# Runs a command under a time limit (terminating its process group at the
# end) and turns the exit code into a status word.
bounded() {
  local lim=$1
  shift
  if [ "$lim" = 0 ]; then
    status=skipped
    return 1
  fi
  timeout -k 10 "$lim" "$@"
  local rc=$?
  case $rc in
  0) status=ok ;;
  124 | 137) status="timeout(${lim}s)" ;;
  *) status="FAIL($rc)" ;;
  esac
  return $rc
}

# --- dependencies ---------------------------------------------------------
# The environment that makes compilers, CMake, pkg-config and the loader find
# the unpacked packages before anything the system has.
cmake_extra=()
if [ -n "$deps" ]; then
  t0=$SECONDS
  if ! deps=$(cd "$deps" 2>/dev/null && pwd) || [ ! -d "$deps/usr/include/CL" ]; then
    row deps "FAIL" 0 "no DIR/usr/include/CL in --deps"
    deps=""
  else
    libdir=$deps/usr/lib
    for d in "$deps"/usr/lib/*-linux-gnu*; do
      [ -d "$d" ] && { libdir=$d; break; }
    done
    export CMAKE_PREFIX_PATH=$deps/usr${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}
    export CMAKE_LIBRARY_PATH=$libdir${CMAKE_LIBRARY_PATH:+:$CMAKE_LIBRARY_PATH}
    # Include folders as system ones (-isystem), as /usr/include is: their
    # headers are not held to clattn's warning flags.
    export C_INCLUDE_PATH=$deps/usr/include${C_INCLUDE_PATH:+:$C_INCLUDE_PATH}
    export LIBRARY_PATH=$libdir${LIBRARY_PATH:+:$LIBRARY_PATH}
    export LD_LIBRARY_PATH=$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    # pkg-config from the folder only when the system has none.
    command -v pkg-config >/dev/null || export PATH=$PATH:$deps/usr/bin
    # The .pc files name /usr: copies with the folder's real path go into the
    # build folder, searched first (PKG_CONFIG_PATH: CMake appends the
    # original files after it, from CMAKE_PREFIX_PATH), and also before the
    # system's folders (PKG_CONFIG_LIBDIR), for a command that sets its own
    # PKG_CONFIG_PATH.
    pcdir=$build/deps-pkgconfig
    rm -rf "$pcdir" && mkdir -p "$pcdir"
    for pc in "$libdir"/pkgconfig/*.pc "$deps"/usr/share/pkgconfig/*.pc; do
      [ -f "$pc" ] || continue
      sed -E "s#(^|[=[:space:]]|-[IL])/usr(/|$|[[:space:]])#\1$deps/usr\2#g" \
        "$pc" >"$pcdir/$(basename "$pc")"
    done
    syspc=$(pkg-config --variable pc_path pkg-config 2>/dev/null)
    export PKG_CONFIG_LIBDIR=$pcdir${syspc:+:$syspc}
    export PKG_CONFIG_PATH=$pcdir${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
    # CLBlast's CMake package names the system's libOpenCL.so by its full
    # path; its .pc file (above) does not.
    cmake_extra+=(-DCMAKE_DISABLE_FIND_PACKAGE_CLBlast=ON)
    row deps ok $((SECONDS - t0)) "$deps ($(grep -c . "$deps/PACKAGES" 2>/dev/null || echo '?') packages)"
  fi
fi

# --- ICD: which OpenCL driver the loader opens ------------------------------
if [ "$icd_lib" != none ]; then
  lib=$icd_lib
  if [[ $lib != */* ]]; then
    found=$(ldconfig -p 2>/dev/null | awk -v n="$lib" '$1 == n { print $NF; exit }')
    if [ -z "$found" ]; then
      # Driver folders that container runtimes mount, then the usual ones.
      IFS=: read -ra ldp <<<"${LD_LIBRARY_PATH:-}"
      for d in "${ldp[@]}" /usr/local/nvidia/lib64 /usr/local/nvidia/lib \
        /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/lib /usr/local/lib; do
        [ -n "$d" ] && [ -e "$d/$lib" ] && { found=$d/$lib; break; }
      done
    fi
    [ -n "$found" ] && lib=$found
  fi
  mkdir -p "$build/icd"
  rm -f "$build"/icd/*.icd
  echo "$lib" >"$build/icd/device.icd"
  export OCL_ICD_VENDORS=$build/icd
  if [[ $lib == */* ]]; then
    # The driver's own dependencies sit beside it.
    LD_LIBRARY_PATH=${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$(dirname "$lib")
    export LD_LIBRARY_PATH
    if [ -e "$lib" ]; then
      row icd ok 0 "$lib"
    else
      row icd FAIL 0 "$lib does not exist"
    fi
  else
    row icd "?" 0 "$lib not found; left to the loader"
  fi
fi

# --- build ------------------------------------------------------------------
t0=$SECONDS
lim=$(limit "$build_cap")
# A build folder made against other dependencies starts afresh: CMake keeps
# the paths it found, and objects built against other headers would stay.
if [ -f "$build/CMakeCache.txt" ] &&
  [ "$(cat "$build/deps-used" 2>/dev/null)" != "$deps" ]; then
  cmake --build "$build" --target clean >/dev/null 2>&1
  rm -rf "$build/CMakeCache.txt" "$build/CMakeFiles"
fi
echo "$deps" >"$build/deps-used"
generator=()
command -v ninja >/dev/null && [ ! -f "$build/Makefile" ] && generator=(-G Ninja)
{
  echo "== environment"
  for v in CLATTN_DEVICE CMAKE_PREFIX_PATH C_INCLUDE_PATH LIBRARY_PATH LD_LIBRARY_PATH \
    PKG_CONFIG_PATH PKG_CONFIG_LIBDIR OCL_ICD_VENDORS; do
    echo "$v=${!v:-}"
  done
  echo "pkg-config: $(command -v pkg-config)"
  echo "== configure"
} >"$out/build.log"
if [ "$lim" = 0 ]; then
  status=skipped
else
  bounded "$lim" cmake -S "$src" -B "$build" "${generator[@]}" \
    -DCMAKE_BUILD_TYPE=Release -DCLATTN_OCLGRIND_TESTS=OFF "${cmake_extra[@]}" \
    >>"$out/build.log" 2>&1 &&
    { echo "== build"; } >>"$out/build.log" &&
    bounded "$(limit $((build_cap - (SECONDS - t0))))" \
      cmake --build "$build" -j "$jobs" >>"$out/build.log" 2>&1
fi
build_status=$status
# Where each dependency was found, so a log says whether --deps was used.
note=""
if [ -f "$build/CMakeCache.txt" ]; then
  {
    echo "== found"
    grep -E '^(OpenCL_INCLUDE_DIR|OpenCL_LIBRARY|CLBlast_DIR|pkgcfg_lib_[A-Z_]+_[a-z]+|(CMOCKA|CLATTN_CLBLAST)_INCLUDE_DIRS)[:=]' \
      "$build/CMakeCache.txt"
    for b in tools/clattn-bench tests/test_api; do
      [ -x "$build/$b" ] && ldd "$build/$b" | sed -n "s#^[[:space:]]*#$b: #; /opencl\|clblast\|cmocka\|openblas/Ip"
    done
    # The headers the compiler read (Ninja records them).
    [ -f "$build/build.ninja" ] && (cd "$build" && ninja -t deps) |
      grep -E '/(CL/cl|cmocka|clblast_c)\.h$' | sort -u | sed 's/^[[:space:]]*/header: /'
  } >>"$out/build.log" 2>&1
  if [ -n "$deps" ]; then
    # Paths of OpenCL, CLBlast and CMocka that are not in --deps.
    outside=$(sed -n '/^== found/,$p' "$out/build.log" | grep -Ei 'opencl|clblast|cmocka|^header:' |
      grep -v '=$' | grep -v -c "$deps")
    if [ "$outside" = 0 ]; then
      note="OpenCL, CLBlast, CMocka from --deps"
    else
      note="$outside paths of OpenCL, CLBlast or CMocka outside --deps (build.log)"
    fi
  fi
fi
row build "$build_status" $((SECONDS - t0)) "$note"

# --- info -------------------------------------------------------------------
t0=$SECONDS
{
  echo "== host"
  uname -srm
  grep -h '^PRETTY_NAME' /etc/os-release 2>/dev/null
  ldd --version 2>/dev/null | head -n 1
  echo "cores: $(nproc)"
  echo "CLATTN_DEVICE=${CLATTN_DEVICE:-}"
  if command -v nvidia-smi >/dev/null; then
    echo "== nvidia-smi"
    timeout 20 nvidia-smi
  fi
  echo "== ICD"
  echo "OCL_ICD_VENDORS=${OCL_ICD_VENDORS:-}"
  cat "${OCL_ICD_VENDORS:-/etc/OpenCL/vendors}"/*.icd 2>/dev/null
  echo "== clattn-info"
} >"$out/info.txt" 2>&1
status=skipped
if [ -x "$build/tools/clattn-info" ] &&
  ! bounded "$(limit 60)" "$build/tools/clattn-info" >>"$out/info.txt" 2>&1 &&
  [ "$status" != skipped ]; then
  # Why the loader found no driver: what each .icd names, opened directly,
  # and the OpenCL libraries this machine has.
  {
    echo "== opening the drivers"
    for icd in "${OCL_ICD_VENDORS:-/etc/OpenCL/vendors}"/*.icd; do
      [ -f "$icd" ] || continue
      python3 -c 'import ctypes, sys; ctypes.CDLL(sys.argv[1]); print(sys.argv[1], "opens")' \
        "$(cat "$icd")" 2>&1 | tail -n 1
    done
    echo "== OpenCL libraries"
    ldconfig -p 2>/dev/null | grep -i opencl
    ls -l /usr/local/nvidia/lib64/*opencl* /usr/lib/*-linux-gnu/*opencl* 2>/dev/null
  } >>"$out/info.txt" 2>&1
fi
row info "$status" $((SECONDS - t0)) "$(awk '/^device /{d=$0} /\(default device\)/{print d; exit}' "$out/info.txt")"

# --- tests ------------------------------------------------------------------
t0=$SECONDS
lim=$(limit "$test_cap")
note=""
if [ "$do_tests" = 0 ]; then
  status=off
elif [ "$lim" = 0 ] || [ ! -f "$build/CTestTestfile.cmake" ]; then
  status=skipped
else
  regex=()
  [ -n "$test_regex" ] && regex=(-R "$test_regex")
  # The fault-injection sweep fails clattn's own OpenCL calls and does not
  # depend on the driver under them (clattn.sh runs it on its first CPU
  # device); under its AddressSanitizer build a GPU driver's ICD may not
  # load at all.
  CLATTN_TEST_REQUIRE_DEVICE=1 bounded "$lim" ctest --test-dir "$build" -L unit \
    "${regex[@]}" -E '^test_fault$' -j "$test_jobs" --output-on-failure \
    >"$out/test.log" 2>&1
  note=$(grep -E 'tests passed|No tests were found' "$out/test.log" | tail -n 1)
  [ -z "$note" ] && note="$(grep -cE 'Test +#[0-9]+: .* Passed' "$out/test.log") passed before the limit"
fi
row tests "$status" $((SECONDS - t0)) "$note"

# --- bench ------------------------------------------------------------------
t0=$SECONDS
lim=$(limit "$bench_cap")
note=""
if [ "$do_bench" = 0 ]; then
  status=off
elif [ "$lim" = 0 ] || [ ! -x "$build/tools/clattn-bench" ]; then
  status=skipped
else
  # shellcheck disable=SC2086 # --bench-args is a list of words
  bounded "$lim" "$build/tools/clattn-bench" --sweep --baseline naive --ceiling \
    --json --repeat 5 --max-seconds 3 --max-case-seconds 5 --ceiling-size 4096 \
    $bench_args >"$out/bench.jsonl" 2>"$out/bench.log"
  # Name the results after the device, as bench/results/ does.
  name=$(grep -m 1 '"type":"device"' "$out/bench.jsonl" |
    sed -n 's/.*"name":"\([^"]*\)".*/\1/p' | tr '[:upper:]' '[:lower:]' |
    sed -E 's/[^a-z0-9]+/-/g; s/^-//; s/-$//' | cut -c 1-40 | sed 's/-$//')
  file=bench.jsonl
  if [ -n "$name" ]; then
    file=$name-$(date -u +%F).jsonl
    mv "$out/bench.jsonl" "$out/$file"
  fi
  cases=$(grep -c '"type":"case"' "$out/$file")
  skipped=$(grep -c '"type":"skipped"' "$out/$file")
  bad=$(grep -c '"baseline_agrees":false' "$out/$file")
  note="$file: $cases cases, $skipped skipped, $bad disagree with the baseline"
fi
row bench "$status" $((SECONDS - t0)) "$note"

# --- summary ----------------------------------------------------------------
fails=0
for r in "${rows[@]}"; do
  read -r _ st _ <<<"$r"
  case $st in ok | off) ;; *) fails=$((fails + 1)) ;; esac
done
{
  printf '%-6s %-12s %5s  %s\n' step status sec note
  printf '%s\n' "${rows[@]}"
  printf '%-6s %-12s %5s  %s\n' total "$([ $fails = 0 ] && echo ok || echo "$fails not ok")" \
    $((SECONDS - start)) "files in $out"
} | tee "$out/summary.txt"
[ "$fails" = 0 ]
