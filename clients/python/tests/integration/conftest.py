"""The integration tests run against a real worker: ``worker/tests/python_client.rs`` starts
one and runs them with its address in ``LAMBDAWORKER_ENDPOINT`` (and, for a cluster with
credentials, its keys in ``LAMBDAWORKER_ACCESS_KEY``/``LAMBDAWORKER_SECRET_KEY`` and
``LAMBDAWORKER_TEST_SIGNED=1``). Without an endpoint they are skipped."""

import io
import os
import sys
import uuid
import zipfile
from pathlib import Path

import pytest

from lambdaworker import Client, deploy

FIXTURES = Path(__file__).parent / "fixtures"
# The tests import the deployed package too, so its functions go by reference.
sys.path.insert(0, str(FIXTURES))
#: The pool function's timeout (seconds): short, so that going over it is quick.
POOL_TIMEOUT = 5

PLAIN_HANDLER = """
def handler(event):
    print("hello from plain", event.get("n"))
    if event.get("raise"):
        raise KeyError(event["raise"])
    return {"echo": event}
"""


def pytest_collection_modifyitems(config, items):
    if os.environ.get("LAMBDAWORKER_ENDPOINT"):
        return
    skip = pytest.mark.skip(
        reason="LAMBDAWORKER_ENDPOINT is not set: worker/tests/python_client.rs runs these against a worker"
    )
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def signed():
    return os.environ.get("LAMBDAWORKER_TEST_SIGNED") == "1"


@pytest.fixture(scope="session")
def client():
    with Client() as c:
        yield c


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def pool_timeout():
    return POOL_TIMEOUT


@pytest.fixture(scope="session")
def pool_function(client):
    """A pool function of the fixtures' ``algorithms`` package."""
    name = unique("algorithms")
    deploy.create(client, name, [str(FIXTURES / "algorithms")], timeout=POOL_TIMEOUT, memory=256)
    return name


@pytest.fixture(scope="session")
def plain_function(client):
    """A function that is not a pool function (``lambda_func.handler``, no pool tag)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("lambda_func.py", PLAIN_HANDLER)
    name = unique("plain")
    client.create_function(name, buffer.getvalue(), Handler="lambda_func.handler", Tags={"team": "tests"})
    return name
