#!/usr/bin/env python3
"""permessage-deflate (RFC 7692) checks for wsreactor, driven by the Python `websockets` client.

Usage: py_deflate.py ws://127.0.0.1:PORT shared|dedicated

The server under test echoes every message with the same opcode (tests/support/mod.rs, `Echo`),
runs with `--compression MODE`, default window sizes (15 bits) and `min_size` at most 200 bytes,
and a max message size of exactly 2 MiB (SERVER_MAX below).

Each check opens its own connections with compression on, in one of several client offers, and
looks at what came back:
- negotiate_OFFER: the server's Sec-WebSocket-Extensions answer is exactly what it must answer in
  MODE (Shared: always server_ and client_no_context_takeover; Dedicated: only what the client
  asked for; window bits: the offered ones), websockets accepted it with those parameters, and
  text and binary echoes of every size up to 64 KiB come back byte for byte on that one
  connection (so both sides' contexts run on across messages, with the agreed windows);
- echo_{text,binary}_N: one message of N bytes on a fresh connection (default offer);
- stream_OFFER: 300 messages of mixed sizes and kinds sent without waiting, echoed in order;
- fragmented_{text,binary}: compressed messages sent in several frames;
- server_compresses: large messages come back compressed (RSV1) and smaller on the wire;
- server_context_OFFER: the same message three times: with context takeover (Dedicated, no
  server_no_context_takeover asked) the repeats are much smaller on the wire; without, all three
  compress to the same size;
- max_size_inflated_ok, over_max_by_one_1009, deflate_bomb_1009: the limit applies to the
  inflated size: exactly SERVER_MAX passes, one byte more and a 10 MB message that deflates to
  a few KiB are closed with 1009.

Sending corrupt compressed data is not possible with websockets (the Rust tests cover it).

Prints one line per check, `ok NAME` or `FAIL NAME: why`, then a summary line, and exits 1 if any
check failed (2 on a usage error).
"""

import asyncio
import random
import sys

import websockets
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    PerMessageDeflate,
)
from websockets.frames import Opcode

import py_client
from py_client import CheckFailed, expect

KIB = 1 << 10
MIB = 1 << 20
SERVER_MAX = 2 * MIB
SIZES = [0, 1, 63, 64, 200, 64 * KIB, MIB]
BOMB = 10_000_000
RECV_TIMEOUT = 20.0


# ---- payloads -----------------------------------------------------------------------------------


def json_text(n, seed=7):
    """A JSON-ish str of exactly n UTF-8 bytes (some of them multi-byte) that compresses well."""
    rng = random.Random(seed)
    out, size = [], 0
    while size < n:
        rec = (
            f'{{"id":{rng.randrange(10**6)},"sym":"{rng.choice(["ABC", "XYZ", "QQQ", "ÉTÉ"])}",'
            f'"px":{rng.randrange(10**4)}.{rng.randrange(100):02d},"qty":{rng.randrange(500)},'
            f'"side":"{rng.choice(["buy", "sell"])}","note":"ok ✓"}},'
        )
        out.append(rec)
        size += len(rec.encode())
    return exact_text("".join(out).encode(), n)


def exact_text(data, n):
    """The first n bytes of UTF-8 `data` as a str, cut back to a character boundary and padded
    with spaces to exactly n bytes."""
    text = data[:n].decode(errors="ignore")
    return text + " " * (n - len(text.encode()))


def random_bytes(n, seed=11):
    return random.Random(seed).randbytes(n)


