"""Drives lambdaworker's Invoke API with the real boto3, as a user would.

Usage: python boto3_invoke.py WORKER_URL ACCESS_KEY SECRET_KEY

Creates its functions through the management API of the same worker, then invokes them
RequestResponse, Event and DryRun; reads FunctionError, LogResult (decoded) and StatusCode;
checks the AWS errors (unknown function, bad JSON, too large, throttled) and the event invoke
configuration with an on_failure destination. Every check raises on failure; the last line
printed is "boto3 invoke: N checks passed".
"""

import base64
import io
import json
import sys
import threading
import time
import urllib.request
import zipfile

import boto3
import botocore.config

WORKER, KEY, SECRET = sys.argv[1:4]
REGION = "us-east-1"
ROLE = "arn:aws:iam::000000000000:role/lambda-role"
checks = 0


def check(cond, what):
    global checks
    if not cond:
        raise AssertionError(what)
    checks += 1


def client(retries=3):
    return boto3.client(
        "lambda",
        endpoint_url=WORKER,
        region_name=REGION,
        aws_access_key_id=KEY,
        aws_secret_access_key=SECRET,
        config=botocore.config.Config(
            retries={"total_max_attempts": retries, "mode": "standard"},
            read_timeout=120,
        ),
    )


def zipped(source):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("app.py", source)
    return buf.getvalue()


def create(lam, name, source, timeout=30):
    lam.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": zipped(source)},
        Timeout=timeout,
    )


def records(function):
    with urllib.request.urlopen("%s/invocations?function=%s" % (WORKER, function)) as r:
        return json.load(r)["invocations"]


