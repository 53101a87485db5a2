"""Job ids: 26-character ULIDs in lowercase Crockford base32, sortable by creation time."""

from __future__ import annotations

import random
import threading
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
# Ids must be unique and ordered, not secret (access is checked by owner, never by knowing an
# id): a PRNG seeded from the OS. os.urandom() per id released the GIL for a syscall, and
# getting it back behind the busy store writer cost ~200 us a submit under load.
_RANDOM = random.Random()  # noqa: S311


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, digit = divmod(value, 32)
        chars.append(_ALPHABET[digit])
    return "".join(reversed(chars))


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
            return _encode(self._millis, 10) + _encode(self._random % (1 << 80), 16)


new_job_id = _IdGenerator()
