"""What ``lambdaworker create`` deploys, and the CLI's commands against a fake management API
that keeps functions in memory."""

import base64
import hashlib
import io
import zipfile
from urllib.parse import unquote

import pytest

from lambdaworker import agent, cli, deploy

from fakeserver import Answer, FakeServer

pytestmark = pytest.mark.usefixtures("no_keys")


@pytest.fixture
def code(tmp_path):
    pkg = tmp_path / "algorithms"
    (pkg / "__pycache__").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "algorithms.py").write_text("def fibonacci(n):\n    return n\n")
    (pkg / "__pycache__" / "algorithms.cpython-311.pyc").write_bytes(b"\0")
    (tmp_path / "helpers.py").write_text("X = 1\n")
    (tmp_path / "requirements.txt").write_text("# numbers\nsix==1.17.0\n\n")
    return tmp_path


def unzip(data):
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def test_the_archive_holds_the_code_the_agent_and_the_requirements(code):
    archive = deploy.build_archive(
        [str(code / "algorithms"), str(code / "helpers.py")], str(code / "requirements.txt")
    )
    files = unzip(archive.data)
    assert sorted(files) == [
        "algorithms/__init__.py",
        "algorithms/algorithms.py",
        "helpers.py",
        "lambdaworker_agent.py",
        "requirements.txt",
    ]
    assert files["lambdaworker_agent.py"] == open(agent.__file__, "rb").read()
    requirements = files["requirements.txt"].decode().splitlines()
    assert requirements[1:] == ["six==1.17.0", deploy.CLOUDPICKLE]
    assert archive.sha256 == base64.b64encode(hashlib.sha256(archive.data).digest()).decode()
    # The same files make the same bytes.
    again = deploy.build_archive(
        [str(code / "algorithms"), str(code / "helpers.py")], str(code / "requirements.txt")
    )
    assert again.data == archive.data


def test_requirements_the_worker_would_refuse_are_refused_here(tmp_path):
    bad = tmp_path / "requirements.txt"
    bad.write_text("six\n--index-url http://elsewhere/\n")
    with pytest.raises(deploy.DeployError, match="requirements.txt:2"):
        deploy.requirements(str(bad))
    with pytest.raises(deploy.DeployError, match="No such file"):
        deploy.requirements(str(tmp_path / "missing.txt"))
    own = tmp_path / "own.txt"
    own.write_text("CloudPickle==3.1.1\n")
    assert deploy.requirements(str(own)).splitlines()[1:] == ["CloudPickle==3.1.1"]


def test_names_the_archive_keeps_and_clashes_are_refused(code, tmp_path):
    with pytest.raises(deploy.DeployError, match="give yours with -r"):
        deploy.build_archive([str(code / "requirements.txt")])
    other = tmp_path / "other"
    other.mkdir()
    (other / "helpers.py").write_text("")
    with pytest.raises(deploy.DeployError, match="would both be 'helpers.py'"):
        deploy.build_archive([str(code / "helpers.py"), str(other / "helpers.py")])
    with pytest.raises(deploy.DeployError, match="no such file"):
        deploy.build_archive([str(tmp_path / "nothing")])


class FakeApi:
    """The management API's function operations, in memory."""

    def __init__(self):
        self.functions = {}

    def config(self, name):
        f = self.functions[name]
        return {
            "FunctionName": name,
            "CodeSha256": base64.b64encode(hashlib.sha256(f["zip"]).digest()).decode(),
            "CodeSize": len(f["zip"]),
            "MemorySize": f.get("MemorySize", 256),
            "Timeout": f.get("Timeout", 60),
            "Layers": [{"Arn": a} for a in f.get("Layers", [])],
            "LastModified": "2026-12-02T03:04:05.000+0000",
        }

    def __call__(self, request):
        parts = request.path.split("/")[3:]
        name = unquote(parts[0]) if parts and parts[0] else None
        if request.method == "POST" and name is None:
            body = request.json()
            name = body["FunctionName"]
            if name in self.functions:
                return Answer(409, {"message": "exists"}, {"x-amzn-ErrorType": "ResourceConflictException"})
            self.functions[name] = {
                "zip": base64.b64decode(body["Code"]["ZipFile"]),
                "body": body,
                "Tags": body.get("Tags", {}),
                **{k: body[k] for k in ("MemorySize", "Timeout") if k in body},
            }
            return Answer(201, self.config(name))
        if request.method == "GET" and name is None:
            return Answer(200, {"Functions": [self.config(n) for n in sorted(self.functions)]})
        if name not in self.functions:
            return Answer(
                404,
                {"Message": f"Function not found: {name}"},
                {"x-amzn-ErrorType": "ResourceNotFoundException"},
            )
        f = self.functions[name]
        if request.method == "GET":
            return Answer(200, {"Configuration": self.config(name), "Tags": f["Tags"]})
        if request.method == "PUT" and parts[1:] == ["code"]:
            f["zip"] = base64.b64decode(request.json()["ZipFile"])
            return Answer(200, self.config(name))
        if request.method == "PUT" and parts[1:] == ["configuration"]:
            f.update(request.json())
            return Answer(200, self.config(name))
        if request.method == "DELETE":
            del self.functions[name]
            return Answer(204)
        return Answer(400, {"message": "unknown operation"})