def wait_record(function, request_id, status, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        for rec in records(function):
            if rec["request_id"] == request_id and rec["status"] == status:
                return rec
        time.sleep(0.1)
    raise AssertionError("no %s record of %s for %s: %s" % (status, function, request_id, records(function)))


lam = client()
create(
    lam,
    "echo",
    "import sys\n\ndef handler(event, context):\n"
    "    print('hello from echo', event.get('n'))\n"
    "    print('to stderr', file=sys.stderr)\n"
    "    return {'echo': event, 'id': context.aws_request_id}\n",
)
create(lam, "boom", "def handler(event):\n    raise ValueError('boom: ' + str(event.get('n')))\n")
create(lam, "slow", "import time\n\ndef handler(event):\n    time.sleep(event.get('s', 2))\n    return 'slept'\n")
create(lam, "sink", "def handler(event):\n    return event\n")

# RequestResponse, with and without the log's tail.
r = lam.invoke(FunctionName="echo", Payload=json.dumps({"n": 1}))
check(r["StatusCode"] == 200, "RequestResponse answers 200: %r" % r)
check("FunctionError" not in r, "no FunctionError on success")
check(r["ExecutedVersion"] == "$LATEST", "executed version")
body = json.load(r["Payload"])
check(body["echo"] == {"n": 1}, "the payload comes back: %r" % body)
check(body["id"] == r["ResponseMetadata"]["RequestId"], "the function's request id is the answer's")
check("LogResult" not in r, "no LogResult unless asked")

r = lam.invoke(FunctionName="echo", Payload=json.dumps({"n": 2}), LogType="Tail")
log = base64.b64decode(r["LogResult"]).decode()
check("hello from echo 2" in log, "the tail holds what the handler printed: %r" % log)
check("to stderr" in log, "and its stderr: %r" % log)
check("START RequestId: %s" % r["ResponseMetadata"]["RequestId"] in log, "a START line: %r" % log)
check("REPORT RequestId:" in log and "Duration:" in log and "Max Memory Used:" in log, "a REPORT line: %r" % log)

# A function error.
r = lam.invoke(FunctionName="boom", Payload=b'{"n": 7}')
check(r["StatusCode"] == 200, "a raised error still answers 200")
check(r.get("FunctionError") == "Unhandled", "FunctionError is Unhandled: %r" % r)
err = json.load(r["Payload"])
check(err["errorType"] == "ValueError", "errorType: %r" % err)
check(err["errorMessage"] == "boom: 7", "errorMessage: %r" % err)
check(isinstance(err["stackTrace"], list) and any("app.py" in f for f in err["stackTrace"]), "stackTrace: %r" % err)

# DryRun and Event.
r = lam.invoke(FunctionName="echo", InvocationType="DryRun")
check(r["StatusCode"] == 204, "DryRun answers 204: %r" % r)
r = lam.invoke(FunctionName="echo", InvocationType="Event", Payload=json.dumps({"n": 3}))
check(r["StatusCode"] == 202, "Event answers 202: %r" % r)
rec = wait_record("echo", r["ResponseMetadata"]["RequestId"], "succeeded")
check(rec["result"]["echo"] == {"n": 3}, "the event ran with its payload: %r" % rec)
check(rec["attempts"] == 1, "one attempt: %r" % rec)

# Errors as AWS shapes them.
for bad, exc in [
    (lambda: lam.invoke(FunctionName="nope", Payload=b"{}"), lam.exceptions.ResourceNotFoundException),
    (lambda: lam.invoke(FunctionName="nope", InvocationType="Event", Payload=b"{}"), lam.exceptions.ResourceNotFoundException),
    (lambda: lam.invoke(FunctionName="echo", Payload=b"not json"), lam.exceptions.InvalidRequestContentException),
    (lambda: lam.invoke(FunctionName="echo", Payload=b'{"x": "' + b"a" * (7 << 20) + b'"}'), lam.exceptions.RequestTooLargeException),
    (lambda: lam.invoke(FunctionName="echo", InvocationType="Event", Payload=b'{"x": "' + b"a" * (300 << 10) + b'"}'), lam.exceptions.RequestTooLargeException),
    (lambda: lam.invoke(FunctionName="echo", Qualifier="7", Payload=b"{}"), lam.exceptions.ResourceNotFoundException),
]:
    try:
        bad()
    except exc:
        check(True, "raised")
    else:
        raise AssertionError("expected %s" % exc.__name__)

# Throttled: slow takes one call at a time and queues none (the worker's config).
lam_once = client(retries=1)
first = threading.Thread(target=lambda: lam_once.invoke(FunctionName="slow", Payload=b'{"s": 3}'))
first.start()
time.sleep(1.0)
try:
    lam_once.invoke(FunctionName="slow", Payload=b'{"s": 0}')
except lam_once.exceptions.TooManyRequestsException as e:
    check(e.response["ResponseMetadata"]["HTTPHeaders"].get("retry-after") == "1", "Retry-After: %r" % e.response)
else:
    raise AssertionError("a second concurrent call of slow is throttled")
first.join()

# The event invoke configuration: no retries, failures to sink.
lam.put_function_event_invoke_config(
    FunctionName="boom",
    MaximumRetryAttempts=0,
    MaximumEventAgeInSeconds=600,
    DestinationConfig={"OnFailure": {"Destination": "arn:aws:lambda:us-east-1:000000000000:function:sink"}},
)
got = lam.get_function_event_invoke_config(FunctionName="boom")
check(got["MaximumRetryAttempts"] == 0 and got["MaximumEventAgeInSeconds"] == 600, "config read back: %r" % got)
check(got["DestinationConfig"]["OnFailure"]["Destination"].endswith(":function:sink"), "destination: %r" % got)
listed = lam.list_function_event_invoke_configs(FunctionName="boom")["FunctionEventInvokeConfigs"]
check(len(listed) == 1, "one configuration listed: %r" % listed)
r = lam.invoke(FunctionName="boom", InvocationType="Event", Payload=b'{"n": 9}')
failed = wait_record("boom", r["ResponseMetadata"]["RequestId"], "failed")
check(failed["attempts"] == 1 and failed["condition"] == "RetriesExhausted", "no retry: %r" % failed)
check(failed["error"]["type"] == "ValueError", "the last error is kept: %r" % failed)
deadline = time.time() + 60
dest = None
while time.time() < deadline and dest is None:
    for rec in records("sink"):
        res = rec.get("result") or {}
        if rec["status"] == "succeeded" and res.get("requestContext", {}).get("requestId") == r["ResponseMetadata"]["RequestId"]:
            dest = res
    time.sleep(0.1)
check(dest is not None, "the destination got the failure's record")
check(dest["requestContext"]["condition"] == "RetriesExhausted", "condition: %r" % dest)
check(dest["requestPayload"] == {"n": 9}, "requestPayload: %r" % dest)
check(dest["responseContext"]["functionError"] == "Unhandled", "functionError: %r" % dest)
check(dest["responsePayload"]["errorType"] == "ValueError", "responsePayload: %r" % dest)
lam.delete_function_event_invoke_config(FunctionName="boom")
try:
    lam.get_function_event_invoke_config(FunctionName="boom")
except lam.exceptions.ResourceNotFoundException:
    check(True, "deleted")
else:
    raise AssertionError("the configuration is gone after delete")

# An unsigned invoke is refused when the worker has credentials.
req = urllib.request.Request(WORKER + "/2015-03-31/functions/echo/invocations", data=b"{}", method="POST")
try:
    urllib.request.urlopen(req)
except urllib.error.HTTPError as e:
    check(e.code == 403, "unsigned invoke: %d" % e.code)
else:
    raise AssertionError("an unsigned invoke is refused")

print("boto3 invoke: %d checks passed" % checks)
