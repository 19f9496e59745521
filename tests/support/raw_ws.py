"""A WebSocket client that stops reading: the handshake by hand over a plain socket with a small
receive buffer, masked text frames sent, nothing read until the test says so (every client library
reads into its own buffers in the background, so it never pushes back on the server)."""

from __future__ import annotations

import base64
import os
import socket

from websockets.frames import Frame, Opcode


class SilentClient:
    def __init__(self, host: str, port: int, path: str) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
        self.sock.settimeout(10)  # a server that stopped reading too is a closed session to this client
        self.sock.connect((host, port))
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        self.sock.sendall(request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)  # byte by byte: nothing after the response's head is read
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(head.decode(errors="replace"))

    def send_text(self, text: str) -> bool:
        """False once the server has closed the connection."""
        try:
            self.sock.sendall(Frame(Opcode.TEXT, text.encode()).serialize(mask=True))
        except OSError:
            return False
        return True

    def close(self) -> None:
        self.sock.close()
