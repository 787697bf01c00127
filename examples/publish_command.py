"""Start a ModelOps job from another system with nothing but `modelops-contracts` and `nats-py`.

    pip install modelops-contracts nats-py
    python publish_command.py --nats nats://127.0.0.1:4222 --bundle local/sir@sha256:…

It builds a SubmitJob (three parameter sets of StochasticSIR, two replicates each), publishes
it to JetStream with a `Nats-Msg-Id` header (a resend within the two-minute duplicate window is
stored once), and follows the job's events from the start of its history until JobCompleted.
A CommandRejected (bad bundle, parameters outside the model's ranges...) ends it with exit 1.
The job id is printed alone on the last line of stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import nats
import nats.errors
from nats.js.api import DeliverPolicy

from modelops_contracts import (
    CommandRejected,
    JobCancelled,
    JobCompleted,
    JobProgress,
    JobSubmitted,
    ParameterSet,
    SimulationStudy,
    SubmitJob,
    TaskFailed,
    decode_event,
    encode,
    new_job_id,
)
from modelops_contracts.subjects import EVENTS_STREAM, REJECTED_EVENTS, job_events_filter


def _study(model: str) -> SimulationStudy:
    """An explicit design: no sampling libraries needed."""
    sets = [
        {"beta": 0.03, "gamma": 0.10, "I0": 5},
        {"beta": 0.05, "gamma": 0.10, "I0": 5},
        {"beta": 0.07, "gamma": 0.15, "I0": 20},
    ]
    return SimulationStudy(
        model=model,
        parameter_sets=[ParameterSet(params=p) for p in sets],
        n_replicates=2,
        base_seed=7,
        name="from-another-system",
    )


async def run(args: argparse.Namespace) -> int:
    nc = await nats.connect(args.nats, name="publish-command-example", max_reconnect_attempts=3)
    try:
        js = nc.jetstream()
        job_id = new_job_id()
        cmd = SubmitJob(
            correlation_id=job_id,
            source="example.publish_command",
            bundle_ref=args.bundle,
            study=_study(args.model),
            job_id=job_id,
        )
        # A refusal is an event too; listen before publishing so it cannot slip past.
        rejected: asyncio.Future[CommandRejected] = asyncio.get_running_loop().create_future()

        async def on_rejected(msg: nats.aio.msg.Msg) -> None:
            event = decode_event(msg.data)
            if event.correlation_id == cmd.correlation_id and not rejected.done():
                rejected.set_result(event)  # type: ignore[arg-type]

        await nc.subscribe(f"{REJECTED_EVENTS}.>", cb=on_rejected)
        ack = await js.publish(cmd.subject, encode(cmd), headers={"Nats-Msg-Id": cmd.id})
        print(f"SubmitJob stored in {ack.stream} at sequence {ack.seq}", file=sys.stderr)

        # The job's history from its first event: an ordered consumer replays, then follows.
        sub = await js.subscribe(
            job_events_filter(job_id),
            stream=EVENTS_STREAM,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.ALL,
        )
        deadline = asyncio.get_running_loop().time() + args.timeout
        while asyncio.get_running_loop().time() < deadline:
            if rejected.done():
                r = rejected.result()
                print(f"rejected: {r.reason} (field {r.field}; hint: {r.hint})", file=sys.stderr)
                return 1
            try:
                msg = await sub.next_msg(timeout=0.5)
            except nats.errors.TimeoutError:
                continue
            event = decode_event(msg.data)
            match event:
                case JobSubmitted():
                    print(f"{job_id}: submitted, {event.n_tasks} tasks", file=sys.stderr)
                case JobProgress():
                    done = event.completed + event.failed + event.cached
                    print(f"{job_id}: {done}/{event.total} done", file=sys.stderr)
                case TaskFailed() if event.final:
                    print(
                        f"{job_id}: task {event.task_id[:12]} failed: {event.message}",
                        file=sys.stderr,
                    )
                case JobCompleted():
                    print(
                        f"{job_id}: completed {event.completed}, failed {event.failed}, "
                        f"cached {event.cached}; results at {event.results_uri}",
                        file=sys.stderr,
                    )
                    print(job_id)
                    return 0 if event.failed == 0 else 1
                case JobCancelled():
                    print(f"{job_id}: cancelled: {event.reason}", file=sys.stderr)
                    return 1
        print(f"{job_id}: no JobCompleted within {args.timeout:g}s", file=sys.stderr)
        return 1
    finally:
        await nc.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nats", default="nats://127.0.0.1:4222", help="NATS URL")
    p.add_argument("--bundle", required=True, help="host/repo@sha256:… as 'build --push' prints")
    p.add_argument("--model", default="model:StochasticSIR", help="entrypoint module:Class")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the job")
    return asyncio.run(run(p.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
