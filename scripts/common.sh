# Shared by the scripts in this folder: where things are, installing what is missing, building.
# Source it; do not run it.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export ROOT

# Installs the Debian packages named that are not installed yet.
need_packages() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "==> installing ${missing[*]}"
    local sudo=
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Builds nginx (from the source vendored in the nginx-src crate) and the module, and sets
# NGINX_BIN and MODULE to the binary and the module built.
build() {
    need_packages build-essential make pkg-config libpcre2-dev libssl-dev zlib1g-dev libclang-dev perl
    echo "==> cargo build --release"
    (cd "$ROOT" && cargo build --release --quiet)
    NGINX_BIN=$(ls -t "$ROOT"/target/release/build/nginx-sys-*/out/objs/nginx 2>/dev/null | head -n 1)
    MODULE=$ROOT/target/release/libngx_http_waiting_room_module.so
    if [ ! -x "$NGINX_BIN" ] || [ ! -f "$MODULE" ]; then
        echo "build did not produce nginx and the module" >&2
        exit 1
    fi
    export NGINX_BIN MODULE
}
