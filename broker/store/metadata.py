"""The topology file, `topology.json`: the durable queues (with the ids the
journal knows them by), streams, exchanges and bindings.

Small and rewritten whole on every change, atomically: written to a
temporary file, synced, renamed over the old one, and the directory synced,
so a crash leaves either the old file or the new one, never a mix.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Final

log = logging.getLogger("broker.store")

NAME: Final = "topology.json"
VERSION: Final = 1


def read_topology(directory: Path) -> dict[str, Any]:
    """The saved topology; an empty one for a new data directory.  A file that
    cannot be read is moved aside (and the broker starts empty), never deleted."""
    path = directory / NAME
    if not path.exists():
        return empty()
    try:
        topology = json.loads(path.read_text("utf-8"))
        if not isinstance(topology, dict) or topology.get("version") != VERSION:
            raise ValueError(f"not a version {VERSION} topology")
    except (OSError, ValueError) as exc:
        aside = path.with_name(NAME + ".unreadable")
        path.rename(aside)
        log.error("%s cannot be read (%s): moved aside to %s; starting without it",
                  path, exc, aside.name)
        return empty()
    return topology


def empty() -> dict[str, Any]:
    return {"version": VERSION, "next_id": 1, "queues": [], "streams": [], "exchanges": [],
            "bindings": []}


def encode_topology(topology: dict[str, Any]) -> bytes:
    return json.dumps(topology, indent=1, sort_keys=True, default=str).encode("utf-8")


def write_topology(directory: Path, data: bytes, *, sync: bool) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / NAME
    temporary = path.with_name(NAME + ".new")
    with open(temporary, "wb") as f:
        f.write(data)
        if sync:
            os.fsync(f.fileno())
    os.replace(temporary, path)
    if sync:
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
