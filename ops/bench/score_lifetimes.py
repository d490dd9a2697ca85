#!/usr/bin/env python3
"""The lifetimes side of ops/bench/score.sh.

    score_lifetimes.py SCORES_GLOB MANIFEST

Reads (frequency, recency, T) of customers with orders > 0 from the scores
Parquet written by `cvm-etl score`, fits lifetimes.BetaGeoFitter (penalizer 0)
on them as a lifetimes user would (one row per customer), times the fit, and
prints its parameters next to cvm's (manifest `bgnbd.params`), both total
log-likelihoods evaluated with the same formula on the same data (the paper's
equation; lifetimes rescales time internally, so its own reported likelihood is
not on the same scale), and the fit-time ratio lifetimes / cvm.

Needs duckdb, numpy, scipy, lifetimes (benchmark only).
"""

import json
import sys
import time

import duckdb
import numpy as np
from scipy.special import betaln, gammaln


def bgnbd_ll(params, x, tx, T):
    """Total BG/NBD log-likelihood (Fader, Hardie & Lee 2005, eq. 6), numerically stable."""
    r, alpha, a, b = params
    a1 = betaln(a, b + x) - betaln(a, b) - (r + x) * np.log(alpha + T)
    with np.errstate(divide="ignore", invalid="ignore"):
        a2 = np.where(
            x > 0,
            betaln(a + 1, np.maximum(b + x - 1, 1e-300)) - betaln(a, b) - (r + x) * np.log(alpha + tx),
            -np.inf,
        )
    ll = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + np.logaddexp(a1, a2)
    return float(np.sum(ll))


def main():
    scores, manifest = sys.argv[1], sys.argv[2]
    m = json.load(open(manifest))
    bg = m["bgnbd"]
    con = duckdb.connect()
    df = con.execute(
        f"SELECT frequency, recency, T FROM read_parquet('{scores}') WHERE orders > 0"
    ).df()
    x, tx, T = (df[c].to_numpy(dtype=float) for c in ("frequency", "recency", "T"))
    distinct = len(df.drop_duplicates())

    from lifetimes import BetaGeoFitter

    bgf = BetaGeoFitter(penalizer_coef=0.0)
    t0 = time.perf_counter()
    bgf.fit(df["frequency"], df["recency"], df["T"])
    fit_s = time.perf_counter() - t0
    lt = [float(bgf.params_[k]) for k in ("r", "alpha", "a", "b")]
    ours = [float(bg["params"][k]) for k in ("r", "alpha", "a", "b")]
    ll_lt = bgnbd_ll(lt, x, tx, T)
    ll_ours = bgnbd_ll(ours, x, tx, T)
    cvm_fit_s = bg["fit_ms"] / 1000.0

    print(f"customers fitted         {len(df)} (cvm: {bg['customers']:.0f}); distinct rows {distinct} (cvm: {bg['distinct_rows']})")
    print(f"{'param':8} {'cvm':>14} {'lifetimes':>14} {'rel diff':>10}")
    for k, o, l in zip(("r", "alpha", "a", "b"), ours, lt):
        print(f"{k:8} {o:14.6f} {l:14.6f} {abs(o - l) / abs(l):10.2e}")
    print(f"log-likelihood cvm       {ll_ours:.4f} (manifest: {bg['log_likelihood']})")
    print(f"log-likelihood lifetimes {ll_lt:.4f}")
    print(f"ll cvm - lifetimes       {ll_ours - ll_lt:+.4f}")
    print(f"cvm converged            {bg['converged']} ({bg['iterations']} iterations)")
    print(f"lifetimes fit seconds    {fit_s:.3f}")
    print(f"cvm fit seconds          {cvm_fit_s:.3f}")
    ratio = fit_s / cvm_fit_s if cvm_fit_s > 0 else float("inf")
    print(f"RESULT lifetimes_s={fit_s:.3f} cvm_fit_s={cvm_fit_s:.3f} ratio={ratio:.1f} "
          f"ll_cvm={ll_ours:.4f} ll_lifetimes={ll_lt:.4f} "
          f"max_rel_param_diff={max(abs(o - l) / abs(l) for o, l in zip(ours, lt)):.2e}")


if __name__ == "__main__":
    main()
