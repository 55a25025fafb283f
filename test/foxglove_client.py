"""A minimal Foxglove WebSocket protocol client for tests (RFC 6455 over a plain socket, loopback only).

Speaks what a Foxglove app does: connects with the foxglove.sdk.v1 / foxglove.websocket.v1 subprotocol,
reads serverInfo and advertise (the channel list), subscribes, and reads messageData frames
(opcode 1: subscription id u32, log time u64 ns, payload).
"""
from __future__ import annotations

import base64
import json
import os
import socket
import struct
import time
from typing import Optional

SUBPROTOCOLS = "foxglove.sdk.v1, foxglove.websocket.v1"


# A wanted topic silent this long after subscribing is subscribed again (latched ones repeat every 1 s).
RESUBSCRIBE_S = 3.0

class FoxgloveClient:
    def __init__(self, host: str, port: int, timeout_s: float = 10.0) -> None:
        assert host in ("127.0.0.1", "localhost", "::1"), "tests connect on loopback only"
        self.sock = socket.create_connection((host, port), timeout=timeout_s)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                           f"Sec-WebSocket-Protocol: {SUBPROTOCOLS}\r\n\r\n").encode())
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError(f"handshake closed: {response!r}")
            response += chunk
        head, _, self.buffer = response.partition(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status:
            raise ConnectionError(f"no WebSocket upgrade: {head!r}")
        self.subprotocol = next((line.split(b":", 1)[1].strip().decode() for line in head.split(b"\r\n")
                                 if line.lower().startswith(b"sec-websocket-protocol:")), "")
        self.channels: dict[str, dict] = {}  # topic -> advertised channel
        self.server_info: Optional[dict] = None
        self.subscriptions: dict[int, str] = {}  # subscription id -> topic

    def _read(self, count: int) -> bytes:
        while len(self.buffer) < count:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed")
            self.buffer += chunk
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def frame(self) -> tuple[int, bytes]:
        """(opcode, payload) of the next data frame (fragments joined; pings answered)."""
        payload, first_opcode = b"", None
        while True:
            b0, b1 = self._read(2)
            opcode, final = b0 & 0x0F, bool(b0 & 0x80)
            length = b1 & 0x7F
            if length == 126:
                (length,) = struct.unpack(">H", self._read(2))
            elif length == 127:
                (length,) = struct.unpack(">Q", self._read(8))
            mask = self._read(4) if b1 & 0x80 else None
            data = self._read(length)
            if mask:
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
            if opcode == 0x9:  # ping
                self._send(0xA, data)
                continue
            if opcode == 0x8:
                raise ConnectionError("server closed the connection")
            if opcode in (0x1, 0x2):
                first_opcode = opcode
            payload += data
            if final:
                return first_opcode, payload

    def _send(self, opcode: int, data: bytes) -> None:
        mask = os.urandom(4)
        header = bytes([0x80 | opcode])
        if len(data) < 126:
            header += bytes([0x80 | len(data)])
        elif len(data) < 65536:
            header += bytes([0x80 | 126]) + struct.pack(">H", len(data))
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", len(data))
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def send_json(self, message: dict) -> None:
        self._send(0x1, json.dumps(message).encode())

    def handle_text(self, payload: bytes) -> dict:
        message = json.loads(payload)
        if message.get("op") == "serverInfo":
            self.server_info = message
        elif message.get("op") == "advertise":
            for channel in message["channels"]:
                self.channels[channel["topic"]] = channel
        elif message.get("op") == "unadvertise":
            gone = set(message["channelIds"])
            self.channels = {t: c for t, c in self.channels.items() if c["id"] not in gone}
        return message

    def wait_channels(self, topics: set[str], timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not topics <= set(self.channels):
            if time.monotonic() > deadline:
                raise TimeoutError(f"channels {sorted(topics - set(self.channels))} not advertised; "
                                   f"have {sorted(self.channels)}")
            opcode, payload = self.frame()
            if opcode == 0x1:
                self.handle_text(payload)

    def subscribe(self, topics: list[str]) -> None:
        subscriptions = []
        for topic in topics:
            subscription_id = len(self.subscriptions) + 1
            self.subscriptions[subscription_id] = topic
            subscriptions.append({"id": subscription_id, "channelId": self.channels[topic]["id"]})
        self.send_json({"op": "subscribe", "subscriptions": subscriptions})

    def messages(self, wanted: set[str], timeout_s: float = 15.0) -> dict[str, list[bytes]]:
        """Message payloads by topic until every topic in ``wanted`` has sent one (TimeoutError otherwise)."""
        received: dict[str, list[bytes]] = {}
        deadline = time.monotonic() + timeout_s
        resubscribe_at = time.monotonic() + RESUBSCRIBE_S
        while not wanted <= set(received):
            now = time.monotonic()
            left = deadline - now
            if left <= 0:
                raise TimeoutError(f"no message on {sorted(wanted - set(received))}; got {sorted(received)}")
            if now > resubscribe_at:
                # Latched topics are re-sent every second: silence this long means the subscription did not take
                # (the server can refuse one it has not registered yet, "unknown channel"): ask again.
                self.subscribe(sorted(t for t in wanted - set(received) if t in self.channels))
                resubscribe_at = now + RESUBSCRIBE_S
            self.sock.settimeout(min(left, RESUBSCRIBE_S))  # a frame is read whole or the test fails
            try:
                opcode, payload = self.frame()
            except socket.timeout:
                continue  # the deadline and the re-subscription are checked at the top of the loop
            if opcode == 0x1:
                self.handle_text(payload)
            elif opcode == 0x2 and payload[0] == 0x01:  # messageData
                subscription_id, _log_time = struct.unpack("<IQ", payload[1:13])
                received.setdefault(self.subscriptions[subscription_id], []).append(payload[13:])
        return received

    def close(self) -> None:
        try:
            self._send(0x8, b"")
        finally:
            self.sock.close()
