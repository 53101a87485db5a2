"""Peer credentials come from the kernel (SO_PEERCRED), not from anything the client says."""

from __future__ import annotations

import os
import socket

from automd.peer import PeerCredentials, read_peer_credentials


def test_peer_credentials_of_a_unix_socket() -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with left, right:
        assert read_peer_credentials(left) == PeerCredentials(
            pid=os.getpid(), uid=os.getuid(), gid=os.getgid()
        )


def test_non_unix_sockets_have_no_peer_credentials() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        assert read_peer_credentials(sock) is None
