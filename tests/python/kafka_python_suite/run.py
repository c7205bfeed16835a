"""Runs kafka-python's own integration suite (from its source
distribution on PyPI) against a running strata broker, through the
suite's external-broker settings (KAFKA_URI, KAFKA_VERSION).

Usage: run.py SDIST_TAR_GZ BOOTSTRAP WORK_DIR

The source distribution ships the suite without `test/__init__.py` and
`test/service.py`; the first is added (so `test` is not the standard
library's package) and the second is replaced by a stand-in
(`service.py` here) that only knows external brokers. Every failure must
be listed in `expected.json` with its reason; prints one line per
outcome and a summary, and exits non-zero on an unexpected failure.
"""

import json
import os
import shutil
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    sdist, bootstrap, work = sys.argv[1], sys.argv[2], sys.argv[3]
    with tarfile.open(sdist) as t:
        t.extractall(work, filter="data")
    (root,) = [os.path.join(work, d) for d in os.listdir(work) if d.startswith("kafka")]
    open(os.path.join(root, "test", "__init__.py"), "a").close()
    shutil.copy(os.path.join(HERE, "service.py"), os.path.join(root, "test", "service.py"))
    kafka_root = os.path.join(work, "no-kafka-install")
    os.makedirs(kafka_root, exist_ok=True)
    junit = os.path.join(work, "junit.xml")
    env = dict(
        os.environ,
        KAFKA_URI=f"tcp://{bootstrap}",
        KAFKA_VERSION="4.1.0",
        KAFKA_ROOT=kafka_root,
        PYTHONPATH=root,
    )
    subprocess.run(
        [sys.executable, "-m", "pytest", "test/integration", "-q", "-p", "no:cacheprovider",
         "-o", "addopts=", "-o", "log_level=WARNING", "--timeout", "120",
         f"--junitxml={junit}"],
        cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=1500,
    )
    expected = json.load(open(os.path.join(HERE, "expected.json")))
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    unexpected, fixed = [], []
    for tc in ET.parse(junit).iter("testcase"):
        module = tc.get("classname", "").split(".")[2] if tc.get("classname", "").count(".") >= 2 else tc.get("classname", "")
        key = f"{module}::{tc.get('name')}"
        bad = tc.findall("failure") + tc.findall("error")
        if bad:
            counts["failed"] += 1
            why = expected.get(key)
            if why is None:
                unexpected.append(f"{key}: {(bad[0].get('message') or '')[:300]}")
            print(f"failed  {key}: {why or 'UNEXPECTED'}")
        elif tc.findall("skipped"):
            counts["skipped"] += 1
            print(f"skipped {key}: {(tc.find('skipped').get('message') or '')[:120]}")
        else:
            counts["passed"] += 1
            if key in expected:
                fixed.append(key)
    print(f"kafka-python suite: {counts['passed']} passed, {counts['failed']} failed, "
          f"{counts['skipped']} skipped")
    for f in fixed:
        print(f"now passes (drop it from expected.json): {f}")
    if unexpected:
        for u in unexpected:
            print(f"FAIL: unexpected: {u}", file=sys.stderr)
        sys.exit(1)
    if counts["passed"] == 0:
        print("FAIL: nothing passed", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
