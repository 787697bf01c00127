"""The baselines our bundle code is measured against: the tools a person would reach for.

`openssl dgst -sha256` is the fastest sha256 on the machine and `sha256sum` the commonest; the
raw HTTP calls are the least a client can do against the distribution API: one monolithic
upload (POST, then PUT ?digest= streaming the file) and one streaming GET per blob, hashed on
the fly. Each baseline checks its own answer, so a fast but wrong baseline cannot pass.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urljoin

import requests

__all__ = [
    "BaselineError",
    "external_sha256",
    "raw_download",
    "raw_upload",
    "sha256_file",
]

_CHUNK = 1 << 20


class BaselineError(RuntimeError):
    """A baseline gave a wrong answer or the server refused it: its timing would mean nothing."""


def sha256_file(path: Path) -> str:
    """`sha256:<hex>` with plain hashlib and 1 MiB reads (what a short script would do)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return f"sha256:{h.hexdigest()}"


def external_sha256(tool: Sequence[str], paths: Sequence[Path]) -> dict[Path, str]:
    """Digests from `openssl dgst -sha256` or `sha256sum`, all `paths` in one process."""
    argv = [*tool, *map(str, paths)]
    out = subprocess.run(argv, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise BaselineError(f"{tool[0]} failed ({out.returncode}): {out.stderr[-500:]}")
    digests: dict[Path, str] = {}
    for line in out.stdout.splitlines():
        if line.startswith("SHA2-256(") or line.startswith("SHA256("):  # openssl
            name, _, hex_ = line.partition(")= ")
            digests[Path(name.split("(", 1)[1])] = f"sha256:{hex_.strip()}"
        else:  # sha256sum: "<hex>  <path>"
            hex_, _, name = line.partition("  ")
            digests[Path(name)] = f"sha256:{hex_}"
    if len(digests) != len(paths):
        raise BaselineError(f"{tool[0]} printed {len(digests)} digests for {len(paths)} files")
    return digests


def raw_upload(session: requests.Session, base_url: str, repository: str, path: Path) -> str:
    """Hash `path`, then upload it as one blob (POST + streaming PUT); returns its digest."""
    digest = sha256_file(path)
    resp = session.post(f"{base_url}/v2/{repository}/blobs/uploads/", timeout=30)
    if resp.status_code != 202 or "Location" not in resp.headers:
        raise BaselineError(f"POST upload for {path} answered {resp.status_code}: {resp.text}")
    location = urljoin(base_url + "/", resp.headers["Location"])
    with open(path, "rb") as body:
        resp = session.put(
            location,
            params={"digest": digest},
            data=body,
            headers={"Content-Type": "application/octet-stream"},
            timeout=120,
        )
    if resp.status_code != 201:
        raise BaselineError(f"PUT of {path} as {digest} answered {resp.status_code}: {resp.text}")
    return digest


def raw_download(
    session: requests.Session,
    base_url: str,
    repository: str,
    digest: str,
    dest: Path | None,
    *,
    fsync: bool = True,
) -> int:
    """Stream blob `digest`, hashing as it comes; returns its size.

    With `dest`, also write it there (like `curl -o`), and with `fsync` make it durable.
    """
    h = hashlib.sha256()
    size = 0
    sink = open(dest, "wb") if dest is not None else contextlib.nullcontext()
    url = f"{base_url}/v2/{repository}/blobs/{digest}"
    with session.get(url, stream=True, timeout=120) as resp, sink as out:
        if resp.status_code != 200:
            raise BaselineError(f"GET blob {digest} answered {resp.status_code}")
        for chunk in resp.iter_content(chunk_size=_CHUNK):
            h.update(chunk)
            size += len(chunk)
            if out is not None:
                out.write(chunk)
        if out is not None:
            out.flush()
            if fsync:
                os.fsync(out.fileno())
    if f"sha256:{h.hexdigest()}" != digest:
        raise BaselineError(f"blob {digest} downloaded with another digest")
    return size
