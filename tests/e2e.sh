#!/usr/bin/env bash
# End-to-end check of the README's user flow on a temporary cluster, with leak checks:
# after `admin kill`, no process, mount or cgroup of the cluster may be left.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${E2E_PORT:-18080}
ADMIN=./bin/admin
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "  ok: $*"; }
bad() { fail=$((fail + 1)); echo "  FAILED: $*"; }
check() { # check "description" expected actual
    if [ "$2" == "$3" ]; then ok "$1"; else bad "$1: expected [$2], got [$3]"; fi
}
contains() { # contains "description" needle haystack
    if [[ "$3" == *"$2"* ]]; then ok "$1"; else bad "$1: [$2] not in [$3]"; fi
}

cgroup_dirs() { find /sys/fs/cgroup -path '*lambdaworker*' -type d 2>/dev/null | sort; }
sandbox_procs() { pgrep -f 'lambdaworker/(runtime|zygote)[.]py' | sort || true; }  # handlers, zygotes and their forks

work=$(mktemp -d /tmp/lambdaworker-e2e.XXXXXX)
chmod 755 "$work"  # mktemp makes it 0700: sandboxes in user namespaces must reach the cluster by path
cluster="$work/my-cluster"
cleanup() { "$ADMIN" kill -cluster="$cluster" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT

cgroups_before=$(cgroup_dirs)
procs_before=$(sandbox_procs)

echo "e2e: admin new"
"$ADMIN" new -cluster "$cluster"
for d in config logs base packages registry workers; do
    [ -d "$cluster/$d" ] && ok "cluster has $d/" || bad "cluster lacks $d/"
done
[ -f "$cluster/config/template.json" ] && ok "template.json written" || bad "no template.json"
if "$ADMIN" new -cluster "$cluster" 2>/dev/null; then bad "admin new accepted an existing dir"; else ok "admin new refuses an existing dir"; fi
if "$ADMIN" setconf -cluster="$cluster" '{"no_such_key": 1}' 2>/dev/null; then bad "setconf accepted an unknown key"; else ok "setconf rejects an unknown key"; fi
"$ADMIN" setconf --cluster="$cluster" '{"sandbox": "sock", "registry": "local", "idle_timeout_s": 120}'
contains "setconf merged a key" '"idle_timeout_s": 120' "$(cat "$cluster/config/template.json")"

echo "e2e: admin workers / status"
"$ADMIN" workers -cluster="$cluster" --port="$PORT"
status=$("$ADMIN" status -cluster="$cluster")
contains "status pings the worker" "http://localhost:$PORT/status => ready [200 OK]" "$status"
contains "status lists containers" "Cluster containers:" "$status"
contains "status lists the root zygote" "zygote 1  parent=-" "$(echo "$status" | sed -n '/Import cache (zygotes):/,$p')"

echo "e2e: calls"
cp -r ./quickstart/handlers/hello "$cluster/registry/hello"
out=$(curl -sS -X POST "localhost:$PORT/runLambda/hello" -d '{"name": "Alice"}')
check "hello answers" '"Hello, Alice!"' "$out"
out=$(curl -sS -X POST "localhost:$PORT/runLambda/hello" -d '{"name": "Bob"}')
check "hello answers warm" '"Hello, Bob!"' "$out"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "localhost:$PORT/runLambda/nope" -d '{}')
check "unknown lambda is 404" 404 "$code"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "localhost:$PORT/runLambda/hello" -d '{not json')
check "invalid JSON is 400" 400 "$code"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "localhost:$PORT/runLambda/a..b" -d '{}')
check "invalid name is 400" 400 "$code"

echo "e2e: deploying with admin create (an AWS-style handler(event, context) and its environment)"
"$ADMIN" create -cluster="$cluster" greet ./quickstart/functions/greet --entry app.handler --env GREETING=Hi >/dev/null
out=$(curl -sS -X POST "localhost:$PORT/runLambda/greet" -d '{"name": "Carol"}')
contains "the created function answers with its environment and context" '"message": "Hi, Carol!", "function": "greet"' "$out"
contains "admin functions lists it" "app.handler" "$("$ADMIN" functions -cluster="$cluster")"

echo "e2e: an asynchronous call, its record, and the handler logs (the README's Invoking section)"
out=$(curl -sS -X POST "localhost:$PORT/runLambda/greet?async=1" -d '{"name": "Dave"}')
id=$(sed -n 's/.*"invocation_id":"\([^"]*\)".*/\1/p' <<<"$out")
contains "?async=1 answers the invocation id" '"status":"queued"' "$out"
rec=""
for _ in $(seq 100); do
    rec=$(curl -sS "localhost:$PORT/invocations/$id")
    if [[ "$rec" == *'"status":"succeeded"'* ]]; then break; fi
    sleep 0.1
done
contains "the queued call ran" 'Hi, Dave!' "$rec"
contains "admin invocations lists it" "$id" "$("$ADMIN" invocations -cluster="$cluster" greet)"
contains "admin logs shows its REPORT line" "REPORT RequestId: " "$("$ADMIN" logs -cluster="$cluster" greet)"

echo "e2e: an HTTP function at /run/<name>/<path> (docs/http.md): a WSGI app, its answer and a refused method"
mkdir -p "$cluster/registry/web"
cat > "$cluster/registry/web/app.py" <<'PY'
def app(environ, start_response):
    start_response("418 I'm a teapot", [("Content-Type", "text/plain"), ("X-Path", environ["SCRIPT_NAME"] + environ["PATH_INFO"])])
    return [b"short and stout: " + environ["QUERY_STRING"].encode()]
