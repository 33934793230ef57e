"""A stand-in for :class:`lambdaworker.Client` whose invocations run the agent in this
process, through JSON as over the wire, as a pool function's sandbox would."""

import json
import threading

from lambdaworker import agent
from lambdaworker.client import InvokeResponse


class AgentClient:
    def __init__(self, function_error=None, gate=None):
        #: When set, every invocation answers this function error payload instead.
        self.function_error = function_error
        #: When set, invocations wait for it.
        self.gate = gate
        self.events = []
        self.running = 0
        self.most_running = 0
        self._lock = threading.Lock()

    def invoke_response(self, name, event=None, *, tail=False):
        with self._lock:
            self.events.append((name, event))
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        try:
            if self.gate is not None:
                self.gate.wait()
            if self.function_error is not None:
                return InvokeResponse(200, self.function_error, "r-1", "Unhandled", None, "$LATEST")
            answer = agent.handler(json.loads(json.dumps(event)))
            return InvokeResponse(200, json.loads(json.dumps(answer)), "r-1", None, None, "$LATEST")
        finally:
            with self._lock:
                self.running -= 1

    def close(self):
        pass
