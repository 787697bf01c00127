"""Job records in the JetStream KV bucket `modelops-jobs` (port: JobRecords)."""

from __future__ import annotations

import nats.js.errors
import structlog
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from modelops_contracts import JobRecord, decode, encode
from modelops_contracts.subjects import KV_JOBS

from ..errors import SubmitterError
from ..ports import RecordChange

__all__ = ["KvJobRecords"]

log = structlog.get_logger(__name__)

_MAX_CAS_TRIES = 20  # writers are a few tasks of one process: conflicts settle in a few tries


class KvJobRecords:
    """JobRecords over a KV bucket; `update` is a compare-and-set loop on the revision."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    @classmethod
    async def open(cls, js: JetStreamContext) -> KvJobRecords:
        return cls(await js.key_value(KV_JOBS))

    async def _get(self, job_id: str) -> tuple[JobRecord, int] | None:
        try:
            entry = await self.kv.get(job_id)
        except nats.js.errors.KeyNotFoundError:
            return None
        if entry.value is None:
            return None
        return decode(entry.value, JobRecord), entry.revision or 0

    async def get(self, job_id: str) -> JobRecord | None:
        found = await self._get(job_id)
        return found[0] if found else None

    async def create(self, record: JobRecord) -> bool:
        try:
            await self.kv.create(record.job_id, encode(record))
        except nats.js.errors.KeyWrongLastSequenceError:
            return False
        return True

    async def update(self, job_id: str, change: RecordChange) -> JobRecord | None:
        for _ in range(_MAX_CAS_TRIES):
            found = await self._get(job_id)
            if found is None:
                return None
            current, revision = found
            new = change(current)
            if new is None or new == current:
                return current
            try:
                await self.kv.update(job_id, encode(new), last=revision)
            except nats.js.errors.KeyWrongLastSequenceError:
                continue  # someone wrote in between: apply the change to their version
            return new
        raise SubmitterError(
            f"job record {job_id} changed under every one of {_MAX_CAS_TRIES} updates",
            hint="is another submitter writing the same job?",
        )

    async def list(self) -> list[JobRecord]:
        try:
            keys = await self.kv.keys()
        except nats.js.errors.NoKeysError:
            return []
        records = []
        for key in keys:
            record = await self.get(key)
            if record is not None:
                records.append(record)
        return records
