"""Reading function logs from the files workers write (the format of ``docs/logs.md``).

``<log_dir>/<function>/<worker>.log`` is a worker's current file, ``<worker>.log.1`` the one
before it, up to ``.log.<function_log_files>`` (the oldest). One line per log line:
``<timestamp>\\t<request id or ->\\t<text>``, the timestamp RFC 3339 UTC with milliseconds,
so that text order is time order.
"""

from __future__ import annotations

import heapq
import os
import re
from typing import Dict, Iterator, List, NamedTuple, Optional

_ROTATED = re.compile(r"^(?P<worker>.+)\.log(?:\.(?P<n>[0-9]+))?$")


class LogLine(NamedTuple):
    """One line of a function's log."""

    timestamp: str
    #: The call's request id; ``None`` for output between calls.
    request_id: Optional[str]
    text: str
    #: The worker that wrote it (its file's name: ``worker-0``).
    worker: str


def parse_line(line: str, worker: str) -> Optional[LogLine]:
    """A stored line (without its newline) split at its first two tabs; ``None`` when it is
    not one."""
    parts = line.split("\t", 2)
    if len(parts) != 3:
        return None
    timestamp, request_id, text = parts
    return LogLine(timestamp, None if request_id == "-" else request_id, text, worker)


def worker_files(directory: str) -> Dict[str, List[str]]:
    """Each worker's log files in ``directory``, oldest first."""
    found: Dict[str, list] = {}
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return found
    for name in names:
        match = _ROTATED.match(name)
        if match:
            n = int(match.group("n") or 0)
            found.setdefault(match.group("worker"), []).append((n, os.path.join(directory, name)))
    return {w: [p for _, p in sorted(files, reverse=True)] for w, files in found.items()}


def _read_worker(worker: str, paths: List[str]) -> Iterator[LogLine]:
    for path in paths:
        try:
            with open(path, encoding="utf-8", errors="replace", newline="\n") as f:
                for raw in f:
                    line = parse_line(raw.rstrip("\n"), worker)
                    if line is not None:
                        yield line
        except FileNotFoundError:
            # Rotated away between listing and opening.
            continue


def read_function(log_dir: str, name: str, *, request_id: Optional[str] = None) -> List[LogLine]:
    """Every line of function ``name``'s log, the workers' merged by timestamp (each
    worker's own lines in their order); only request ``request_id``'s when given."""
    files = worker_files(os.path.join(log_dir, name))
    streams = [_read_worker(w, files[w]) for w in sorted(files)]
    merged = heapq.merge(*streams, key=lambda line: line.timestamp)
    return [line for line in merged if request_id is None or line.request_id == request_id]
