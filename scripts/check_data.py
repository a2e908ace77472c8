"""Smoke check of kexue.data against a real data root (not a test; needs the shared data).

Parses every file of the catalogue with its reader and compares the row count with the
catalogue. Usage: ``python scripts/check_data.py [DATA_DIR]`` (default: KEXUE_DATA or ../shared/data).
Exit status 1 if a file is missing, malformed or has another count.
"""

import sys
import time

from kexue.data import DATASETS, KexueDataError, resolve_data_root


def main() -> int:
    root = resolve_data_root(sys.argv[1] if len(sys.argv) > 1 else None)
    failures = 0
    started = time.perf_counter()
    for name, entry in DATASETS.items():
        try:
            rows = sum(1 for _ in entry.read(root))
        except KexueDataError as error:
            print(f"FAIL {name}: {error}")
            failures += 1
            continue
        status = "ok  " if rows == entry.rows else "FAIL"
        failures += rows != entry.rows
        print(f"{status} {name:42s} {rows:>8,d} (catalogue {entry.rows:,d})")
    print(f"{len(DATASETS)} files, {failures} failures, {time.perf_counter() - started:.1f} s, root {root}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
