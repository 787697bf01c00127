"""S3 connection settings, from arguments first and the environment second (pure: no I/O).

Environment: MODELOPS_S3_ENDPOINT (unset means AWS), AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_REGION (default us-east-1). Keys left unset fall through to
botocore's own credential chain (profiles, IRSA web identity in Kubernetes, instance roles).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["S3Settings"]

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class S3Settings:
    """How to reach an S3 endpoint, with bounded retries and timeouts chosen on purpose."""

    endpoint_url: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    region: str = "us-east-1"
    # Total attempts per request, the first included ("standard" mode: jittered backoff of at
    # most 1 s, then 2 s): a refused connection is reported within ~3 s, plus timeouts, instead
    # of hanging a submit or a runner. Throttling and 5xx answers are retried the same way.
    max_attempts: int = 3
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    # Listing page size; S3 caps it at 1000. Tests lower it to exercise pagination cheaply.
    page_size: int = 1000
    # put_file uses multipart above this size; parts of this size (S3 minimum is 5 MiB).
    multipart_threshold: int = 16 * MiB
    multipart_chunksize: int = 16 * MiB
    max_pool_connections: int = 32
    # put_if_absent sends If-None-Match: * (AWS since 2024, MinIO, SeaweedFS). Set False for a
    # server that ignores the header: put_if_absent then does head-then-put (racy, see there).
    conditional_put: bool = True

    @property
    def path_style(self) -> bool:
        """Custom endpoints (MinIO, SeaweedFS) rarely have per-bucket DNS names."""
        return self.endpoint_url is not None

    @property
    def endpoint_name(self) -> str:
        """Where requests go, for error messages."""
        return self.endpoint_url or f"AWS S3 ({self.region})"

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        endpoint_url: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        region: str | None = None,
    ) -> S3Settings:
        """Arguments win over `env` (default os.environ). Tune the rest with dataclasses.replace."""
        env = os.environ if env is None else env
        return cls(
            endpoint_url=endpoint_url or env.get("MODELOPS_S3_ENDPOINT") or None,
            access_key=access_key or env.get("AWS_ACCESS_KEY_ID") or None,
            secret_key=secret_key or env.get("AWS_SECRET_ACCESS_KEY") or None,
            region=region or env.get("AWS_REGION") or "us-east-1",
        )
