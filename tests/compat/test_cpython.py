"""Compatibility suite: CPython's own regression tests (Debian's
libpython3.11-testsuite) for signals, subprocess, threading, asyncio and
multiprocessing (forkserver), run with /usr/bin/python3 untraced and then
under `scripts/traceshim run` (exporter up). Every test that passes untraced
must pass traced, every skip stay a skip (issue 13: a shim that touches
signal dispositions breaks KeyboardInterrupt, asyncio's Runner and every
forkserver child).

    test_cpython.py GROUP      (GROUPS below; one meson test each, suite compat)

A test that fails untraced on this machine is not compared (listed in the
output). A test that fails traced only is run once more, traced, alone: if it
passes then it is reported as flaky (CPython's timing tests on a loaded
machine), else the group fails. EXCLUDE holds what is left out, and why."""
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import tsenv  # noqa: E402

PY = "/usr/bin/python3"
RUNNER = os.path.join(HERE, "cpython_unittest.py")

# name: (test names, -k patterns (empty: all), -x patterns with the reason for each)
GROUPS = {
    "signal": (["test.test_signal"], [], {
        "SiginterruptTest.test_siginterrupt_off":
            "waits 30 s for a signal that must not interrupt a read, by design; "
            "test_siginterrupt_on and test_without_siginterrupt run the same code path",
    }),
    "subprocess": (["test.test_subprocess"], [], {
        "test_check_output_timeout":
            "three copies of a 3 s sleep that only checks the timeout arithmetic",
    }),
    "threading": (["test.test_threading"], [], {}),
    "asyncio": ([
        "test.test_asyncio.test_runners",        # Runner + SIGINT: hung with a foreign handler
        "test.test_asyncio.test_unix_events",    # add_signal_handler, child watchers, pipes
        "test.test_asyncio.test_subprocess",
        "test.test_asyncio.test_events",
    ], [], {
        "SelectEventLoopTests": "test_events: the EPoll loop runs the same tests (Debian's default selector)",
        "PollEventLoopTests": "test_events: as SelectEventLoopTests",
        "SubprocessSafeWatcherTests": "test_subprocess: deprecated child watcher; the default (Threaded) "
                                      "and Pidfd watchers run the same tests",
        "SubprocessFastWatcherTests": "test_subprocess: as SubprocessSafeWatcherTests",
        "SubprocessMultiLoopWatcherTests": "test_subprocess: as SubprocessSafeWatcherTests",
    }),
    "multiprocessing": ([
        "test.test_multiprocessing_forkserver",
        "test.test_concurrent_futures",
    ], [
        # forkserver: processes, pools, queues, managers' start-up, signals
        "WithProcessesTestProcess.", "WithProcessesTestPool.test_map", "WithProcessesTestPool.test_apply",
        "WithProcessesTestQueue.test_get", "WithProcessesTestQueue.test_put", "WithProcessesTestSubclassingProcess",
        "WithManagerTestQueue.test_get", "TestForkAwareThreadLock", "TestNoForkBomb", "TestIgnoreEINTR",
        "TestStartMethod", "TestStdinBadfiledescriptor", "TestCloseFds", "TestSimpleQueue", "TestWait",
        "WithProcessesTestEvent", "WithProcessesTestLock",
        # concurrent.futures' forkserver pools: every child exited at start-up with a foreign handler
        "ProcessPoolForkserverProcessPoolExecutorTest.test_map", "ProcessPoolForkserverWaitTest",
        "ProcessPoolForkserverExecutorDeadlockTest.test_crash_at_task_unpickle",
        "ProcessPoolForkserverProcessPoolShutdownTest.test_interpreter_shutdown",
    ], {
        "test_many_processes": "starts 100 processes twice: ~20 s alone; test_process covers the life cycle",
        "test_lose_target_ref": "a gc timing test, slow (~4 s) and unrelated to the shim",
        "test_map_chunksize": "a 2 s chunking test with no process life-cycle of its own",
        "test_map_timeout": "sleeps by design",
    }),
}


def run(env, via, args, timeout):
    t0 = time.monotonic()
    r = env.run([PY, RUNNER] + args, via=via, timeout=timeout)
    lines = [ln for ln in r.stdout.decode(errors="replace").splitlines() if ln.startswith("{")]
    if r.returncode != 0 or not lines:
        raise AssertionError("%s run failed (rc %s):\n%s" % (via, r.returncode, r.stderr.decode(errors="replace")[-4000:]))
    return json.loads(lines[-1]), time.monotonic() - t0, r.stderr.decode(errors="replace")


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in GROUPS:
        sys.exit("usage: test_cpython.py {%s}" % "|".join(GROUPS))
    names, keep, exclude = GROUPS[sys.argv[1]]
    if not os.path.isdir("/usr/lib/python3.11/test/test_asyncio"):
        sys.exit("CPython's test suite is not installed: apt-get install libpython3.11-testsuite "
                 "(scripts/bootstrap.sh installs it)")
    args = [a for k in keep for a in ("-k", k)] + [a for x in exclude for a in ("-x", x)] + names
    with tsenv.Env() as env:
        plain, t_plain, _ = run(env, "plain", args, 240)
        traced, t_traced, traced_err = run(env, "wrapper", args, 240)
        broken, flaky, fails_untraced = [], [], []
        for tid, (outcome, _) in sorted(plain.items()):
            got = traced.get(tid, ["missing", 0])[0]
            if outcome in ("fail", "error"):
                fails_untraced.append(tid)
            elif got != outcome:
                if outcome == "ok":
                    again, _, err = run(env, "wrapper", [tid], 120)
                    if again.get(tid, ["missing"])[0] == "ok":
                        flaky.append(tid)
                        continue
                    traced_err += err
                broken.append("%s: %s untraced, %s traced" % (tid, outcome, got))
        procs = [s for s in env.spans() if s["name"] == "python3.11" and s["kind"] == 1]
        counts = {o: sum(1 for v in plain.values() if v[0] == o) for o in ("ok", "skip", "fail", "error")}
        print("group %s: %d tests (%s) untraced %.1f s, traced %.1f s (x%.2f); %d python process spans"
              % (sys.argv[1], len(plain), ", ".join("%d %s" % (n, o) for o, n in counts.items() if n),
                 t_plain, t_traced, t_traced / max(t_plain, 0.001), len(procs)))
        for x, why in exclude.items():
            print("excluded %s: %s" % (x, why))
        for tid in fails_untraced:
            print("fails untraced on this machine, not compared: %s" % tid)
        for tid in flaky:
            print("flaky: %s failed traced, passed when run again traced" % tid)
        if not plain:
            sys.exit("no test ran")
        if not procs:
            sys.exit("the traced run made no process span: was it traced?")
        if broken:
            print(traced_err[-8000:], file=sys.stderr)
            sys.exit("traced differs from untraced:\n  " + "\n  ".join(broken))


if __name__ == "__main__":
    main()
