"""Black-hole listeners for the diagnostics integration tests (loopback only)."""

import socket
import time

import pytest


class BlackHole:
    """A listening socket on 127.0.0.1 whose accept queue is full: connects hang."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        self.port = self.sock.getsockname()[1]
        self.fillers = []
        for _ in range(8):
            c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            c.setblocking(False)
            c.connect_ex(("127.0.0.1", self.port))
            self.fillers.append(c)
        time.sleep(0.05)

    def close(self):
        for c in self.fillers:
            c.close()
        self.sock.close()


@pytest.fixture(scope="module")
def black_holes():
    holes = [BlackHole(), BlackHole()]
    yield holes
    for hole in holes:
        hole.close()
