"""An S3-compatible server for the tests, and a proxy in front of it that
injects faults.

`Server` runs moto's standalone server (`moto_server`, from PyPI) on
127.0.0.1 in a subprocess; `Proxy` forwards to it, on 127.0.0.1 too, and
on each request may add latency, answer 503 SlowDown or 500, reset the
connection, or send a body cut short, as its `fault` callable says. It
logs every request (method, path, Range, Authorization, bytes sent) for
the tests and the benchmark to count. Dummy credentials only, given to
the processes that need them (`Server.env`); nothing leaves the machine.
"""

from __future__ import annotations

import http.client
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

#: what the tests' clients sign with: moto takes any keys
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str, proc: subprocess.Popen | None, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited ({proc.returncode})")
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"no answer from {url}")


class Server:
    """moto's S3 server on 127.0.0.1, started and stopped by the tests."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        moto = Path(sys.executable).with_name("moto_server")
        self.proc = subprocess.Popen(
            [str(moto), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, **CREDENTIALS},
        )
        try:
            _wait(self.endpoint + "/moto-api/", self.proc)
        except BaseException:
            self.stop()
            raise

    def env(self, endpoint: str | None = None, **more: str) -> dict[str, str]:
        """An environment that reaches this server (or `endpoint`) with the
        dummy keys, and no AWS setting of the machine's."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(CREDENTIALS)
        env["AWS_ENDPOINT_URL"] = endpoint or self.endpoint
        env.update(more)
        return env

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")

    def upload(self, bucket: str, root: Path, prefix: str) -> list[str]:
        """Every file under `root` as `prefix/<relative path>`; the keys."""
        s3 = self.client()
        try:
            s3.create_bucket(Bucket=bucket)
        except s3.exceptions.BucketAlreadyOwnedByYou:
            pass
        keys = []
        for folder, _, names in os.walk(root):
            for n in sorted(names):
                p = Path(folder) / n
                key = f"{prefix}/{p.relative_to(root).as_posix()}"
                s3.upload_file(str(p), bucket, key)
                keys.append(key)
        return keys

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class Logged:
    method: str
    path: str
    range: str | None
    authorization: str | None
    status: int
    sent: int
    fault: str


#: what the proxy does with one request: "pass", "slowdown" (503
#: SlowDown), "error" (500), "reset" (closes the connection unanswered),
#: "truncate" (the headers, then half the body, then closes)
Fault = Callable[[str, str, int], str]


class Proxy:
    """A proxy to `upstream` on 127.0.0.1 that adds `latency` seconds to
    each request and injects what `fault(method, path, attempt)` says
    (attempt counts the requests for that method and path, from 1)."""

    def __init__(self, upstream: str, fault: Fault | None = None, latency: float = 0.0):
        self.upstream = upstream.removeprefix("http://")
        self.fault = fault or (lambda m, p, n: "pass")
        self.latency = latency
        self.log: list[Logged] = []
        self._lock = threading.Lock()
        self._attempts: dict[tuple[str, str], int] = {}
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _any(self) -> None:
                proxy._handle(self)

            do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _any

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 1024

            def handle_error(self, request, client_address) -> None:
                pass  # a client gone mid-answer (a stopped run): not news

        self.server = Server(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else None
        with self._lock:
            key = (h.command, h.path.split("?")[0])
            attempt = self._attempts[key] = self._attempts.get(key, 0) + 1
        fault = self.fault(h.command, h.path, attempt)
        if self.latency:
            time.sleep(self.latency)
        entry = Logged(h.command, h.path, h.headers.get("Range"), h.headers.get("Authorization"), 0, 0, fault)
        with self._lock:
            self.log.append(entry)
        if fault == "reset":
            # RST, not FIN: the client sees the connection reset.
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            h.close_connection = True
            h.connection.close()
            return
        if fault in ("slowdown", "error"):
            status, code = (503, "SlowDown") if fault == "slowdown" else (500, "InternalError")
            payload = f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>injected by the test proxy</Message></Error>".encode()
            entry.status = status
            h.send_response(status)
            h.send_header("Content-Type", "application/xml")
            h.send_header("Content-Length", str(len(payload)))
            h.end_headers()
            h.wfile.write(payload)
            return
        conn = http.client.HTTPConnection(self.upstream, timeout=30)
        headers = {k: v for k, v in h.headers.items() if k.lower() not in ("connection",)}
        conn.request(h.command, h.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        entry.status = resp.status
        h.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("connection", "transfer-encoding", "content-length", "server", "date"):
                h.send_header(k, v)
        # A HEAD's length is the object's, its body none.
        h.send_header("Content-Length", resp.getheader("Content-Length", "0") if h.command == "HEAD" else str(len(data)))
        h.end_headers()
        if h.command == "HEAD":
            return
        if fault == "truncate" and len(data) > 1:
            data = data[: len(data) // 2]
            h.wfile.write(data)
            h.wfile.flush()
            entry.sent = len(data)
            h.close_connection = True
            h.connection.shutdown(socket.SHUT_RDWR)
            return
        h.wfile.write(data)
        entry.sent = len(data)

    def gets(self, prefix: str = "") -> list[Logged]:
        """The GETs of objects (not listings) under the path `prefix`."""
        return [e for e in self.log if e.method == "GET" and "list-type" not in e.path and e.path.startswith(prefix)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def server():
    """A moto server for the test module that imports this fixture."""
    s = Server()
    yield s
    s.stop()
