"""Drives `asdo mcp` with the official MCP Python SDK (PyPI `mcp`): a client no
one here wrote. usage: mcp_client.py CALLS_JSON|@FILE -- ASDO_COMMAND...

CALLS_JSON is a list of steps. A step is [tool_name, arguments] (one tool call), or:
- ["!sh", COMMAND]: run `sh -c COMMAND` between calls (e.g. to plant a file);
- ["!cancel", tool_name, arguments, NEEDLE]: start the call, wait until the server's
  child asdo whose argv holds NEEDLE runs, cancel the call (the SDK sends
  `notifications/cancelled`), then wait up to 60 s for that child to be gone;
- ["!progress", tool_name, arguments]: a call with a progressToken (the SDK makes one
  for a progress callback); its result also holds "progress": the notifications, in
  the order they came, each {"progress", "total", "message"}.
Prints one JSON object: {"tools": [names], "schemas": {name: outputSchema},
"results": [...]}, a result per step: {"is_error", "text", "structured",
"schema_error", "task_schema_error"} for a call (schema_error: why a successful call's
structuredContent does not fit the tool's outputSchema, checked here with jsonschema;
task_schema_error: why a task object in it (the whole of it, or each of its "tasks")
does not fit src/task.schema.json, the file the CLI documents; else null),
{"code", "stdout"} for !sh, and {"pid", "gone"} for !cancel.
"""

import asyncio
import json
import os
import subprocess
import sys
import time

import anyio
import anyio.lowlevel
import jsonschema
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client


def asdo_children(exe, needle):
    """Live (not zombie) processes running `exe` with `needle` among their args."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state in ("Z", "X") or not argv or argv[0].decode(errors="replace") != exe:
            continue
        if any(needle.encode() == a for a in argv[1:]) and b"mcp" not in argv[1:]:
            found.append(int(pid))
    return found


async def cancel_when_running(session, exe, name, arguments, needle):
    pid = None
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: session.call_tool(name, arguments, read_timeout_seconds=600))
        deadline = time.monotonic() + 120
        while pid is None and time.monotonic() < deadline:
            pids = asdo_children(exe, needle)
            pid = pids[0] if pids else None
            await anyio.sleep(0.1)
        tg.cancel_scope.cancel()
    if pid is None:
        return {"pid": None, "gone": False}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if pid not in asdo_children(exe, needle):
            return {"pid": pid, "gone": True}
        await anyio.sleep(0.1)
    return {"pid": pid, "gone": False}


TASK_SCHEMA = os.path.join(os.path.dirname(__file__), "..", "..", "src", "task.schema.json")


def task_objects_error(structured):
    """Why a task object in a result does not fit src/task.schema.json; else None."""
    with open(TASK_SCHEMA) as f:
        schema = json.load(f)
    s = structured or {}
    found = [s] if "id" in s else []
    found += s.get("tasks", []) if isinstance(s.get("tasks"), list) else []
    if isinstance(s.get("task"), dict):
        found.append(s["task"])
    try:
        for t in found:
            jsonschema.validate(t, schema)
    except jsonschema.ValidationError as e:
        return e.message
    return None


async def main(calls, command):
    # The SDK passes only a few variables to the server; TMPDIR too, for the tests, and
    # the ones ASDO_MCP_SERVER_ENV names (comma-separated: a local runtime's state
    # directory and model set-up, which the server's children pass on to the task).
    names = ["TMPDIR"] + [n for n in os.environ.get("ASDO_MCP_SERVER_ENV", "").split(",") if n]
    env = {k: os.environ[k] for k in names if k in os.environ}
    params = StdioServerParameters(command=command[0], args=command[1:], env=env)
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            tools = await session.list_tools()
            schemas = {t.name: t.output_schema for t in tools.tools}
            results = []
            for step in calls:
                if step[0] == "!sh":
                    p = subprocess.run(["sh", "-c", step[1]], capture_output=True, text=True)
                    results.append({"code": p.returncode, "stdout": p.stdout})
                    continue
                if step[0] == "!cancel":
                    results.append(await cancel_when_running(session, command[0], *step[1:]))
                    continue
                progress = None
                if step[0] == "!progress":
                    progress = []
                    step = step[1:]

                    async def on_progress(value, total, message, seen=progress):
                        seen.append({"progress": value, "total": total, "message": message})

                name, arguments = step
                r = await session.call_tool(
                    name, arguments, read_timeout_seconds=300,
                    progress_callback=on_progress if progress is not None else None,
                )
                schema_error = None
                task_schema_error = None
                if not r.is_error:
                    try:
                        jsonschema.validate(r.structured_content, schemas[name])
                    except jsonschema.ValidationError as e:
                        schema_error = e.message
                    task_schema_error = task_objects_error(r.structured_content)
                result = {
                    "is_error": bool(r.is_error),
                    "text": "".join(c.text for c in r.content if c.type == "text"),
                    "structured": r.structured_content,
                    "schema_error": schema_error,
                    "task_schema_error": task_schema_error,
                }
                if progress is not None:
                    # The SDK runs each progress callback as a task of its own: let the
                    # ones for notifications read before the answer run.
                    for _ in range(20):
                        await anyio.lowlevel.checkpoint()
                    result["progress"] = progress
                results.append(result)
            print(json.dumps({
                "tools": sorted(schemas),
                "schemas": schemas,
                "results": results,
            }))


if __name__ == "__main__":  # mcp_tasks_client.py imports asdo_children
    sep = sys.argv.index("--")
    calls = sys.argv[1]
    if calls.startswith("@"):  # too big for argv: from a file
        with open(calls[1:]) as f:
            calls = f.read()
    asyncio.run(main(json.loads(calls), sys.argv[sep + 1:]))
