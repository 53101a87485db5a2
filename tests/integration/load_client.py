"""Run inside the container: N concurrent connections each make one JSON-RPC call.

Usage: python -m tests.integration.load_client SOCKET N METHOD; prints a JSON summary.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from pathlib import Path

from tests.daemon.harness import Connection


async def one(path: Path, method: str, request_id: int) -> str:
    conn = await Connection.open(path)
    try:
        reply = await conn.call(method, id=request_id)
    finally:
        await conn.close()
    return "ok" if reply.get("id") == request_id and "result" in reply else "bad"


async def run(path: Path, count: int, method: str) -> dict[str, int]:
    results = await asyncio.gather(
        *(one(path, method, i) for i in range(count)), return_exceptions=True
    )
    outcomes = Counter(r if isinstance(r, str) else type(r).__name__ for r in results)
    return dict(outcomes)


def main() -> None:
    path, count, method = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    print(json.dumps(asyncio.run(run(path, count, method))))


if __name__ == "__main__":
    main()
