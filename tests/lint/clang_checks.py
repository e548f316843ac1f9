#!/usr/bin/env python3
"""Runs clang's checks over our C++ sources, with the flags CMake recorded for each file.

  --thread-safety  clang++ -fsyntax-only -Wthread-safety -Werror: ABSL_GUARDED_BY and friends are
                   checked (g++ ignores them).
  --tidy           clang-tidy with the repository's .clang-tidy, every finding an error.

Usage: clang_checks.py BUILD_DIR SOURCE_DIR (--thread-safety | --tidy) [--jobs N]
Exit 0 when clean, 1 with findings (printed), 2 when a tool is missing.
"""
import argparse
import concurrent.futures
import json
import os
import pathlib
import shlex
import shutil
import subprocess
import sys

OUR_DIRS = ("core/", "kafka/", "broker/", "policy/", "audit/", "connectors/", "tools/")


def find_tool(names):
    for n in names:
        if shutil.which(n):
            return n
    return None


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("source")
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--thread-safety", action="store_true")
    mode.add_argument("--tidy", action="store_true")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--dirs", nargs="+", default=list(OUR_DIRS),
                    help="only sources under these directories (default: all of ours)")
    args = ap.parse_args()
    src = pathlib.Path(args.source).resolve()
    db = json.loads((pathlib.Path(args.build) / "compile_commands.json").read_text())
    entries = []
    for e in db:
        f = pathlib.Path(e["file"]).resolve()
        try:
            rel = f.relative_to(src).as_posix()
        except ValueError:
            continue  # generated code (protobuf) lives in the build tree
        if rel.startswith(tuple(d.rstrip("/") + "/" for d in args.dirs)) and f.suffix == ".cc":
            entries.append((rel, e))
    if not entries:
        print("no sources found in compile_commands.json", file=sys.stderr)
        return 2

    if args.thread_safety:
        clang = find_tool(["clang++-14", "clang++"])
        if clang is None:
            print("clang++ not found (install clang-14)", file=sys.stderr)
            return 2

        def run(item):
            rel, e = item
            argv = shlex.split(e["command"]) if "command" in e else list(e["arguments"])
            # Drop the compiler, the output and g++-only flags; keep includes and defines.
            kept, skip = [], False
            for a in argv[1:]:
                if skip:
                    skip = False
                    continue
                if a in ("-o", "-MF", "-MT", "-MQ"):
                    skip = True
                    continue
                if a in ("-c", "-MD", "-MMD") or a.startswith("-fsanitize") or a == e["file"]:
                    continue
                kept.append(a)
            cmd = [clang, "-fsyntax-only", "-Wthread-safety", "-Werror=thread-safety",
                   "-Wno-unknown-warning-option", *kept, e["file"]]
            p = subprocess.run(cmd, cwd=e["directory"], capture_output=True, text=True)
            return rel, p.returncode, p.stderr
    else:
        tidy = find_tool(["clang-tidy-14", "clang-tidy"])
        if tidy is None:
            print("clang-tidy not found (install clang-tidy-14)", file=sys.stderr)
            return 2

        def run(item):
            rel, e = item
            cmd = [tidy, "-p", args.build, "--quiet", "--warnings-as-errors=*", e["file"]]
            p = subprocess.run(cmd, cwd=src, capture_output=True, text=True)
            out = "\n".join(l for l in (p.stdout + p.stderr).splitlines()
                            if "warnings generated" not in l and "Suppressed" not in l
                            and "Use -header-filter" not in l and "Use -system-headers" not in l)
            return rel, p.returncode, out

    failed = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for rel, rc, out in pool.map(run, sorted(entries)):
            if rc != 0:
                failed += 1
                print(f"== {rel}\n{out}")
    print(f"{len(entries)} files, {failed} with findings")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
