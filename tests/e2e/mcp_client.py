"""Drives `asdo mcp` with the official MCP Python SDK (PyPI `mcp`): a client no
one here wrote. usage: mcp_client.py CALLS_JSON -- ASDO_COMMAND...

CALLS_JSON is a list of [tool_name, arguments]. Prints one JSON object:
{"tools": [names], "results": [{"is_error", "text", "structured"}, ...]}.
"""

import asyncio
import json
import sys

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client


async def main(calls, command):
    params = StdioServerParameters(command=command[0], args=command[1:])
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            tools = await session.list_tools()
            results = []
            for name, arguments in calls:
                r = await session.call_tool(name, arguments, read_timeout_seconds=300)
                results.append({
                    "is_error": bool(r.is_error),
                    "text": "".join(c.text for c in r.content if c.type == "text"),
                    "structured": r.structured_content,
                })
            print(json.dumps({"tools": sorted(t.name for t in tools.tools), "results": results}))


sep = sys.argv.index("--")
asyncio.run(main(json.loads(sys.argv[1]), sys.argv[sep + 1:]))
