"""Drives `asdo mcp` as an MCP Tasks client (extension io.modelcontextprotocol/tasks,
SEP-2663) with the official MCP Python SDK (PyPI `mcp`) on the 2026-07-28 protocol.
The SDK has no tasks client of its own: it is a `ClientExtension` here that declares
the extension and claims the `resultType: "task"` answer of tools/call; `tasks/get`
and `tasks/cancel` go through the SDK's session as ordinary requests.

usage: mcp_tasks_client.py STEPS_JSON|@FILE -- ASDO_COMMAND...

A step is:
- ["task", tool, arguments]: call the tool, expect a task handle, poll tasks/get until
  the task ends; {"handle", "statuses", "messages", "final", "result", "schema_error"};
- ["!cancel_task", tool, arguments, NEEDLE]: call, wait until the server's child asdo
  whose argv holds NEEDLE runs, tasks/cancel, poll until the task ends, then wait up to
  60 s for the child to be gone; {"pid", "gone", "final", "ack"};
- ["!get", TASK_ID]: one tasks/get of an unknown or old id; {"error"} or {"status"}.
Prints {"extension": <server advertises it>, "protocol": ..., "results": [...]}.
"""

import asyncio
import json
import os
import sys
import time
from typing import Any, Literal

import anyio
import jsonschema
import mcp_types as types
from mcp import Client, StdioServerParameters
from mcp.client.extension import ClientExtension, ResultClaim
from mcp.shared.exceptions import MCPError
from pydantic import ConfigDict, TypeAdapter

from mcp_client import asdo_children

TASKS = "io.modelcontextprotocol/tasks"
RAW = TypeAdapter(dict[str, Any])


class TaskHandle(types.Result):
    """tools/call's answer when the server made a task (CreateTaskResult)."""

    model_config = ConfigDict(extra="allow")
    result_type: Literal["task"]
    task_id: str
    status: str
    status_message: str | None = None
    ttl_ms: int | None = None
    poll_interval_ms: int | None = None


async def _unused_resolve(handle, ctx):  # the steps drive each task themselves
    raise RuntimeError("call through session.call_tool(allow_claimed=True)")


class Tasks(ClientExtension):
    identifier = TASKS

    def claims(self):
        return [ResultClaim(result_type="task", model=TaskHandle, resolve=_unused_resolve)]


class TaskParams(types.RequestParams):
    task_id: str


class TasksGet(types.Request[TaskParams, Literal["tasks/get"]]):
    method: Literal["tasks/get"] = "tasks/get"
    params: TaskParams


class TasksCancel(types.Request[TaskParams, Literal["tasks/cancel"]]):
    method: Literal["tasks/cancel"] = "tasks/cancel"
    params: TaskParams


async def get(session, task_id):
    return await session.send_request(TasksGet(params=TaskParams(task_id=task_id)), RAW)


async def until_done(session, task_id, seen):
    """Polls tasks/get until the task is terminal; records each status and message."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        t = await get(session, task_id)
        seen["statuses"].append(t["status"])
        if t.get("statusMessage") and t["statusMessage"] not in seen["messages"]:
            seen["messages"].append(t["statusMessage"])
        if t["status"] in ("completed", "failed", "cancelled"):
            return t
        await anyio.sleep(max(t.get("pollIntervalMs") or 200, 50) / 1000)
    raise RuntimeError(f"task {task_id} did not end")


async def start(session, name, arguments):
    handle = await session.call_tool(name, arguments, read_timeout_seconds=300, allow_claimed=True)
    if not isinstance(handle, TaskHandle):
        raise RuntimeError(f"{name}: expected a task handle, got {handle!r}")
    return handle


async def main(steps, command):
    env = {k: os.environ[k] for k in ("TMPDIR",) if k in os.environ}
    params = StdioServerParameters(command=command[0], args=command[1:], env=env)
    async with Client(params, mode="auto", extensions=[Tasks()]) as client:
        session = client.session
        caps = client.server_capabilities.model_dump(by_alias=True, exclude_none=True)
        tools = {t.name: t for t in (await client.list_tools()).tools}
        results = []
        for step in steps:
            kind = step[0]
            if kind == "task":
                _, name, arguments = step
                handle = await start(session, name, arguments)
                seen = {"statuses": [handle.status], "messages": []}
                final = await until_done(session, handle.task_id, seen)
                result = final.get("result")
                schema_error = None
                if result and not result.get("isError"):
                    try:
                        jsonschema.validate(result.get("structuredContent"), tools[name].output_schema)
                    except jsonschema.ValidationError as e:
                        schema_error = e.message
                results.append({
                    "handle": handle.model_dump(by_alias=True, exclude_none=True),
                    **seen,
                    "final": final["status"],
                    "result": result,
                    "schema_error": schema_error,
                })
            elif kind == "!cancel_task":
                _, name, arguments, needle = step
                handle = await start(session, name, arguments)
                pid = None
                deadline = time.monotonic() + 120
                while pid is None and time.monotonic() < deadline:
                    pids = asdo_children(command[0], needle)
                    pid = pids[0] if pids else None
                    await anyio.sleep(0.1)
                ack = await session.send_request(
                    TasksCancel(params=TaskParams(task_id=handle.task_id)), RAW
                )
                final = await until_done(session, handle.task_id, {"statuses": [], "messages": []})
                gone = False
                deadline = time.monotonic() + 60
                while pid is not None and time.monotonic() < deadline:
                    if pid not in asdo_children(command[0], needle):
                        gone = True
                        break
                    await anyio.sleep(0.1)
                results.append({"pid": pid, "gone": gone, "final": final["status"], "ack": ack})
            elif kind == "!get":
                try:
                    t = await get(session, step[1])
                    results.append({"status": t["status"]})
                except MCPError as e:
                    results.append({"error": str(e)})
            else:
                raise ValueError(f"unknown step {kind}")
        print(json.dumps({
            "extension": TASKS in (caps.get("extensions") or {}),
            "protocol": client.protocol_version,
            "results": results,
        }))


sep = sys.argv.index("--")
steps = sys.argv[1]
if steps.startswith("@"):
    with open(steps[1:]) as f:
        steps = f.read()
asyncio.run(main(json.loads(steps), sys.argv[sep + 1:]))
