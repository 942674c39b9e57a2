"""A webhook receiver for the e2e tests: records every request it is sent.

usage: webhook_recorder.py PORT DIR

Each request becomes DIR/<n>.json: {"path", "headers" (lower-case names), "body" (text),
"status" (what it was answered)}. It answers 200 unless DIR/status holds another status code,
read per request.
"""

import itertools
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, DIR = int(sys.argv[1]), sys.argv[2]
# Requests arrive concurrently: number them under a lock so none overwrites another.
NUMBERS = itertools.count()
LOCK = threading.Lock()


class Recorder(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("content-length", "0"))
        body = self.rfile.read(length).decode("utf-8", "replace")
        status = 200
        try:
            with open(os.path.join(DIR, "status")) as f:
                status = int(f.read().strip())
        except FileNotFoundError:
            pass
        record = {
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body,
            "status": status,
        }
        with LOCK:
            n = next(NUMBERS)
        tmp = os.path.join(DIR, f".{n}.tmp")
        with open(tmp, "w") as f:
            json.dump(record, f)
        os.rename(tmp, os.path.join(DIR, f"{n}.json"))
        self.send_response(status)
        self.send_header("content-type", "text/plain")
        self.end_headers()
        self.wfile.write(b"recorded")

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", PORT), Recorder).serve_forever()
