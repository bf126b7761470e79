# Sourced by scripts/test.sh, scripts/demo.sh and scripts/bench.sh: makes sure the C toolchain that the
# rdkafka crate needs to build its bundled librdkafka is present (Debian package names).
ensure_build_deps() {
  local missing=()
  command -v cc >/dev/null 2>&1 || missing+=(build-essential)
  command -v make >/dev/null 2>&1 || missing+=(make)
  command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
  [ -e /usr/include/zlib.h ] || missing+=(zlib1g-dev)
  command -v curl >/dev/null 2>&1 || missing+=(curl)
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing build dependencies: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "missing build dependencies; install them first: ${missing[*]} (Debian package names)" >&2
    return 1
  fi
}
