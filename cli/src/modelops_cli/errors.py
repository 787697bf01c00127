"""Errors the CLI raises for a person to read: one line, a hint with the fix, an exit code.

::

    CliError
    ├── ConfigError          a bad modelops.toml, flag or environment value
    ├── StackNotRunning      no NATS URL configured and no embedded stack running here
    ├── StackError           the embedded stack could not start or stop
    ├── UnknownJob           no such job in the jobs KV
    ├── JobNotFinished       results asked of a job that is still running
    ├── JobUnsuccessful      a job ended with failed tasks, or was cancelled (watch, --wait)
    ├── StudyFileError       a study file that cannot be read or is not a valid study
    ├── ResultsNotFound      no results table for that job or output
    └── CommandRefused       a service answered a command with CommandRejected

`console.report_exception` prints `message` and `hint` and exits with `exit_code`.
"""

from __future__ import annotations

__all__ = [
    "CliError",
    "CommandRefused",
    "ConfigError",
    "JobNotFinished",
    "JobUnsuccessful",
    "ResultsNotFound",
    "StackError",
    "StackNotRunning",
    "StudyFileError",
    "UnknownJob",
]


class CliError(Exception):
    """Base of the CLI's own errors. `hint` says how to fix it; `exit_code` is what we exit with."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message


class ConfigError(CliError):
    """A configuration value (flag, MODELOPS_* variable, modelops.toml) is unusable."""


class StackNotRunning(CliError):
    """Nothing says where NATS is: no nats_url configured and no `modelops up` running here."""


class StackError(CliError):
    """The embedded stack failed to start, or did not stop when asked."""


class UnknownJob(CliError):
    """The jobs KV has no record of this job id."""

    def __init__(self, job_id: str, *, where: str) -> None:
        super().__init__(
            f"no job {job_id!r} on {where}",
            hint="list jobs with 'modelops jobs'; a job id looks like job-1a2b3c4d5e6f",
        )
        self.job_id = job_id


class JobNotFinished(CliError):
    """The job has not reached a terminal state yet."""


class JobUnsuccessful(CliError):
    """The job ended, but not every task completed (or it was cancelled)."""


class StudyFileError(CliError):
    """A study file is missing, unreadable, or not a SimulationStudy."""


class ResultsNotFound(CliError):
    """The results table asked for does not exist (yet)."""


class CommandRefused(CliError):
    """A service refused a command (CommandRejected); `field` names the part at fault."""

    def __init__(self, message: str, *, field: str | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.field = field
