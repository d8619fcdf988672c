"""Runs CPython regression-test modules (Debian's libpython3.11-testsuite) with
unittest, as regrtest would but with every test case's outcome reported, and
prints one JSON object: {"test id": ["ok"|"fail"|"error"|"skip", seconds]}.

    python3 cpython_unittest.py [-k PATTERN]... [-x PATTERN]... NAME...
    (NAME: a module, class or test, e.g. test.test_signal)

-k keeps only test ids containing one of the patterns (unittest's -k rule,
substring match); -x then drops those containing one of its patterns. Resources that regrtest enables only on request (cpu,
network, ...) stay off, as under a plain `python3 -m test`. Output other than
the JSON line (the tests' own chatter) goes to stderr."""
import json
import os
import sys
import time
import unittest


def main():
    patterns, excludes, modules, args = [], [], [], sys.argv[1:]
    while args:
        a = args.pop(0)
        if a == "-k":
            patterns.append(args.pop(0))
        elif a == "-x":
            excludes.append(args.pop(0))
        else:
            modules.append(a)
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # the tests write to stdout; keep it for the JSON
    from test import support
    support.use_resources = []  # as `python3 -m test` without -u
    support.verbose = 0
    loader = unittest.TestLoader()
    if patterns:
        loader.testNamePatterns = ["*%s*" % p for p in patterns]
    results = {}

    class Result(unittest.TestResult):
        def startTest(self, test):
            self._t0 = time.monotonic()
            super().startTest(test)

        def _set(self, test, outcome):
            results[test.id()] = [outcome, round(time.monotonic() - getattr(self, "_t0", time.monotonic()), 3)]

        def addSuccess(self, test):
            self._set(test, "ok")

        def addFailure(self, test, err):
            self._set(test, "fail")
            sys.stderr.write("FAIL %s\n%s\n" % (test.id(), self._exc_info_to_string(err, test)))

        def addError(self, test, err):
            self._set(test, "error")
            sys.stderr.write("ERROR %s\n%s\n" % (test.id(), self._exc_info_to_string(err, test)))

        def addSkip(self, test, reason):
            self._set(test, "skip")

        def addExpectedFailure(self, test, err):
            self._set(test, "ok")

        def addUnexpectedSuccess(self, test):
            self._set(test, "fail")

    def kept(suite):
        out = unittest.TestSuite()
        for t in suite:
            if isinstance(t, unittest.TestSuite):
                out.addTest(kept(t))
            elif not any(x in t.id() for x in excludes):
                out.addTest(t)
        return out

    for m in modules:
        kept(loader.loadTestsFromName(m)).run(Result())
    out.write(json.dumps(results) + "\n")
    out.flush()


if __name__ == "__main__":
    main()