PY
echo '{"type": "wsgi", "entry": "app:app", "triggers": {"http": {"methods": ["GET"]}}}' > "$cluster/registry/web/lambda.json"
check "a WSGI app answers with its status" 418 "$(curl -sS -o /dev/null -w '%{http_code}' "localhost:$PORT/run/web/pot?tea=1")"
check "its body reaches the caller" "short and stout: tea=1" "$(curl -sS "localhost:$PORT/run/web/pot?tea=1")"
contains "its headers too" "x-path: /run/web/pot" "$(curl -sS -D - -o /dev/null "localhost:$PORT/run/web/pot")"
check "a method it does not take is 405" 405 "$(curl -sS -o /dev/null -w '%{http_code}' -X DELETE "localhost:$PORT/run/web/pot")"

echo "e2e: admin upload (handler bundles)"
mkdir -p "$work/bundle/v1" "$work/bundle/v2"
printf 'def handler(event):\n    return "bundle v1"\n' > "$work/bundle/v1/lambda_func.py"
printf 'def handler(event):\n    return "bundle v2"\n' > "$work/bundle/v2/lambda_func.py"
tar czf "$work/v1.tar.gz" -C "$work/bundle/v1" .
tar czf "$work/v2.tar.gz" -C "$work/bundle" v2
"$ADMIN" upload -cluster="$cluster" -handler=bundled -file="$work/v1.tar.gz"
check "uploaded bundle answers" '"bundle v1"' "$(curl -sS -X POST "localhost:$PORT/runLambda/bundled" -d '{}')"
"$ADMIN" upload --cluster "$cluster" --handler bundled --file "$work/v2.tar.gz"
check "re-uploaded bundle answers on the next call" '"bundle v2"' "$(curl -sS -X POST "localhost:$PORT/runLambda/bundled" -d '{}')"
if "$ADMIN" upload -cluster="$cluster" -handler=../x -file="$work/v1.tar.gz" 2>/dev/null; then bad "upload accepted a bad name"; else ok "upload rejects a bad name"; fi
if "$ADMIN" upload -cluster="$cluster" -handler=y -file="$work/bundle/v1/lambda_func.py" 2>/dev/null; then bad "upload accepted a non-archive"; else ok "upload rejects a non-archive"; fi

echo "e2e: a bundle with requirements.txt (admin install puts six in place before the first call)"
mkdir -p "$work/bundle/deps"
printf 'import six\ndef handler(event):\n    return "six " + six.__version__\n' > "$work/bundle/deps/lambda_func.py"
printf '# pinned\nsix==1.17.0\n' > "$work/bundle/deps/requirements.txt"
tar czf "$work/deps.tar.gz" -C "$work/bundle/deps" .
"$ADMIN" upload -cluster="$cluster" -handler=withdeps -file="$work/deps.tar.gz"
contains "admin install installs a function's requirements ahead" "withdeps: 1 package ready" "$("$ADMIN" install -cluster="$cluster" withdeps 2>/dev/null)"
if [ -f "$cluster/packages/six/1.17.0/six.py" ]; then ok "six is installed under packages/six/1.17.0"; else bad "packages/six/1.17.0 missing"; fi
if "$ADMIN" install -cluster="$cluster" no-such-function 2>/dev/null; then bad "admin install accepted an unknown function"; else ok "admin install refuses an unknown function"; fi
check "a handler's requirements are importable at its first call" '"six 1.17.0"' "$(curl -sS -X POST "localhost:$PORT/runLambda/withdeps" -d '{}')"

status=$("$ADMIN" status -cluster="$cluster")
contains "status shows the hello sandbox" "hello" "$(echo "$status" | sed -n '/Cluster containers:/,$p')"

echo "e2e: admin kill"
"$ADMIN" kill -cluster="$cluster"
sleep 0.5
pidfile_left=$(find "$cluster/logs" -name "*.pid" | wc -l)
check "no pid file left" 0 "$pidfile_left"
check "no worker process left" "" "$(pgrep -f "$cluster/config/worker-" || true)"
check "no sandbox process left" "$procs_before" "$(sandbox_procs)"
check "no cgroup left" "$cgroups_before" "$(cgroup_dirs)"
check "no mount of the cluster left" 0 "$(grep -c "$cluster" /proc/self/mountinfo || true)"
code=$(curl -s -o /dev/null -w '%{http_code}' "localhost:$PORT/status" || true)
check "worker port closed" 000 "$code"

echo "e2e: a worker started by hand with worker-exec is stopped by admin kill"
"$ADMIN" worker-exec --config="$cluster/config/worker-0.json" > "$work/exec.log" 2>&1 &
exec_pid=$!
for _ in $(seq 100); do curl -sf "localhost:$PORT/status" >/dev/null && break; sleep 0.1; done
out=$(curl -sS -X POST "localhost:$PORT/runLambda/hello" -d '{"name": "exec"}')
check "worker-exec serves" '"Hello, exec!"' "$out"
"$ADMIN" kill -cluster="$cluster"
wait "$exec_pid" && ok "worker-exec exited cleanly on SIGTERM" || bad "worker-exec exit status $?"
check "no sandbox process left after kill" "$procs_before" "$(sandbox_procs)"
check "no cgroup left after kill" "$cgroups_before" "$(cgroup_dirs)"
rm -r "$cluster"
ok "cluster removed"

echo "e2e: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
