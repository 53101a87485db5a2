"""systemd's own exit statuses: a unit's process that exits with one of these never ran the
job's program; systemd failed to set it up (systemd.exec(5), "Process Exit Codes").

stdlib only, so automctl can name them too. tests/unit/test_exit_status.py checks the table
against `systemd-analyze exit-status`.
"""

from __future__ import annotations

#: Status -> name, as `systemd-analyze exit-status` prints them (class "systemd").
SYSTEMD_EXIT_STATUSES: dict[int, str] = {
    200: "CHDIR", 201: "NICE", 202: "FDS", 203: "EXEC", 204: "MEMORY", 205: "LIMITS",
    206: "OOM_ADJUST", 207: "SIGNAL_MASK", 208: "STDIN", 209: "STDOUT", 210: "CHROOT",
    211: "IOPRIO", 212: "TIMERSLACK", 213: "SECUREBITS", 214: "SETSCHEDULER",
    215: "CPUAFFINITY", 216: "GROUP", 217: "USER", 218: "CAPABILITIES", 219: "CGROUP",
    220: "SETSID", 221: "CONFIRM", 222: "STDERR", 224: "PAM", 225: "NETWORK",
    226: "NAMESPACE", 227: "NO_NEW_PRIVILEGES", 228: "SECCOMP", 229: "SELINUX_CONTEXT",
    230: "PERSONALITY", 231: "APPARMOR", 232: "ADDRESS_FAMILIES", 233: "RUNTIME_DIRECTORY",
    235: "CHOWN", 236: "SMACK_PROCESS_LABEL", 237: "KEYRING", 238: "STATE_DIRECTORY",
    239: "CACHE_DIRECTORY", 240: "LOGS_DIRECTORY", 241: "CONFIGURATION_DIRECTORY",
    242: "NUMA_POLICY", 243: "CREDENTIALS", 244: "BPF",
}  # fmt: skip

#: What an admin should look at first, for the set-up failures a definition can cause.
_CAUSES = {
    200: "the working_directory does not exist or is not accessible to the job's user",
    203: "the executable is missing or not executable by the job's user",
    216: "the job's group does not exist",
    217: "the job's user does not exist",
    226: "a path in the sandbox (read_write_paths, a working directory) does not exist",
    238: "systemd could not create the job's state directory",
    239: "systemd could not create the job's cache directory",
    240: "systemd could not create the job's logs directory",
}


def systemd_exit_status(code: int | None) -> str | None:
    """ "226/NAMESPACE" for one of systemd's set-up failures, else None (the job's own)."""
    if code is None or code not in SYSTEMD_EXIT_STATUSES:
        return None
    return f"{code}/{SYSTEMD_EXIT_STATUSES[code]}"


def exit_status_name(status: int) -> str:
    """`203/EXEC` for systemd's own statuses, as `systemctl status` shows them; a job's own
    status (3) as it is."""
    return systemd_exit_status(status) or str(status)


def setup_failure(code: int | None) -> str | None:
    """A sentence for an exit status systemd itself produced before the job's program ran."""
    name = systemd_exit_status(code)
    if name is None:
        return None
    assert code is not None
    cause = _CAUSES.get(code)
    suffix = f": {cause}" if cause else ""
    return f"systemd could not set up the job's process ({name}){suffix}"
