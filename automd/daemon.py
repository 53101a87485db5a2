"""Composition root: build the parts from config, serve, reload on SIGHUP, drain on SIGTERM."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from automd import __version__, fdbudget
from automd.api.codes import API_VERSION
from automd.api.methods import METHODS
from automd.api.system import HealthCheck, ReloadResult
from automd.audit import AuditLog
from automd.authz import Authorizer, PolkitCheck
from automd.config import MAX_STARTS, Config, load_config, reloaded, starts_in_flight
from automd.definitions.registry import DefinitionRegistry
from automd.errors import ConfigError, StoreError
from automd.http.admission import Limits
from automd.http.sites import MetricsSite, RpcServer
from automd.joblog import JobLogs
from automd.jobs import states as job_states
from automd.jobs import views
from automd.jobs.definition_requests import DefinitionRequests
from automd.jobs.output import JobOutput
from automd.jobs.queries import JobQueries
from automd.jobs.requests import JobRequests
from automd.jobs.revisions import Revisions
from automd.jobs.schedule_requests import schedule_parts
from automd.jobs.service import JobService
from automd.jobs.timersync import TimerSync
from automd.log import set_level, setup_logging
from automd.memreport import MemoryReport
from automd.metrics import Gauges, Metrics
from automd.options import Options, listening_sockets, parse_args
from automd.peer import PeerCredentials
from automd.rpc.guard import Guard
from automd.rpc.handlers import Handlers, Services
from automd.rpc.protocol import Dispatcher
from automd.sd import ActivatedSockets, ListenError, notify, notify_state, open_notify_socket
from automd.store.db import Store
from automd.system import SystemInfo
from automd.systemd.bus import SystemdBus
from automd.systemd.manager import Manager
from automd.systemd.polkit import PolkitAuthority, Subject
from automd.systemd.units import Systemd
from automd.watchdog import start_watchdog

log = logging.getLogger("automd")

# Exit statuses (sysexits.h). automd.service restarts after every failure, these included,
# every RestartSec=: once an administrator has fixed the config or the state directory,
# automd comes back by itself (docs/systemd.md, "Restarts and the start limit").
EXIT_USAGE = 64
EXIT_SOFTWARE = 70
EXIT_CANTCREAT = 73
EXIT_CONFIG = 78


def polkit_check(bus: SystemdBus) -> PolkitCheck:
    authority = PolkitAuthority(bus)

    async def check(action: str, pid: int, uid: int, details: Mapping[str, str]) -> bool:
        return await authority.check(action, Subject(pid=pid, uid=uid), details)

    return check


@dataclass
class _Parts:
    """What run() builds, so that serving and closing are methods of their own."""

    store: Store
    bus: SystemdBus
    systemd: Systemd
    system: SystemInfo
    jobs: JobService
    logs: JobLogs
    server: RpcServer
    log_watch: asyncio.Task[None] | None = None


class Daemon:
    def __init__(self, options: Options, config: Config) -> None:
        self.options = options
        self.config = config
        self.registry = DefinitionRegistry(config.jobs.definitions_directory)
        self._stop = asyncio.Event()
        self._jobs: JobService | None = None
        self._budget: fdbudget.FdBudget | None = None
        self._status = ""
        self._status_pending = False
        self.metrics = Metrics()
        self._metrics_site: MetricsSite | None = None
        self._timer_sync: TimerSync | None = None
        self._revisions: Revisions | None = None
        self._reloading: asyncio.Task[None] | None = None

    def _state_dir(self) -> Path:
        return self.options.state_dir or self.config.state.directory

    async def run(self) -> int:
        # Before anything else holds descriptors: a WATCHDOG=1 must never need a new one.
        open_notify_socket()
        try:
            sockets, where = listening_sockets(self.options)
        except ListenError as exc:
            log.error("%s", exc)
            return EXIT_USAGE
        assert sockets.api is not None
        try:
            store = await Store.open(self._state_dir())
        except StoreError as exc:
            log.error("cannot open state store in %s: %s", self._state_dir(), exc.__cause__)
            for sock in (sockets.api, sockets.metrics):
                if sock is not None:
                    sock.close()
            return EXIT_CANTCREAT
        revisions = self._revisions = Revisions(store, self.registry)
        await revisions.reload("start")
        parts = self._build(store, revisions)
        # Everything built so far lives as long as automd: keep it out of the garbage
        # collector's full passes, which otherwise walk it all and stall every request.
        gc.freeze()
        # WATCHDOG=1 while the loop runs and writes can complete, until the very end.
        watchdog = start_watchdog(healthy=lambda: store.writer.alive)
        try:
            await self._serve(parts, sockets, where)
        finally:
            await self._close(parts)
            watchdog.cancel()
        log.info("stopped after %d requests", parts.server.requests_total)
        return 0

    def _build(self, store: Store, revisions: Revisions) -> _Parts:
        bus = SystemdBus()
        manager = Manager(bus)
        systemd = Systemd(
            manager,
            max_outstanding_starts=MAX_STARTS,
            max_slow_starts=starts_in_flight(self.config.jobs),
        )
        jobs = self._jobs = JobService(
            store, self.registry, systemd, self.config.jobs, retention=self.config.retention
        )
        jobs.follower.on_final = revisions.job_finished
        logs = JobLogs(max_followers=self.config.server.max_log_followers)
        self.authz = Authorizer(
            polkit_check(bus) if self.config.access.polkit else None, self.config.access
        )
        self.audit = AuditLog(store, retention_days=self.config.access.audit_retention_days)
        checks = {"journal": logs.health, "queue": jobs.queue_health, "open_files": self._fd_health}
        system = SystemInfo(store, manager, checks, history=jobs.retention.describe)
        schedules = schedule_parts(
            store, self.registry, jobs, systemd=systemd, manager=manager, authz=self.authz
        )
        self._timer_sync = schedules.sync
        services = Services(
            system=system,
            jobs=JobRequests(jobs, self.registry, self.authz),
            queries=JobQueries(store),
            definitions=DefinitionRequests(self.registry, revisions),
            reload=self._reload_by,
            audit=self.audit,
            output=JobOutput(jobs, logs),
            schedules=schedules.requests,
        )
        dispatcher = Dispatcher(
            METHODS,
            Handlers(services).table(),
            guard=Guard(self.authz, self.audit),
            max_batch_size=self.config.server.max_batch_size,
            observe=self.metrics.rpc.observe,
        )
        server = RpcServer(
            dispatcher, self.config.server, metrics=self.metrics.page, audit=self.audit
        )
        self.metrics.attach(
            Gauges(
                running=lambda: jobs.running_count,
                connections=lambda: server.connection_count,
                followers=lambda: logs.followers,
                replays=lambda: jobs.replays,
                denials=lambda: self.authz.denials,
                dbus_reconnects=lambda: bus.reconnects,
                connections_refused=server.refused_by_reason,
                job_repairs=lambda: jobs.reconciler.repairs,
                illegal_transitions=lambda: job_states.illegal_transitions,
                store_sizes=store.sizes,
                store_unwritable=lambda: store.writer.unwritable,
                store_refusals=lambda: store.writer.disk_failures,
                store_held=lambda: store.writer.held,
                schedule_firings=lambda: schedules.service.firings,
                schedules=schedules.requests.metric_rows,
                revisions=self.registry.revision_rows,
                rollbacks=lambda: revisions.rollbacks,
                promotions=lambda: revisions.promotions,
            ),
            store,
        )
        return _Parts(store, bus, systemd, system, jobs, logs, server)

    async def _serve(self, parts: _Parts, sockets: ActivatedSockets, where: str) -> None:
        assert sockets.api is not None
        # Counted before other threads start opening journal readers of their own.
        reader_fds = parts.logs.reader_descriptors()
        await parts.jobs.start()
        if self._timer_sync is not None:
            self._timer_sync.soon()
        parts.log_watch = asyncio.create_task(parts.logs.watch(), name="joblog-watch")
        await self.audit.purge_expired()
        # Everything but the connections and their readers is open now: the base of the
        # open-file budget, measured once (later counts would include connections).
        self._budget = fdbudget.check(
            self.config.server, base=fdbudget.open_descriptors(), reader=reader_fds
        )
        self._apply_budget(parts.server, parts.logs)
        await parts.server.start(sockets.api)
        if sockets.metrics is not None:
            self._metrics_site = MetricsSite(self.metrics.page, self.config.server)
            await self._metrics_site.start(sockets.metrics)
        self._handle_signals(parts.server, parts.logs)
        await self._announce_ready(parts.system, where)
        parts.jobs.on_counts_changed = self._status_changed
        await self._stop.wait()

        log.info("stopping: draining in-flight requests")
        await notify_state(STOPPING="1", STATUS="Stopping: draining in-flight requests")
        parts.logs.close()  # followers end now; their last reply says where to resume
        await parts.server.drain()

    async def _close(self, parts: _Parts) -> None:
        if parts.log_watch is not None:
            parts.log_watch.cancel()
        if self._metrics_site is not None:
            await self._metrics_site.drain()
        parts.logs.shutdown()
        if self._timer_sync is not None:
            self._timer_sync.close()
        # Jobs keep running in their own units; the next start re-adopts them.
        await parts.jobs.stop()
        if self._revisions is not None:
            await self._revisions.stop()
        self.audit.stop()
        await parts.systemd.close()
        await parts.bus.close()
        await parts.store.close()
        if self.options.listen is not None:
            self.options.listen.unlink(missing_ok=True)

    def _apply_budget(self, server: RpcServer, logs: JobLogs) -> None:
        """The caps in force: as configured, or as lowered to fit the open-file limit."""
        if self._metrics_site is not None:  # deadlines only: it has no connection caps
            self._metrics_site.settings = self.config.server
        if self._budget is None:
            server.apply_settings(self.config.server)
            return
        caps = self._budget.effective
        server.apply_settings(self.config.server, Limits(caps.connections, caps.per_user))
        logs.max_followers = caps.followers

    async def _fd_health(self) -> HealthCheck:
        if self._budget is None:
            return HealthCheck(ok=True, detail="not checked yet")
        return self._budget.health()

    def _handle_signals(self, server: RpcServer, logs: JobLogs) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._stop.set)
        loop.add_signal_handler(signal.SIGINT, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: self._on_sighup(server, logs))
        loop.add_signal_handler(signal.SIGUSR2, MemoryReport().request)

    async def _announce_ready(self, system: SystemInfo, where: str) -> None:
        version = await system.systemd_version()
        systemd = f"systemd {version}" if version else "systemd unreachable"
        count = len(self.registry.definitions)
        status = f"Serving API {API_VERSION} on {where}; {systemd}; {count} job definitions"
        log.info("automd %s ready: %s", __version__, status)
        self._status = status
        await notify_state(READY="1", STATUS=self._status_line())

    def _status_line(self) -> str:
        if self._jobs is None:
            return self._status
        counts = self._jobs.counts
        return f"{self._status}; jobs: {counts.running} running, {counts.waiting} queued or waiting"

    def _status_changed(self) -> None:
        # At most one STATUS= a second: a burst of submits is one update, not thousands.
        if self._status_pending:
            return
        self._status_pending = True
        asyncio.get_running_loop().call_later(1.0, self._publish_status)

    def _publish_status(self) -> None:
        self._status_pending = False
        if not self._stop.is_set():
            notify(STATUS=self._status_line())

    async def _reload_by(self, peer: PeerCredentials) -> ReloadResult:
        return await self._reload_definitions(f"reload by uid {peer.uid} (system.reload)")

    async def _reload_definitions(self, source: str) -> ReloadResult:
        assert self._revisions is not None  # built before serving
        loaded = await self._revisions.reload(source)
        if self._timer_sync is not None:  # the schedules' timers follow, in the background
            self._timer_sync.soon()
        return ReloadResult(
            definitions=len(loaded.definitions),
            errors=[views.definition_error_view(e) for e in loaded.errors],
        )

    def _on_sighup(self, server: RpcServer, logs: JobLogs) -> None:
        previous = self._reloading

        async def reload() -> None:
            if previous is not None:  # one after the other, each reading the files anew
                await asyncio.wait([previous])
            await self._reload(server, logs)

        self._reloading = asyncio.create_task(reload(), name="automd-reload")

    async def _reload(self, server: RpcServer, logs: JobLogs) -> None:
        await notify_state(RELOADING="1", STATUS="Reloading configuration")
        try:
            config, waiting = reloaded(self.config, load_config(self.options.config_path))
        except ConfigError as exc:
            log.error("reload failed, keeping the running configuration: %s", exc)
            await notify_state(
                READY="1", STATUS=f"Reload failed, running configuration kept: {exc}"
            )
            return
        for key in waiting:
            log.warning("%s changed; it takes effect at the next restart", key)
        self.config = config
        set_level(config.log.level)
        if self._budget is not None:  # the caps may have changed: check them again
            budget = self._budget
            self._budget = fdbudget.check(config.server, base=budget.base, reader=budget.reader)
        self._apply_budget(server, logs)
        if self._jobs is not None:
            self._jobs.settings = config.jobs
            self._jobs.retention.settings = config.retention
            self.authz.settings = config.access
            self.audit.retention_days = config.access.audit_retention_days
        self.registry.directory = config.jobs.definitions_directory
        await self._reload_definitions("reload by SIGHUP")
        log.info("configuration reloaded")
        await notify_state(READY="1", STATUS="Configuration reloaded; serving")


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    try:
        config = load_config(options.config_path)
    except ConfigError as exc:
        print(f"automd: bad configuration: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    setup_logging(config.log.level)
    try:
        return asyncio.run(Daemon(options, config).run())
    except Exception:
        log.exception("automd failed")
        return EXIT_SOFTWARE


if __name__ == "__main__":
    sys.exit(main())
