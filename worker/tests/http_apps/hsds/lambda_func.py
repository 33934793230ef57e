"""An HSDS-shaped function (seed 003): an HTTP request packaged as an event, answered with
statusCode, headers and a body that is hex (direct invocation, as HSDS answers h5pyd) or
base64 (through API Gateway, here /run/<name>)."""

import base64
import json

VALUES = bytes((i * 7) % 256 for i in range(4000))


def handler(event, context):
    if "requestContext" in event:  # API Gateway's HTTP event
        method = event["requestContext"]["http"]["method"]
        path = event["rawPath"]
        headers = event.get("headers", {})
        params = event.get("queryStringParameters") or {}
        gateway = True
    else:  # HSDS's own packaging: method, path (or request), headers, params
        method = event["method"]
        path = event.get("path") or event.get("request")
        headers = event.get("headers", {})
        params = event.get("params", {})
        gateway = False
    if path == "/about":
        body = {"state": "READY", "method": method, "params": params}
        return {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": json.dumps(body), "isBase64Encoded": False}
    if path.endswith("/value") and headers.get("accept") == "application/octet-stream":
        head = {"Content-Type": "application/octet-stream", "Content-Length": str(len(VALUES))}
        if gateway:
            return {"statusCode": 200, "headers": head, "body": base64.b64encode(VALUES).decode(), "isBase64Encoded": True}
        return {"isBase64Encoded": True, "statusCode": 200, "headers": json.dumps(head), "body": VALUES.hex()}
    return {"statusCode": 404, "headers": {"Content-Type": "application/json"}, "body": json.dumps({"message": "not found: " + path})}
