"""Secrets on a command line stay out of the trace: process.command_args is
redacted (shim/argv_redact.c) by default, absent with
TRACESHIM_COMMAND_ARGS=off, verbatim with raw (docs/ARCHITECTURE.md §3)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import tstest  # noqa: E402

R = "REDACTED"


class CommandArgs(tstest.TestCase):
    def setUp(self):
        self.port = self.start_http_server().port
        self.secret_url = "http://alice:PASSWORD@127.0.0.1:%d/" % self.port

    def file_text(self, env):
        with open(env.file, encoding="utf-8") as f:
            return f.read()

    def proc_args(self, spans, name):
        got = [s["resource"].get("process.command_args") for s in spans if s["name"] == name]
        self.assertTrue(got, "no %s process span" % name)
        return got[0]

    def test_issue_reproduction_and_the_usual_forms(self):
        env = self.make_env()
        r = env.run(["curl", "-s", self.secret_url])
        self.assertOk(r)
        self.assertEqual(r.stdout, tstest.INDEX_BODY)
        self.assertOk(env.run(["sh", "-c", "curl -s %s >/dev/null; true" % self.secret_url]))
        self.assertOk(env.run(["curl", "-s", "-o", "/dev/null", "-u", "bob:PASSWORD2", "-H",
                               "Authorization: Bearer PASSWORD3", "http://127.0.0.1:%d/" % self.port]))
        self.assertOk(env.run(["/bin/true", "--password=PASSWORD4", "token=PASSWORD5", "--secret", "PASSWORD6",
                               "plain"]))
        spans = env.wait_spans(5, where=lambda s: s["name"] in ("curl", "dash", "true"))
        text = self.file_text(env)
        self.assertNotIn("PASSWORD", text)
        self.assertNotIn("alice", text)
        redacted_url = "http://%s:%s@127.0.0.1:%d/" % (R, R, self.port)
        curls = [s["resource"].get("process.command_args") for s in spans if s["name"] == "curl"]
        self.assertIn(["curl", "-s", redacted_url], curls)
        self.assertIn(["curl", "-s", "-o", "/dev/null", "-u", R + ":" + R, "-H", "Authorization: " + R,
                       "http://127.0.0.1:%d/" % self.port], curls)
        self.assertEqual(self.proc_args(spans, "dash"), ["sh", "-c", "curl -s %s >/dev/null; true" % redacted_url])
        self.assertEqual(self.proc_args(spans, "true"),
                         ["/bin/true", "--password=" + R, "token=" + R, "--secret", R, "plain"])
        # the curl that sh ran has its own, redacted, argv too
        self.assertEqual(curls.count(["curl", "-s", redacted_url]), 2, curls)

    def test_off_records_no_arguments_and_raw_records_them_verbatim(self):
        env = self.make_env()
        self.assertOk(env.run(["curl", "-s", "-o", "/dev/null", self.secret_url],
                              env={"TRACESHIM_COMMAND_ARGS": "off"}))
        spans = env.wait_spans(1, where="curl")
        self.assertNotIn("process.command_args", spans[0]["resource"])
        self.assertEqual(spans[0]["resource"].get("process.executable.name"), "curl")
        self.assertNotIn("PASSWORD", self.file_text(env))
        self.assertOk(env.run(["/bin/true", "--password=PASSWORD7"], env={"TRACESHIM_COMMAND_ARGS": "raw"}))
        spans = env.wait_spans(1, where="true")
        self.assertEqual(self.proc_args(spans, "true"), ["/bin/true", "--password=PASSWORD7"])


if __name__ == "__main__":
    tstest.main()
