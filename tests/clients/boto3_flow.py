"""Drives lambdaworker's AWS Lambda management API with the real boto3, as a user would.

Usage: python boto3_flow.py MANAGEMENT_URL WORKER_URL ACCESS_KEY SECRET_KEY

MANAGEMENT_URL is where boto3 sends management calls (a worker or the registry server);
WORKER_URL is a worker whose /runLambda/<name> runs what was deployed. Every check raises on
failure; the last line printed is "boto3 flow: N checks passed".
"""

import base64
import hashlib
import io
import json
import sys
import time
import urllib.request
import zipfile

import boto3
import botocore.config
from botocore.exceptions import ClientError

MANAGEMENT, WORKER, KEY, SECRET = sys.argv[1:5]
REGION = "us-east-1"
ROLE = "arn:aws:iam::000000000000:role/lambda-role"
checks = 0


def check(cond, what):
    global checks
    if not cond:
        raise AssertionError(what)
    checks += 1


def client(secret=SECRET):
    return boto3.client(
        "lambda",
        endpoint_url=MANAGEMENT,
        region_name=REGION,
        aws_access_key_id=KEY,
        aws_secret_access_key=secret,
        config=botocore.config.Config(retries={"max_attempts": 1}),
    )


def zip_of(files):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in files.items():
            z.writestr(name, text)
    return buf.getvalue()


def error_code(fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except ClientError as e:
        return e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]
    raise AssertionError("%s succeeded; an error was expected" % fn.__name__)


def run(name, event, expect=None, within=5.0):
    """POST /runLambda/<name> until the answer satisfies `expect` (an update reaches workers
    within the registry's revalidation interval)."""
    deadline = time.time() + within
    while True:
        req = urllib.request.Request(
            "%s/runLambda/%s" % (WORKER, name), data=json.dumps(event).encode(), method="POST"
        )
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                answer = json.loads(r.read())
        except urllib.error.HTTPError as e:
            answer = {"http_error": e.code, "body": e.read().decode()}
        if expect is None or expect(answer) or time.time() > deadline:
            return answer
        time.sleep(0.1)


APP_V1 = """
import os
GREETING = os.environ.get("GREETING", "none")   # read at import time

def handler(event, context):
    return {"v": 1, "fn": context.function_name, "greeting": GREETING,
            "arn": context.invoked_function_arn, "memory": context.memory_limit_in_mb,
            "left_ok": 0 < context.get_remaining_time_in_millis() <= 30000,
            "name": event.get("name")}
"""
APP_V2 = APP_V1.replace('"v": 1', '"v": 2')

lam = client()
code = zip_of({"app.py": APP_V1})

# Create, with everything CreateFunction takes.
made = lam.create_function(
    FunctionName="boto-hello", Runtime="python3.12", Role=ROLE, Handler="app.handler",
    Code={"ZipFile": code}, MemorySize=256, Timeout=30, Description="made by boto3",
    Environment={"Variables": {"GREETING": "hi"}}, Tags={"lambdapool": "yes"},
)
check(made["ResponseMetadata"]["HTTPStatusCode"] == 201, "CreateFunction answers 201")
check(made["FunctionName"] == "boto-hello", "FunctionName")
check(made["Handler"] == "app.handler" and made["Runtime"] == "python3.12", "Handler, Runtime")
check(made["MemorySize"] == 256 and made["Timeout"] == 30, "MemorySize, Timeout")
check(made["CodeSize"] == len(code), "CodeSize is the zip's size")
check(made["CodeSha256"] == base64.b64encode(hashlib.sha256(code).digest()).decode(), "CodeSha256")
check(made["Environment"]["Variables"] == {"GREETING": "hi"}, "Environment")
check(made["FunctionArn"] == "arn:aws:lambda:us-east-1:000000000000:function:boto-hello", "FunctionArn")
check(error_code(lam.create_function, FunctionName="boto-hello", Runtime="python3.12", Role=ROLE,
                 Handler="app.handler", Code={"ZipFile": code}) == ("ResourceConflictException", 409),
      "a second CreateFunction conflicts")

# Get, with a Code.Location that downloads the very zip.
got = lam.get_function(FunctionName="boto-hello")
check(got["Configuration"]["RevisionId"] == made["RevisionId"], "GetFunction's configuration")
check(got["Tags"] == {"lambdapool": "yes"}, "GetFunction's tags")
with urllib.request.urlopen(got["Code"]["Location"], timeout=30) as r:
    check(r.read() == code, "Code.Location downloads the uploaded zip")
conf = lam.get_function_configuration(FunctionName="arn:aws:lambda:us-east-1:000000000000:function:boto-hello")
check(conf["Description"] == "made by boto3", "GetFunctionConfiguration by ARN")

# It runs, with its context and environment.
out = run("boto-hello", {"name": "Ada"}, lambda a: a.get("v") == 1)
check(out.get("v") == 1 and out["fn"] == "boto-hello" and out["greeting"] == "hi", "runs: %s" % out)
check(out["arn"] == made["FunctionArn"] and int(out["memory"]) == 256 and out["left_ok"], "context: %s" % out)
check(out["name"] == "Ada", "the event arrives")

# List, page by page.
for n in ("boto-a", "boto-b"):
    lam.create_function(FunctionName=n, Runtime="python3.11", Role=ROLE, Handler="app.handler",
                        Code={"ZipFile": code})
names = []
for page in lam.get_paginator("list_functions").paginate(PaginationConfig={"PageSize": 1}):
    check(len(page["Functions"]) <= 1, "pages hold at most MaxItems")
    names += [f["FunctionName"] for f in page["Functions"]]
