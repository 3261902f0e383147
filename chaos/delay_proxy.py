"""A TCP proxy that delays what crosses it — the campaign's network delay, because `tc
netem` does not exist in this kernel (issue #10).

Runs inside a node's network namespace, in front of the node's cluster port: peers dial
LISTEN, the proxy dials TARGET (the node). Every chunk read from either side is written to
the other side `delay` ms after it arrived, in order, per direction; the delay is read from
CONTROL (a file holding milliseconds; missing or empty = 0) every 100 ms. Memory is bounded:
at most QUEUE_CHUNKS chunks wait per direction (reading pauses when full).

    python3 chaos/delay_proxy.py LISTEN_PORT TARGET_PORT CONTROL_FILE
"""

import asyncio
import sys
import time

QUEUE_CHUNKS = 256
CHUNK_BYTES = 65536


async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: dict) -> None:
    queue: asyncio.Queue = asyncio.Queue(maxsize=QUEUE_CHUNKS)

    async def read() -> None:
        try:
            while True:
                data = await reader.read(CHUNK_BYTES)
                if not data:
                    break
                await queue.put((time.monotonic(), data))
        except (ConnectionError, OSError):
            pass
        finally:
            await queue.put(None)

    async def write() -> None:
        try:
            while True:
                item = await queue.get()
                if item is None:
                    break
                arrived, data = item
                wait = arrived + state["delay"] - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    await asyncio.gather(read(), write(), return_exceptions=True)


async def main(listen: int, target: int, control: str) -> None:
    state = {"delay": 0.0}

    async def watch() -> None:
        while True:
            try:
                with open(control) as f:
                    text = f.read().strip()
                state["delay"] = int(text) / 1000 if text else 0.0
            except (OSError, ValueError):
                state["delay"] = 0.0
            await asyncio.sleep(0.1)

    async def serve(c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        try:
            t_reader, t_writer = await asyncio.open_connection("127.0.0.1", target)
        except OSError:
            c_writer.close()
            return
        await asyncio.gather(pump(c_reader, t_writer, state), pump(t_reader, c_writer, state), return_exceptions=True)

    asyncio.get_running_loop().create_task(watch())
    server = await asyncio.start_server(serve, "0.0.0.0", listen)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]))
