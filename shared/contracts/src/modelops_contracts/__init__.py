"""ModelOps contracts: every message and domain type, canonical ids, seeds and sampling.

Pure: no I/O. Other systems install just this package to publish our commands.
"""

from .canonical import canonical_bytes, domain_digest
from .codec import decode, decode_command, decode_event, decode_message, encode
from .domain import (
    ParameterSet,
    ParameterSpace,
    ParameterSpec,
    Resources,
    SimBatch,
    SimJob,
    SimTask,
    SimulationStudy,
    new_job_id,
)
from .entrypoint import Entrypoint, parse_entrypoint
from .errors import ContractError, InvalidBundleRef, InvalidEntrypoint, InvalidMessage, NotCanonical
from .hashing import model_digest, param_id, task_id
from .messages import (
    BuildBundle,
    BundleFailed,
    BundlePushed,
    CancelJob,
    Command,
    CommandRejected,
    Event,
    JobCancelled,
    JobCompleted,
    JobProgress,
    JobSubmitted,
    LaunchOptions,
    Message,
    ModelRegistered,
    RegisterModel,
    SubmitJob,
    TaskCompleted,
    TaskFailed,
    TaskMetrics,
)
from .outputs import OutputRef, output_ref, parse_output_ref
from .refs import BundleRef, parse_bundle_ref
from .registry import ModelEntry, Registry, TrackedFile, check_relative_path
from .seeds import SEED_MAX, derive_seed, derive_seeds

__all__ = [
    "SEED_MAX",
    "BuildBundle",
    "BundleFailed",
    "BundlePushed",
    "BundleRef",
    "CancelJob",
    "Command",
    "CommandRejected",
    "ContractError",
    "Entrypoint",
    "Event",
    "InvalidBundleRef",
    "InvalidEntrypoint",
    "InvalidMessage",
    "JobCancelled",
    "JobCompleted",
    "JobProgress",
    "JobSubmitted",
    "LaunchOptions",
    "Message",
    "ModelEntry",
    "ModelRegistered",
    "NotCanonical",
    "OutputRef",
    "ParameterSet",
    "ParameterSpace",
    "ParameterSpec",
    "RegisterModel",
    "Registry",
    "Resources",
    "SimBatch",
    "SimJob",
    "SimTask",
    "SimulationStudy",
    "SubmitJob",
    "TaskCompleted",
    "TaskFailed",
    "TaskMetrics",
    "TrackedFile",
    "canonical_bytes",
    "check_relative_path",
    "decode",
    "decode_command",
    "decode_event",
    "decode_message",
    "derive_seed",
    "derive_seeds",
    "domain_digest",
    "encode",
    "model_digest",
    "new_job_id",
    "output_ref",
    "param_id",
    "parse_bundle_ref",
    "parse_entrypoint",
    "parse_output_ref",
    "task_id",
]

from .jobs import JobRecord, JobSpec, JobState, blob_keys

__all__ += ["JobRecord", "JobSpec", "JobState", "blob_keys"]
