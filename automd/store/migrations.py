"""Numbered schema migrations; each runs once, in order, inside one transaction."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    version: int
    summary: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "meta: facts about the store itself (creation time, creating version)",
        ("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT",),
    ),
    Migration(
        2,
        "jobs, their attempts and state events, idempotency keys",
        (
            """CREATE TABLE jobs (
                id TEXT PRIMARY KEY,
                definition TEXT NOT NULL,
                params TEXT NOT NULL,            -- JSON, secret values redacted
                plan TEXT NOT NULL,              -- JSON RunPlan frozen at submit
                state TEXT NOT NULL,
                caller_uid INTEGER NOT NULL,
                caller_pid INTEGER NOT NULL,
                idempotency_key TEXT,
                created_at REAL NOT NULL,
                updated_at REAL NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                max_attempts INTEGER NOT NULL,
                next_attempt_at REAL,
                cancel_requested INTEGER NOT NULL DEFAULT 0,
                result TEXT,
                exit_code INTEGER,
                signal INTEGER,
                finished_at REAL
            ) STRICT""",
            """CREATE INDEX jobs_unfinished ON jobs (state)
                WHERE state IN ('queued', 'starting', 'running', 'waiting_retry')""",
            "CREATE INDEX jobs_by_definition ON jobs (definition, id)",
            """CREATE TABLE attempts (
                job_id TEXT NOT NULL REFERENCES jobs (id),
                number INTEGER NOT NULL,
                unit TEXT NOT NULL UNIQUE,
                invocation_id TEXT,
                state TEXT NOT NULL,
                result TEXT,
                exit_code INTEGER,
                signal INTEGER,
                outcome_source TEXT,
                started_at REAL NOT NULL,
                finished_at REAL,
                retry_reason TEXT,
                PRIMARY KEY (job_id, number)
            ) STRICT, WITHOUT ROWID""",
            """CREATE TABLE job_events (
                job_id TEXT NOT NULL REFERENCES jobs (id),
                at REAL NOT NULL,
                attempt INTEGER,
                state TEXT NOT NULL,
                detail TEXT
            ) STRICT""",
            "CREATE INDEX job_events_by_job ON job_events (job_id, at)",
            """CREATE TABLE idempotency_keys (
                caller_uid INTEGER NOT NULL,
                key TEXT NOT NULL,
                job_id TEXT NOT NULL REFERENCES jobs (id),
                fingerprint TEXT NOT NULL,
                created_at REAL NOT NULL,
                PRIMARY KEY (caller_uid, key)
            ) STRICT, WITHOUT ROWID""",
            "CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at)",
        ),
    ),
    Migration(
        3,
        "audit trail: every mutating call and every denial",
        (
            """CREATE TABLE audit (
                id INTEGER PRIMARY KEY,
                at REAL NOT NULL,
                uid INTEGER NOT NULL,
                gid INTEGER NOT NULL,
                pid INTEGER NOT NULL,
                process TEXT,
                method TEXT NOT NULL,
                definition TEXT,
                params TEXT,                     -- JSON, secret values redacted
                idempotency_key TEXT,
                job_id TEXT,
                outcome TEXT NOT NULL,           -- ok, denied, error
                detail TEXT
            ) STRICT""",
            "CREATE INDEX audit_by_time ON audit (at)",
        ),
    ),
    Migration(
        4,
        "jobs.traceparent: the W3C trace context a job was submitted under",
        ("ALTER TABLE jobs ADD COLUMN traceparent TEXT",),
    ),
    Migration(
        5,
        "jobs_unfinished orders each state's jobs by id: the dispatcher reads the oldest queued "
        "jobs, and the self-check the running ones, however many finished jobs the table holds",
        (
            "DROP INDEX jobs_unfinished",
            """CREATE INDEX jobs_unfinished ON jobs (state, id)
                WHERE state IN ('queued', 'starting', 'running', 'waiting_retry')""",
        ),
    ),
    Migration(
        6,
        "jobs.outcome: how a finished job ended, in automd's words (a cancel is not a success)",
        ("ALTER TABLE jobs ADD COLUMN outcome TEXT",),
    ),
    Migration(
        7,
        "jobs_finished orders each final state's jobs by when they finished: retention finds "
        "the expired ones without reading the table",
        (
            """CREATE INDEX jobs_finished ON jobs (state, finished_at)
                WHERE finished_at IS NOT NULL""",
        ),
    ),
    Migration(
        8,
        "schedules: the schedule and trigger time that created a job, why a job was cancelled "
        "for another (overlap = replace), and each firing once (its key is the primary key)",
        (
            "ALTER TABLE jobs ADD COLUMN schedule TEXT",
            "ALTER TABLE jobs ADD COLUMN trigger_at REAL",
            "ALTER TABLE jobs ADD COLUMN cancel_reason TEXT",
            """CREATE INDEX jobs_by_schedule ON jobs (definition, schedule, id)
                WHERE schedule IS NOT NULL""",
            """CREATE TABLE schedule_firings (
                definition TEXT NOT NULL,
                schedule TEXT NOT NULL,
                trigger_usec INTEGER NOT NULL,   -- TRIGGER_TIMER_REALTIME_USEC, or the call's
                at REAL NOT NULL,                -- when automd took it
                outcome TEXT NOT NULL,           -- created, skipped
                job_id TEXT,                     -- the job it created (none when skipped)
                detail TEXT,
                PRIMARY KEY (definition, schedule, trigger_usec)
            ) STRICT, WITHOUT ROWID""",
        ),
    ),
    Migration(
        9,
        "definition revisions: every normalised definition loaded, which one serves new jobs "
        "(and which is under canary), their history, and the revision each job and attempt ran",
        (
            "ALTER TABLE jobs ADD COLUMN revision INTEGER",
            "ALTER TABLE attempts ADD COLUMN revision INTEGER",
            """CREATE TABLE definition_revisions (
                definition TEXT NOT NULL,
                revision INTEGER NOT NULL,       -- 1, 2, 3 ... per definition, never reused
                hash TEXT NOT NULL,              -- sha256 of the normalised model
                model TEXT NOT NULL,             -- the normalised model, canonical JSON
                created_at REAL NOT NULL,
                source TEXT NOT NULL,            -- what loaded it first (start, a reload)
                PRIMARY KEY (definition, revision),
                UNIQUE (definition, hash)
            ) STRICT, WITHOUT ROWID""",
            """CREATE TABLE definition_heads (
                definition TEXT PRIMARY KEY,
                active INTEGER NOT NULL,         -- the revision new jobs run
                file INTEGER NOT NULL,           -- the revision the file held when last read
                canary INTEGER,                  -- the revision under canary, if any
                canary_since REAL,
                rollout TEXT                     -- the canary's [rollout] table, JSON
            ) STRICT, WITHOUT ROWID""",
            """CREATE TABLE definition_events (
                id INTEGER PRIMARY KEY,
                definition TEXT NOT NULL,
                revision INTEGER NOT NULL,
                at REAL NOT NULL,
                event TEXT NOT NULL,             -- loaded, activated, canary-started, ...
                actor TEXT,
                detail TEXT
            ) STRICT""",
            "CREATE INDEX definition_events_by_definition ON definition_events (definition, id)",
        ),
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version
