"""Size figures of the package's functions: the longest ones and those with the most parameters.

    python scripts/code_stats.py [aging] [--top 10] [--max-lines 80] [--max-params 8]

Prints the top functions by length (lines from ``def`` to the last line of the body) and by
parameter count (``self``/``cls`` not counted, ``*args``/``**kw`` counted once each), and how many
exceed the limits. A function whose docstring gives a reason (a line starting ``Long:``) is listed
but not counted as over.
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path


def functions(root: Path):
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                params = [p.arg for p in a.posonlyargs + a.args + a.kwonlyargs if p.arg not in ("self", "cls")]
                params += [x.arg for x in (a.vararg, a.kwarg) if x is not None]
                doc = ast.get_docstring(node) or ""
                yield {"where": f"{path}:{node.lineno}", "name": node.name,
                       "lines": node.end_lineno - node.lineno + 1, "params": len(params),
                       "excused": any(line.strip().startswith("Long:") for line in doc.splitlines())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", nargs="?", default="aging")
    ap.add_argument("--top", type=int, default=10)
    ap.add_argument("--max-lines", type=int, default=80)
    ap.add_argument("--max-params", type=int, default=8)
    args = ap.parse_args()
    fs = list(functions(Path(args.root)))
    for key, limit in (("lines", args.max_lines), ("params", args.max_params)):
        over = [f for f in fs if f[key] > limit and not f["excused"]]
        print(f"{len(fs)} functions; {len(over)} over {limit} {key}")
        for f in sorted(fs, key=lambda f: -f[key])[:args.top]:
            print(f"  {f[key]:4d} {key:<6} {f['name']:<28} {f['where']}{'  (reason given)' if f['excused'] else ''}")


if __name__ == "__main__":
    main()
