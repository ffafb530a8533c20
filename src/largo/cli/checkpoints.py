"""`largo checkpoints`: the released checkpoints largo can load by name, and where it looks for them."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("checkpoints", help="list the released checkpoints that load by name",
                       description="List the released checkpoints found on the search path: every folder in "
                                   "$LARGO_CHECKPOINTS, then the user cache ($LARGO_CACHE/checkpoints, default "
                                   "~/.cache/largo/checkpoints), then the source tree's checkpoints/. Copy a "
                                   "release folder into one of them to use it by name.")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from largo.checkpoint import describe_released
    from largo.paths import released_dirs

    dirs = released_dirs()
    print("largo: search path: " + (", ".join(str(d) for d in dirs) or "(no folder exists)"))
    rows = describe_released()
    for r in rows:
        if "error" in r:
            print(f"  {r['name']:<24} unreadable: {r['error']}")
        else:
            print(f"  {r['name']:<24} {r['kind']:<11} {r['dataset']} {r['resolution']}px, step {r['step']}"
                  + (f": {r['headline']}" if r["headline"] else ""))
    if not rows:
        print("largo: no released checkpoints found; set LARGO_CHECKPOINTS to a folder that holds them")
    return 0
