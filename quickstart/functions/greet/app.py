"""An AWS-style function: handler(event, context), configured through its environment."""

import os

GREETING = os.environ.get("GREETING", "Hello")  # read once, when the module is imported


def handler(event, context):
    return {
        "message": "%s, %s!" % (GREETING, event.get("name", "World")),
        "function": context.function_name,
        "request_id": context.aws_request_id,
    }
