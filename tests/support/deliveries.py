"""A consumer.Delivery for unit tests of command consumers: it remembers how it was settled."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["FakeDelivery"]


@dataclass
class FakeDelivery:
    """consumer.Delivery that remembers how it was settled (ack, nack with delay, term)."""

    data: bytes
    subject: str = "modelops.cmd.register_model"
    headers: dict[str, str] | None = None
    attempt: int = 1
    settled: list[tuple[str, float | None]] = field(default_factory=list)

    async def ack(self) -> None:
        self.settled.append(("ack", None))

    async def nack(self, delay: float | None = None) -> None:
        self.settled.append(("nack", delay))

    async def reject(self) -> None:
        self.settled.append(("term", None))
