#!/usr/bin/env python3
"""Topic server (pub/sub) checks for wsreactor, driven by the Python `websockets` client.

Usage:
  py_pubsub.py URL [--history URL] [--slow-close URL] [--slow-drop URL] [--slow-conflate URL]
               [--only NAME,...]

Every URL is a `wsreactor` topic server (`PubSub` with the default limits and the publish token
`tok`). URL has no history; --history has a history of 100 deliveries per topic; the --slow-*
servers run one reactor with a 64 KiB output cap, that slow-consumer policy, and a close timeout
well over a flood's length (the stuck client must resume reading within it to see the 1008).
The checks that need a server not given are left out (the Rust side checks that every one ran).

Prints `ok NAME` or `FAIL NAME: why` per check, then a summary line, and exits 1 if any check
failed (2 on a usage error). The whole run is bounded by RUN_BUDGET seconds.
"""

import argparse
import asyncio
import contextlib
import itertools
import secrets
import json
import socket
import sys
import time
import urllib.parse
from collections import namedtuple

import websockets
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

# The echo checks' driver: per-check result lines and timeouts.
from py_client import CheckFailed, Checks, close_quietly, expect

TOKEN = "tok"
PUBLISHER = f"/?token={TOKEN}"
RECV_TIMEOUT = 10.0  # one message; a healthy server answers in milliseconds
CHECK_TIMEOUT = 30.0
RUN_BUDGET = 55.0  # the whole script, so that a hanging server still gives a report

# Server limits (Limits::default()) the checks probe.
MAX_TOPIC_LEN = 128
MAX_TOPICS_PER_OP = 64
MAX_TOPICS_PER_CONN = 256
MAX_OP_LEN = 64 << 10
MAX_ERRORS_IN_A_ROW = 16
HISTORY = 100  # of the --history server

# The slow-consumer flood: messages of about 1 KiB, the publisher at most WINDOW messages ahead of
# the reader (about 30 KiB, under the 64 KiB cap), so the reader itself never falls behind.
FLOOD_MESSAGES = 10_000
FLOOD_WINDOW = 30
FLOOD_PAYLOAD = "x" * 1000
STUCK_RCVBUF = 16 << 10  # the stuck client's kernel receive buffer

Delivery = namedtuple("Delivery", "topic seq data")


def short(x, n=80):
    s = x if isinstance(x, str) else repr(x)
    return s if len(s) <= n else s[:n] + "..."


async def recv_raw(ws, what, timeout=RECV_TIMEOUT):
    try:
        return await asyncio.wait_for(ws.recv(), timeout)
    except asyncio.TimeoutError:
        raise CheckFailed(
            f"nothing received within {timeout:.0f}s while waiting for {what}"
        ) from None


def parse_json(raw, what):
    expect(isinstance(raw, str), f"{what}: got a binary message of {len(raw)} bytes, expected text")
    try:
        return json.loads(raw)
    except ValueError:
        raise CheckFailed(f"{what}: not JSON: {short(raw)}") from None


async def recv_json(ws, what):
    return parse_json(await recv_raw(ws, what), what)


def check_reply(msg, op, rid, what):
    """`msg` is the reply `op` to a request with id `rid` (None: sent without one)."""
    if msg.get("op") == "error" and op != "error":
        raise CheckFailed(f"{what}: error {msg.get('code')!r} ({msg.get('message')!r})")
    expect(msg.get("op") == op, f"{what}: expected op {op!r}, got {short(json.dumps(msg))}")
    keys = list(msg)
    expect(keys[0] == "op", f"{what}: the first member is {keys[0]!r}, not 'op'")
    if rid is None:
        expect("id" not in msg, f"{what}: an id {msg.get('id')!r} for a request without one")
    else:
        expect(msg.get("id") == rid, f"{what}: id {msg.get('id')!r}, expected {rid!r} echoed")
        expect(keys[1] == "id", f"{what}: the id is member {keys.index('id') + 1}, not the second")


def check_error(msg, code, rid, what):
    check_reply(msg, "error", rid, what)
    expect(msg.get("code") == code, f"{what}: error code {msg.get('code')!r}, expected {code!r}")
    expect(isinstance(msg.get("message"), str), f"{what}: the error has no message")


def decode(raw, what="a delivery"):
    """A text delivery `{"topic":..,"seq":..,"data":..}` or a binary one
    `[0x01][topic_len][topic][seq u64 BE][payload]` (data: the payload bytes)."""
    if isinstance(raw, bytes):
        expect(
            len(raw) >= 2 and raw[0] == 0x01,
            f"{what}: binary message {short(raw[:16])} is no delivery",
        )
        n = raw[1]
        expect(len(raw) >= 2 + n + 8, f"{what}: binary delivery of {len(raw)} bytes is cut short")
        seq = int.from_bytes(raw[2 + n : 10 + n], "big")
        return Delivery(raw[2 : 2 + n].decode(), seq, raw[10 + n :])
    expect(raw.startswith('{"topic":'), f"{what}: expected a delivery, got {short(raw)}")
    msg = parse_json(raw, what)
    expect(list(msg) == ["topic", "seq", "data"], f"{what}: members {list(msg)}")
    return Delivery(msg["topic"], msg["seq"], msg["data"])


def text_delivery(topic, seq, data_json):
    """The exact text of a delivery whose data is the JSON text `data_json` (verbatim)."""
    return f'{{"topic":{json.dumps(topic)},"seq":{seq},"data":{data_json}}}'


