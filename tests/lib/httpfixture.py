"""HTTP test servers on 127.0.0.1, and port helpers.

HttpServer is Python's http.server (threaded) serving a directory, in this
process, on a free port; it records each request's method, path and headers
(so tests can look for an injected traceparent), and answers /status/NNN with
that status. spawn_http_server() starts `python3 -m http.server` as a separate
process instead, e.g. to run the server itself under the shim.
"""

import http.server
import os
import socket
import subprocess
import sys
import threading
import time


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def closed_port():
    """A port nothing listens on: connecting to it is refused."""
    return free_port()


def wait_port(port, host="127.0.0.1", timeout=10, proc=None):
    """Until a TCP connect to host:port succeeds; AssertionError after timeout
    (or as soon as `proc`, the server's Popen, has exited)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            pass
        if proc is not None and proc.poll() is not None:
            raise AssertionError("server process exited with %s before listening on %s:%d" % (proc.returncode, host, port))
        if time.monotonic() > deadline:
            raise AssertionError("nothing listening on %s:%d after %gs" % (host, port, timeout))
        time.sleep(0.05)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def handle_error(self, request, client_address):
        # A client that goes away, or stop() cutting a connection: expected.
        import sys
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError, OSError)):
            super().handle_error(request, client_address)


class _Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: with Nagle on, the body waits for
    # the client's delayed ACK, 40 ms per keep-alive request (~23 requests/s).
    disable_nagle_algorithm = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, directory=self.server_directory, **kwargs)

    def log_message(self, fmt, *args):
        pass

    def _record(self):
        self.server.owner._record(self.command, self.path, {k.lower(): v for k, v in self.headers.items()})

    def do_GET(self):
        self._record()
        if self.path.startswith("/status/"):
            try:
                code = int(self.path.split("/")[2])
            except ValueError:
                code = 400
            body = ("status %d\n" % code).encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()

    def do_HEAD(self):
        self._record()
        super().do_HEAD()


class HttpServer:
    """with HttpServer(directory) as srv: srv.url('/') ..."""

    def __init__(self, directory):
        self.directory = directory
        self.port = None
        self._server = None
        self._thread = None
        self._lock = threading.Lock()
        self._requests = []

    def url(self, path="/", host="127.0.0.1"):
        return "http://%s:%d%s" % (host, self.port, path)

    def start(self):
        handler = type("Handler", (_Handler,), {"server_directory": self.directory})
        self._server = _Server(("127.0.0.1", self.port or 0), handler)
        self._server.owner = self
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="http-fixture", daemon=True)
        self._thread.start()
        wait_port(self.port)
        return self

    def stop(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(5)
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _record(self, method, path, headers):
        with self._lock:
            self._requests.append({"method": method, "path": path, "headers": headers})

    @property
    def requests(self):
        with self._lock:
            return list(self._requests)


def spawn_http_server(directory, env=None, argv_prefix=(), python="/usr/bin/python3", port=None):
    """(Popen, port) of `python3 -m http.server` on 127.0.0.1, listening.
    argv_prefix runs it under something, e.g. [wrapper, 'run', '--']."""
    port = port or free_port()
    argv = list(argv_prefix) + [python, "-m", "http.server", "--bind", "127.0.0.1",
                                "--directory", directory, str(port)]
    proc = subprocess.Popen(argv, env=env if env is not None else os.environ, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_port(port, proc=proc)
    except AssertionError:
        proc.kill()
        proc.wait()
        raise
    return proc, port


def stop_process(proc, timeout=5):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


if __name__ == "__main__":  # manual use: python3 httpfixture.py DIR
    with HttpServer(sys.argv[1] if len(sys.argv) > 1 else ".") as srv:
        print(srv.url())
        threading.Event().wait()


def nginx_conf(directory, servers, user="root", http_extra=""):
    """An nginx.conf for a private instance kept in `directory` (pid, logs,
    temp paths there; master + one worker, in the foreground), with the given
    `server { ... }` blocks and extra http-level directives."""
    temps = "".join("  %s_temp_path %s/%s;\n" % (t, directory, t) for t in
                    ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return ("daemon off;\nmaster_process on;\nworker_processes 1;\n"
            "error_log %s/error.log warn;\npid %s/nginx.pid;\nuser %s;\n"
            "events { worker_connections 64; }\n"
            "http {\n  access_log off;\n%s%s%s}\n") % (directory, directory, user, temps, http_extra, servers)


def spawn_nginx(test, env, directory, conf, port):
    """nginx -c <directory>/nginx.conf under the shim (preload), stopped at the
    test's end; returns once `port` answers."""
    import shutil
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(nginx):
        test.fail("nginx is not installed (scripts/bootstrap.sh installs nginx-light)")
    path = os.path.join(directory, "nginx.conf")
    with open(path, "w") as f:
        f.write(conf)
    proc = env.spawn([nginx, "-c", path, "-e", os.path.join(directory, "error.log")], via="preload",
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    test.addCleanup(stop_process, proc)
    wait_port(port, proc=proc)
    return proc
