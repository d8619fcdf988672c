"""Values from the network are bounded and credentials never recorded: no
userinfo, no signature query values, no Authorization or Cookie headers, in
any attribute of any span — client or server side (issue 5)."""
import os
import socket
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import httpfixture  # noqa: E402
import tstest  # noqa: E402

# A raw client (python, traced) sending absolute-form and origin-form
# requests with every kind of secret, and a 40 KiB URL.
CLIENT = r"""
import socket, sys
port = int(sys.argv[1])
reqs = [
    b"GET http://alice:s3cretpw@127.0.0.1:%d/abs/path?Signature=s3cretsig&ok=1 HTTP/1.1\r\n"
    b"Host: 127.0.0.1:%d\r\nAuthorization: Bearer s3crettoken\r\nCookie: sid=s3cretcookie\r\n"
    b"Connection: close\r\n\r\n" % (port, port),
    b"GET /plain?X-Goog-Signature=s3cretgoog&AWSAccessKeyId=s3cretkey HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    b"Proxy-Authorization: Basic s3cretproxy\r\nConnection: close\r\n\r\n",
    b"GET /" + b"b" * 3000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    # past the 16 KiB head bound: not followed at all, and nothing breaks
    b"GET /" + b"a" * 40000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
]
for r in reqs:
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(r)
    while s.recv(65536):
        pass
    s.close()
"""


class Secrets(tstest.TestCase):
    def test_no_credentials_in_any_span(self):
        env = self.make_env()
        www = self.make_tmpdir()
        proc, port = httpfixture.spawn_http_server(www, env=env.environ("preload"))
        self.addCleanup(httpfixture.stop_process, proc)
        self.assertOk(env.run(["/usr/bin/python3", "-c", CLIENT, str(port)]))
        spans = env.wait_spans(6, where=lambda s: s["kind"] in (2, 3))
        # span attributes only: the resource's process.command_args is the
        # program's own argv (here: this script), recorded by design
        leaks = [(s["name"], k) for s in spans for k, v in s["attributes"].items() if "s3cret" in repr(v)]
        leaks += [(s["name"], "status") for s in spans if "s3cret" in s["status_message"]]
        self.assertEqual(leaks, [], "a credential from the network reached a span")
        servers = [s for s in spans if s["kind"] == 2]
        self.assertIn("/abs/path", [s["attrs"].get("url.path") for s in servers])
        clients = [s for s in spans if s["kind"] == 3]
        full = [s["attrs"]["url.full"] for s in clients if "/abs/path" in s["attrs"].get("url.full", "")]
        self.assertEqual(full, ["http://REDACTED:REDACTED@127.0.0.1:%d/abs/path?Signature=REDACTED&ok=1" % port])
        for s in spans:
            for k, v in s["attrs"].items():
                if isinstance(v, str):
                    self.assertLessEqual(len(v), 2048, "%s is not bounded" % k)
        long_paths = [s["attrs"]["url.path"] for s in servers if s["attrs"].get("url.path", "").startswith("/bbb")]
        self.assertEqual(len(long_paths), 1)
        self.assertLessEqual(len(long_paths[0]), 1024, "url.path is capped")
        self.assertFalse([s for s in spans if "aaaa" in repr(s["attrs"])], "a head past the bound is not followed")


if __name__ == "__main__":
    tstest.main()
