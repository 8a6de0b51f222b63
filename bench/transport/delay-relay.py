#!/usr/bin/env python3
"""A TCP-to-unix-socket relay that delays each direction by a fixed time.

This kernel has no netem (CONFIG_NET_SCH_NETEM is not set), so the
transport bench shapes the rate of its veth with tbf and adds the link's
latency here, in the gateway namespace: every chunk read from one side is
written to the other DELAY_MS later, in order. Each direction holds at most
CAP bytes in flight (about the link's bandwidth-delay product) before it
stops reading, so the sender sees backpressure as it would on the link.
With COUNT_FILE, each connection appends one line there when it ends:
"down BYTES up BYTES" (to the client, from the client), what the relay
carried, so a test can read the bytes of one session on the wire.

    delay-relay.py LISTEN_ADDR PORT UNIX_PATH DELAY_MS CAP_BYTES [COUNT_FILE]
"""
import asyncio
import sys


async def pump(reader, writer, delay, cap):
    """Copies reader to writer, each chunk delay seconds late; returns the
    bytes it carried."""
    loop = asyncio.get_running_loop()
    total = 0
    queue = asyncio.Queue()
    held = 0
    room = asyncio.Event()
    room.set()

    async def sender():
        nonlocal held
        while True:
            when, data = await queue.get()
            if data is None:
                break
            wait = when - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
            held -= len(data)
            if held < cap:
                room.set()
        writer.close()

    task = asyncio.create_task(sender())
    try:
        while True:
            await room.wait()
            data = await reader.read(65536)
            if not data:
                break
            held += len(data)
            total += len(data)
            if held >= cap:
                room.clear()
            queue.put_nowait((loop.time() + delay, data))
    except (ConnectionError, OSError):
        pass
    queue.put_nowait((0, None))
    try:
        await task
    except (ConnectionError, OSError):
        pass
    return total


async def main():
    addr, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    delay, cap = float(sys.argv[4]) / 1000, int(sys.argv[5])
    counts = sys.argv[6] if len(sys.argv) > 6 else None

    async def client(creader, cwriter):
        try:
            sreader, swriter = await asyncio.open_unix_connection(path)
        except OSError:
            cwriter.close()
            return
        up, down = await asyncio.gather(pump(creader, swriter, delay, cap),
                                        pump(sreader, cwriter, delay, cap))
        if counts:
            with open(counts, "a") as f:
                f.write(f"down {down} up {up}\n")

    server = await asyncio.start_server(client, addr, port, reuse_address=True)
    async with server:
        await server.serve_forever()


asyncio.run(main())
