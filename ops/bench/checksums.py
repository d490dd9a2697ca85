"""Row counts and order-independent checksums of a warehouse's datasets.

    python ops/bench/checksums.py WAREHOUSE [WAREHOUSE2]

Prints, per dataset of the current version (customers, transactions, events,
each `_state` table) and of every scores folder, the row count and DuckDB's
`bit_xor(hash(row))`. Given two warehouses, prints both and exits 1 when any
dataset differs: the proof that a change left the output as it was (run
folders, timings and version ids are not compared; they differ by design).
Needs duckdb (ops/bench/common.sh's bench_python installs it in a venv).
"""

import glob
import os
import sys

import duckdb


def datasets(wh):
    if not os.path.isdir(os.path.join(wh, "current")):
        sys.exit(f"{wh}: no published version (no `current`)")
    cur = os.path.realpath(os.path.join(wh, "current"))
    out = {}
    for name in ("customers", "transactions", "events"):
        out[name] = os.path.join(cur, name, "**", "*.parquet")
    for f in sorted(glob.glob(os.path.join(cur, "_state", "*.parquet"))):
        out["_state/" + os.path.basename(f)] = f
    for d in sorted(glob.glob(os.path.join(wh, "scores", "as_of=*"))):
        out["scores/" + os.path.basename(d)] = os.path.join(d, "*.parquet")
    return out


def checksums(wh):
    con = duckdb.connect()
    res = {}
    for name, pattern in datasets(wh).items():
        if not glob.glob(pattern, recursive=True):
            res[name] = (0, None)
            continue
        # hive_partitioning off: the month folder is not a column of the files.
        rel = f"read_parquet('{pattern}', hive_partitioning = false)"
        n, h = con.execute(f"select count(*), bit_xor(hash(t)) from {rel} t").fetchone()
        res[name] = (n, h)
    return res


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    sums = [checksums(w) for w in sys.argv[1:]]
    names = sorted(set().union(*sums))
    differ = False
    for name in names:
        vals = [s.get(name) for s in sums]
        same = all(v == vals[0] for v in vals)
        differ |= not same
        cols = "  ".join(f"{v[0]:>12,} {v[1]!s:>20}" if v else f"{'missing':>33}" for v in vals)
        print(f"{name:<34} {cols}{'' if same else '  DIFFERENT'}")
    if len(sums) == 2:
        print("identical" if not differ else "DIFFERENT")
        sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
