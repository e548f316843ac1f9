#!/usr/bin/env python3
"""Fails when the include graph runs the wrong way, or when the project cites files outside itself.

Rules (docs/design.md, "Parts"): policy/ and audit/ use nothing of ours; core/ uses nothing of
ours but itself; kafka/ uses core/; connectors/ may use core/ and kafka/, never broker/; tools/
and bench/ never include broker/ internals either (they link the small libraries).
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
OURS = ("broker/", "core/", "kafka/", "policy/", "audit/", "connectors/", "tools/")
ALLOWED = {
    "core": {"core"},
    "kafka": {"core", "kafka"},
    "policy": {"policy"},
    "audit": {"audit"},
    "connectors": {"core", "kafka", "connectors"},
    "tools": {"core", "kafka", "policy", "audit", "tools"},
    "bench": {"core", "kafka", "policy", "audit", "connectors", "bench"},
}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')
# Files outside the repository that once were cited (research notes of the project brief).
OUTSIDE = re.compile(r"shared/notes/|\.\./shared/")

problems = []
for top, allowed in ALLOWED.items():
    for path in sorted((ROOT / top).rglob("*")):
        if path.suffix not in (".h", ".cc", ".c", ".hpp", ".cpp"):
            continue
        for no, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            m = INCLUDE.match(line)
            if not m or not m.group(1).startswith(OURS):
                continue
            target = m.group(1).split("/", 1)[0]
            if target not in allowed:
                rel = path.relative_to(ROOT)
                problems.append(f"{rel}:{no}: {top}/ must not include {m.group(1)} "
                                f"(allowed: {', '.join(sorted(allowed))})")

for path in sorted(ROOT.rglob("*")):
    rel = path.relative_to(ROOT)
    if not path.is_file() or rel.parts[0] in (".git", ".cache") or rel.parts[0].startswith("build"):
        continue
    if path.suffix not in (".h", ".cc", ".py", ".md", ".sh", ".txt", ".yaml", ".yml", ".json", ""):
        continue
    if rel.as_posix() == "tests/lint/check_layering.py":
        continue
    try:
        text = path.read_text()
    except (UnicodeDecodeError, OSError):
        continue
    for no, line in enumerate(text.splitlines(), 1):
        if OUTSIDE.search(line):
            problems.append(f"{rel}:{no}: cites a file outside the repository: {line.strip()}")

for p in problems:
    print(p)
sys.exit(1 if problems else 0)
