#!/usr/bin/env python3
"""docs/api.md against lua/kong_client_tls.lua: every function the module exports has a
section (`## ...name(`), and its **Phases** list is the set the module enforces (the
`phases(...)` set passed to `check_phase` in the function's body; `any` without one). No
section documents a function the module lacks.

    tests/packaging/api_doc.py [repo]
"""
import re
import sys
from pathlib import Path

repo = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[2])
module = (repo / "lua" / "kong_client_tls.lua").read_text()
doc = (repo / "docs" / "api.md").read_text()

sets = {name: set(re.findall(r'"([a-z_]+)"', args))
        for name, args in re.findall(r"^local (\w+) = phases\(([^)]*)\)", module, re.M | re.S)}
functions = {}
for match in re.finditer(r"^function _M\.(\w+)\(", module, re.M):
    body = module[match.end():module.find("\nend\n", match.end())]
    used = re.search(r"check_phase\((\w+)\)", body)
    functions[match.group(1)] = sets[used.group(1)] if used else {"any"}

sections = {}
for match in re.finditer(r"^## (?:[\w.]*\.)?(\w+)\(.*$", doc, re.M):
    rest = doc[match.end():]
    end = rest.find("\n## ")
    text = rest if end < 0 else rest[:end]
    phases = re.search(r"\*\*Phases\*\*\n\n((?:\* .*\n)+)", text)
    listed = set(re.findall(r"^\* (\w+)", phases.group(1), re.M)) if phases else set()
    sections[match.group(1)] = (listed, text)

problems = []
for name, allowed in sorted(functions.items()):
    if name not in sections:
        problems.append(f"{name}: exported by the module, not in docs/api.md")
        continue
    listed, text = sections[name]
    if listed != allowed:
        problems.append(f"{name}: docs/api.md lists phases {sorted(listed)}, "
                        f"the module allows {sorted(allowed)}")
    for part in ("**Returns**", "**Usage**"):
        if part not in text:
            problems.append(f"{name}: no {part} in docs/api.md")
for name in sorted(set(sections) - set(functions)):
    problems.append(f"{name}: in docs/api.md, not exported by the module")
if "_VERSION" not in doc:
    problems.append("_VERSION is not documented")

for p in problems:
    print(f"api_doc: {p}", file=sys.stderr)
if problems:
    sys.exit(1)
print(f"api_doc: {len(functions)} functions documented with the module's phases: "
      + ", ".join(sorted(functions)))
