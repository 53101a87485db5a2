"""job.get on a million finished jobs under other table layouts: what clustering would buy.

    .venv/bin/python -m bench.bigdb_layouts [--jobs 1000000] [--plan bench|real] [--rounds 7]

bench/bigdb.py's job.get of a random job of the whole history reads 1.4-1.5x slower from the
1M-job store than from the 100-job one. This measures what the candidate layouts change, in one
run: each is applied to copies of bench/bigdb.py's two cached stores (the SQL a migration
would run, timed on the 1M copy, in one transaction with foreign keys off), then
`JobQueries.get` uncached (the API's read path, as bench/bigdb.py times it) reads random jobs
of each copy, interleaved: `--rounds` rounds of 2,000 per copy, the median of the rounds'
medians. Layouts:
- as is: `jobs` a rowid table (its id's autoindex, then the row), `attempts` WITHOUT ROWID by
  (job_id, number), `job_events` a rowid table with the index (job_id, at);
- events covered: `job_events_by_job` holds every column job.get reads (one B-tree per job);
- jobs clustered: `jobs` WITHOUT ROWID, clustered by id (one B-tree search instead of two);
- both.
Each also with `PRAGMA mmap_size` on the read connection (a page read without a copy). For each
layout the 1M copy's B-trees job.get searches are described (dbstat: depth, pages, overflow
pages). `--plan real` builds (once, cached beside bench/bigdb.py's) stores whose jobs carry a
real RunPlan (hello.toml's, 1.2 KB) instead of bench/history.py's 50-byte one. Writes
bench/results/bigdb-layouts-PLAN.json. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from automd.definitions.loader import load_file
from automd.jobs.plan import plan_json
from automd.jobs.queries import JobQueries
from automd.store.db import DB_FILENAME, Store
from bench.bigdb import CHECKOUT, EMPTY_JOBS, cached_store

MMAP_BYTES = 4 << 30
TREES = ("jobs", "sqlite_autoindex_jobs_1", "attempts", "job_events", "job_events_by_job")
EVENTS_COVERED = (
    "DROP INDEX job_events_by_job",
    "CREATE INDEX job_events_by_job ON job_events (job_id, at, attempt, state, detail)",
)


def jobs_clustered(conn: sqlite3.Connection) -> list[str]:
    """`jobs` again as WITHOUT ROWID, from its own schema text (whatever columns migrations
    added), its rows copied in id order, its indexes made again."""
    (table,) = conn.execute("SELECT sql FROM sqlite_schema WHERE name = 'jobs'").fetchone()
    indexes = [sql for (sql,) in conn.execute(
        "SELECT sql FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'jobs' "
        "AND sql IS NOT NULL")]  # fmt: skip
    columns = ", ".join(row[1] for row in conn.execute("PRAGMA table_info(jobs)"))
    return [
        table.replace("CREATE TABLE jobs", "CREATE TABLE jobs_clustered", 1) + ", WITHOUT ROWID",
        f"INSERT INTO jobs_clustered ({columns}) SELECT {columns} FROM jobs ORDER BY id",
        "DROP TABLE jobs",
        "ALTER TABLE jobs_clustered RENAME TO jobs",
        *indexes,
    ]


def statements(layout: str, conn: sqlite3.Connection) -> list[str]:
    clustered = jobs_clustered(conn) if layout in ("jobs clustered", "both") else []
    covered = list(EVENTS_COVERED) if layout in ("events covered", "both") else []
    return clustered + covered


LAYOUTS = ("as is", "events covered", "jobs clustered", "both")


def relayout(path: Path, layout: str) -> float:
    """Apply `layout` to the store at `path` in one transaction; the seconds it took."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA foreign_keys = OFF")  # as SQLite's table-rebuild procedure says
        started = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        for sql in statements(layout, conn):
            conn.execute(sql)
        conn.execute("COMMIT")
        seconds = time.perf_counter() - started
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return seconds


def trees(path: Path) -> dict[str, dict[str, int]]:
    """Depth, pages, interior and overflow pages of the B-trees job.get searches."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT name, max(length(path) - length(replace(path, '/', ''))), count(*), "
            "sum(pagetype = 'internal'), sum(pagetype = 'overflow') FROM dbstat "
            f"WHERE name IN ({', '.join('?' * len(TREES))}) GROUP BY name",
            TREES,
        ).fetchall()
    finally:
        conn.close()
    return {name: {"depth": depth, "pages": pages, "interior": interior, "overflow": overflow}
            for name, depth, pages, interior, overflow in rows}  # fmt: skip


def _only_the_database(_directory: str, names: list[str]) -> list[str]:
    return [name for name in names if name != DB_FILENAME]


async def prepare(source: Path, directory: Path, layout: str) -> float:
    """A copy of `source`'s store in `directory`, migrated by automd, then re-laid out."""
    await asyncio.to_thread(shutil.copytree, source, directory, ignore=_only_the_database)
    store = await Store.open(directory)  # automd's own migrations first
    await store.close()
    return await asyncio.to_thread(relayout, directory / DB_FILENAME, layout)


