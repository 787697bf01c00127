"""Replicate seed derivation: one function, used everywhere.

`derive_seed(base_seed, param_id, replicate)` returns an int in [0, 2**32): every common RNG
accepts it (numpy's legacy `RandomState` needs < 2**32). Within one parameter set, distinct
replicate indices always give distinct seeds: the replicate is added to a 32-bit value derived
from (base_seed, param_id) and passed through a bijective 32-bit mixer (murmur3's fmix32),
so seeds differ for indices 0 … 2**32-1. Golden vectors in tests/golden/seeds.json pin it.
"""

from __future__ import annotations

import hashlib

from .canonical import canonical_bytes
from .errors import InvalidMessage

__all__ = ["SEED_MAX", "derive_seed", "derive_seeds"]

SEED_MAX = 2**32 - 1
SEED_DOMAIN = b"modelops/seed/v1\x00"
_MASK = 0xFFFFFFFF


def _fmix32(h: int) -> int:
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _MASK
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _MASK
    h ^= h >> 16
    return h


def _set_key(base_seed: int, param_id: str) -> int:
    raw = hashlib.sha256(SEED_DOMAIN + canonical_bytes([base_seed, param_id])).digest()
    return int.from_bytes(raw[:4], "big")


def _check_int(value: int, name: str, upper: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= upper:
        raise InvalidMessage(f"{name} must be an int in [0, {upper}], got {value!r}", field=name)


def derive_seed(base_seed: int, param_id: str, replicate: int) -> int:
    """Seed for replicate `replicate` of parameter set `param_id` in a study with `base_seed`."""
    _check_int(base_seed, "base_seed", 2**63 - 1)
    _check_int(replicate, "replicate", SEED_MAX)
    return _fmix32((_set_key(base_seed, param_id) + replicate) & _MASK)


def derive_seeds(base_seed: int, param_id: str, n_replicates: int) -> list[int]:
    """Seeds for replicates 0 … n-1 of one parameter set (hashes the set key once).

    At most 2**32 replicates: beyond that the 32-bit seeds would repeat."""
    _check_int(base_seed, "base_seed", 2**63 - 1)
    _check_int(n_replicates, "n_replicates", SEED_MAX + 1)
    key = _set_key(base_seed, param_id)
    return [_fmix32((key + r) & _MASK) for r in range(n_replicates)]