def bomb(n):
    """n bytes of text that deflate to a tiny fraction: one 16 KiB block, repeated."""
    block = json_text(16 * KIB, seed=3).encode()
    return exact_text(block * (n // len(block) + 1), n)


def describe(data):
    if isinstance(data, str):
        return f"text of {len(data.encode())} bytes"
    return f"binary of {len(data)} bytes"


def first_difference(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


# ---- offers and the answers they must get -------------------------------------------------------


class Offer:
    """A client offer: `factory` kwargs for ClientPerMessageDeflateFactory, or None for
    websockets' own default offer (compression="deflate")."""

    def __init__(self, name, **factory):
        self.name = name
        self.factory = None if name == "default" else factory

    def param(self, key, default=None):
        if self.factory is None:  # websockets' default: client_max_window_bits without a value
            return True if key == "client_max_window_bits" else default
        return self.factory.get(key, True if key == "client_max_window_bits" else default)

    def connect_kwargs(self):
        if self.factory is None:
            return {"compression": "deflate"}
        return {"compression": None, "extensions": [ClientPerMessageDeflateFactory(**self.factory)]}

    def expected_answer(self, mode):
        """The parameters wsreactor must answer, in order, as (name, value or None) pairs."""
        want = []
        if self.param("server_no_context_takeover", False) or mode == "shared":
            want.append(("server_no_context_takeover", None))
        if self.param("client_no_context_takeover", False) or mode == "shared":
            want.append(("client_no_context_takeover", None))
        server_bits = self.param("server_max_window_bits")
        if server_bits is not None:  # echoed when offered, even at 15
            want.append(("server_max_window_bits", str(server_bits)))
        client_bits = self.param("client_max_window_bits")
        if client_bits is not True and client_bits is not None and client_bits < 15:
            want.append(("client_max_window_bits", str(client_bits)))
        return want


OFFERS = [
    Offer("default"),
    Offer("bare", client_max_window_bits=None),
    Offer("client_no_context_takeover", client_no_context_takeover=True),
    Offer("server_no_context_takeover", server_no_context_takeover=True),
    Offer("both_no_context_takeover", server_no_context_takeover=True, client_no_context_takeover=True),
    Offer("client_max_window_bits_9", client_max_window_bits=9),
    Offer("client_max_window_bits_12", client_max_window_bits=12),
    Offer("client_max_window_bits_15", client_max_window_bits=15),
    Offer("server_max_window_bits_8", server_max_window_bits=8),
    Offer("server_max_window_bits_9", server_max_window_bits=9),
    Offer("server_max_window_bits_12", server_max_window_bits=12),
    Offer("server_max_window_bits_15", server_max_window_bits=15),
    Offer(
        "mixed_10_11_no_takeover",
        server_max_window_bits=10,
        client_max_window_bits=11,
        server_no_context_takeover=True,
    ),
]
OFFER = {o.name: o for o in OFFERS}


def parse_extensions(values):
    """[(name, [(param, value or None)])] from Sec-WebSocket-Extensions values."""
    out = []
    for value in values:
        for element in value.split(","):
            if not element.strip():
                continue
            name, *params = [p.strip() for p in element.split(";")]
            pairs = []
            for p in params:
                key, eq, val = p.partition("=")
                val = val.strip().strip('"') if eq else None
                pairs.append((key.strip().lower(), val))
            out.append((name.lower(), pairs))
    return out


# ---- the client side's view of the wire ---------------------------------------------------------


class Wire:
    """Records, for every data message received, whether it came compressed (RSV1) and how
    many payload bytes it took on the wire; wraps the extension's decode()."""

    def __init__(self, ext):
        self.messages = []  # [compressed, wire_bytes]
        original = ext.decode

        def decode(frame, *, max_size=None):
            if frame.opcode in (Opcode.TEXT, Opcode.BINARY):
                self.messages.append([frame.rsv1, len(frame.data)])
            elif frame.opcode is Opcode.CONT and self.messages:
                self.messages[-1][1] += len(frame.data)
            return original(frame, max_size=max_size)

        ext.decode = decode

    def last(self):
        expect(self.messages, "no data frame was seen")
        return self.messages[-1]


def deflate_of(ws):
    exts = ws.protocol.extensions
    expect(
        len(exts) == 1 and isinstance(exts[0], PerMessageDeflate),
        f"websockets did not agree on permessage-deflate (extensions: {exts!r}); "
        f"server answered {ws.response.headers.get('Sec-WebSocket-Extensions')!r}",
    )
    return exts[0]


# ---- the checks ---------------------------------------------------------------------------------


class Checks(py_client.Checks):
    """py_client's check runner (run, fail, results) with deflate connections."""

    def __init__(self, base, mode):
        super().__init__(base)
        self.mode = mode

    def connect(self, offer):
        return connect(
            self.base + "/",
            open_timeout=10,
            close_timeout=5,
            ping_interval=None,
            max_size=4 * SERVER_MAX,
            max_queue=None,
            proxy=None,
            **offer.connect_kwargs(),
        )


    async def recv_expect(self, ws, expected, what="echo"):
        got = await asyncio.wait_for(ws.recv(), RECV_TIMEOUT)
        expect(
            type(got) is type(expected),
            f"{what}: sent {describe(expected)}, got back {describe(got)} (opcode changed)",
        )
        if got != expected:
            at = first_difference(got, expected)
            unit = "character" if isinstance(got, str) else "byte"
            raise CheckFailed(
                f"{what}: sent {describe(expected)}, got back {describe(got)} differing at {unit} {at}"
            )

    async def roundtrip(self, ws, msg, what="echo"):
        await ws.send(msg)
        await self.recv_expect(ws, msg, what)

    def all_sizes(self):
        """Text and binary of every size but 1 MiB (64 KiB is already twice the largest
        window; the 1 MiB echoes are in echo_*)."""
        for n in SIZES[:-1]:
            yield json_text(n, seed=n)
            yield random_bytes(n, seed=n)

    # ---- negotiation ----

    def negotiate(self, offer):
        async def check():
            async with self.connect(offer) as ws:
                values = ws.response.headers.get_all("Sec-WebSocket-Extensions")
                got = parse_extensions(values)
                want = [("permessage-deflate", offer.expected_answer(self.mode))]
                expect(
                    got == want,
                    f"offer {offer.name} in {self.mode} mode: server answered {values!r}, "
                    f"expected {format_answer(want[0])!r}",
                )
                ext = deflate_of(ws)
                answer = dict(want[0][1])
                agreed = (
                    ext.remote_no_context_takeover,
                    ext.local_no_context_takeover,
                    ext.remote_max_window_bits,
                )
                wanted = (
                    "server_no_context_takeover" in answer,
                    "client_no_context_takeover" in answer or bool(offer.param("client_no_context_takeover")),
                    int(answer.get("server_max_window_bits", 15)),
                )
                expect(agreed == wanted, f"websockets agreed on {ext!r}, expected {wanted}")
                for i, msg in enumerate(self.all_sizes()):
                    await self.roundtrip(ws, msg, f"message {i}")

        return check

    # ---- echo matrix ----

    def echo(self, make):
        async def check():
            async with self.connect(OFFER["default"]) as ws:
                deflate_of(ws)
                await self.roundtrip(ws, make())

        return check

    def stream(self, offer, count=300):
        async def check():
            rng = random.Random(99)
            msgs = []
            for i in range(count):
                n = rng.choice([0, 1, 63, 64, 65, 100, 200, 1000, 4096, 8192])
                msgs.append(json_text(n, seed=i) if i % 3 else random_bytes(n, seed=i))
            async with self.connect(offer) as ws:
                deflate_of(ws)

                async def send_all():
                    for m in msgs:
                        await ws.send(m)

                async def recv_all():
                    for i, m in enumerate(msgs):
                        await self.recv_expect(ws, m, f"message {i} of {count}")

                await asyncio.gather(send_all(), recv_all())

        return check

    def fragmented(self, parts, joined):
        async def check():
            async with self.connect(OFFER["default"]) as ws:
                deflate_of(ws)
                for _ in range(3):  # the context runs on across fragmented messages too
                    if isinstance(joined, str):
                        await ws.send([p.encode() for p in parts], text=True)
                    else:
                        await ws.send(parts)
                    await self.recv_expect(ws, joined)

        return check

    # ---- what the server sends ----

    async def server_compresses(self):
        async with self.connect(OFFER["default"]) as ws:
            wire = Wire(deflate_of(ws))
            for msg in [json_text(64 * KIB), json_text(200), random_bytes(64 * KIB)]:
                await self.roundtrip(ws, msg)
                compressed, size = wire.last()
                expect(compressed, f"{describe(msg)} came back uncompressed (RSV1 clear)")
                if isinstance(msg, str) and len(msg) > KIB:
                    n = len(msg.encode())
                    expect(size < n // 2, f"{describe(msg)} took {size} bytes on the wire")

    def server_context(self, offer):
        async def check():
            async with self.connect(offer) as ws:
                ext = deflate_of(ws)
                wire = Wire(ext)
                msg = json_text(4 * KIB, seed=5)
                sizes = []
                for _ in range(3):
                    await self.roundtrip(ws, msg)
                    compressed, size = wire.last()
                    expect(compressed, f"{describe(msg)} came back uncompressed")
                    sizes.append(size)
                want = self.mode == "shared" or bool(offer.param("server_no_context_takeover"))
                expect(
                    ext.remote_no_context_takeover == want,
                    f"offer {offer.name} in {self.mode} mode: server_no_context_takeover should "
                    f"{'' if want else 'not '}be agreed",
                )
                takeover = not ext.remote_no_context_takeover
                if takeover:
                    expect(
                        sizes[1] * 4 < sizes[0] and sizes[2] * 4 < sizes[0],
                        f"with context takeover the repeats should be far smaller: sizes {sizes}",
                    )
                else:
                    expect(
                        sizes[0] == sizes[1] == sizes[2],
                        f"without context takeover every repeat should compress alike: sizes {sizes}",
                    )

        return check

    # ---- limits on the inflated size ----

    async def expect_1009(self, ws, sent):
        try:
            got = await asyncio.wait_for(ws.recv(), RECV_TIMEOUT)
            raise CheckFailed(
                f"sent {describe(sent)}: server echoed {describe(got)} instead of closing with 1009"
            )
        except ConnectionClosed as e:
            expect(e.rcvd is not None, f"connection dropped without a close frame ({e})")
            expect(e.rcvd.code == 1009, f"close code {e.rcvd.code}, expected 1009")

    def too_big(self, n):
        async def check():
            msg = bomb(n)
            ws = await self.connect(OFFER["default"])
            try:
                deflate_of(ws)
                try:
                    await ws.send(msg)
                except ConnectionClosed:
                    pass  # the server may close first; the close code is what counts
                await self.expect_1009(ws, msg)
            finally:
                await close_quietly(ws)

        return check

    async def max_size_ok(self):
        async with self.connect(OFFER["default"]) as ws:
            deflate_of(ws)
            await self.roundtrip(ws, bomb(SERVER_MAX))

    # ---- driver ----

    async def run_all(self):
        for offer in OFFERS:
            await self.run(f"negotiate_{offer.name}", self.negotiate(offer))
        for n in SIZES:
            await self.run(f"echo_text_{n}", self.echo(lambda n=n: json_text(n)))
        for n in SIZES:
            await self.run(f"echo_binary_{n}", self.echo(lambda n=n: random_bytes(n)))
        for name in ["default", "client_no_context_takeover", "server_max_window_bits_9"]:
            await self.run(f"stream_{name}", self.stream(OFFER[name]))
        text = ["Frag", "mented ", json_text(300), "", json_text(70000, seed=2), " end ✓"]
        await self.run("fragmented_text", self.fragmented(text, "".join(text)))
        binary = [b"\x00\x01", random_bytes(125), b"", bytes(65536), random_bytes(3000)]
        await self.run("fragmented_binary", self.fragmented(binary, b"".join(binary)))
        await self.run("server_compresses", self.server_compresses)
        for name in ["default", "server_no_context_takeover"]:
            await self.run(f"server_context_{name}", self.server_context(OFFER[name]))
        await self.run("max_size_inflated_ok", self.max_size_ok)
        await self.run("over_max_by_one_1009", self.too_big(SERVER_MAX + 1))
        await self.run("deflate_bomb_1009", self.too_big(BOMB))


def format_answer(element):
    name, params = element
    return "; ".join([name] + [k if v is None else f"{k}={v}" for k, v in params])


async def close_quietly(ws):
    """Cleanup after a check; errors here are not the check's result."""
    try:
        await ws.close()
    except Exception:
        pass


async def main():
    if len(sys.argv) != 3 or not sys.argv[1].startswith("ws://") or sys.argv[2] not in ("shared", "dedicated"):
        print("usage: py_deflate.py ws://HOST:PORT shared|dedicated", file=sys.stderr)
        return 2
    print(f"# python {sys.version.split()[0]}, websockets {websockets.__version__}", flush=True)
    checks = Checks(sys.argv[1], sys.argv[2])
    await checks.run_all()
    failed = [name for name, ok in checks.results if not ok]
    print(f"# py_deflate summary: {len(checks.results) - len(failed)} ok, {len(failed)} FAIL")
    if failed:
        print(f"# failed: {' '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
