"""A stand-in for `opencode serve`, for the fast agent tests only (the real opencode is
tested in tests/agent.rs `real_*`). It speaks the few routes `asdo agent` uses, the way
opencode 1.18.33 does: it runs the test's shell script as "the model's work" when the
prompt arrives, then reports the session idle (exit 0) or a session.error (the script's
last stderr line) on GET /event.
"""
import base64
import http.server
import json
import os
import queue
import signal
import subprocess
import sys
import threading

args = sys.argv[1:]
if not args or args[0] != "serve":
    sys.exit("stand-in opencode: only `serve` is implemented")
port = int(args[args.index("--port") + 1]) if "--port" in args else 4096
out = os.environ["ASDO_STANDIN_OUT"]
script = os.environ["ASDO_STANDIN_SCRIPT"]
password = os.environ.get("OPENCODE_SERVER_PASSWORD")
if os.environ.get("ASDO_STANDIN_IGNORE_TERM"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
SID = "ses_standin"
subscribers = []
lock = threading.Lock()
task = {"proc": None, "aborted": False}
# ASDO_STANDIN_ASK=<permission>: before the script runs, ask for it (permission.asked) and
# wait for POST /permission/per_standin1/reply, as opencode does; `reject` skips the script.
ASK = os.environ.get("ASDO_STANDIN_ASK")
PER = "per_standin1"
answered = threading.Event()
answer = {"reply": None}


def publish(kind, props):
    line = json.dumps({"type": kind, "properties": props})
    with lock:
        for q in subscribers:
            q.put(line)


def run(text):
    with open(os.path.join(out, "prompt"), "w") as f:
        f.write(text)
    publish("session.status", {"sessionID": SID, "status": {"type": "busy"}})
    if ASK:
        publish("permission.asked", {"id": PER, "sessionID": SID, "permission": ASK,
                                     "patterns": ["hello.txt"], "metadata": {}, "always": ["*"]})
        answered.wait()
        with open(os.path.join(out, "permission-reply"), "w") as f:
            f.write(answer["reply"])
        publish("permission.replied", {"sessionID": SID, "requestID": PER, "reply": answer["reply"]})
        if answer["reply"] == "reject":
            publish("message.updated", {"sessionID": SID, "info": {"role": "assistant", "sessionID": SID, "finish": "stop"}})
            publish("session.idle", {"sessionID": SID})
            return
    p = subprocess.Popen(["sh", script], stderr=subprocess.PIPE)
    task["proc"] = p
    last = ""
    for raw in p.stderr:
        sys.stderr.buffer.write(raw)
        sys.stderr.flush()
        if raw.strip():
            last = raw.decode(errors="replace").strip()
    rc = p.wait()
    publish("message.part.updated", {"sessionID": SID, "part": {
        "id": "prt_finish", "sessionID": SID, "type": "step-finish", "cost": 0,
        "tokens": {"input": 10, "output": 5, "reasoning": 0, "cache": {"read": 0, "write": 0}}}})
    if task["aborted"]:
        publish("session.error", {"sessionID": SID, "error": {"name": "MessageAbortedError", "data": {"message": "aborted"}}})
    elif rc != 0:
        msg = last or "the stand-in script exited %d" % rc
        publish("session.error", {"sessionID": SID, "error": {"name": "UnknownError", "data": {"message": msg}}})
    else:
        publish("message.part.updated", {"sessionID": SID, "part": {
            "id": "prt_text", "sessionID": SID, "type": "text", "text": "stand-in finished",
            "time": {"start": 1, "end": 2}}})
        publish("message.updated", {"sessionID": SID, "info": {"role": "assistant", "sessionID": SID, "finish": "stop"}})
    publish("session.idle", {"sessionID": SID})


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def authorized(self):
        if not password:
            return True
        want = "Basic " + base64.b64encode(("opencode:" + password).encode()).decode()
        if self.headers.get("authorization") == want:
            return True
        self.reply(401, {"error": "unauthorized"})
        return False

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        n = int(self.headers.get("content-length") or 0)
        return json.loads(self.rfile.read(n) or b"null")

    def do_GET(self):
        if not self.authorized():
            return
        if self.path.startswith("/global/health"):
            return self.reply(200, {"healthy": True, "version": "stand-in"})
        if self.path.startswith("/event"):
            q = queue.Queue()
            with lock:
                subscribers.append(q)
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.end_headers()
            try:
                self.wfile.write(b'data: {"type":"server.connected","properties":{}}\n\n')
                self.wfile.flush()
                while True:
                    try:
                        line = q.get(timeout=5)
                    except queue.Empty:
                        line = '{"type":"server.heartbeat","properties":{}}'
                    self.wfile.write(("data: " + line + "\n\n").encode())
                    self.wfile.flush()
            except OSError:
                with lock:
                    subscribers.remove(q)
            return
        self.reply(404, {"error": self.path})

    def do_POST(self):
        if not self.authorized():
            return
        body = self.body()
        if self.path == "/session":
            with open(os.path.join(out, "session"), "w") as f:
                json.dump(body, f)
            return self.reply(200, {"id": SID, "directory": os.getcwd()})
        if self.path == "/session/%s/prompt_async" % SID:
            with open(os.path.join(out, "prompt_request"), "w") as f:
                json.dump({k: v for k, v in body.items() if k != "parts"}, f)
            text = "".join(p.get("text", "") for p in body["parts"])
            threading.Thread(target=run, args=(text,), daemon=True).start()
            self.send_response(204)
            self.end_headers()
            return
        if self.path == "/permission/%s/reply" % PER and ASK and not answered.is_set():
            answer["reply"] = body["reply"]
            answered.set()
            return self.reply(200, True)
        if self.path == "/session/%s/abort" % SID:
            task["aborted"] = True
            if task["proc"] and task["proc"].poll() is None:
                task["proc"].kill()
            return self.reply(200, True)
        self.reply(404, {"error": self.path})


server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
server.daemon_threads = True
print("opencode server listening on http://127.0.0.1:%d" % server.server_address[1], flush=True)
server.serve_forever()