def binary_publish(topic, payload, kind=0x02):
    t = topic.encode()
    return bytes([kind, len(t)]) + t + payload


def padded_ping(size, rid=None):
    """A JSON ping (with id `rid` if given) padded with p's to exactly `size` bytes."""
    head = '{"op":"ping",' + ("" if rid is None else f'"id":{json.dumps(rid)},') + '"pad":"'
    tail = '"}'
    pad = size - len(head) - len(tail)
    assert pad >= 0, f"a ping cannot be as short as {size} bytes"
    text = head + "p" * pad + tail
    assert len(text.encode()) == size
    return text


def check_run(deliveries, topic, first, what):
    """Consecutive seqs from `first` on `topic`."""
    for k, d in enumerate(deliveries):
        expect(d.topic == topic, f"{what}: delivery on {d.topic!r}, expected {topic!r}")
        expect(d.seq == first + k, f"{what}: seq {d.seq} where {first + k} was due")


async def all_of(*coros):
    """Runs the coroutines together; the first failure cancels the rest and is raised."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for t in tasks:
            if t in done and t.exception() is not None:
                raise t.exception()
        return [t.result() for t in tasks]
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class PubSubChecks(Checks):
    def __init__(self, base, history=None, slow=None, only=None):
        super().__init__(base)
        self.history = history and history.rstrip("/")
        self.slow = {k: v.rstrip("/") for k, v in (slow or {}).items() if v}
        self.only = only
        self.ids = itertools.count(1)
        self.deadline = time.monotonic() + RUN_BUDGET
        # Topics of this run, so that a rerun against the same server starts from seq 1.
        self.tag = secrets.token_hex(4)

    def topic(self, name):
        return f"{name}.{self.tag}"

    async def run(self, name, coro_fn, timeout=CHECK_TIMEOUT):
        if self.only and name not in self.only:
            return
        left = self.deadline - time.monotonic()
        if left <= 1:
            self.fail(name, f"not started: the run's {RUN_BUDGET:.0f}s budget is spent")
            return
        await super().run(name, coro_fn, min(timeout, left))

    def open(self, path="/", base=None, **kwargs):
        options = dict(
            compression=None,
            open_timeout=10,
            close_timeout=3,
            ping_interval=None,
            proxy=None,
            max_size=4 << 20,
        )
        options.update(kwargs)
        return connect((base or self.base) + path, **options)

    def publisher(self, base=None, **kwargs):
        return self.open(PUBLISHER, base, **kwargs)

    # ---- request helpers -----------------------------------------------------------------

    async def until_pong(self, ws, sync_id):
        """The raw messages received before the pong with id `sync_id`."""
        got = []
        while True:
            raw = await recv_raw(ws, f"the pong {sync_id!r}")
            if isinstance(raw, str) and raw.startswith('{"op":'):
                msg = parse_json(raw, "a reply")
                if msg.get("op") == "pong" and msg.get("id") == sync_id:
                    return got
                if msg.get("op") == "error":
                    raise CheckFailed(f"unexpected error {short(raw)}")
            got.append(raw)

    async def sync(self, ws):
        """Pings and returns what arrived before the pong (the server answers in order)."""
        sync_id = f"sync-{next(self.ids)}"
        await ws.send(json.dumps({"op": "ping", "id": sync_id}))
        return await self.until_pong(ws, sync_id)

    async def request(self, ws, req):
        """Sends `req` then a ping; returns the first reply (parsed) and the raw messages between
        it and the pong. A pong first means `req` got no reply: fail at once, not on a timeout."""
        sync_id = f"sync-{next(self.ids)}"
        wire = req if isinstance(req, (str, bytes)) else json.dumps(req)
        await ws.send(wire)
        await ws.send(json.dumps({"op": "ping", "id": sync_id}))
        first = await recv_json(ws, f"the reply to {short(wire)}")
        if first.get("op") == "pong" and first.get("id") == sync_id:
            raise CheckFailed(f"no reply to {short(wire)}: the pong to a later ping came first")
        return first, await self.until_pong(ws, sync_id)

    async def subscribed(self, ws, topics, since=None, rid=None, epoch=None):
        """Subscribes (with `since` and `epoch` if given); checks the `subscribed` reply and returns
        its epoch and the catch-up (raw messages)."""
        rid = rid if rid is not None else f"sub-{next(self.ids)}"
        req = {"op": "subscribe", "id": rid, "topics": topics}
        if since is not None:
            req["since"] = since
        if epoch is not None:
            req["epoch"] = epoch
        reply, rest = await self.request(ws, req)
        check_reply(reply, "subscribed", rid, "the subscribe reply")
        want = list(dict.fromkeys(topics))
        expect(reply.get("topics") == want, f"subscribed {reply.get('topics')}, expected {want}")
        members = ["op", "id", "topics", "epoch"]
        expect(list(reply) == members, f"the reply's members are {list(reply)}, not {members}")
        got = reply["epoch"]
        expect(
            isinstance(got, str) and len(got) == 16 and all(c in "0123456789abcdef" for c in got),
            f"the epoch {got!r} is not a string of 16 lowercase hex digits",
        )
        return got, rest

    async def subscribe(self, ws, topics, since=None, rid=None, epoch=None):
        """Subscribes; checks the `subscribed` reply and returns the catch-up (raw messages)."""
        return (await self.subscribed(ws, topics, since, rid, epoch))[1]

    async def server_epoch(self, base=None):
        """The epoch a `subscribed` reply of the server at `base` gives (the session before a
        reconnection, in which the client learnt it)."""
        async with self.open(base=base) as ws:
            epoch, _ = await self.subscribed(ws, [self.topic("epoch.probe")])
            return epoch

    async def publish(self, pub, topic, data_json):
        """A JSON publish with `ack` (data given as JSON text); returns the acknowledged seq."""
        rid = next(self.ids)
        await pub.send(
            f'{{"op":"publish","id":{rid},"topic":{json.dumps(topic)},"ack":true,"data":{data_json}}}'
        )
        ack = await recv_json(pub, f"the ack of a publish on {topic}")
        check_reply(ack, "published", rid, "the publish ack")
        expect(ack.get("topic") == topic, f"ack for topic {ack.get('topic')!r}, expected {topic!r}")
        return ack.get("seq")

    async def publish_many(self, pub, topic, count, data_of=lambda i: str(i)):
        for i in range(1, count + 1):
            seq = await self.publish(pub, topic, data_of(i))
            expect(seq == i, f"publish {i} on {topic} acknowledged with seq {seq}")

    # ---- subscribe and deliveries --------------------------------------------------------------

    async def subscribe_reply(self):
        async with self.open() as ws:
            # Duplicates are merged, in order of first appearance.
            epoch, _ = await self.subscribed(ws, ["sr.b", "sr.a", "sr.b"], rid="s-1")
            again, _ = await self.subscribed(ws, ["sr.c"], rid=7)
            expect(again == epoch, f"the epoch changed from {epoch} to {again} within a run")
            reply, rest = await self.request(
                ws, {"op": "unsubscribe", "id": 7.5, "topics": ["sr.a"]}
            )
            check_reply(reply, "unsubscribed", 7.5, "the unsubscribe reply")
            expect(reply.get("topics") == ["sr.a"], f"unsubscribed {reply.get('topics')}")
            expect(rest == [], f"unexpected messages {short(rest)}")
            await ws.send('{"op":"ping"}')
            msg = await recv_json(ws, "the pong")
            check_reply(msg, "pong", None, "a ping without id")

    async def ordered_deliveries(self):
        topic, n, subscribers = self.topic("md.ORDER"), 2000, 3

        def data(i):
            return f'{{"px":{i}, "tag":"p{i}"}}'  # a space that a verbatim copy keeps

        async with contextlib.AsyncExitStack() as stack:
            subs = [await stack.enter_async_context(self.open()) for _ in range(subscribers)]
            for s in subs:
                rest = await self.subscribe(s, [topic])
                expect(rest == [], f"a topic nobody published on sent {short(rest)}")
            pub = await stack.enter_async_context(self.publisher())

            async def send_all():
                for i in range(1, n + 1):
                    await pub.send(
                        f'{{"op":"publish","topic":"{topic}","data":{data(i)},"ack":true,"id":{i}}}'
                    )

            async def acks():
                for i in range(1, n + 1):
                    ack = await recv_json(pub, f"ack {i}")
                    check_reply(ack, "published", i, f"ack {i}")
                    expect(
                        ack.get("seq") == i, f"publish {i} acknowledged with seq {ack.get('seq')}"
                    )

            async def read(k, ws):
                for i in range(1, n + 1):
                    raw = await recv_raw(ws, f"delivery {i} at subscriber {k}")
                    if raw != text_delivery(topic, i, data(i)):
                        d = decode(raw, f"subscriber {k}")
                        expect(d.seq == i, f"subscriber {k}: seq {d.seq} where {i} was due")
                        raise CheckFailed(
                            f"subscriber {k}: delivery {i} is {short(raw)}, data not verbatim"
                        )

            await all_of(send_all(), acks(), *(read(k, s) for k, s in enumerate(subs)))

    async def snapshot(self):
        topic = self.topic("md.SNAP")
        async with self.open() as live, self.publisher() as pub, self.open() as late:
            await self.subscribe(live, [topic])
            await self.publish_many(pub, topic, 3, lambda i: f'{{"px":{i}}}')
            seen = [await recv_raw(live, f"live delivery {i}") for i in (1, 2, 3)]
            check_run([decode(r) for r in seen], topic, 1, "the live subscriber")
            rest = await self.subscribe(late, [topic, self.topic("md.SNAP.none")])
            expect(
                len(rest) == 1,
                f"expected the last value only, got {len(rest)} messages {short(rest)}",
            )
            d = decode(rest[0], "the snapshot")
            expect((d.seq, d.data) == (3, {"px": 3}), f"snapshot {d}, expected seq 3")
            expect(
                rest[0] == seen[2],
                f"snapshot {short(rest[0])} differs from the live {short(seen[2])}",
            )

    async def join_mid_stream(self):
        """Subscribers join a topic while it is published on without pause: each sees its
        snapshot and then the next seqs exactly, never one older than the snapshot."""
        topic, rounds, reads = self.topic("md.MID"), 20, 25
        async with self.publisher() as pub:
            await pub.send(binary_publish(topic, b"0"))  # so that every join has a snapshot
            stop = asyncio.Event()

            async def feed():
                i = 0
                while not stop.is_set():
                    i += 1
                    await pub.send(binary_publish(topic, str(i).encode()))
                    if i % 200 == 0:  # long bursts, with pauses for the subscribers to read
                        await asyncio.sleep(0.005)

            async def joins():
                try:
                    for r in range(rounds):
                        # Deliveries keep coming: do not wait long for a clean close.
                        async with self.open(close_timeout=0.1) as ws:
                            # The snapshot, and maybe live deliveries before the pong.
                            rest = await self.subscribe(ws, [topic])
                            expect(rest, f"join {r}: no snapshot")
                            seqs = [decode(raw, f"join {r}: the catch-up").seq for raw in rest]
                            for k in range(reads):
                                raw = await recv_raw(ws, f"join {r}: delivery {k + 1}")
                                seqs.append(decode(raw).seq)
                            expect(
                                seqs == list(range(seqs[0], seqs[0] + len(seqs))),
                                f"join {r}: seqs {seqs}, not consecutive from the snapshot",
                            )
                finally:
                    stop.set()

            await all_of(feed(), joins())

    async def since_without_history(self):
        topic = self.topic("md.SINCE0")
        async with self.publisher() as pub:
            await self.publish_many(pub, topic, 3)
        epoch = await self.server_epoch()
        async with self.open() as ws:
            rest = await self.subscribe(ws, [topic], since={topic: 2}, epoch=epoch)
            expect([decode(r).seq for r in rest] == [3], f"one behind: got {short(rest)}")
        async with self.open() as ws:
            rest = await self.subscribe(ws, [topic], since={topic: 1}, epoch=epoch)
            expect_resync(rest, topic, 3)
        async with self.open() as ws:
            # Without the epoch: the seq is taken at its word (the form from before epochs).
            rest = await self.subscribe(ws, [topic], since={topic: 2})
            expect([decode(r).seq for r in rest] == [3], f"no epoch, one behind: {short(rest)}")

    async def since_wrong_epoch(self):
        """A since counted in another epoch (an earlier run of the server) gets a resync and the
        last value, whatever the seq; the right epoch, in either case, the deliveries after it."""
        topic, never = self.topic("ep.t"), self.topic("ep.never")
        async with self.publisher() as pub:
            await self.publish_many(pub, topic, 3)
        epoch = await self.server_epoch()
        wrong = epoch[:-1] + ("0" if epoch[-1] != "0" else "1")
        for seq in (2, 3, 0):
            async with self.open() as ws:
                rest = await self.subscribe(ws, [topic], since={topic: seq}, epoch=wrong)
                expect_resync(rest, topic, 3)
        async with self.open() as ws:
            # A topic nothing was published on: the resync notice alone, at seq 0.
            rest = await self.subscribe(ws, [never], since={never: 5}, epoch=wrong)
            expect(len(rest) == 1, f"expected the resync alone, got {short(rest)}")
            msg = parse_json(rest[0], "the resync")
            check_reply(msg, "resync", None, "the resync notice")
            expect((msg.get("topic"), msg.get("seq")) == (never, 0), f"resync {msg}")
        async with self.open() as ws:
            rest = await self.subscribe(ws, [topic], since={topic: 2}, epoch=epoch.upper())
            expect([decode(r).seq for r in rest] == [3], f"the right epoch: got {short(rest)}")
            rest = await self.subscribe(ws, [topic], since={topic: 3}, epoch=epoch)
            expect(rest == [], f"up to date, yet got {short(rest)}")

    # ---- history ------------------------------------------------------------------------------

    async def history_replay(self):
        topic, other = self.topic("h.replay"), self.topic("h.other")
        async with self.publisher(self.history) as pub, self.open(base=self.history) as ws:
            await self.publish_many(pub, topic, 150, lambda i: f'{{"v":{i}}}')
            await self.publish_many(pub, other, 5)
            epoch = await self.server_epoch(self.history)
            rest = await self.subscribe(ws, [topic, other], since={topic: 120}, epoch=epoch)
            got = [decode(r) for r in rest]
            expect(len(got) == 31, f"expected 30 replayed and 1 last value, got {len(got)}")
            check_run(got[:30], topic, 121, "the replay")
            for d in got[:30]:
                expect(d.data == {"v": d.seq}, f"seq {d.seq} carries {d.data}")
            expect(
                got[30] == Delivery(other, 5, 5),
                f"then {got[30]}, expected the last value of {other}",
            )
            # Up to date: nothing; "since" applies per topic.
            rest = await self.subscribe(ws, [topic], since={topic: 150}, epoch=epoch)
            expect(rest == [], f"up to date, yet got {short(rest)}")

    async def history_resync(self):
        topic = self.topic("h.resync")
        async with self.publisher(self.history) as pub, self.open(base=self.history) as ws:
            await self.publish_many(pub, topic, 150)
            oldest = 150 - HISTORY
            epoch = await self.server_epoch(self.history)
            rest = await self.subscribe(ws, [topic], since={topic: oldest - 1}, epoch=epoch)
            expect_resync(rest, topic, 150)
        async with self.open(base=self.history) as ws:
            # A since past the latest seq: resync too (even without an epoch).
            expect_resync(await self.subscribe(ws, [topic], since={topic: 1000}), topic, 150)
        async with self.open(base=self.history) as ws:
            # Exactly what history holds: all of it, no resync.
            rest = await self.subscribe(ws, [topic], since={topic: oldest}, epoch=epoch)
            check_run(
                [decode(r) for r in rest], topic, oldest + 1, "the replay of the whole history"
            )
            expect(len(rest) == HISTORY, f"replayed {len(rest)}, history holds {HISTORY}")

    # ---- unsubscribe --------------------------------------------------------------------------

    async def unsubscribe(self):
        a, b = self.topic("un.a"), self.topic("un.b")
        async with self.open() as ws, self.publisher() as pub:
            await self.subscribe(ws, [a, b])
            await self.publish(pub, a, "1")
            expect(
                decode(await recv_raw(ws, "the first delivery")) == Delivery(a, 1, 1),
                "first delivery",
            )
            reply, rest = await self.request(
                ws, {"op": "unsubscribe", "id": "u", "topics": [a, self.topic("un.never")]}
            )
            check_reply(reply, "unsubscribed", "u", "the unsubscribe reply")
            expect(
                reply.get("topics") == [a, self.topic("un.never")],
                f"unsubscribed {reply.get('topics')}",
            )
            expect(rest == [], f"unexpected {short(rest)}")
            await self.publish(pub, a, "2")
            await self.publish(pub, b, "3")
            d = decode(await recv_raw(ws, "the delivery on b"))
            expect(d == Delivery(b, 1, 3), f"after unsubscribing {a}: got {d}")
            rest = await self.sync(ws)
            expect(rest == [], f"deliveries after unsubscribing: {short(rest)}")

    # ---- publishers ---------------------------------------------------------------------------

    async def unauthorized_publish(self):
        topic = self.topic("auth.t")
        async with self.open() as sub, self.open() as anon:
            await self.subscribe(sub, [topic])
            reply, _ = await self.request(
                anon, {"op": "publish", "id": 3, "topic": topic, "data": 1}
            )
            check_error(reply, "unauthorized", 3, "a JSON publish without the token")
            reply, _ = await self.request(anon, binary_publish(topic, b"raw"))
            check_error(reply, "unauthorized", None, "a binary publish without the token")
            reply, _ = await self.request(anon, binary_publish(topic, b'"t"', 0x03))
            check_error(reply, "unauthorized", None, "a 0x03 publish without the token")
            rest = await self.sync(sub)
            expect(rest == [], f"an unauthorized publish was delivered: {short(rest)}")

    async def wrong_token(self):
        for path, headers in [("/?token=nope", None), ("/", {"Authorization": "Bearer nope"})]:
            try:
                async with self.open(path, additional_headers=headers):
                    pass
            except InvalidStatus as e:
                status = e.response.status_code
                expect(status == 403, f"{path} {headers}: HTTP {status}, expected 403")
                continue
            raise CheckFailed(f"a wrong token ({path} {headers}) was let in")

    async def token_publishes(self):
        topic = self.topic("auth.ok")
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        async with (
            self.open() as sub,
            self.publisher() as q,
            self.open(additional_headers=bearer) as b,
        ):
            await self.subscribe(sub, [topic])
            expect(await self.publish(q, topic, '"query"') == 1, "the ?token= publish")
            expect(await self.publish(b, topic, '"bearer"') == 2, "the Bearer publish")
            got = [decode(await recv_raw(sub, "a delivery")) for _ in range(2)]
            expect(got == [Delivery(topic, 1, "query"), Delivery(topic, 2, "bearer")], f"got {got}")

    # ---- binary -------------------------------------------------------------------------------

    async def binary_publish(self):
        topic = self.topic("bin.raw")
        payloads = [bytes(range(256)), b"", bytes((i * 31) & 0xFF for i in range(100_000))]
        async with self.open() as sub, self.publisher() as pub:
            await self.subscribe(sub, [topic])
            for p in payloads:
                await pub.send(binary_publish(topic, p))
            expect(await self.sync(pub) == [], "a binary publish was answered")
            for seq, p in enumerate(payloads, 1):
                raw = await recv_raw(sub, f"binary delivery {seq}")
                expect(isinstance(raw, bytes), f"delivery {seq} came as text: {short(raw)}")
                d = decode(raw)
                expect(
                    (d.topic, d.seq) == (topic, seq),
                    f"delivery {seq} decoded as {d.topic!r} seq {d.seq}",
                )
                expect(
                    d.data == p,
                    f"delivery {seq}: {len(d.data)} payload bytes, sent {len(p)} (or differing)",
                )
            async with self.open() as late:
                rest = await self.subscribe(late, [topic])
                expect(len(rest) == 1 and isinstance(rest[0], bytes), f"snapshot {short(rest)}")
                expect(decode(rest[0]) == Delivery(topic, 3, payloads[2]), "the binary snapshot")

    async def binary_text_publish(self):
        topic = self.topic("bin.text")
        texts = ['{"a":[1, 2]}', 'hé "quoted"\n\\ not json', " 42 "]
        async with self.open() as sub, self.publisher() as pub:
            await self.subscribe(sub, [topic])
            for t in texts:
                await pub.send(binary_publish(topic, t.encode(), 0x03))
            for seq, t in enumerate(texts, 1):
                raw = await recv_raw(sub, f"text delivery {seq}")
                expect(isinstance(raw, str), f"a 0x03 publish delivered as binary: {short(raw)}")
                as_json = t if _is_json(t) else json.dumps(t, ensure_ascii=False)
                if raw != text_delivery(topic, seq, as_json):
                    d = decode(raw)
                    expect(d.data == json.loads(as_json), f"{t!r} delivered as {short(raw)}")

    async def binary_malformed(self):
        async with self.publisher() as pub:
            for bad in [bytes([0x02, 200]) + b"abc", bytes([0x09, 1]) + b"t", b"\x02"]:
                reply, _ = await self.request(pub, bad)
                check_error(reply, "bad_request", None, f"binary {short(bad)}")
            reply, _ = await self.request(pub, binary_publish("bad topic", b"x"))
            check_error(reply, "bad_topic", None, "a binary publish on 'bad topic'")

    # ---- errors -------------------------------------------------------------------------------

    def error_check(self, requests):
        """Each request gets an error reply with its code and id; the connection stays open."""

        async def check():
            async with self.open() as ws:
                for req, code, rid, topic in requests:
                    reply, rest = await self.request(ws, req)
                    check_error(
                        reply, code, rid, short(req if isinstance(req, str) else json.dumps(req))
                    )
                    if topic is not None:
                        expect(
                            reply.get("topic") == topic,
                            f"error topic {reply.get('topic')!r}, expected {topic!r}",
                        )
                    expect(rest == [], f"more than the error: {short(rest)}")

        return check

    async def all_or_nothing(self):
        """One bad name fails the whole subscribe: the good one is not subscribed either."""
        topic = self.topic("err.good")
        async with self.open() as ws, self.publisher() as pub:
            reply, _ = await self.request(
                ws, {"op": "subscribe", "id": 1, "topics": [topic, "bad topic!"]}
            )
            check_error(reply, "bad_topic", 1, "subscribe with one bad name")
            await self.publish(pub, topic, "1")
            expect(await self.sync(ws) == [], f"{topic} was subscribed by a failed request")

    async def too_many_topics_per_conn(self):
        async with self.open() as ws:
            for k in range(MAX_TOPICS_PER_CONN // MAX_TOPICS_PER_OP):
                await self.subscribe(ws, [f"many.{k}.{i}" for i in range(MAX_TOPICS_PER_OP)])
            reply, _ = await self.request(
                ws, {"op": "subscribe", "id": "more", "topics": ["many.0.0", "many.x"]}
            )
            check_error(reply, "too_many_topics", "more", f"topic {MAX_TOPICS_PER_CONN + 1}")
            # Topics already held do not count again.
            await self.subscribe(ws, ["many.0.0", "many.3.63"])

    async def too_large_closes(self):
        """A subscriber's message over MAX_OP_LEN is refused at its frame header: a 1009 close.
        One of exactly MAX_OP_LEN bytes is answered (the limit is inclusive)."""
        over = MAX_OP_LEN + 1
        async with self.open() as ws:
            try:
                # websockets' max_size bounds what it receives only: the send goes out whole.
                await ws.send(padded_ping(over))
                got = await recv_raw(ws, f"the close after a message of {over} bytes")
                raise CheckFailed(f"still open after a message of {over} bytes: got {short(got)}")
            except ConnectionClosed as e:
                expect(e.rcvd is not None, f"dropped without a close frame ({e})")
                expect(e.rcvd.code == 1009, f"close code {e.rcvd.code}, expected 1009")
            expect(ws.close_code == 1009, f"close_code {ws.close_code}, expected 1009")
        async with self.open() as ws:
            await ws.send(padded_ping(MAX_OP_LEN, "at-limit"))
            msg = await recv_json(ws, f"the pong to a ping of {MAX_OP_LEN} bytes")
            check_reply(msg, "pong", "at-limit", f"a ping of exactly {MAX_OP_LEN} bytes")

    async def publisher_too_large(self):
        """A publisher may send up to 1 MiB, but a JSON request over MAX_OP_LEN gets a
        `too_large` error reply, and the connection stays open."""
        over = MAX_OP_LEN + 1
        async with self.publisher() as pub:
            reply, rest = await self.request(pub, padded_ping(over))
            check_error(reply, "too_large", None, f"a publisher's JSON request of {over} bytes")
            expect(rest == [], f"more than the error: {short(rest)}")
            await pub.send('{"op":"ping"}')
            msg = await recv_json(pub, "the pong after the too_large error")
            check_reply(msg, "pong", None, "a ping after the too_large error")

    async def abuse(self):
        bad = "{not json"
        async with self.open() as ws:
            for _ in range(2):
                # 16 failures in a row are tolerated; a success resets the count.
                for _ in range(MAX_ERRORS_IN_A_ROW):
                    await ws.send(bad)
                for i in range(MAX_ERRORS_IN_A_ROW):
                    check_error(
                        await recv_json(ws, f"error {i + 1}"),
                        "bad_json",
                        None,
                        f"bad request {i + 1}",
                    )
                expect(await self.sync(ws) == [], "extra messages")
            for _ in range(MAX_ERRORS_IN_A_ROW + 1):
                await ws.send(bad)
            for i in range(MAX_ERRORS_IN_A_ROW + 1):
                check_error(
                    await recv_json(ws, f"error {i + 1}"), "bad_json", None, f"bad request {i + 1}"
                )
            try:
                got = await recv_raw(ws, "the close after 17 bad requests")
                raise CheckFailed(f"still open after 17 bad requests in a row: got {short(got)}")
            except ConnectionClosed as e:
                expect(e.rcvd is not None, f"dropped without a close frame ({e})")
                expect(e.rcvd.code == 1008, f"close code {e.rcvd.code}, expected 1008")
                expect(e.rcvd.reason == "too many bad requests", f"close reason {e.rcvd.reason!r}")

    # ---- slow consumers -----------------------------------------------------------------------

    async def open_stuck(self, base):
        """A client whose reading stops once a frame is queued: websockets pauses the transport
        above `max_queue`; a small kernel receive buffer keeps what TCP holds for it small too."""
        url = urllib.parse.urlsplit(base)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, STUCK_RCVBUF)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (url.hostname, url.port))
        return await self.open(base=base, sock=sock, max_queue=(1, 0))

    async def flood(self, base, topic):
        """The stuck client (subscribed, not reading), a reader that gets every delivery in order,
        and a publisher paced to the reader. Returns the stuck client, still not read from."""
        stuck = await self.open_stuck(base)
        try:
            await self.subscribe(stuck, [topic])
            async with self.open(base=base) as reader, self.publisher(base) as pub:
                await self.subscribe(reader, [topic])
                seen = 0
                progress = asyncio.Event()
                expected = text_delivery(topic, 0, json.dumps(FLOOD_PAYLOAD))
                head, tail = expected.split('"seq":0')

                async def read():
                    nonlocal seen
                    for i in range(1, FLOOD_MESSAGES + 1):
                        raw = await recv_raw(reader, f"delivery {i} at the reader")
                        if raw != f'{head}"seq":{i}{tail}':
                            d = decode(raw, "the reader")
                            raise CheckFailed(
                                f"the reader lost or reordered: seq {d.seq} where {i} was due"
                            )
                        seen = i
                        progress.set()

                reading = asyncio.ensure_future(read())
                try:
                    request = (
                        f'{{"op":"publish","topic":"{topic}","data":{json.dumps(FLOOD_PAYLOAD)}}}'
                    )
                    for i in range(1, FLOOD_MESSAGES + 1):
                        while i > seen + FLOOD_WINDOW:
                            progress.clear()
                            waiting = asyncio.ensure_future(progress.wait())
                            await asyncio.wait(
                                [waiting, reading], return_when=asyncio.FIRST_COMPLETED
                            )
                            waiting.cancel()
                            if reading.done():
                                reading.result()  # raises what stopped the reader
                        await pub.send(request)
                    await reading
                finally:
                    reading.cancel()
                    await asyncio.gather(reading, return_exceptions=True)
            return stuck
        except BaseException:
            await close_quietly(stuck)
            raise

    async def resume_stuck(self, stuck, base, topic, policy):
        """Resumes reading the stuck client: its deliveries up to the pong to a ping must increase
        (conflate: up to the latest seq); then one more publish reaches it: it is still open, and
        its seqs show the gap of what it missed."""
        sync_id = "after-flood"
        await stuck.send(json.dumps({"op": "ping", "id": sync_id}))
        got = [decode(r, "the stuck client") for r in await self.until_pong(stuck, sync_id)]
        seqs = [d.seq for d in got]
        expect(all(d.topic == topic for d in got), "a delivery on another topic")
        expect(seqs[:1] == [1], f"the first delivery is {seqs[:1]}, expected seq 1")
        decrease = _first_decrease(seqs)
        expect(decrease is None, f"seqs not increasing: {decrease}")
        expect(len(seqs) < FLOOD_MESSAGES, "the stuck client got every message: it was never slow")
        if policy == "conflate":
            expect(
                seqs[-1] == FLOOD_MESSAGES,
                f"the last seq is {seqs[-1]}, not the latest {FLOOD_MESSAGES}",
            )
        async with self.publisher(base) as pub:
            await self.publish(pub, topic, '"after"')
        d = decode(await recv_raw(stuck, "a publish after the flood"), "the stuck client")
        expect((d.seq, d.data) == (FLOOD_MESSAGES + 1, "after"), f"after the flood: {d}")
        seqs.append(d.seq)
        expect(len(seqs) < seqs[-1], "no gap in the seqs")
        print(
            f"# slow_consumer_{policy}: the stuck client got {len(seqs)} of {seqs[-1]} deliveries, "
            f"the last of the flood seq {seqs[-2]}",
            flush=True,
        )

    async def expect_slow_close(self, stuck):
        """The stuck client, read again: consecutive deliveries from seq 1 (nothing is dropped
        before the close), then a 1008 close. It sends nothing: should the server have given up
        waiting for the close handshake, data sent to its closed socket would draw a reset, and
        the reset would discard the close frame still unread here."""
        seqs = []
        try:
            while True:
                d = decode(await recv_raw(stuck, "the close"), "the stuck client")
                expect(
                    d.seq == len(seqs) + 1, f"seq {d.seq} after {len(seqs)}: dropped, not closed"
                )
                seqs.append(d.seq)
                expect(d.seq < FLOOD_MESSAGES, "got every message and no close")
        except ConnectionClosed as e:
            expect(
                e.rcvd is not None,
                f"dropped without a close frame after {len(seqs)} deliveries ({e})",
            )
            expect(e.rcvd.code == 1008, f"close code {e.rcvd.code}, expected 1008")
            expect(e.rcvd.reason == "slow consumer", f"close reason {e.rcvd.reason!r}")
        print(
            f"# slow_consumer_close: the stuck client got {len(seqs)} of {FLOOD_MESSAGES}, "
            "then a 1008 close",
            flush=True,
        )

    def slow_consumer(self, policy):
        async def check():
            base = self.slow[policy]
            topic = self.topic(f"slow.{policy}")
            stuck = await self.flood(base, topic)
            try:
                if policy == "close":
                    await self.expect_slow_close(stuck)
                else:
                    await self.resume_stuck(stuck, base, topic, policy)
            finally:
                await close_quietly(stuck)

        return check

    # ---- driver -------------------------------------------------------------------------------

    async def run_all(self):
        await self.run("subscribe_reply_echoes_id", self.subscribe_reply)
        await self.run("deliveries_in_order_3x2000", self.ordered_deliveries)
        await self.run("snapshot_on_subscribe", self.snapshot)
        await self.run("join_mid_stream_no_older_than_snapshot", self.join_mid_stream)
        await self.run("since_without_history", self.since_without_history)
        await self.run("since_wrong_epoch_resyncs", self.since_wrong_epoch)
        if self.history:
            await self.run("history_since_replays_missed", self.history_replay)
            await self.run("history_too_old_resyncs", self.history_resync)
        await self.run("unsubscribe_stops_deliveries", self.unsubscribe)
        await self.run("unauthorized_publish", self.unauthorized_publish)
        await self.run("wrong_token_403", self.wrong_token)
        await self.run("token_query_and_bearer_publish", self.token_publishes)
        await self.run("binary_publish_delivery", self.binary_publish)
        await self.run("binary_text_publish_delivery", self.binary_text_publish)
        await self.run("binary_publish_malformed", self.binary_malformed)
        await self.run(
            "error_bad_json",
            self.error_check(
                [
                    ("{not json", "bad_json", None, None),
                    ('{"op":"ping"} trailing', "bad_json", None, None),
                ]
            ),
        )
        await self.run(
            "error_bad_request",
            self.error_check(
                [
                    ({"op": "subscribe", "id": 5}, "bad_request", 5, None),
                    ("[1,2]", "bad_request", None, None),
                    (
                        {"op": "subscribe", "id": "s", "topics": ["a"], "since": {"b": 1}},
                        "bad_request",
                        "s",
                        None,
                    ),
                    ('{"op":"ping","id":1,"id":2}', "bad_request", None, None),
                    (
                        {"op": "subscribe", "id": "e", "topics": ["a"], "epoch": "0x2a"},
                        "bad_request",
                        "e",
                        None,
                    ),
                ]
            ),
        )
        await self.run(
            "error_unknown_op",
            self.error_check(
                [
                    ({"op": "frobnicate", "id": "u1"}, "unknown_op", "u1", None),
                ]
            ),
        )
        long_name = "L" * (MAX_TOPIC_LEN + 1)
        await self.run(
            "error_bad_topic",
            self.error_check(
                [
                    (
                        {"op": "subscribe", "id": 1, "topics": ["ok", "bad topic!"]},
                        "bad_topic",
                        1,
                        "bad topic!",
                    ),
                    ({"op": "subscribe", "id": 2, "topics": [""]}, "bad_topic", 2, None),
                    (
                        {"op": "subscribe", "id": 3, "topics": [long_name]},
                        "topic_too_long",
                        3,
                        long_name[:64],
                    ),
                ]
            ),
        )
        await self.run("error_bad_topic_subscribes_nothing", self.all_or_nothing)
        await self.run(
            "error_too_many_topics",
            self.error_check(
                [
                    (
                        {
                            "op": "subscribe",
                            "id": 9,
                            "topics": [f"t{i}" for i in range(MAX_TOPICS_PER_OP + 1)],
                        },
                        "too_many_topics",
                        9,
                        None,
                    ),
                ]
            ),
        )
        await self.run("error_too_many_topics_per_connection", self.too_many_topics_per_conn)
        await self.run("too_large_closes_1009", self.too_large_closes)
        await self.run("publisher_too_large_error", self.publisher_too_large)
        await self.run("bad_requests_17_close_1008", self.abuse)
        for policy in ("close", "drop", "conflate"):
            if policy in self.slow:
                await self.run(f"slow_consumer_{policy}", self.slow_consumer(policy))


def expect_resync(rest, topic, latest):
    expect(len(rest) == 2, f"expected a resync and the last value, got {short(rest)}")
    msg = parse_json(rest[0], "the resync")
    check_reply(msg, "resync", None, "the resync notice")
    expect(
        (msg.get("topic"), msg.get("seq")) == (topic, latest),
        f"resync {msg}, expected seq {latest}",
    )
    d = decode(rest[1], "the last value after the resync")
    expect((d.topic, d.seq) == (topic, latest), f"after the resync: {d}")


def _is_json(text):
    try:
        json.loads(text)
        return True
    except ValueError:
        return False


def _first_decrease(seqs):
    """Where `seqs` first fails to increase, or None."""
    for k in range(1, len(seqs)):
        if seqs[k] <= seqs[k - 1]:
            return f"seq {seqs[k]} after {seqs[k - 1]} (delivery {k + 1})"
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--history")
    for policy in ("close", "drop", "conflate"):
        parser.add_argument(f"--slow-{policy}", dest=f"slow_{policy}")
    parser.add_argument("--only", help="comma-separated check names")
    args = parser.parse_args()
    urls = [args.url, args.history, args.slow_close, args.slow_drop, args.slow_conflate]
    if any(u is not None and not u.startswith("ws://") for u in urls):
        parser.print_usage(sys.stderr)
        return 2
    print(f"# python {sys.version.split()[0]}, websockets {websockets.__version__}", flush=True)
    slow = {"close": args.slow_close, "drop": args.slow_drop, "conflate": args.slow_conflate}
    only = set(args.only.split(",")) if args.only else None
    checks = PubSubChecks(args.url, args.history, slow, only)
    started = time.monotonic()
    asyncio.run(checks.run_all())
    failed = [name for name, ok in checks.results if not ok]
    passed = len(checks.results) - len(failed)
    took = time.monotonic() - started
    print(f"# py_pubsub summary: {passed} ok, {len(failed)} FAIL in {took:.1f}s", flush=True)
    if failed:
        print(f"# failed: {' '.join(failed)}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
