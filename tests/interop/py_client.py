#!/usr/bin/env python3
"""Interoperability checks for wsreactor, driven by the Python `websockets` client.

Usage: py_client.py ws://127.0.0.1:PORT

The server under test must follow the contract in tests/interop.rs (echo with the same opcode up
to 16 MiB, pongs, close-code echo, `close:<code>:<reason>` command, subprotocols chat.v1/chat.v2
in the client's order, /reject -> 403, version 8 -> 426, 16 MiB + 1 -> 1009).

Prints one line per check, `ok NAME` or `FAIL NAME: why`, then a summary line, and exits 1 if any
check failed (2 on a usage error).
"""

import asyncio
import http.client
import sys
import time
import urllib.parse

import websockets
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

MIB = 1 << 20
SERVER_MAX = 16 * MIB
ECHO_SIZES = [0, 1, 125, 126, 127, 65535, 65536, MIB, SERVER_MAX]
CHECK_TIMEOUT = 60.0  # seconds per check, including the 16 MiB ones on a busy 2-core machine
RECV_TIMEOUT = 20.0

# One repeating unit of 1-, 2-, 3- and 4-byte UTF-8 sequences.
TEXT_UNIT = "wsreactor é ß ✓ 漢字 𝄞 😀 "


class CheckFailed(Exception):
    """A check's expectation was not met."""


def expect(cond, why):
    if not cond:
        raise CheckFailed(why)


def text_of_size(n):
    """A str whose UTF-8 encoding is exactly n bytes and mixes multi-byte characters."""
    unit = TEXT_UNIT.encode()
    reps, rest = divmod(n, len(unit))
    return (TEXT_UNIT * reps) + ("x" * rest)


def binary_of_size(n):
    """n bytes covering every byte value, with a position-dependent pattern."""
    block = bytes((i * 7 + (i >> 8)) & 0xFF for i in range(65536))
    reps, rest = divmod(n, len(block))
    return block * reps + block[:rest]


def describe(data):
    kind = "text" if isinstance(data, str) else "binary"
    size = len(data.encode()) if isinstance(data, str) else len(data)
    return f"{kind} of {size} bytes"


