"""A model that does nothing: what is left of a task's time is the engine's own cost.

Copied into the benchmark project beside the StochasticSIR example and registered as
`noop:NoOp`, like any user model. No outputs: neither engine writes a table per task.
"""

__all__ = ["NoOp"]


class NoOp:
    outputs: list[str] = []
    parameters = {"x": {"lower": 0.0, "upper": 1.0, "kind": "float"}}

    def simulate(self, params: dict, seed: int) -> dict:
        return {}
