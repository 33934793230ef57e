"""Pool functions: the code archive ``lambdaworker create`` deploys (the user's files, the
agent, a ``requirements.txt`` with cloudpickle), and the create, update, list and delete
operations, which touch only functions carrying the pool tag."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import zipfile
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

from .client import Client
from .errors import LambdaError, LambdaFunctionError

#: The tag that marks a function made by ``lambdaworker create``; its value is the version
#: of the package that made it.
POOL_TAG = "lambdaworker:pool"
#: The agent's module in the archive, and the function's entry.
AGENT_MODULE = "lambdaworker_agent"
HANDLER = f"{AGENT_MODULE}.handler"
#: The cloudpickle the agent runs with (installed by the worker from the package index).
CLOUDPICKLE = "cloudpickle==3.1.3"
#: Calls of a pool function one worker runs at once (the platform's ``max_concurrency``):
#: enough for ``LambdaPool(workers=32)``.
DEFAULT_MAX_CONCURRENCY = 32

#: Names the archive keeps for itself at its root.
_RESERVED = {
    f"{AGENT_MODULE}.py": "the agent's module",
    "requirements.txt": "the function's requirements (give yours with -r)",
    "packages.txt": "a package list, which the requirements replace (give yours with -r)",
    "lambda.json": "a configuration, which would replace the agent's entry",
}
_SKIPPED_DIRS = {"__pycache__", ".git", ".hg", ".svn", ".mypy_cache", ".pytest_cache"}
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


class DeployError(LambdaError):
    """The code or the options given cannot be deployed."""


class NotAPoolFunction(LambdaError):
    """The function exists but was not made by ``lambdaworker create``."""

    def __init__(self, name: str, action: str):
        self.name = name
        super().__init__(
            f"function {name!r} is not a pool function (it has no {POOL_TAG!r} tag: "
            f"`lambdaworker create` did not make it); refusing to {action} it"
        )


def _version() -> str:
    from . import __version__

    return __version__


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(user_file: Optional[str] = None) -> str:
    """The function's ``requirements.txt``: the user's requirements and cloudpickle. The
    worker refuses option lines (``-r``, ``--index-url``, ...), so they are refused here
    first; a user's own cloudpickle requirement is kept instead of the agent's."""
    lines: List[str] = []
    user_names = set()
    if user_file is not None:
        try:
            with open(user_file, encoding="utf-8") as f:
                text = f.read()
        except OSError as exc:
            raise DeployError(f"requirements file {user_file}: {exc.strerror}") from exc
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("-") or line.endswith("\\"):
                raise DeployError(
                    f"{user_file}:{number}: {line!r}: option lines and continuations are "
                    f"refused by the worker; give one requirement a line"
                )
            match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", line)
            if match:
                user_names.add(_normalized(match.group(0)))
            lines.append(line)
    if "cloudpickle" not in user_names:
        lines.append(CLOUDPICKLE)
    return "# made by lambdaworker create: the agent's cloudpickle and the user's requirements\n" + "".join(
        f"{line}\n" for line in lines
    )


@dataclass
class Archive:
    """A pool function's code archive."""

    data: bytes
    #: The files in it, sorted.
    names: List[str] = field(default_factory=list)

    @property
    def sha256(self) -> str:
        """As the API reports ``CodeSha256``: the base64 of the archive's SHA-256."""
        return base64.b64encode(hashlib.sha256(self.data).digest()).decode("ascii")


def _collect(paths: Sequence[str]) -> Dict[str, str]:
    """The archive's names of the user's files, each to its path: a file at the root by its
    name, a directory as a directory of its name (``__pycache__`` and VCS directories left out)."""
    found: Dict[str, str] = {}

    def add(name: str, path: str) -> None:
        if name in found:
            raise DeployError(f"{path} and {found[name]} would both be {name!r} in the archive")
        found[name] = path

    for given in paths:
        path = os.path.abspath(given)
        base = os.path.basename(path)
        if os.path.isfile(path):
            add(base, path)
        elif os.path.isdir(path):
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if d not in _SKIPPED_DIRS)
                rel = os.path.relpath(root, os.path.dirname(path))
                for name in files:
                    if not name.endswith((".pyc", ".pyo")):
                        add(f"{rel}/{name}".replace(os.sep, "/"), os.path.join(root, name))
        else:
            raise DeployError(f"{given}: no such file or directory")
    for name, what in _RESERVED.items():
        if name in found:
            raise DeployError(f"{found[name]}: {name!r} at the archive's root is {what}")
    return found


