"""A stand-in for `opencode serve` in a task pod, for asdo's hostile-input tests:
it records every request line to a file and answers as the test's mode says.

usage: fake_opencode.py PORT MODE RECORD
MODE: ok          health answers, /event opens and stays open, POSTs answer 204
      huge-health /global/health answers a 1 GiB body (until the client goes)
"""
import http.server
import sys
import time

port, mode, record = int(sys.argv[1]), sys.argv[2], sys.argv[3]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, *args):
        pass

    def handle_any(self):
        with open(record, "a") as f:
            f.write(f"{self.command} {self.path}\n")
        n = int(self.headers.get("content-length") or 0)
        if n:
            self.rfile.read(n)
        try:
            if self.path == "/global/health" and mode == "huge-health":
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"healthy":true,"pad":"')
                chunk = b"x" * (1 << 20)
                for _ in range(1024):
                    self.wfile.write(chunk)
                return
            if self.path == "/global/health":
                body = b'{"healthy":true,"version":"1.18.33"}'
            elif self.path == "/event":
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.end_headers()
                self.wfile.write(b'data: {"type":"server.connected","properties":{}}\n\n')
                self.wfile.flush()
                while True:
                    time.sleep(1)
            elif self.command == "POST":
                self.send_response(204)
                self.end_headers()
                return
            else:
                body = b"[]"
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    do_GET = do_POST = handle_any


http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
