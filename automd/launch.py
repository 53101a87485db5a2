"""The `automd` command: imports the daemon with the cyclic garbage collector paused, then
runs it (daemon.main).

Importing automd leaves some 60,000 objects to the collector and almost no garbage (about
600 objects): the hundred collections that allocation triggers along the way find nearly
nothing and cost ~15 ms of CPU at every start (bench/README.md, "Footprint"). What the
import made lives as long as the process, so it is frozen out of later collections, as
daemon.py freezes what it builds.
"""

from __future__ import annotations

import gc
import sys


def main() -> int:
    gc.disable()
    try:
        from automd import daemon  # noqa: PLC0415 (the point of this module)

        gc.freeze()
    finally:
        gc.enable()
    return daemon.main()


if __name__ == "__main__":
    sys.exit(main())
