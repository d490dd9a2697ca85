"""Row counts and order-independent checksums of a warehouse's datasets.

    python ops/bench/checksums.py [--exclude COLUMN ...] [--no-scores] WAREHOUSE [WAREHOUSE2]

Prints, per dataset of the current version (customers, transactions, events,
each `_state` table) and of every scores folder, the row count and DuckDB's
`bit_xor(hash(row))`. Given two warehouses, prints both and exits 1 when any
dataset differs: the proof that a change left the output as it was (run
folders, timings and version ids are not compared; they differ by design).
`--exclude COLUMN` leaves a column out of every dataset that has it (say
`source_file`, when one warehouse was loaded from renamed files);
`--no-scores` compares the datasets only.
Needs duckdb (ops/bench/common.sh's bench_python installs it in a venv).
"""

import glob
import os
import sys

import duckdb


# Tables of `_state/` written whole now and then, with the rows changed
# since in a delta beside them: the table is its file with the delta's rows
# over it, by key; a delta row matching `removes` takes the key out (see
# etl/src/warehouse/state.rs, txn_keysets.rs, purchase_totals.rs).
DELTAS = {
    "records.parquet": ("records-delta.parquet", "key", None),
    "txn_keysets.parquet": ("txn_keysets-delta.parquet", "keyset", "rows = 0"),
    "purchase_totals.parquet": ("purchase_totals-delta.parquet", "customer_id", "transactions = 0"),
    # Key sets are found by all three keys, any of which may be null.
    "event_keysets.parquet": (
        "event_keysets-delta.parquet",
        ("key_customer_id", "key_email", "key_phone"),
        None,
    ),
}


def datasets(wh, scores=True):
    if not os.path.isdir(os.path.join(wh, "current")):
        sys.exit(f"{wh}: no published version (no `current`)")
    cur = os.path.realpath(os.path.join(wh, "current"))
    out = {}
    for name in ("customers", "transactions", "events"):
        out[name] = os.path.join(cur, name, "**", "*.parquet")
    for f in sorted(glob.glob(os.path.join(cur, "_state", "*.parquet"))):
        if os.path.basename(f) in {d for d, _, _ in DELTAS.values()}:
            continue
        out["_state/" + os.path.basename(f)] = f
    for d in sorted(glob.glob(os.path.join(wh, "scores", "as_of=*")) if scores else []):
        out["scores/" + os.path.basename(d)] = os.path.join(d, "*.parquet")
    return out


def checksums(wh, exclude=(), scores=True):
    con = duckdb.connect()
    res = {}
    for name, pattern in datasets(wh, scores).items():
        if not glob.glob(pattern, recursive=True):
            res[name] = (0, None)
            continue
        # hive_partitioning off: the month folder is not a column of the files.
        rel = f"read_parquet('{pattern}', hive_partitioning = false)"
        table = name.removeprefix("_state/")
        delta, key, removes = DELTAS.get(table, (None, None, None))
        delta = delta and os.path.join(os.path.dirname(pattern), delta)
        if delta and os.path.exists(delta):
            d = f"read_parquet('{delta}')"
            kept = f"(select * from {d} where not ({removes}))" if removes else d
            keys = key if isinstance(key, tuple) else (key,)
            same = " and ".join(f"d.{k} is not distinct from t.{k}" for k in keys)
            rel = f"(select * from {rel} t where not exists (select 1 from {d} d where {same}) union all select * from {kept})"
        cols = [r[0] for r in con.execute(f"describe select * from {rel}").fetchall()]
        drop = [c for c in exclude if c in cols]
        if drop:
            rel = f"(select * exclude ({', '.join(drop)}) from {rel})"
        n, h = con.execute(f"select count(*), bit_xor(hash(t)) from {rel} t").fetchone()
        res[name] = (n, h)
    return res


def main():
    args, exclude, scores = sys.argv[1:], [], True
    while args and args[0] in ("--exclude", "--no-scores"):
        if args[0] == "--no-scores":
            scores, args = False, args[1:]
        elif len(args) >= 2:
            exclude.append(args[1])
            args = args[2:]
        else:
            sys.exit(__doc__)
    if len(args) not in (1, 2):
        sys.exit(__doc__)
    sums = [checksums(w, exclude, scores) for w in args]
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
