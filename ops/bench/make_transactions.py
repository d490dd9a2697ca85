#!/usr/bin/env python3
"""A transactions-only drop for the scoring benchmark (ops/bench/score.sh).

    make_transactions.py --out DROP [--customers 1000000] [--seed 11] [--files 16]

Writes DROP/transactions/part-NNNNN.csv (customer_id,occurred_at,amount) for
`--customers` customers (ids C0000001...) over two years, 2024-01-01 to
2025-12-28 (104 weeks), by a BG/NBD-like process with heterogeneity:
  - each customer's first purchase is uniform over the first 52 weeks;
  - while alive, purchases follow a Poisson process with rate lambda ~ Gamma(r, 1/alpha)
    per week; after each repeat purchase the customer drops out with probability
    p ~ Beta(a, b);
  - spend per purchase ~ Gamma(P, nu), nu ~ Gamma(Q, 1/V) per customer (Gamma-Gamma).
With the defaults this gives about 12.3 transactions per customer (12,266,911
rows for 1M customers, seed 11). Deterministic for a seed (numpy PCG64). Prints a JSON summary
with the row count and the as-of date to score with.

Needs numpy and duckdb (duckdb writes the CSV files fast); benchmark only.
"""

import argparse
import json
import os
import shutil

import duckdb
import numpy as np

R, ALPHA, A, B = 2.0, 8.0, 1.0, 14.0  # BG/NBD-like purchase and dropout process (weeks)
P, Q, V = 6.0, 4.0, 15.0  # Gamma-Gamma spend
WEEKS = 104
START = np.datetime64("2024-01-01")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--files", type=int, default=16)
    args = ap.parse_args()
    n = args.customers
    rng = np.random.default_rng(args.seed)

    lam = rng.gamma(R, 1.0 / ALPHA, n)
    p = rng.beta(A, B, n)
    nu = rng.gamma(Q, 1.0 / V, n)
    t0 = rng.uniform(0.0, 52.0, n)

    cust = [np.arange(n)]
    times = [t0]
    active = np.arange(n)
    t = t0.copy()
    while active.size:
        t = t + rng.exponential(1.0, active.size) / lam[active]
        inside = t < WEEKS
        active, t = active[inside], t[inside]
        cust.append(active)
        times.append(t)
        alive = rng.random(active.size) >= p[active]
        active, t = active[alive], t[alive]
    cust = np.concatenate(cust)
    times = np.concatenate(times)
    amount = np.round(rng.gamma(P, 1.0 / nu[cust]), 2)
    amount = np.maximum(amount, 0.01)
    day = (times * 7).astype(np.int64)
    order = np.lexsort((day, cust))
    cust, day, amount = cust[order], day[order], amount[order]

    tdir = os.path.join(args.out, "transactions")
    if os.path.exists(tdir):
        shutil.rmtree(tdir)
    os.makedirs(tdir)
    con = duckdb.connect()
    con.execute("SET threads=2")
    chunk = np.array_split(np.arange(cust.size), args.files)
    for i, idx in enumerate(chunk):
        tbl = {  # noqa: F841 (read by DuckDB's replacement scan)
            "cid": cust[idx],
            "day": day[idx],
            "amount": amount[idx],
        }
        import pandas as pd

        df = pd.DataFrame(tbl)  # noqa: F841
        con.execute(
            f"""COPY (SELECT 'C' || lpad(CAST(cid + 1 AS VARCHAR), 7, '0') AS customer_id,
                         strftime(DATE '2024-01-01' + CAST(day AS INTEGER), '%Y-%m-%d') AS occurred_at,
                         printf('%.2f', amount) AS amount
                  FROM df) TO '{tdir}/part-{i:05d}.csv' (HEADER, DELIMITER ',')"""
        )
    as_of = str(START + np.timedelta64(WEEKS * 7 - 1, "D"))
    print(json.dumps({"customers": n, "transactions": int(cust.size), "files": args.files,
                      "as_of": as_of, "seed": args.seed}))


if __name__ == "__main__":
    main()
