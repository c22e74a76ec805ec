#!/usr/bin/env bash
# Build the C++ runtime on a fresh Debian/Ubuntu machine: ./runtime/cpp/build.sh [BUILD_DIR]
# Needs: python3 with the project installed (its openvino wheel ships OpenVINO's C++ headers, libraries and
# CMake config), cmake >= 3.18 and g++ (installed with apt-get only when missing). Make runs with -j1 by
# default (JOBS=N to change) because CI machines here have 2 cores that tests share.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
BUILD_DIR="${1:-$HERE/../../build/runtime_cpp}"
PYTHON="${PYTHON:-python3}"

if ! command -v cmake >/dev/null || ! command -v g++ >/dev/null || ! command -v make >/dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq cmake g++ make >/dev/null
fi

OV_DIR="$("$PYTHON" -c 'import openvino, os; print(os.path.join(os.path.dirname(openvino.__file__), "cmake"))')"
if [ ! -f "$OV_DIR/OpenVINOConfig.cmake" ]; then
  echo "error: $OV_DIR/OpenVINOConfig.cmake not found; install the project (pip install -e .) so the openvino wheel is present" >&2
  exit 1
fi
cmake -S "$HERE" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DOpenVINO_DIR="$OV_DIR" >/dev/null
cmake --build "$BUILD_DIR" -- -j"${JOBS:-1}"
echo "$BUILD_DIR/turbo_edge_generate"
