"""The lambdaworker command against a real worker: create, list, update, delete, and the
refusal of a function it did not make."""

import importlib.metadata
import subprocess
import sys

from lambdaworker import LambdaPool

from algorithms.algorithms import fibonacci
from conftest import FIXTURES, unique


def lambdaworker(*args):
    """Runs the command with this environment (the endpoint and keys); returns its result."""
    return subprocess.run(
        [sys.executable, "-m", "lambdaworker", *args], capture_output=True, text=True, timeout=300
    )


def listed():
    out = lambdaworker("list")
    assert out.returncode == 0, out.stderr
    return [line.split()[0] for line in out.stdout.splitlines()[1:]]


def test_create_list_update_delete(client, tmp_path):
    name = unique("cli-pool")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("six==1.17.0\n")
    out = lambdaworker(
        "create",
        name,
        str(FIXTURES / "algorithms"),
        "-r",
        str(requirements),
        "--memory",
        "192",
        "--timeout",
        "30",
    )
    assert out.returncode == 0, out.stderr
    assert f"created pool function {name}" in out.stdout
    config = client.get_function(name)["Configuration"]
    assert (config["MemorySize"], config["Timeout"]) == (192, 30)
    assert name in listed()

    with LambdaPool(workers=4, lambda_function=name) as pool:
        assert pool.map(fibonacci, range(12)) == [fibonacci(n) for n in range(12)]
        # The user's requirement was installed beside cloudpickle.
        assert pool.apply(importlib.metadata.version, ("six",)) == "1.17.0"

    out = lambdaworker("update", name, str(FIXTURES / "algorithms"), "-r", str(requirements))
    assert out.returncode == 0 and "is up to date" in out.stdout, out.stdout + out.stderr
    out = lambdaworker("update", name, "--timeout", "20")
    assert out.returncode == 0 and "configuration" in out.stdout, out.stderr
    assert client.get_function(name)["Configuration"]["Timeout"] == 20

    out = lambdaworker("delete", name)
    assert out.returncode == 0, out.stderr
    assert name not in listed()


def test_functions_it_did_not_make_are_refused(client, plain_function):
    assert plain_function not in listed()
    for args in (["update", plain_function, "--memory", "512"], ["delete", plain_function]):
        out = lambdaworker(*args)
        assert out.returncode == 1, out.stdout
        assert f"'{plain_function}' is not a pool function" in out.stderr
        assert "lambdaworker:pool" in out.stderr
    config = client.get_function(plain_function)["Configuration"]
    assert config["MemorySize"] != 512
