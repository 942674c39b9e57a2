"""A TCP front for the e2e tests: each connection goes to the first upstream that accepts it.

usage: tcp_failover.py PORT UPSTREAM_PORT [UPSTREAM_PORT ...]

Upstreams are loopback ports tried in the order given, so connections land on the first one
while it is up and on the next once it refuses, as behind a load balancer whose health check
dropped a dead replica. Bytes pass through untouched (TLS ends at the upstream). When either
side closes or fails, both are closed, so a client sees its upstream die and reconnects.
Each connection's upstream is printed, one line each: "<upstream port>".
"""

import asyncio
import sys

PORT = int(sys.argv[1])
UPSTREAMS = [int(p) for p in sys.argv[2:]]


async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def handle(client_reader, client_writer):
    for port in UPSTREAMS:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            continue
        print(port, flush=True)
        await asyncio.gather(pipe(client_reader, writer), pipe(reader, client_writer))
        return
    client_writer.close()


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", PORT)
    async with server:
        await server.serve_forever()


asyncio.run(main())
