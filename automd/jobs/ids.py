"""Job ids: 26-character ULIDs in lowercase Crockford base32, sortable by creation time."""

from __future__ import annotations

import base64
import random
import threading
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
# base64's RFC 4648 base32 digits, mapped to Crockford's: one C call per id instead of a
# Python loop over 26 digits.
_FROM_RFC4648 = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _ALPHABET.encode())
# Ids must be unique and ordered, not secret (access is checked by owner, never by knowing an
# id): a PRNG seeded from the OS. os.urandom() per id released the GIL for a syscall, and
# getting it back behind the busy store writer cost ~200 us a submit under load.
_RANDOM = random.Random()  # noqa: S311


def encode_ulid(millis: int, random_bits: int) -> str:
    """26 base32 digits: 48 bits of milliseconds, then 80 random bits (2 zero bits lead)."""
    value = (millis & (1 << 48) - 1) << 80 | (random_bits & (1 << 80) - 1)
    # 20 bytes are 32 digits; the 6 dropped ones hold only the leading zero bits.
    digits = base64.b32encode(value.to_bytes(20, "big"))[6:]
    return digits.translate(_FROM_RFC4648).decode("ascii")


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