def first_difference(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


class Checks:
    def __init__(self, base):
        self.base = base.rstrip("/")
        self.results = []

    def connect(self, path="/", **kwargs):
        options = dict(
            max_size=2 * SERVER_MAX,
            compression=None,
            open_timeout=10,
            close_timeout=5,
            ping_interval=None,
            proxy=None,
        )
        options.update(kwargs)
        return connect(self.base + path, **options)

    async def recv(self, ws):
        return await asyncio.wait_for(ws.recv(), RECV_TIMEOUT)

    async def roundtrip(self, ws, sent, expected=None):
        """Send `sent` (a message or an iterable of fragments) and expect `expected` back."""
        if expected is None:
            expected = sent
        if isinstance(sent, list) and sent and isinstance(sent[0], bytes) and isinstance(expected, str):
            await ws.send(sent, text=True)
        else:
            await ws.send(sent)
        got = await self.recv(ws)
        expect(
            type(got) is type(expected),
            f"sent {describe(expected)}, got back {describe(got)} (opcode changed)",
        )
        if got != expected:
            at = first_difference(got, expected)
            raise CheckFailed(
                f"sent {describe(expected)}, got back {describe(got)} differing at index {at}"
            )

    async def run(self, name, coro_fn, timeout=CHECK_TIMEOUT):
        started = time.monotonic()
        try:
            await asyncio.wait_for(coro_fn(), timeout)
        except CheckFailed as e:
            self.fail(name, str(e))
        except asyncio.TimeoutError:
            self.fail(name, f"timed out after {time.monotonic() - started:.1f}s")
        except ConnectionClosed as e:
            self.fail(name, f"connection closed unexpectedly: {e}")
        except Exception as e:  # any client error is a failed check, never a crash
            self.fail(name, f"{type(e).__name__}: {e}")
        else:
            self.results.append((name, True))
            print(f"ok {name}", flush=True)

    def fail(self, name, why):
        self.results.append((name, False))
        print(f"FAIL {name}: {why}", flush=True)

    # ---- echo -------------------------------------------------------------------------------

    def echo(self, make):
        async def check():
            async with self.connect() as ws:
                await self.roundtrip(ws, make())

        return check

    async def fragmented_text(self):
        parts = ["Frag", "mented ", "text " * 30, "", "x" * 70000, " end"]
        async with self.connect() as ws:
            await self.roundtrip(ws, parts, "".join(parts))

    async def fragmented_binary(self):
        parts = [b"\x00\x01", binary_of_size(125), b"", binary_of_size(65536), b"\xff" * 3]
        async with self.connect() as ws:
            await self.roundtrip(ws, parts, b"".join(parts))

    async def non_ascii_text(self):
        text = "héllo wörld — ✓ 漢字テスト 𝄞 😀 Ωμέγα"
        async with self.connect() as ws:
            await self.roundtrip(ws, text)

    async def fragmented_utf8_split(self):
        text = "ünïcødé ✓ 漢字 𝄞😀 end"
        data = text.encode()
        # Cut inside a 2-byte (ü), a 3-byte (✓) and a 4-byte (𝄞) sequence.
        cuts = [1, data.index("✓".encode()) + 1, data.index("𝄞".encode()) + 2]
        parts, prev = [], 0
        for cut in cuts:
            parts.append(data[prev:cut])
            prev = cut
        parts.append(data[prev:])
        for p in parts[:-1]:
            expect(not _valid_utf8_boundary(p), "test bug: fragment does not split a code point")
        async with self.connect() as ws:
            await self.roundtrip(ws, parts, text)

    # ---- control frames ---------------------------------------------------------------------

    def ping(self, payload):
        async def check():
            async with self.connect() as ws:
                pong = await ws.ping(payload)
                # websockets resolves the waiter only for a pong carrying the same payload.
                await asyncio.wait_for(pong, RECV_TIMEOUT)
                await self.roundtrip(ws, "after ping")

        return check

    async def pipelined(self):
        msgs = [f"msg-{i}" if i % 2 == 0 else f"bin-{i}".encode() for i in range(50)]
        async with self.connect() as ws:
            for m in msgs:
                await ws.send(m)
            for i, m in enumerate(msgs):
                got = await self.recv(ws)
                expect(got == m, f"message {i}: expected {m!r}, got {got!r}")

    # ---- closing ----------------------------------------------------------------------------

    def client_close(self, code, reason):
        async def check():
            ws = await self.connect()
            try:
                await self.roundtrip(ws, "before close")
                await ws.close(code, reason)
                await asyncio.wait_for(ws.wait_closed(), RECV_TIMEOUT)
            finally:
                await close_quietly(ws)
            proto = ws.protocol
            expect(proto.close_sent is not None and proto.close_sent.code == code, "close not sent")
            expect(
                proto.close_rcvd is not None,
                "closing handshake did not complete: no close frame from the server",
            )
            expect(
                proto.close_rcvd.code == code,
                f"server replied with close code {proto.close_rcvd.code}, expected {code}",
            )
            expect(proto.close_rcvd_then_sent is False, "server closed before the client did")

        return check

    async def server_close(self):
        ws = await self.connect()
        try:
            await ws.send("close:4001:bye")
            try:
                got = await self.recv(ws)
                raise CheckFailed(f"expected a close frame, got a message {got!r}")
            except ConnectionClosed as e:
                expect(e.rcvd is not None, f"no close frame received ({e})")
                expect(e.rcvd.code == 4001, f"close code {e.rcvd.code}, expected 4001")
                expect(e.rcvd.reason == "bye", f"close reason {e.rcvd.reason!r}, expected 'bye'")
                expect(e.rcvd_then_sent is True, "the client, not the server, started the close")
            await asyncio.wait_for(ws.wait_closed(), RECV_TIMEOUT)
        finally:
            await close_quietly(ws)

    # ---- handshake --------------------------------------------------------------------------

    def subprotocol(self, offer, expected):
        async def check():
            kwargs = {"subprotocols": offer} if offer is not None else {}
            async with self.connect(**kwargs) as ws:
                expect(
                    ws.subprotocol == expected,
                    f"offered {offer}, server selected {ws.subprotocol!r}, expected {expected!r}",
                )
                header = ws.response.headers.get("Sec-WebSocket-Protocol")
                expect(header == expected, f"Sec-WebSocket-Protocol header is {header!r}")
                await self.roundtrip(ws, "with subprotocol")

        return check

    async def reject(self):
        try:
            async with self.connect("/reject"):
                pass
        except InvalidStatus as e:
            status = e.response.status_code
            expect(status == 403, f"handshake refused with HTTP {status}, expected 403")
            return
        raise CheckFailed("handshake to /reject succeeded, expected HTTP 403")

    async def version_8(self):
        """Sec-WebSocket-Version: 8 must get 426 and the supported version (RFC 6455 4.4)."""
        url = urllib.parse.urlsplit(self.base)

        def request():
            conn = http.client.HTTPConnection(url.hostname, url.port, timeout=RECV_TIMEOUT)
            try:
                conn.request(
                    "GET",
                    "/",
                    headers={
                        "Upgrade": "websocket",
                        "Connection": "Upgrade",
                        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                        "Sec-WebSocket-Version": "8",
                    },
                )
                resp = conn.getresponse()
                return resp.status, resp.getheader("Sec-WebSocket-Version")
            finally:
                conn.close()

        status, versions = await asyncio.to_thread(request)
        expect(status == 426, f"HTTP {status}, expected 426")
        supported = [v.strip() for v in (versions or "").split(",")]
        expect("13" in supported, f"426 response has Sec-WebSocket-Version {versions!r}, no 13")

    # ---- limits -----------------------------------------------------------------------------

    async def expect_1009(self, ws):
        try:
            got = await self.recv(ws)
            raise CheckFailed(f"server echoed a message of {describe(got)} instead of closing")
        except ConnectionClosed as e:
            expect(e.rcvd is not None, f"connection dropped without a close frame ({e})")
            expect(e.rcvd.code == 1009, f"close code {e.rcvd.code}, expected 1009")

    async def too_big(self):
        ws = await self.connect()
        try:
            try:
                await ws.send(binary_of_size(SERVER_MAX + 1))
            except ConnectionClosed:
                pass  # the server may close before reading it all; the close code is what counts
            await self.expect_1009(ws)
        finally:
            await close_quietly(ws)

    async def too_big_fragmented(self):
        ws = await self.connect()
        try:
            parts = [binary_of_size(MIB)] * 16 + [b"!"]
            try:
                await ws.send(parts)
            except ConnectionClosed:
                pass
            await self.expect_1009(ws)
        finally:
            await close_quietly(ws)

    # ---- compression ------------------------------------------------------------------------

    def compression(self, mode):
        async def check():
            # "deflate" is websockets' default offer (permessage-deflate); None offers nothing.
            offer = "deflate" if mode == "default" else None
            async with self.connect(compression=offer) as ws:
                for msg in ["small", text_of_size(70000), "a" * MIB, binary_of_size(200000)]:
                    await self.roundtrip(ws, msg)

        return check

    async def deflate_not_negotiated(self):
        async with self.connect(compression="deflate") as ws:
            ext = ws.response.headers.get("Sec-WebSocket-Extensions")
            expect(ext is None, f"server negotiated {ext!r}; compression should be off by default")

    # ---- concurrency ------------------------------------------------------------------------

    async def concurrent(self):
        async def one(i):
            async with self.connect() as ws:
                for j in range(20):
                    await self.roundtrip(ws, f"conn {i} msg {j}")

        await asyncio.gather(*(one(i) for i in range(8)))

    # ---- driver -----------------------------------------------------------------------------

    async def run_all(self):
        for n in ECHO_SIZES:
            await self.run(f"echo_text_{n}", self.echo(lambda n=n: text_of_size(n)))
        for n in ECHO_SIZES:
            await self.run(f"echo_binary_{n}", self.echo(lambda n=n: binary_of_size(n)))
        await self.run("fragmented_text", self.fragmented_text)
        await self.run("fragmented_binary", self.fragmented_binary)
        await self.run("non_ascii_text", self.non_ascii_text)
        await self.run("fragmented_utf8_split", self.fragmented_utf8_split)
        await self.run("ping_pong", self.ping(b"wsreactor-ping"))
        await self.run("ping_pong_125", self.ping(binary_of_size(125)))
        await self.run("ping_pong_empty", self.ping(b""))
        await self.run("pipelined_50", self.pipelined)
        await self.run("client_close_1000", self.client_close(1000, ""))
        await self.run("client_close_4000_reason", self.client_close(4000, "client says bye ✓"))
        await self.run("server_close_4001", self.server_close)
        await self.run("subprotocol_first_offered", self.subprotocol(["chat.v2", "chat.v1"], "chat.v2"))
        await self.run("subprotocol_skip_unknown", self.subprotocol(["x", "chat.v1"], "chat.v1"))
        await self.run("subprotocol_none_match", self.subprotocol(["x"], None))
        await self.run("subprotocol_not_offered", self.subprotocol(None, None))
        await self.run("reject_403", self.reject)
        await self.run("version_8_426", self.version_8)
        await self.run("too_big_1009", self.too_big)
        await self.run("too_big_fragmented_1009", self.too_big_fragmented)
        await self.run("compression_none", self.compression("none"))
        await self.run("compression_default_offer", self.compression("default"))
        await self.run("deflate_not_negotiated", self.deflate_not_negotiated)
        await self.run("concurrent_connections_8", self.concurrent)


async def close_quietly(ws):
    """Cleanup after a check; errors here are not the check's result."""
    try:
        await ws.close()
    except Exception:
        pass


def _valid_utf8_boundary(b):
    try:
        b.decode()
        return True
    except UnicodeDecodeError:
        return False


def main():
    if len(sys.argv) != 2 or not sys.argv[1].startswith("ws://"):
        print(f"usage: {sys.argv[0]} ws://HOST:PORT", file=sys.stderr)
        return 2
    print(f"# python {sys.version.split()[0]}, websockets {websockets.__version__}", flush=True)
    checks = Checks(sys.argv[1])
    asyncio.run(checks.run_all())
    failed = [name for name, ok in checks.results if not ok]
    passed = len(checks.results) - len(failed)
    print(f"# py_client summary: {passed} ok, {len(failed)} FAIL", flush=True)
    if failed:
        print(f"# failed: {' '.join(failed)}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