def build_archive(paths: Sequence[str], requirements_file: Optional[str] = None) -> Archive:
    """The zip of ``paths``, the agent and the requirements. It is the same bytes for the same
    files (sorted, fixed times), so an update of unchanged code is seen to change nothing."""
    files = _collect(paths)
    agent = os.path.join(os.path.dirname(os.path.abspath(__file__)), "agent.py")
    contents: Dict[str, bytes] = {}
    modes: Dict[str, int] = {}
    for name, path in files.items():
        with open(path, "rb") as f:
            contents[name] = f.read()
        modes[name] = 0o755 if os.access(path, os.X_OK) else 0o644
    with open(agent, "rb") as f:
        contents[f"{AGENT_MODULE}.py"] = f.read()
    contents["requirements.txt"] = requirements(requirements_file).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(contents):
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.external_attr = (0o100000 | modes.get(name, 0o644)) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, contents[name])
    return Archive(buffer.getvalue(), sorted(contents))


def _settings(
    memory: Optional[int],
    timeout: Optional[int],
    layers: Optional[Sequence[str]],
    max_concurrency: Optional[int],
) -> Dict[str, Any]:
    members: Dict[str, Any] = {}
    if memory is not None:
        members["MemorySize"] = memory
    if timeout is not None:
        members["Timeout"] = timeout
    if layers is not None:
        members["Layers"] = list(layers)
    if max_concurrency is not None:
        members["Lambdaworker"] = {"MaxConcurrency": max_concurrency}
    return members


def is_pool_function(client: Client, name: str) -> bool:
    """True when function ``name`` carries the pool tag."""
    return POOL_TAG in client.tags(name)


def _require_pool(client: Client, name: str, action: str) -> Dict[str, Any]:
    function = client.get_function(name)
    if POOL_TAG not in (function.get("Tags") or {}):
        raise NotAPoolFunction(name, action)
    return function


def create(
    client: Client,
    name: str,
    paths: Sequence[str],
    *,
    requirements_file: Optional[str] = None,
    memory: Optional[int] = None,
    timeout: Optional[int] = None,
    layers: Optional[Sequence[str]] = None,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
) -> Dict[str, Any]:
    """Creates pool function ``name`` from ``paths``; returns its configuration."""
    archive = build_archive(paths, requirements_file)
    return client.create_function(
        name,
        archive.data,
        Handler=HANDLER,
        Description=f"LambdaPool function (lambdaworker {_version()})",
        Tags={POOL_TAG: _version()},
        **_settings(memory, timeout, layers, max_concurrency),
    )


@dataclass
class UpdateResult:
    """What :func:`update` changed."""

    code: bool
    configuration: bool


def update(
    client: Client,
    name: str,
    paths: Sequence[str] = (),
    *,
    requirements_file: Optional[str] = None,
    memory: Optional[int] = None,
    timeout: Optional[int] = None,
    layers: Optional[Sequence[str]] = None,
    max_concurrency: Optional[int] = None,
) -> UpdateResult:
    """Updates pool function ``name``: its code when ``paths`` are given and make a different
    archive, and the settings given that differ from its own. Refuses a function that is not
    a pool function (:class:`NotAPoolFunction`)."""
    if requirements_file is not None and not paths:
        raise DeployError("-r/--requirements changes the code: give the code's paths too")
    config = _require_pool(client, name, "update")["Configuration"]
    code = False
    if paths:
        archive = build_archive(paths, requirements_file)
        if archive.sha256 != config.get("CodeSha256"):
            client.update_function_code(name, archive.data)
            code = True
    members = _settings(memory, timeout, layers, max_concurrency)
    current = {
        "MemorySize": config.get("MemorySize"),
        "Timeout": config.get("Timeout"),
        "Layers": [layer.get("Arn") for layer in config.get("Layers") or []],
    }
    # The platform's own limits are not reported, so they are always sent.
    changed = {k: v for k, v in members.items() if k not in current or current[k] != v}
    if changed:
        client.update_function_configuration(name, **changed)
    return UpdateResult(code=code, configuration=bool(changed))


def delete(client: Client, name: str) -> None:
    """Deletes pool function ``name``; refuses one that is not a pool function."""
    _require_pool(client, name, "delete")
    client.delete_function(name)


def list_pool_functions(client: Client) -> List[Dict[str, Any]]:
    """The configurations of the pool functions, by name, each with its ``Tags``."""
    found = []
    for config in client.functions():
        try:
            tags = client.tags(config["FunctionName"])
        except LambdaFunctionError as exc:
            if exc.status == 404:  # deleted since it was listed
                continue
            raise
        if POOL_TAG in tags:
            found.append({**config, "Tags": tags})
    return sorted(found, key=lambda c: c["FunctionName"])