@pytest.fixture
def api():
    fake = FakeApi()
    fake.functions["plain"] = {"zip": b"PK", "Tags": {"team": "x"}}
    with FakeServer(fake) as server:
        fake.server = server
        yield fake


def run(api, *args):
    return cli.main([*args[:1], "--endpoint", api.server.url, *args[1:]])


def test_create_deploys_a_tagged_pool_function(api, code, capsys):
    assert (
        run(
            api,
            "create",
            "algorithms",
            str(code / "algorithms"),
            "-r",
            str(code / "requirements.txt"),
            "--memory",
            "512",
            "--timeout",
            "30",
            "--layers",
            "arn:aws:lambda:us-east-1:000000000000:layer:l:1",
        )
        == 0
    )
    body = api.functions["algorithms"]["body"]
    assert body["Handler"] == "lambdaworker_agent.handler"
    assert body["Tags"] == {deploy.POOL_TAG: deploy._version()}
    assert body["Lambdaworker"] == {"MaxConcurrency": 32}
    assert (body["MemorySize"], body["Timeout"]) == (512, 30)
    assert body["Layers"] == ["arn:aws:lambda:us-east-1:000000000000:layer:l:1"]
    assert "lambdaworker_agent.py" in unzip(api.functions["algorithms"]["zip"])
    assert "created pool function algorithms" in capsys.readouterr().out
    assert run(api, "create", "algorithms", str(code / "helpers.py")) == 1
    assert "ResourceConflictException" in capsys.readouterr().err


def test_list_shows_only_pool_functions(api, code, capsys):
    run(api, "create", "pool-a", str(code / "helpers.py"))
    capsys.readouterr()
    assert run(api, "list") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["NAME", "MEMORY", "TIMEOUT", "LAST", "MODIFIED"]
    assert [line.split()[0] for line in out[1:]] == ["pool-a"]


def test_update_changes_only_what_differs(api, code, capsys):
    run(api, "create", "pool-a", str(code / "helpers.py"))
    before = len(api.server.requests)
    assert run(api, "update", "pool-a", str(code / "helpers.py"), "--timeout", "60") == 0
    assert "is up to date" in capsys.readouterr().out
    assert [r.method for r in api.server.requests[before:]] == ["GET"]
    (code / "helpers.py").write_text("X = 2\n")
    assert run(api, "update", "pool-a", str(code / "helpers.py"), "--memory", "1024") == 0
    assert "code and configuration" in capsys.readouterr().out
    assert unzip(api.functions["pool-a"]["zip"])["helpers.py"] == b"X = 2\n"
    assert api.functions["pool-a"]["MemorySize"] == 1024
    assert run(api, "update", "pool-a") == 1
    assert "nothing to update" in capsys.readouterr().err


def test_functions_not_made_by_create_are_refused(api, capsys):
    for args in (["update", "plain", "--memory", "512"], ["delete", "plain"]):
        before = len(api.server.requests)
        assert run(api, *args) == 1
        err = capsys.readouterr().err
        assert "'plain' is not a pool function" in err and deploy.POOL_TAG in err
        assert [r.method for r in api.server.requests[before:]] == ["GET"]
    assert "plain" in api.functions
    assert run(api, "delete", "missing") == 1
    assert "ResourceNotFoundException" in capsys.readouterr().err


def test_delete_removes_a_pool_function(api, code, capsys):
    run(api, "create", "pool-a", str(code / "helpers.py"))
    assert run(api, "delete", "pool-a") == 0
    assert "pool-a" not in api.functions


def test_bad_settings_are_usage_errors(api, code, capsys):
    for args in (["--memory", "100"], ["--timeout", "901"], ["--max-concurrency", "0"]):
        with pytest.raises(SystemExit) as info:
            run(api, "create", "x", str(code / "helpers.py"), *args)
        assert info.value.code == 2
    assert "x" not in api.functions
