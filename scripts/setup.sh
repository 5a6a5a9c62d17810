#!/usr/bin/env bash
# Installs everything Airlock needs on a fresh Debian/Ubuntu machine, builds it, runs
# `airlock doctor`, packages the VS Code extension (.vsix), installs code-server (a
# real VS Code in the browser, with its own Node), and starts it with Airlock and a
# demo workspace (scripts/start.sh): it prints the URL. System packages are installed
# when running as root or with sudo; otherwise the missing ones are listed with the
# command to install them.
#
#   scripts/setup.sh              everything, then start (Ctrl-C stops VS Code)
#   scripts/setup.sh --no-start   everything but the start
#   scripts/setup.sh --test-deps  what `npm test` needs (scripts/test.sh runs this)
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=${1:-}
case $MODE in ''|--no-start|--test-deps) ;; *) echo "setup.sh: unknown option $MODE (--no-start, --test-deps)" >&2; exit 2 ;; esac
# The runtime needs the first five; code-server builds native modules (g++, python3, libkrb5-dev).
PACKAGES=(bubblewrap gcc libc6-dev make git g++ python3 libkrb5-dev curl)
[[ $MODE == --test-deps ]] && PACKAGES+=(vim-nox less socat strace util-linux iproute2 procps zsh chromium)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]]; then SUDO=(); elif command -v sudo >/dev/null; then SUDO=(sudo); else SUDO=(none); fi
  if [[ "${SUDO[*]}" == none ]]; then
    echo "missing system packages: ${missing[*]}" >&2
    echo "install them with: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  echo "installing system packages: ${missing[*]}"
  "${SUDO[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

node -e 'const [a,b]=process.versions.node.split(".").map(Number); if (a<20||(a===20&&b<19)) { console.error(`Node ${process.versions.node} is too old: Airlock needs Node 20.19 or newer`); process.exit(1) }'
npm ci --no-audit --no-fund --loglevel=error
npm run --silent build
if [[ $MODE == --test-deps ]]; then
  # A published MCP client for the tests, kept out of the project's lockfile: one of its
  # optional dependencies (Windows-only) is missing from some registries, which makes
  # `npm ci` refuse the lockfile; a plain install here skips it.
  INSPECTOR=.test-tools/inspector
  if [[ ! -f $INSPECTOR/node_modules/@modelcontextprotocol/inspector/package.json ]]; then
    mkdir -p "$INSPECTOR"
    [[ -f $INSPECTOR/package.json ]] || echo '{"private": true}' > "$INSPECTOR/package.json"
    npm install --prefix "$INSPECTOR" --no-audit --no-fund --loglevel=error --save-exact @modelcontextprotocol/inspector@2.12.0
  fi
  # A real VS Code (code-server, with its own Node 24) for test/vscode/.
  bash scripts/code-server.sh
  exit 0
fi
bin/airlock doctor
# The extension as a person installs it, and a real VS Code to run it in.
npm run --silent package >/dev/null
echo "packaged the VS Code extension: $(pwd)/airlock-linux-x64.vsix"
bash scripts/code-server.sh
[[ $MODE == --no-start ]] && { echo "start it with: npm start"; exit 0; }
exec bash scripts/start.sh
