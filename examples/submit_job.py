"""Submit a StochasticSIR study with the ModelOps Python API: step 3 of the seed's workflow.

From the example project, once the model is registered and its bundle pushed::

    cd examples/sir
    modelops up --detach                   # or point MODELOPS_NATS_URL at a deployment
    modelops-bundle register-model model:StochasticSIR --path src/model.py --data data/
    modelops-bundle build --push           # prints local/sir@sha256:…
    python ../submit_job.py --bundle sha256:…

It draws a Latin hypercube over the space in parameters.yaml, binds it to the bundle (a bare
digest is completed with the configured registry and repository), follows the job to its end,
and prints the mean attack rate per parameter set from the `summary` output. The job id is
printed alone on the last line of stdout.
"""

from __future__ import annotations

import argparse
import sys

import pyarrow.compute as pc

from modelops_cli import api
from modelops_cli.errors import CliError
from modelops_contracts import ContractError
from modelops_contracts.sampling import build_study, load_space
from modelops_runtime.logging import configure_logging


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", required=True, help="sha256:… digest, full reference, or tag")
    p.add_argument("--space", default="parameters.yaml", help="parameter-space file")
    p.add_argument("--model", default="model:StochasticSIR", help="entrypoint module:Class")
    p.add_argument("--n", type=int, default=20, help="parameter sets (Latin hypercube)")
    p.add_argument("--replicates", type=int, default=5, help="replicates per parameter set")
    p.add_argument("--seed", type=int, default=1, help="sampling seed")
    p.add_argument("--output", default="summary", help="output table to summarise")
    p.add_argument("--no-wait", action="store_true", help="submit and exit")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    configure_logging("submit_job", level="WARNING")  # library logs only when something is wrong
    try:
        study = build_study(
            args.model,
            load_space(args.space),
            "lhs",
            n=args.n,
            seed=args.seed,
            n_replicates=args.replicates,
            name="sir-lhs",
        )
        job_id = api.submit(study, args.bundle)
        print(f"submitted {job_id}: {study.n_tasks} tasks", file=sys.stderr)
        if not args.no_wait:
            view = api.wait(job_id, check=True)  # raises if any task failed
            print(f"{view.summary()}", file=sys.stderr)
            table = api.results(job_id, output=args.output)
            if "attack_rate" in table.column_names:
                means = table.group_by("param_id").aggregate([("attack_rate", "mean")])
                print(
                    f"{means.num_rows} parameter sets; mean attack rate "
                    f"{pc.mean(means['attack_rate_mean']).as_py():.3f}",
                    file=sys.stderr,
                )
            print(f"{table.num_rows} rows in output {args.output!r}", file=sys.stderr)
    except (CliError, ContractError) as exc:  # the errors a person can fix: one line + hint
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return 1
    print(job_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
