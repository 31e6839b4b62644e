#!/bin/sh
# Installs the built library into a scratch prefix, then builds the example
# against it twice: with find_package(clattn) and with pkg-config.
# usage: check.sh BUILD_DIR SOURCE_DIR SCRATCH_DIR
set -eu
build=$1 src=$2 scratch=$3
rm -rf "$scratch"
mkdir -p "$scratch"
cmake --install "$build" --prefix "$scratch/prefix" >/dev/null
cmake -S "$src/examples" -B "$scratch/cmake" \
  -DCMAKE_PREFIX_PATH="$scratch/prefix" >/dev/null
cmake --build "$scratch/cmake" >/dev/null
"$scratch/cmake/hello"
libdir=$(ls -d "$scratch"/prefix/lib*/pkgconfig | head -n 1)
PKG_CONFIG_PATH=$libdir
export PKG_CONFIG_PATH
# shellcheck disable=SC2046
cc -std=c11 -o "$scratch/hello-pc" "$src/examples/hello.c" \
  $(pkg-config --cflags clattn) $(pkg-config --libs --static clattn)
"$scratch/hello-pc"
echo "install check: find_package and pkg-config both work"
