#!/usr/bin/env bash
# Installs what the tests need and runs the whole suite: unit tests, then the real-
# sandbox suites (integration + attacks) as this user and, when run as root, again
# as an ordinary user, because Airlock must hold its promises for both.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

scripts/setup.sh --test-deps
npx tsc -p tsconfig.json
npx tsc -p webview/tsconfig.json   # the panel's browser code (DOM types)

# Each suite reports readably (spec) on stdout and as TAP into $TAP/<suite>.tap; the
# TAP summaries ("# pass N", "# fail N") are summed into one closing line.
TAP=$(mktemp -d)
chmod 777 "$TAP"
trap 'rm -rf "$TAP"' EXIT
report() { echo "--test-reporter=spec --test-reporter-destination=stdout --test-reporter=tap --test-reporter-destination=$TAP/$1.tap"; }
SANDBOX_SUITES="out/test/integration/ out/test/attacks/"
status=0

echo "== unit tests"
node --test $(report unit) out/test/unit/ || status=1
echo "== sandbox tests (integration + attacks) as $(id -un)"
node --test --test-concurrency=1 $(report sandbox-$(id -un)) $SANDBOX_SUITES || status=1

if [[ $(id -u) -eq 0 ]]; then
  # An ordinary user with a copy of the built tree (the checkout may sit under /root).
  USER_NAME=airlock-ci
  id "$USER_NAME" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$USER_NAME"
  USER_HOME=$(getent passwd "$USER_NAME" | cut -d: -f6)
  rm -rf "$USER_HOME/airlock"
  mkdir -p "$USER_HOME/airlock"
  tar -C "$ROOT" --exclude=.git --exclude=./.test-tools/code-server --exclude=./.airlock-demo --exclude=./test-artifacts --exclude="*.vsix" -cf - . | tar -C "$USER_HOME/airlock" -xf -
  chown -R "$USER_NAME:" "$USER_HOME/airlock"
  echo "== sandbox tests (integration + attacks) as the ordinary user $USER_NAME"
  runuser -u "$USER_NAME" -- env -i HOME="$USER_HOME" PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 \
    bash -c "cd '$USER_HOME/airlock' && node --test --test-concurrency=1 $(report sandbox-$USER_NAME) $SANDBOX_SUITES" || status=1
fi

echo "== VS Code tests (code-server)"
node scripts/test-vscode.mjs --tap "$TAP/vscode.tap" || status=1
echo "== VS Code tests, agent terminal routed into the sandbox at window load"
node scripts/test-vscode.mjs --routed --grep 'run_in_terminal' --tap "$TAP/vscode-routed.tap" || status=1

echo "== end-to-end: the README's main command (scripts/start.sh) in Chromium, with the packaged .vsix"
npm run --silent package >/dev/null || status=1
node --test --test-concurrency=1 $(report e2e) out/test/e2e/ || status=1

sum() { cat "$TAP"/*.tap | grep -E "^# $1 [0-9]+$" | awk '{s+=$3} END {print s+0}'; }
expected=$([[ $(id -u) -eq 0 ]] && echo 6 || echo 5)
if [[ $(cat "$TAP"/*.tap | grep -cE "^# pass [0-9]+$") -lt $expected ]]; then
  echo "a test suite crashed before printing its summary" >&2
  status=1
fi
echo
echo "$(sum pass) passed, $(sum fail) failed, $(sum skipped) skipped"
exit $status
