"""Runs the benchmarks found in bench/: every module but this one and private ones."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import pkgutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent


def available() -> list[str]:
    return sorted(
        info.name
        for info in pkgutil.iter_modules([str(HERE)])
        if not info.name.startswith("_") and not info.ispkg
    )


def run(name: str) -> None:
    module = importlib.import_module(f"bench.{name}")
    entry = getattr(module, "main", None)
    if entry is None:
        raise SystemExit(f"bench/{name}.py has no main()")
    print(f"== {name}", flush=True)
    started = time.perf_counter()
    result = entry()
    if inspect.iscoroutine(result):
        asyncio.run(result)
    print(f"== {name} done in {time.perf_counter() - started:.1f}s", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    parser.add_argument("--list", action="store_true", help="name the benchmarks and stop")
    args = parser.parse_args(argv)
    found = available()
    if not found:
        print("no benchmarks in bench/ yet: add bench/<name>.py with a main()")
        return 0
    if args.list:
        print("\n".join(found))
        return 0
    unknown = sorted(set(args.names) - set(found))
    if unknown:
        print(f"unknown benchmarks: {', '.join(unknown)}; there are: {', '.join(found)}")
        return 2
    for name in args.names or found:
        run(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
