#!/bin/sh
# Runs a command with Node.js 24 or newer first on PATH. longhaul's sources are TypeScript run by Node's
# type stripping, which older Node lacks; on a machine whose Node is older, Node 24 is installed once
# from the npm registry into ~/.cache/node24 (the system's Node is left alone).
set -e
major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$major" -lt 24 ]; then
  dir="${LONGHAUL_NODE24_DIR:-$HOME/.cache/node24}"
  if [ ! -x "$dir/node_modules/node/bin/node" ]; then
    echo "longhaul: Node $(node --version 2>/dev/null || echo '(none)') is too old; installing Node 24 into $dir" >&2
    npm install --no-save --no-package-lock --prefix "$dir" node@24 >/dev/null
  fi
  PATH="$dir/node_modules/node/bin:$PATH"
  export PATH
fi
exec "$@"
