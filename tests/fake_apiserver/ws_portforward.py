"""An independent client of the fake API server's pods/portforward: the PyPI
`websockets` library speaking the v4.channel.k8s.io port-forward protocol.

usage: ws_portforward.py SERVER_URL NAMESPACE POD PORT REQUEST_FILE
Sends the request's bytes on the port's data channel and writes every byte the
pod sends back to stdout; an error-channel message goes to stderr, exit 3.
"""

import asyncio
import sys

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed


async def main(server, ns, pod, port, request_file):
    url = server.replace("http://", "ws://", 1)
    url += f"/api/v1/namespaces/{ns}/pods/{pod}/portforward?ports={port}"
    request = open(request_file, "rb").read()
    headers = {"Authorization": "Bearer fake-token"}
    async with connect(url, subprotocols=["v4.channel.k8s.io"],
                       additional_headers=headers, max_size=None) as ws:
        assert ws.subprotocol == "v4.channel.k8s.io", ws.subprotocol
        # Each channel opens with its port number, little-endian.
        for channel in (0, 1):
            first = await ws.recv()
            want = bytes([channel]) + int(port).to_bytes(2, "little")
            assert first == want, (first, want)
        error = b""
        try:
            await ws.send(b"\x00" + request)
        except ConnectionClosed:
            pass  # a refused port: the error frame is already queued
        try:
            async for msg in ws:
                if msg[0] == 0:
                    sys.stdout.buffer.write(msg[1:])
                elif msg[0] == 1:
                    error += msg[1:]
        except ConnectionClosed:
            pass
        sys.stdout.flush()
        if error:
            sys.stderr.write(error.decode())
            sys.exit(3)


asyncio.run(main(*sys.argv[1:]))
