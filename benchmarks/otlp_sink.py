"""A stand-in for an OpenTelemetry collector, for ``mcp_throughput.py --trace-to``: answers every
OTLP/HTTP export (``POST /v1/traces``) with 200 and keeps nothing; prints the spans' batches and
bytes received when stopped.

    .venv/bin/python benchmarks/otlp_sink.py --port 4318
"""

from __future__ import annotations

import argparse
import signal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

received = {"batches": 0, "bytes": 0}


class Sink(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's name)
        length = int(self.headers.get("content-length") or 0)
        self.rfile.read(length)
        received["batches"] += 1
        received["bytes"] += length
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=4318)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Sink)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stopped by kill too: print the counts
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        print(f"received {received['batches']} batches, {received['bytes']} bytes")


if __name__ == "__main__":
    main()
