"""Fail unless a pytest JUnit XML report shows tests that really ran and none that failed.

pytest exits 5 when it collects nothing, but a run where every test is skipped exits 0; CI must
not take either for success.
"""

import sys

import defusedxml.ElementTree as ET

root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
total = sum(int(s.get("tests", 0)) for s in suites)
skipped = sum(int(s.get("skipped", 0)) for s in suites)
bad = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
ran = total - skipped
print(f"junit: {total} tests, {ran} ran, {skipped} skipped, {bad} failed or errored", file=sys.stderr)
if ran <= 0 or bad:
    sys.exit("junit: no test ran" if ran <= 0 else "junit: failures")
