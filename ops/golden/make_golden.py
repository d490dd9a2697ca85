#!/usr/bin/env python3
"""Generate the lifetimes golden files used by the Rust tests in etl/src/models/.

What it does: on the FULL CDNOW data (shared/data/cdnow/transactions.csv, 23,570
customers), as of 1998-06-30 with the weekly period (freq='D', freq_multiplier=7),
it computes lifetimes' summary, fits BetaGeoFitter (penalizer 0) and
GammaGammaFitter (repeat buyers with monetary_value > 0), then evaluates
p_alive, the conditional expected purchases over 90/7 and 365/7 weeks, the
conditional expected average value and the 12-month CLV (discount 0.01 per
month, margin 1, month = 4.345 weeks, freq='W') with FIXED parameters (lifetimes'
fitted parameters rounded to 6 significant digits), so that the Rust side can
recompute every figure from exactly the same inputs.

Outputs (committed; regenerate only when lifetimes or the data change):
  tests/golden/cdnow_lifetimes.csv.gz      one row per customer
  tests/golden/cdnow_lifetimes_params.json fixed and fitted parameters, total log-likelihoods

How to run (from the repository root, with shared/ beside the checkout):
  pip install lifetimes==0.11.3 pandas
  python3 ops/golden/make_golden.py [path/to/shared/data/cdnow/transactions.csv]
"""

import gzip
import json
import os
import sys

import numpy as np
import pandas as pd
from lifetimes import BetaGeoFitter, GammaGammaFitter
from lifetimes.utils import summary_data_from_transaction_data

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_DATA = os.path.join(ROOT, "..", "shared", "data", "cdnow", "transactions.csv")
OUT_DIR = os.path.join(ROOT, "tests", "golden")
AS_OF = "1998-06-30"


def sig6(x):
    """Rounds to 6 significant digits, so the fixed parameters are short decimals."""
    return float(f"{x:.6g}")


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_DATA
    tx = pd.read_csv(path, dtype={"customer_id": str})
    summary = summary_data_from_transaction_data(
        tx, "customer_id", "occurred_at", monetary_value_col="amount",
        observation_period_end=AS_OF, freq="D", freq_multiplier=7,
    ).sort_index()

    bgf = BetaGeoFitter(penalizer_coef=0.0)
    bgf.fit(summary["frequency"], summary["recency"], summary["T"])
    bg_fitted = {k: float(v) for k, v in bgf.params_.items()}
    # lifetimes keeps the MEAN negative log-likelihood, and for BG/NBD of the data
    # with time rescaled by 10 / max(T); re-evaluate its own likelihood function on
    # the unscaled weeks and convert to the total log-likelihood.
    bg_ll = -float(BetaGeoFitter._negative_log_likelihood(
        np.log(bgf.params_[["r", "alpha", "a", "b"]].to_numpy()),
        summary["frequency"].to_numpy().astype(int), summary["recency"].to_numpy(),
        summary["T"].to_numpy(), np.ones(len(summary)), 0.0,
    )) * len(summary)

    repeat = summary[(summary["frequency"] > 0) & (summary["monetary_value"] > 0)]
    ggf = GammaGammaFitter(penalizer_coef=0.0)
    ggf.fit(repeat["frequency"], repeat["monetary_value"])
    gg_fitted = {k: float(v) for k, v in ggf.params_.items()}
    gg_ll = -float(ggf._negative_log_likelihood_) * len(repeat)

    bg_fixed = {k: sig6(v) for k, v in bg_fitted.items()}
    gg_fixed = {k: sig6(v) for k, v in gg_fitted.items()}
    bgf.params_ = pd.Series(bg_fixed)[["r", "alpha", "a", "b"]]
    ggf.params_ = pd.Series(gg_fixed)[["p", "q", "v"]]

    f, rec, T, m = summary["frequency"], summary["recency"], summary["T"], summary["monetary_value"]
    out = pd.DataFrame(index=summary.index)
    out["frequency"] = f
    out["recency"] = rec
    out["T"] = T
    out["monetary_value"] = m
    out["p_alive"] = bgf.conditional_probability_alive(f, rec, T)
    out["exp_purchases_90d"] = bgf.conditional_expected_number_of_purchases_up_to_time(90 / 7, f, rec, T)
    out["exp_purchases_365d"] = bgf.conditional_expected_number_of_purchases_up_to_time(365 / 7, f, rec, T)
    out["exp_avg_value"] = ggf.conditional_expected_average_profit(f, m)
    out["clv_12m"] = ggf.customer_lifetime_value(
        bgf, f, rec, T, m, time=12, discount_rate=0.01, freq="W"
    )
    out.index.name = "customer_id"

    os.makedirs(OUT_DIR, exist_ok=True)
    # mtime=0 keeps the gzip byte-identical between runs.
    with open(os.path.join(OUT_DIR, "cdnow_lifetimes.csv.gz"), "wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
            gz.write(out.to_csv(float_format="%.17g").encode())
    params = {
        "source": "lifetimes " + __import__("lifetimes").__version__ + " on CDNOW transactions.csv",
        "as_of": AS_OF,
        "period_days": 7,
        "n_customers": int(len(summary)),
        "bgnbd_fitted": bg_fitted,
        "bgnbd_log_likelihood": bg_ll,
        "gg_n_customers": int(len(repeat)),
        "gg_fitted": gg_fitted,
        "gg_log_likelihood": gg_ll,
        "bgnbd_fixed": bg_fixed,
        "gg_fixed": gg_fixed,
        "clv": {"months": 12, "discount_rate": 0.01, "margin": 1.0, "month_periods": 4.345},
        "horizons_periods": {"exp_purchases_90d": 90 / 7, "exp_purchases_365d": 365 / 7},
    }
    with open(os.path.join(OUT_DIR, "cdnow_lifetimes_params.json"), "w") as fh:
        json.dump(params, fh, indent=2)
        fh.write("\n")
    print(json.dumps(params, indent=2))


if __name__ == "__main__":
    main()
