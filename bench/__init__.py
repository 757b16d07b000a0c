"""Benchmarks: each `bench/<name>.py` module defines `main()` (plain or async) that runs
its measurements and prints what it found. `python -m bench` (or `make bench`) runs
them all; `python -m bench NAME ...` runs some; `python -m bench --list` names them."""
