# Sourced by nsys.sh and ncu.sh once their flags are parsed (in the repository root): fills in
# $data when it was not given (data/mnist, else the staged .deps/data/mnist) and checks $bin, each
# failure one line naming the script and exit status 2.
resolve_inputs() {
  local tool=$1
  if [ -z "$data" ]; then
    for d in data/mnist .deps/data/mnist; do [ -d "$d" ] && { data=$d; break; }; done
    [ -n "$data" ] || { echo "$tool: no MNIST directory (data/mnist or .deps/data/mnist); pass --data" >&2; exit 2; }
  fi
  [ -x "$bin" ] || { echo "$tool: engine binary $bin not found; build it first or pass --bin" >&2; exit 2; }
}
