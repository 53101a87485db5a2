"""Peer credentials come from the kernel (SO_PEERCRED), not from anything the client says."""

from __future__ import annotations

import os
import socket

from automd.peer import PeerCredentials, printable, process_name, read_peer_credentials


def test_peer_credentials_of_a_unix_socket() -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with left, right:
        assert read_peer_credentials(left) == PeerCredentials(
            pid=os.getpid(), uid=os.getuid(), gid=os.getgid(), process=process_name(os.getpid())
        )


def test_process_name_is_the_command_name() -> None:
    with open(f"/proc/{os.getpid()}/comm") as comm:
        assert process_name(os.getpid()) == comm.read().strip()
    assert process_name(2**22 + 1) is None  # above pid_max: no such process


def test_non_unix_sockets_have_no_peer_credentials() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        assert read_peer_credentials(sock) is None


def test_printable_escapes_what_a_caller_could_forge_or_hide_a_log_line_with() -> None:
    assert printable("backup-cron") == "backup-cron"
    assert printable("\ufffd\ufffdab") == "\ufffd\ufffdab"  # replaced bytes stay as they were
    assert printable("a\nb\x1b[8m\t\x00\u200e") == "a\\nb\\x1b[8m\\t\\x00\\u200e"
