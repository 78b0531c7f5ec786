"""A deliberately simple, slow echo server (Python `websockets`) for cross-checking clients.

    python3 echo_server.py PORT [PING_INTERVAL_SECONDS]

Listens on 127.0.0.1 only. Because it is slow, any reasonable client keeps up
with it, so two clients measuring it must agree: tools/crosscheck.sh uses it to
compare wsbench with the independent Node client. It also counts the messages
it echoed and prints the count on SIGTERM, a third opinion. With a ping interval
it pings every client and drops those that do not answer within that time
(a check that wsbench answers pings).
"""

import asyncio
import signal
import sys

from websockets.asyncio.server import serve

COUNT = 0


async def echo(ws):
    global COUNT
    async for msg in ws:
        COUNT += 1
        await ws.send(msg)


async def main(port, ping):
    stop = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set_result, None)
    async with serve(echo, "127.0.0.1", port, compression=None, max_size=64 << 20, ping_interval=ping, ping_timeout=ping):
        print(f"python websockets echo listening on 127.0.0.1:{port}", file=sys.stderr, flush=True)
        await stop
    print(f"echoed {COUNT}", flush=True)


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9001
    ping = float(sys.argv[2]) if len(sys.argv) > 2 else None
    asyncio.run(main(port, ping))
