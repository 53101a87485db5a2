"""Job ids: 26-character ULIDs in lowercase Crockford base32, sortable by creation time."""

from __future__ import annotations

import random
import threading
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
# Every pair of digits (10 bits): an id is 13 lookups rather than 26 divmods.
_PAIRS = [high + low for high in _ALPHABET for low in _ALPHABET]
_SHIFTS = tuple(range(120, -1, -10))
# Ids must be unique and ordered, not secret (access is checked by owner, never by knowing an
# id): a PRNG seeded from the OS. os.urandom() per id released the GIL for a syscall, and
# getting it back behind the busy store writer cost ~200 us a submit under load.
_RANDOM = random.Random()  # noqa: S311


def encode_ulid(millis: int, random_bits: int) -> str:
    """26 base32 digits: 48 bits of milliseconds, then 80 random bits (2 zero bits lead)."""
    value = (millis & (1 << 48) - 1) << 80 | (random_bits & (1 << 80) - 1)
    return "".join([_PAIRS[(value >> shift) & 1023] for shift in _SHIFTS])


class _IdGenerator:
    """48 bits of milliseconds then 80 random bits; strictly increasing within a process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._millis = 0
        self._random = 0

    def __call__(self) -> str:
        with self._lock:
            millis = time.time_ns() // 1_000_000
            if millis <= self._millis:
                # Same (or, if the clock stepped back, an earlier) millisecond: stay ordered.
                self._random += 1
            else:
                self._millis = millis
                self._random = _RANDOM.getrandbits(80)
            return encode_ulid(self._millis, self._random)


new_job_id = _IdGenerator()
