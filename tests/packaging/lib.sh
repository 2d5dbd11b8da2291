# Shared by the tests/packaging/*.sh scripts (sourced): a temp dir removed at exit, exit
# hooks (servers stopped, pass or fail), free ports, the test PKI, nginx on 127.0.0.1 and
# checks that say what they checked.
# shellcheck shell=bash
# The variables set here are for the scripts that source this file.
# shellcheck disable=SC2034

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
target_dir=${CARGO_TARGET_DIR:-$repo/target}
release=$target_dir/release
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$repo/Cargo.toml" | head -n 1)
test_name=$(basename "$0" .sh)
tmp=$(mktemp -d "/tmp/kct-$test_name.XXXXXX")
exit_hooks=()
checks=0

# Runs the hooks, last first, then removes the temp dir (KCT_KEEP_TMP=1 keeps it).
run_exit_hooks() {
  local rc=$? i
  for (( i=${#exit_hooks[@]}-1; i>=0; i-- )); do
    eval "${exit_hooks[i]}" || true
  done
  if [ "${KCT_KEEP_TMP:-}" = 1 ] || [ "$rc" != 0 ]; then
    echo "$test_name: files kept in $tmp" >&2
  else
    rm -rf --one-file-system "$tmp"
  fi
  if [ "$rc" = 0 ]; then echo "$test_name: $checks checks passed"; else echo "$test_name: FAILED" >&2; fi
}
trap run_exit_hooks EXIT
on_exit() { exit_hooks+=("$*"); }

fail() { echo "$test_name: FAIL: $*" >&2; exit 1; }
ok() { checks=$((checks + 1)); echo "  ok: $*"; }
# expect <what> <haystack> <needle>: the needle must occur in the haystack.
expect() {
  case "$2" in
    *"$3"*) ok "$1" ;;
    *) fail "$1: expected '$3' in: $2" ;;
  esac
}
expect_not() {
  case "$2" in
    *"$3"*) fail "$1: did not expect '$3' in: $2" ;;
    *) ok "$1" ;;
  esac
}

# quiet <command...>: its output only when it fails.
quiet() {
  local log
  log=$(mktemp "$tmp/quiet.XXXXXX")
  "$@" > "$log" 2>&1 || { cat "$log" >&2; fail "$*"; }
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_port <port> [seconds]: until something accepts on 127.0.0.1:<port>.
wait_port() {
  local i
  for (( i=0; i<${2:-10}*10; i++ )); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  fail "nothing listens on 127.0.0.1:$1"
}

# The C tests' PKI (tests/c/make-pki.sh): server.pem (root), client_a.pem (ca_a) and
# leaf.pem + intermediate.pem (root).
make_pki() {
  "$repo/tests/c/make-pki.sh" "$1" >/dev/null
}

# start_nginx <prefix> [command prefix...]: nginx -p <prefix> -c <prefix>/nginx.conf in the
# foreground (daemon off), in the background, stopped at exit. The config writes its pid
# and logs under <prefix>. The optional command prefix runs nginx another way
# (tests/distro/in-root.sh <root> <paths> --).
# With KCT_NGINX_ROOT (a root of tests/distro/make-root.sh), nginx is that root's, as in
# tests/distro/run.sh, with the temp dir and the clone visible at the same paths.
start_nginx() {
  local prefix=$1
  shift
  mkdir -p "$prefix/logs"
  if [ $# = 0 ] && [ -n "${KCT_NGINX_ROOT:-}" ]; then
    set -- "$repo/tests/distro/in-root.sh" "$KCT_NGINX_ROOT" "$tmp" "$repo" "$target_dir" --
  fi
  "$@" nginx -p "$prefix" -c "$prefix/nginx.conf" -e "$prefix/logs/error.log" \
    -g 'daemon off;' > "$prefix/logs/stdout.log" 2>&1 &
  on_exit "kill $! 2>/dev/null; wait $! 2>/dev/null"
}

# curl_tls <name> <port> [curl args...]: an HTTPS request to <name> on 127.0.0.1:<port>.
curl_tls() {
  local name=$1 port=$2
  shift 2
  curl -sS -k --max-time 10 --resolve "$name:$port:127.0.0.1" "$@" "https://$name:$port/"
}

# The `load_module` lines for Debian's nginx with lua-nginx-module.
nginx_modules() {
  echo "load_module /usr/lib/nginx/modules/ndk_http_module.so;"
  echo "load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;"
}

# The error log must hold no [alert], [emerg], [crit] or Lua error.
check_error_log() {
  local log=$1/logs/error.log bad
  bad=$(grep -E '\[(alert|emerg|crit)\]|lua entry thread aborted|runtime error' "$log" || true)
  [ -z "$bad" ] || fail "error log $log: $bad"
  ok "a clean nginx error log"
}

# write_mtls_conf <prefix> <port> [http lines...]: <prefix>/nginx.conf, the README's minimal
# configuration (mutual TLS with the PKI's ca_a.pem from make_pki) plus the given lines in
# http {}. The reply reads "version=… certs=<n> err=… verify=… cpath=…".
write_mtls_conf() {
  local prefix=$1 port=$2
  shift 2
  mkdir -p "$prefix"
  cat > "$prefix/nginx.conf" <<CONF
$(nginx_modules)
pid $prefix/nginx.pid;
events {}
http {
    access_log off;
$(printf '    %s\n' "$@")
    init_by_lua_block {
        require "kong_client_tls"
        local f = assert(io.open("$tmp/pki/ca_a.pem"))
        CA_A = assert(require("ngx.ssl").parse_pem_cert(f:read("*a")))
        f:close()
    }
    server_rewrite_by_lua_block { require("kong_client_tls").reject_misdirected_request() }
    server {
        listen 127.0.0.1:$port ssl;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_certificate     $tmp/pki/server.pem;
        ssl_certificate_key $tmp/pki/server.key;
        ssl_certificate_by_lua_block {
            local tls = require "kong_client_tls"
            local ok, err = tls.request_client_certificate(CA_A)
            if not ok then ngx.log(ngx.ERR, err) end
        }
        location / {
            content_by_lua_block {
                local tls = require "kong_client_tls"
                local chain, err = tls.get_full_client_certificate_chain()
                local _, n = (chain or ""):gsub("BEGIN CERTIFICATE", "")
                ngx.say("version=", tls._VERSION, " certs=", n, " err=", tostring(err),
                        " verify=", ngx.var.ssl_client_verify, " cpath=", package.cpath)
            }
        }
    }
}
CONF
}
