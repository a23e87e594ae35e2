#!/usr/bin/env bash
# The test command (CI runs it through .ci/run): install what is missing, fetch MNIST, build,
# run every test. GPU tests are skipped, with a line saying so, where no CUDA device is present.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/apps/setup.sh" mnist
"$root/apps/build.sh"
cd "$root/build"
ctest --output-on-failure --timeout 900 "$@"
