"""Fail when every test of a module prefix was skipped (e.g. the R round trips)."""
import sys
import xml.etree.ElementTree as ET

path, prefix = sys.argv[1], sys.argv[2]
cases = [c for c in ET.parse(path).iter("testcase") if c.get("classname", "").startswith(prefix)]
skipped = [c for c in cases if c.find("skipped") is not None]
print(f"{prefix}: {len(cases)} tests, {len(skipped)} skipped")
if not cases or len(skipped) == len(cases):
    reasons = {s.find('skipped').get('message') for s in skipped}
    print(f"{prefix}: no test ran ({'; '.join(sorted(r for r in reasons if r)) or 'none collected'})", file=sys.stderr)
    sys.exit(1)
