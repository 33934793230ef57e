"""Payload format 1.0 (REST APIs' Lambda proxy event), answered with multiValueHeaders."""

import json


def handler(event):
    seen = {
        "version": event["version"],
        "httpMethod": event["httpMethod"],
        "path": event["path"],
        "query": event["queryStringParameters"],
        "multiQuery": event["multiValueQueryStringParameters"],
        "multi": event["multiValueHeaders"].get("x-many"),
        "body": event["body"],
        "base64": event["isBase64Encoded"],
    }
    return {
        "statusCode": 201,
        "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"], "X-Seen": ["yes"]},
        "body": json.dumps(seen),
    }
