#!/usr/bin/env bash
# The README's quickstart, end to end, printing each step and its answer.
set -euo pipefail
cd "$(dirname "$0")/.."
CLUSTER=${CLUSTER:-my-cluster}
PORT=${PORT:-8080}

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
run() { step "$*"; "$@"; }

./quickstart/deps.sh

if [ -e "$CLUSTER" ]; then
    echo "demo: removing the $CLUSTER left by an earlier demo"
    ./bin/admin kill -cluster="$CLUSTER" || true
    rm -r "$CLUSTER"
fi
trap './bin/admin kill -cluster="$CLUSTER" >/dev/null 2>&1 || true' EXIT

run ./bin/admin new -cluster "$CLUSTER"
run ./bin/admin workers -cluster="$CLUSTER" --port="$PORT"
run ./bin/admin status -cluster="$CLUSTER"
run cp -r ./quickstart/handlers/hello "./$CLUSTER/registry/hello"
step "curl -X POST localhost:$PORT/runLambda/hello -d '{\"name\": \"Alice\"}'"
curl -sS -X POST "localhost:$PORT/runLambda/hello" -d '{"name": "Alice"}'; echo
step "curl -X POST localhost:$PORT/runLambda/hello -d '{\"name\": \"Bob\"}'   # warm: same sandbox"
curl -sS -X POST "localhost:$PORT/runLambda/hello" -d '{"name": "Bob"}'; echo
run cp -r ./quickstart/handlers/echo "./$CLUSTER/registry/echo"
step "curl -X POST localhost:$PORT/runLambda/echo -d '{\"numbers\": [1, 2, 3]}'"
curl -sS -X POST "localhost:$PORT/runLambda/echo" -d '{"numbers": [1, 2, 3]}'; echo
run ./bin/admin create -cluster="$CLUSTER" greet ./quickstart/functions/greet --entry app.handler --env GREETING=Hi --memory 128
step "curl -X POST localhost:$PORT/runLambda/greet -d '{\"name\": \"Carol\"}'   # handler(event, context)"
curl -sS -X POST "localhost:$PORT/runLambda/greet" -d '{"name": "Carol"}'; echo
run ./bin/admin functions -cluster="$CLUSTER"
step "curl -X POST localhost:$PORT/runLambda/nope -d '{}'   # unknown lambda: 404 with a JSON error"
curl -sS -X POST "localhost:$PORT/runLambda/nope" -d '{}'; echo
run ./bin/admin status -cluster="$CLUSTER"
run ./bin/admin kill -cluster="$CLUSTER"
trap - EXIT
run rm -r "$CLUSTER"
printf '\n\033[1mdemo finished\033[0m\n'
