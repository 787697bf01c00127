"""RegistryStore: bundles in an OCI distribution registry, through an oras client's session.

oras's own push/pull and request wrapper do not fit (they hash for themselves, read whole
files, and retry with sleeps of up to minutes), so we speak the distribution API over the
oras client's `requests` session and use oras for the token flow. Every request gets bounded
retries with exponential backoff on connection errors, then StoreUnavailable; 401/403 after
answering the challenge is StoreAuthError. Uploads stream from the file in chunks (one chunk
in memory at a time), so memory does not grow with file size.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import oras.provider
import requests
import structlog

from ..errors import BundleNotFound, IntegrityError, StoreAuthError, StoreError, StoreUnavailable
from ..oci import MANIFEST_MEDIA_TYPE, sha256_digest
from .base import BlobStream, ProgressFn, check_digest, check_repository, check_tag, is_loopback
from .registry_auth import ENV_PASSWORD, ENV_USERNAME, RegistryAuth, find_credentials

__all__ = ["RegistryStore"]

log = structlog.get_logger(__name__)

DEFAULT_CHUNK = 8 << 20  # large enough for throughput, small enough for flat memory
MAX_MANIFEST_BYTES = 4 << 20
_RETRY_STATUS = frozenset({502, 503, 504})
_UNAVAILABLE_HINT = "is it running? check --registry / MODELOPS_REGISTRY"
_AUTH_HINT = f"run 'docker login HOST' or set {ENV_USERNAME} / {ENV_PASSWORD}"


class RegistryStore:
    """An OCI distribution registry (`host[:port]`) as a bundle store."""

    def __init__(
        self,
        host: str,
        *,
        insecure: bool | None = None,
        credentials: tuple[str, str] | None = None,
        retries: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        chunk_size: int = DEFAULT_CHUNK,
        timeout: tuple[float, float] = (5.0, 120.0),
    ) -> None:
        """`insecure=None` means plain HTTP for loopback hosts, HTTPS otherwise."""
        if insecure is None:
            insecure = is_loopback(host)
        elif insecure and not is_loopback(host):
            log.warning("registry.insecure_forced", host=host)
        self.host = host
        self.ref_host = host
        self.insecure = insecure
        self._base = f"{'http' if insecure else 'https'}://{host}"
        self._client = oras.provider.Registry(hostname=host, insecure=insecure)
        self._session: requests.Session = self._client.session
        self._auth = RegistryAuth(
            host, self._client.auth, credentials=credentials or find_credentials(host)
        )
        self._retries = retries
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._chunk = chunk_size
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"RegistryStore({self._base!r})"

    # -- one request: retries, auth, error mapping ----------------------------------------

    def _send(
        self, method: str, url: str, headers: dict[str, str], what: str, **kw: Any
    ) -> requests.Response:
        resp = self._session.request(
            method, url, headers={**self._auth.header(), **headers}, timeout=self._timeout, **kw
        )
        if resp.status_code not in (401, 403):
            return resp
        resp.close()
        if self._auth.answer(resp):
            resp = self._session.request(
                method, url, headers={**self._auth.header(), **headers}, timeout=self._timeout, **kw
            )
            if resp.status_code not in (401, 403):
                return resp
        raise StoreAuthError(
            f"registry {self.host} refused access ({resp.status_code}) for {what}"
            + ("" if self._auth.has_credentials else " and we have no credentials for it"),
            hint=_AUTH_HINT.replace("HOST", self.host),
        )

    def _request(
        self, method: str, url: str, *, what: str, headers: dict[str, str] | None = None, **kw: Any
    ) -> requests.Response:
        """Send with bounded retries; connection errors become StoreUnavailable at the end."""
        url = url if url.startswith(("http://", "https://")) else self._base + url
        delay = self._backoff
        for attempt in range(self._retries + 1):
            last = attempt == self._retries
            try:
                resp = self._send(method, url, headers or {}, what, **kw)
            except requests.exceptions.SSLError as exc:  # not transient: do not retry
                raise StoreError(
                    f"TLS with registry {self.host} failed for {what}: {exc}",
                    hint=f"for a plain-HTTP registry use http://{self.host} and --insecure",
                ) from exc
            except (requests.ConnectionError, requests.Timeout) as exc:
                if last:
                    raise StoreUnavailable(
                        f"cannot reach registry {self.host} for {what} after "
                        f"{self._retries + 1} attempts: {type(exc).__name__}",
                        hint=_UNAVAILABLE_HINT,
                    ) from exc
                log.warning(
                    "registry.retry", host=self.host, what=what, attempt=attempt + 1, error=str(exc)
                )
            except requests.RequestException as exc:
                raise StoreError(
                    f"request to registry {self.host} for {what} failed: {exc}"
                ) from exc
            else:
                if resp.status_code not in _RETRY_STATUS or last:
                    return resp
                resp.close()
                log.warning("registry.retry", host=self.host, what=what, status=resp.status_code)
            # Why sleep here: the registry may be restarting; give it time, but boundedly.
            time.sleep(delay)
            delay = min(delay * 2, self._max_backoff)
        raise AssertionError("unreachable")  # pragma: no cover

    def _fail(self, resp: requests.Response, what: str) -> StoreError:
        """The error for an unexpected answer, with the registry's own error codes."""
        codes = _error_codes(resp)
        if resp.status_code == 404:
            return BundleNotFound(
                f"{what} not found on registry {self.host}" + (f" ({codes})" if codes else ""),
                hint="check the reference and repository, or push it with 'modelops build --push'",
            )
        return StoreError(
            f"registry {self.host} answered {resp.status_code} {resp.reason} to {what}"
            + (f": {codes}" if codes else "")
        )

    # -- blobs ------------------------------------------------------------------------------

    def _blob_url(self, repository: str, digest: str) -> str:
        return f"/v2/{check_repository(repository)}/blobs/{check_digest(digest)}"

    def blob_exists(self, repository: str, digest: str) -> bool:
        what = f"blob {digest} in {repository}"
        resp = self._request("HEAD", self._blob_url(repository, digest), what=what)
        resp.close()
        if resp.status_code == 200:
            return True
        if resp.status_code == 404:
            return False
        raise self._fail(resp, what)

    def _start_upload(self, repository: str, what: str) -> str:
        url = f"/v2/{check_repository(repository)}/blobs/uploads/"
        resp = self._request("POST", url, what=what, headers={"Content-Length": "0"})
        resp.close()
        location = resp.headers.get("Location")
        if resp.status_code != 202 or not location:
            raise self._fail(resp, what)
        return urljoin(self._base + "/", location)

    def _finish_upload(self, location: str, digest: str, what: str, data: bytes = b"") -> None:
        resp = self._request(
            "PUT",
            location,
            what=what,
            params={"digest": digest},
            data=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        resp.close()
        if resp.status_code == 400 and "DIGEST_INVALID" in _error_codes(resp):
            raise IntegrityError(
                f"registry {self.host} refused {what}: its content does not hash to {digest}",
                hint="the file changed after it was registered; register it again",
            )
        if resp.status_code not in (201, 204):
            raise self._fail(resp, what)

    def push_blob(
        self,
        repository: str,
        digest: str,
        path: Path,
        size: int,
        progress: ProgressFn | None = None,
    ) -> int:
        """Upload `path` as blob `digest`: one PUT if small, else chunked PATCHes, then PUT."""
        what = f"upload of {path} as {digest} to {repository}"
        check_digest(digest)
        with open(path, "rb") as f:
            actual = f.seek(0, 2)
            f.seek(0)
            if actual != size:
                raise IntegrityError(
                    f"{path} has {actual} bytes, expected {size}", hint="register it again"
                )
            location = self._start_upload(repository, what)
            if size <= self._chunk:
                data = f.read()
                self._finish_upload(location, digest, what, data)
                if progress:
                    progress(len(data))
                return len(data)
            sent = 0
            while chunk := f.read(self._chunk):
                resp = self._request(
                    "PATCH",
                    location,
                    what=what,
                    data=chunk,
                    headers={
                        "Content-Type": "application/octet-stream",
                        "Content-Range": f"{sent}-{sent + len(chunk) - 1}",
                    },
                )
                resp.close()
                if resp.status_code != 202 or not resp.headers.get("Location"):
                    raise self._fail(resp, what)
                location = urljoin(self._base + "/", resp.headers["Location"])
                sent += len(chunk)
                if progress:
                    progress(len(chunk))
            if sent != size:
                raise IntegrityError(
                    f"{path} changed size while uploading ({sent} of {size} bytes)"
                )
            self._finish_upload(location, digest, what)
            return sent

    def push_blob_bytes(self, repository: str, digest: str, data: bytes) -> None:
        if sha256_digest(data) != check_digest(digest):
            raise IntegrityError(f"bytes given for blob {digest} hash to {sha256_digest(data)}")
        what = f"upload of blob {digest} to {repository}"
        self._finish_upload(self._start_upload(repository, what), digest, what, data)

    def open_blob(self, repository: str, digest: str) -> BlobStream:
        what = f"blob {digest} in {repository}"
        resp = self._request("GET", self._blob_url(repository, digest), what=what, stream=True)
        if resp.status_code != 200:
            error = self._fail(resp, what)
            resp.close()
            raise error
        return self._stream(resp, what)

    def _stream(self, resp: requests.Response, what: str) -> BlobStream:
        try:
            yield from resp.iter_content(chunk_size=1 << 20)
        except requests.RequestException as exc:
            raise StoreUnavailable(
                f"registry {self.host} broke off while sending {what}: {exc}",
                hint=_UNAVAILABLE_HINT,
            ) from exc
        finally:
            resp.close()

    # -- manifests and tags -----------------------------------------------------------------

    def _manifest_url(self, repository: str, reference: str) -> str:
        ref = check_digest(reference) if reference.startswith("sha256:") else check_tag(reference)
        return f"/v2/{check_repository(repository)}/manifests/{ref}"

    def push_manifest(self, repository: str, manifest_bytes: bytes, reference: str) -> str:
        digest = sha256_digest(manifest_bytes)
        if reference.startswith("sha256:") and reference != digest:
            raise IntegrityError(f"manifest pushed as {reference} hashes to {digest}")
        what = f"manifest {repository}:{reference}"
        resp = self._request(
            "PUT",
            self._manifest_url(repository, reference),
            what=what,
            data=manifest_bytes,
            headers={"Content-Type": MANIFEST_MEDIA_TYPE},
        )
        resp.close()
        if resp.status_code != 201:
            raise self._fail(resp, what)
        echoed = resp.headers.get("Docker-Content-Digest")
        if echoed and echoed != digest:
            raise IntegrityError(
                f"registry {self.host} stored {what} as {echoed}, expected {digest}"
            )
        return digest

    def get_manifest(self, repository: str, reference: str) -> bytes:
        sep = "@" if reference.startswith("sha256:") else ":"
        what = f"manifest {repository}{sep}{reference}"
        resp = self._request(
            "GET",
            self._manifest_url(repository, reference),
            what=what,
            headers={"Accept": MANIFEST_MEDIA_TYPE},
            stream=True,
        )
        try:
            if resp.status_code != 200:
                raise self._fail(resp, what)
            body = bytearray()
            for chunk in resp.iter_content(chunk_size=1 << 16):
                body += chunk
                if len(body) > MAX_MANIFEST_BYTES:
                    raise StoreError(f"{what} on {self.host} is larger than 4 MiB: not a bundle")
            return bytes(body)
        except requests.RequestException as exc:
            raise StoreUnavailable(
                f"registry {self.host} broke off sending {what}", hint=_UNAVAILABLE_HINT
            ) from exc
        finally:
            resp.close()

    def resolve(self, repository: str, tag: str) -> str:
        what = f"tag {repository}:{tag}"
        resp = self._request(
            "HEAD",
            self._manifest_url(repository, tag),
            what=what,
            headers={"Accept": MANIFEST_MEDIA_TYPE},
        )
        resp.close()
        if resp.status_code != 200:
            raise self._fail(resp, what)
        digest = resp.headers.get("Docker-Content-Digest")
        if digest:
            return check_digest(digest)
        return sha256_digest(self.get_manifest(repository, tag))

    def close(self) -> None:
        self._session.close()


def _error_codes(resp: requests.Response) -> str:
    """`CODE: message` pairs from a distribution error body ('' if none)."""
    try:
        errors = resp.json().get("errors") or []
    except (ValueError, AttributeError, requests.RequestException):
        return ""
    return "; ".join(
        f"{e.get('code', '?')}: {e.get('message', '')}" for e in errors if isinstance(e, dict)
    )
