#!/usr/bin/env python3
"""The test "login node": sshd in inetd mode behind a gate that admits only the bastion.

Every loopback connection comes from 127.0.0.1, so sshd's ``Match Address`` cannot tell
the bastion from anyone else. The kernel can: ``/proc/net/tcp`` names the uid that owns
the peer's socket, and a bastion's forwarded connection (``ssh -J``, ``direct-tcpip``) is
made by the bastion's sshd running as its login user. Connections from any other uid
are closed before a byte of SSH is spoken; the rest get their own ``sshd -i``.

Usage: login_gate.py HOST PORT UID PIDFILE LOGFILE -- SSHD_ARGV...
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time


def hex_endpoint(addr: tuple[str, int]) -> str:
    """``('127.0.0.1', 22)`` as /proc/net/tcp writes it: ``0100007F:0016``."""
    packed = socket.inet_aton(addr[0])
    return f"{int.from_bytes(packed, 'little'):08X}:{addr[1]:04X}"


def peer_uid(conn: socket.socket) -> int | None:
    peer, ours = hex_endpoint(conn.getpeername()), hex_endpoint(conn.getsockname())
    with open("/proc/net/tcp") as fh:
        for line in fh:
            fields = line.split()
            if len(fields) > 7 and fields[1] == peer and fields[2] == ours:
                return int(fields[7])
    return None


def main(argv: list[str]) -> int:
    host, port, uid, pidfile, logfile = argv[:5]
    if argv[5] != "--":
        raise SystemExit(__doc__)
    sshd = argv[6:]
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, int(port)))
    listener.listen(64)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children reap themselves
    with open(pidfile, "w") as fh:
        fh.write(f"{os.getpid()}\n")
    log = open(logfile, "a", buffering=1)  # noqa: SIM115 - open for the gate's life
    while True:
        conn, addr = listener.accept()
        owner = peer_uid(conn)
        if owner != int(uid):
            log.write(f"{time.strftime('%FT%T')} gate: refused {addr[0]}:{addr[1]} "
                      f"(socket uid {owner}): only the bastion may connect\n")
            conn.close()
            continue
        if os.fork() == 0:
            listener.close()
            os.dup2(conn.fileno(), 0)
            os.dup2(conn.fileno(), 1)
            conn.close()
            os.execv(sshd[0], sshd)
        conn.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