async def measure(copies: dict[tuple[str, str], Path], rounds: int) -> dict[str, float]:
    """Median job.get (us) per layout, size and mmap, interleaved over `rounds` rounds."""
    readers: dict[tuple[str, str, bool], tuple[Store, JobQueries, list[str]]] = {}
    try:
        for (layout, size), directory in copies.items():
            for mmap in (False, True):
                store = await Store.open(directory)
                if mmap:
                    store.lookup(lambda conn: conn.execute(f"PRAGMA mmap_size = {MMAP_BYTES}"))
                ids = [row[0] for row in await store.fetch_all("SELECT id FROM jobs")]
                readers[layout, size, mmap] = (store, JobQueries(store, cache_size=0), ids)
        picks = random.Random(1)
        medians: dict[tuple[str, str, bool], list[float]] = {key: [] for key in readers}
        for _ in range(rounds):
            for key, (_store, queries, ids) in readers.items():
                times = []
                for job_id in picks.choices(ids, k=2000):
                    started = time.perf_counter()
                    await queries.get(job_id)
                    times.append(time.perf_counter() - started)
                medians[key].append(statistics.median(times) * 1e6)
    finally:
        for store, _queries, _ids in readers.values():
            await store.close()
    return {f"{layout}|{size}|{'mmap' if mmap else 'read'}": statistics.median(values)
            for (layout, size, mmap), values in medians.items()}  # fmt: skip


async def run(stores: dict[str, Path], work: Path, rounds: int) -> dict[str, Any]:
    copies: dict[tuple[str, str], Path] = {}
    results: dict[str, Any] = {"relayout_s": {}, "db_mb": {}, "trees": {}}
    for layout in LAYOUTS:
        for size, source in stores.items():
            directory = work / f"{LAYOUTS.index(layout)}-{size}"
            seconds = await prepare(source, directory, layout)
            copies[layout, size] = directory
            if size == "big":
                results["relayout_s"][layout] = seconds
                db = directory / DB_FILENAME
                results["db_mb"][layout] = db.stat().st_size / 1e6
                results["trees"][layout] = await asyncio.to_thread(trees, db)
                print(f"{layout}: re-laid out in {seconds:.1f} s", flush=True)
    results["get_us"] = await measure(copies, rounds)
    return results


def report(results: dict[str, Any]) -> None:
    get = results["get_us"]
    print(f"{'job.get uncached, any job (us)':32} {'empty':>7} {'1M':>7} {'ratio':>6}   "
          f"{'mmap: empty':>11} {'1M':>7} {'ratio':>6}   relayout of 1M")  # fmt: skip
    for layout in LAYOUTS:
        cells = []
        for how in ("read", "mmap"):
            e, b = get[f"{layout}|empty|{how}"], get[f"{layout}|big|{how}"]
            cells.append(f"{e:7.1f} {b:7.1f} {b / e:5.2f}x")
        print(f"{layout:32} {cells[0]}   {cells[1]:>26}   {results['relayout_s'][layout]:5.1f} s")
    for layout in LAYOUTS:
        described = ", ".join(f"{name} {t['depth']} levels {t['pages']} pages"
                              + (f" ({t['overflow']} overflow)" if t["overflow"] else "")
                              for name, t in sorted(results["trees"][layout].items()))  # fmt: skip
        print(f"{layout} ({results['db_mb'][layout]:.0f} MB): {described}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--cache", type=Path, default=Path("/var/cache/automd-tests/bigdb"))
    parser.add_argument("--plan", choices=("bench", "real"), default="bench")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    plan = None
    if args.plan == "real":
        hello = load_file(CHECKOUT / "etc/automd/jobs.d/hello.toml")
        assert not isinstance(hello, list), hello
        plan = ("realplan", plan_json(hello, {"name": "world"}))
    stores = {"empty": cached_store(args.cache, EMPTY_JOBS, False, plan)[0],
              "big": cached_store(args.cache, args.jobs, False, plan)[0]}  # fmt: skip
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="automd-bigdb-layouts-") as tmp:
        results = asyncio.run(run(stores, Path(tmp), args.rounds))
    results.update(jobs=args.jobs, plan=args.plan, plan_bytes=len(plan[1]) if plan else 50,
                   load1_before=load_before, load1_after=os.getloadavg()[0])  # fmt: skip
    report(results)
    print(f"load average: {load_before:.1f} before, {results['load1_after']:.1f} after")
    out = CHECKOUT / "bench/results"
    out.mkdir(exist_ok=True)
    (out / f"bigdb-layouts-{args.plan}.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