check({"boto-hello", "boto-a", "boto-b"} <= set(names) and len(names) == len(set(names)), "paginated list: %s" % names)

# New code: the next calls see it (within the revalidation interval), never a mix.
code2 = zip_of({"app.py": APP_V2})
upd = lam.update_function_code(FunctionName="boto-hello", ZipFile=code2, RevisionId=made["RevisionId"])
check(upd["CodeSha256"] == base64.b64encode(hashlib.sha256(code2).digest()).decode(), "new CodeSha256")
check(upd["RevisionId"] != made["RevisionId"], "a new RevisionId")
check(error_code(lam.update_function_code, FunctionName="boto-hello", ZipFile=code,
                 RevisionId=made["RevisionId"]) == ("PreconditionFailedException", 412), "a stale RevisionId")
out = run("boto-hello", {}, lambda a: a.get("v") == 2)
check(out.get("v") == 2 and out["greeting"] == "hi", "new code runs with the same settings: %s" % out)

# New configuration.
cfg = lam.update_function_configuration(FunctionName="boto-hello", MemorySize=512,
                                        Environment={"Variables": {"GREETING": "hello"}})
check(cfg["MemorySize"] == 512 and cfg["Environment"]["Variables"] == {"GREETING": "hello"}, "updated configuration")
check(cfg["CodeSha256"] == upd["CodeSha256"], "the code stays")
out = run("boto-hello", {}, lambda a: a.get("greeting") == "hello")
check(out["greeting"] == "hello" and int(out["memory"]) == 512, "new configuration runs: %s" % out)
check(error_code(lam.update_function_configuration, FunctionName="boto-hello", MemorySize=200)
      == ("InvalidParameterValueException", 400), "MemorySize 200 is refused")
check(error_code(lam.update_function_configuration, FunctionName="boto-hello", Timeout=901)
      == ("InvalidParameterValueException", 400), "Timeout 901 is refused")

# Tags.
arn = made["FunctionArn"]
lam.tag_resource(Resource=arn, Tags={"team": "data"})
check(lam.list_tags(Resource=arn)["Tags"] == {"lambdapool": "yes", "team": "data"}, "TagResource")
lam.untag_resource(Resource=arn, TagKeys=["lambdapool"])
check(lam.list_tags(Resource=arn)["Tags"] == {"team": "data"}, "UntagResource")

# A layer shared by two functions.
layer = lam.publish_layer_version(LayerName="boto-common", Content={"ZipFile": zip_of(
    {"python/boto_common.py": "def shout(s):\n    return s.upper() + '!'\n"})},
    CompatibleRuntimes=["python3.12"])
check(layer["Version"] == 1 and layer["LayerVersionArn"].endswith(":layer:boto-common:1"), "PublishLayerVersion")
check("boto-common" in [l["LayerName"] for l in lam.list_layers()["Layers"]], "ListLayers")
user = zip_of({"app.py": "import boto_common\n\ndef handler(event, context):\n    return boto_common.shout(context.function_name)\n"})
for n in ("boto-layer-1", "boto-layer-2"):
    lam.create_function(FunctionName=n, Runtime="python3.12", Role=ROLE, Handler="app.handler",
                        Code={"ZipFile": user}, Layers=[layer["LayerVersionArn"]])
    check(run(n, {}) == n.upper() + "!", "the layer is on sys.path of " + n)

# Refused requests change nothing.
check(error_code(client(secret="not-the-secret-key").create_function, FunctionName="boto-evil",
                 Runtime="python3.12", Role=ROLE, Handler="app.handler", Code={"ZipFile": code})[1] == 403,
      "a wrong secret is refused")
tampered = client()
def tamper(request, **kwargs):
    request.body = request.body.replace(b"boto-evil", b"boto-evi2")
tampered.meta.events.register("before-send.lambda.CreateFunction", tamper)
check(error_code(tampered.create_function, FunctionName="boto-evil", Runtime="python3.12", Role=ROLE,
                 Handler="app.handler", Code={"ZipFile": code}) == ("InvalidSignatureException", 403),
      "a body changed after signing is refused")
all_names = [f["FunctionName"] for f in lam.list_functions(MaxItems=1000)["Functions"]]
check("boto-evil" not in all_names and "boto-evi2" not in all_names, "nothing was created by refused calls")

# Errors in AWS's shape.
check(error_code(lam.get_function, FunctionName="boto-nope") == ("ResourceNotFoundException", 404), "unknown function")
check(error_code(lam.create_function, FunctionName="boto-bad", Runtime="nodejs20.x", Role=ROLE,
                 Handler="app.handler", Code={"ZipFile": code})[0] == "InvalidParameterValueException", "a runtime other than Python")
check(error_code(lam.create_function, FunctionName="boto-bad", Runtime="python3.12", Role=ROLE,
                 Handler="app.handler", Code={"ZipFile": b"not a zip"})[0] == "InvalidParameterValueException", "a zip that is not one")

# Delete.
for n in ("boto-hello", "boto-a", "boto-b", "boto-layer-1", "boto-layer-2"):
    d = lam.delete_function(FunctionName=n)
    check(d["ResponseMetadata"]["HTTPStatusCode"] == 204, "DeleteFunction answers 204")
check(error_code(lam.get_function, FunctionName="boto-hello")[0] == "ResourceNotFoundException", "deleted")
check(error_code(lam.delete_function, FunctionName="boto-hello")[0] == "ResourceNotFoundException", "deleted twice")
out = run("boto-hello", {}, lambda a: a.get("http_error") == 404)
check(out.get("http_error") == 404, "a deleted function is not served: %s" % out)

print("boto3 flow: %d checks passed" % checks)
