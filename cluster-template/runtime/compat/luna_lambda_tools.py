"""luna_lambda_tools as functions written for Luna use it on lambdaworker: the request an entry
`async def main(request)` in lambda_main.py is given (`request.json` is the call's event, the
parsed request body).

This directory is the last one on a function's sys.path: a function that ships its own
luna_lambda_tools, or installs one with its requirements, imports that one instead, and its
StandaloneLambdaRequest is what its entry is given.
"""


class StandaloneLambdaRequest:
    """A call of a standalone lambda: `json` is the request's body, parsed."""

    __slots__ = ("json",)

    def __init__(self, json):
        self.json = json

    def __repr__(self):
        return "%s(json=%r)" % (type(self).__name__, self.json)


class HandlersLambdaRequest(StandaloneLambdaRequest):
    """A call of a handlers lambda; here of the same shape as a standalone lambda's."""

    __slots__ = ()
