"""Small shared helpers for object metadata: timestamps, uids, generated name suffixes."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime

__all__ = [
    "CONTROLLER_UID_KEYS",
    "JOB_INDEX_KEY",
    "JOB_NAME_KEYS",
    "format_time",
    "name_suffix",
    "new_uid",
    "parse_time",
]

JOB_INDEX_KEY = "batch.kubernetes.io/job-completion-index"
JOB_NAME_KEYS = ("batch.kubernetes.io/job-name", "job-name")
CONTROLLER_UID_KEYS = ("batch.kubernetes.io/controller-uid", "controller-uid")

# The alphabet apimachinery uses for generated names: no vowels, no look-alike digits.
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC at whole seconds, as the API server serializes `metav1.Time`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def new_uid() -> str:
    return str(uuid.uuid4())


def name_suffix(length: int = 5) -> str:
    return "".join(random.choices(_SUFFIX_ALPHABET, k=length))
