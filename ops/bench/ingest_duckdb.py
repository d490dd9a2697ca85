#!/usr/bin/env python3
"""The cvm ingest consolidation written as plain DuckDB SQL, for ops/bench/ingest.sh.

    ingest_duckdb.py --input DROP --out DIR [--threads 2] [--pos-time-zone UTC]
                     [--default-country-code 1] [--base-currency USD]

Reads the same drop as `cvm-etl ingest` (all seven kinds, plain or gzip:
compression='auto'), and does comparable work in SQL:
  - CSV kinds with read_csv(all_varchar, header, store_rejects): rows whose field
    count differs from the header are counted as bad_row (reject_errors table);
  - JSONL kinds read line by line (read_csv with one column) and parsed with the
    JSON functions, so a line that is not a JSON object is counted as bad_json;
  - per record: missing_id, bad_date, bad_amount, unknown_currency, as the contract;
  - fx: amount_base = amount_original x rate (DECIMAL, exact), base currency rate 1;
  - POS: RFC 3339 or local 'YYYY-MM-DD HH:MM:SS' in the POS time zone -> UTC
    (ICU timezone()), sale/return/void, anonymous receipts kept without customer;
  - web: latest version per order_id by updated_at (ties: later file/row) wins;
    paid = purchase, refunded = purchase at created_at + refund at updated_at,
    cancelled/pending ignored;
  - app: amount_cents / 100, unix ts, purchase/refund, latest per txn;
  - generic transactions: never de-duplicated, negative = refund, date-only = 00:00 UTC;
  - events: customer_id or email;
  - CRM: latest row per customer_id by updated_at; emails trimmed+lower-cased,
    phones to E.164 (default country code), key -> most recently updated CRM id;
  - transactions/events resolved to CRM ids via any key; unmatched keys become
    guests (a given customer id is kept, else 'G-' + hash(smallest key)).
    Simplification: guests are not merged across transactions by union-find of
    co-occurring keys (cvm does that); one pass over the keys of each row.
  - writes customers/, transactions/ (hive-partitioned by month) and events/ as
    Parquet ZSTD, and rejects.parquet.
It is not bit-identical to cvm (different guest hash, no cross-run history), but
reads, parses, validates, joins and writes the same volumes.

Prints a JSON line with records read, outcome counts and elapsed seconds.
Needs the `duckdb` Python package (ops/bench/ingest.sh installs it into
ops/bench/.venv).
"""

import argparse
import csv as pycsv
import gzip
import json
import os
import shutil
import sys
import time

import duckdb

LINES = (
    "read_csv({glob}, columns={{'line':'VARCHAR'}}, delim=E'\\x1f', quote='', escape='', "
    "header=false, auto_detect=false, compression='auto', filename=true)"
)


def header(path):
    """The column names of a CSV file (first line; BOM stripped; gzip aware)."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8-sig", newline="") as f:
        return next(pycsv.reader([f.readline()]), [])


def csv(files, columns):
    """One read_csv per file (files of one kind may order or omit columns differently),
    UNION ALL, selecting `columns` (NULL when a file lacks one) plus filename."""
    parts = []
    for f in files:
        have = {h.strip() for h in header(f)}
        cols = ", ".join(
            (f'"{col}"' if col in have else f"NULL::VARCHAR AS \"{col}\"") for col in columns
        )
        lit = "'" + f.replace("'", "''") + "'"
        parts.append(
            f"SELECT filename, {cols} FROM read_csv({lit}, all_varchar=true, header=true, "
            "store_rejects=true, compression='auto', filename=true)"
        )
    return "(" + " UNION ALL ".join(parts) + ")"


def lines(files):
    lit = "[" + ",".join("'" + f.replace("'", "''") + "'" for f in files) + "]"
    return LINES.format(glob=lit)


def globs(drop, kind, exts):
    """The files of one kind, sorted, or None when there are none."""
    d = os.path.join(drop, kind)
    if not os.path.isdir(d):
        return None
    files = sorted(
        os.path.join(d, f) for f in os.listdir(d) if any(f.endswith(e) for e in exts)
    )
    return files or None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--input", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pos-time-zone", default="UTC")
    ap.add_argument("--default-country-code", default="1")
    ap.add_argument("--base-currency", default="USD")
    args = ap.parse_args()

    t0 = time.time()
    out = args.out
    if os.path.exists(out):
        shutil.rmtree(out)
    os.makedirs(out)
    c = duckdb.connect()
    c.execute(f"SET threads={args.threads}")
    c.execute("SET TimeZone='UTC'")
    c.execute(f"SET temp_directory='{out}/.tmp'")
    c.execute("SET preserve_insertion_order=false")
    cc = args.default_country_code
    nat_len = "[10]" if cc == "1" else "[7,8,9,10,11]"
    trunk = "true" if cc in ("1", "39") else "false"
    tz = args.pos_time_zone.replace("'", "")
    base = args.base_currency.replace("'", "")

    # Normalisation and parsing macros.
    c.execute(
        f"""
    CREATE MACRO norm_email(e) AS nullif(lower(trim(e)), '');
    CREATE MACRO phone_d(t, d) AS CASE
        WHEN d IS NULL OR length(d) < 4 THEN NULL
        WHEN starts_with(t, '+') THEN '+' || d
        WHEN starts_with(d, '00') AND length(d) >= 9 THEN '+' || d[3:]
        WHEN starts_with(d, '{cc}') AND list_contains({nat_len}, length(d) - {len(cc)}) THEN '+' || d
        WHEN NOT {trunk} THEN '+{cc}' || ltrim(d, '0')
        ELSE '+{cc}' || d END;
    CREATE MACRO norm_phone(p) AS phone_d(trim(p), regexp_replace(coalesce(p, ''), '[^0-9]', '', 'g'));
    CREATE MACRO rfc3339(s) AS CASE WHEN regexp_full_match(s,
        '\\d{{4}}-\\d\\d-\\d\\d[Tt ]\\d\\d:\\d\\d:\\d\\d(\\.\\d+)?([Zz]|[+-]\\d\\d:\\d\\d)')
        THEN try_cast(s AS TIMESTAMPTZ) END;
    CREATE MACRO money(s) AS CASE WHEN regexp_full_match(trim(s), '[+-]?(\\d+(\\.\\d*)?|\\.\\d+)')
        THEN try_cast(trim(s) AS DECIMAL(18,6)) END;
    CREATE MACRO bool_text(s) AS coalesce(lower(trim(s)) IN ('true','1','yes','y'), false);
    CREATE MACRO nz(s) AS nullif(trim(s), '');
    """
    )

    counts = {}

    def one(sql):
        return c.execute(sql).fetchone()[0]

    def count(kind, n):
        counts[kind] = counts.get(kind, 0) + n

    # Rejects collected here: kind, file, reason, raw.
    c.execute("CREATE TABLE rejects(kind VARCHAR, source_file VARCHAR, reason VARCHAR, raw VARCHAR)")

    # ---- fx
    g = globs(args.input, "fx", ["rates.csv", "rates.csv.gz"])
    c.execute("CREATE TABLE fx(currency VARCHAR, rate DECIMAL(20,10))")
    if g:
        c.execute(
            f"""CREATE TEMP TABLE fx_raw AS SELECT filename, upper(trim(currency)) AS currency,
                rate_to_base FROM {csv(g, ['currency', 'rate_to_base'])}"""
        )
        c.execute(
            """INSERT INTO fx SELECT currency, try_cast(rate_to_base AS DECIMAL(20,10)) FROM fx_raw
               WHERE try_cast(rate_to_base AS DECIMAL(20,10)) IS NOT NULL AND currency <> ''"""
        )
        c.execute(
            "INSERT INTO rejects SELECT 'fx', filename, 'bad_value', currency || ',' || coalesce(rate_to_base,'') "
            "FROM fx_raw WHERE try_cast(rate_to_base AS DECIMAL(20,10)) IS NULL OR currency = ''"
        )
        count("fx", one("SELECT count(*) FROM fx_raw"))
    c.execute(f"INSERT INTO fx SELECT '{base}', 1 WHERE NOT EXISTS (SELECT 1 FROM fx WHERE currency = '{base}')")

    # ---- CRM
    g = globs(args.input, "crm", [".csv", ".csv.gz"])
    c.execute(
        """CREATE TABLE crm(customer_id VARCHAR, email VARCHAR, phone VARCHAR, first_name VARCHAR,
           last_name VARCHAR, country VARCHAR, signup_date DATE, email_opt_in BOOLEAN, updated_at TIMESTAMPTZ)"""
    )
    crm_dup = 0
    if g:
        c.execute(
            f"""CREATE TEMP TABLE crm_raw AS SELECT filename, nz(customer_id) AS customer_id, email, phone,
                first_name, last_name, country, signup_date, email_opt_in, updated_at FROM {csv(g, ['customer_id','email','phone','first_name','last_name','country','signup_date','email_opt_in','updated_at'])}"""
        )
        count("crm", one("SELECT count(*) FROM crm_raw"))
        c.execute(
            """INSERT INTO rejects SELECT 'crm', filename, 'missing_id', concat_ws(',', email, phone, first_name, last_name)
               FROM crm_raw WHERE customer_id IS NULL"""
        )
        c.execute(
            """INSERT INTO crm SELECT customer_id, norm_email(email), norm_phone(phone), nz(first_name), nz(last_name),
                  upper(nz(country)), try_cast(signup_date AS DATE), bool_text(email_opt_in), rfc3339(updated_at)
               FROM (SELECT *, row_number() OVER (PARTITION BY customer_id
                        ORDER BY rfc3339(updated_at) DESC NULLS LAST, filename DESC, rowid DESC) AS rn
                     FROM (SELECT *, row_number() OVER () AS rowid FROM crm_raw) WHERE customer_id IS NOT NULL)
               WHERE rn = 1"""
        )
        crm_dup = one("SELECT count(*) FROM crm_raw WHERE customer_id IS NOT NULL") - one(
            "SELECT count(*) FROM crm"
        )
    # Key directory: each email / phone -> the most recently updated CRM customer carrying it.
    c.execute(
        """CREATE TABLE keymap AS
           SELECT key, arg_max(customer_id, coalesce(updated_at, TIMESTAMPTZ '1970-01-01')) AS customer_id,
                  count(*) AS n
           FROM (SELECT 'email:' || email AS key, customer_id, updated_at FROM crm WHERE email IS NOT NULL
                 UNION ALL SELECT 'phone:' || phone, customer_id, updated_at FROM crm WHERE phone IS NOT NULL)
           GROUP BY key"""
    )

    # Consolidated transactions before identity resolution.
    c.execute(
        """CREATE TABLE txn(channel VARCHAR, source_id VARCHAR, source_file VARCHAR, given_id VARCHAR,
           email VARCHAR, phone VARCHAR, occurred_at TIMESTAMPTZ, amount_original DECIMAL(18,6),
           currency VARCHAR, kind VARCHAR, anonymous BOOLEAN)"""
    )

    def classify(kind, table, reason_sql, raw_sql):
        """Rejects rows of `table` whose reason is not null; returns nothing."""
        c.execute(
            f"INSERT INTO rejects SELECT '{kind}', filename, reason, {raw_sql} FROM "
            f"(SELECT *, {reason_sql} AS reason FROM {table}) WHERE reason IS NOT NULL"
        )

    # ---- POS
    g = globs(args.input, "pos", [".csv", ".csv.gz"])
    if g:
        c.execute(
            f"""CREATE TEMP TABLE pos_raw AS SELECT filename, row_number() OVER () AS rowid,
                nz(receipt_id) AS receipt_id, purchased_at, nz(customer_id) AS customer_id, nz(phone) AS phone,
                total, upper(coalesce(nz(currency), '{base}')) AS currency, lower(coalesce(nz(status), 'sale')) AS status,
                coalesce(rfc3339(purchased_at),
                         timezone('{tz}', try_strptime(purchased_at, '%Y-%m-%d %H:%M:%S'))) AS ts,
                money(total) AS amount
                FROM {csv(g, ['receipt_id','store_id','purchased_at','customer_id','phone','total','currency','status'])}"""
        )
        count("pos", one("SELECT count(*) FROM pos_raw"))
        reason = """CASE WHEN receipt_id IS NULL THEN 'missing_id' WHEN ts IS NULL THEN 'bad_date'
                    WHEN amount IS NULL THEN 'bad_amount'
                    WHEN currency NOT IN (SELECT currency FROM fx) THEN 'unknown_currency'
                    WHEN status NOT IN ('sale','return','void') THEN 'bad_value' END"""
        classify("pos", "pos_raw", reason, "concat_ws(',', receipt_id, purchased_at, customer_id, phone, total, currency, status)")
        c.execute(
            f"""INSERT INTO txn SELECT 'pos', receipt_id, filename, customer_id, NULL, norm_phone(phone), ts,
                   CASE WHEN status = 'return' THEN -abs(amount) ELSE amount END, currency,
                   CASE WHEN status = 'return' THEN 'refund' ELSE 'purchase' END,
                   customer_id IS NULL AND phone IS NULL
                FROM (SELECT *, row_number() OVER (PARTITION BY receipt_id ORDER BY filename DESC, rowid DESC) AS rn
                      FROM pos_raw WHERE ({reason}) IS NULL)
                WHERE rn = 1 AND status <> 'void'"""
        )

    # ---- web (JSONL)
    g = globs(args.input, "web", [".jsonl", ".jsonl.gz"])
    if g:
        c.execute(
            f"""CREATE TEMP TABLE web_lines AS SELECT filename, row_number() OVER () AS rowid, line,
                   coalesce(try(json_type(line)), '') = 'OBJECT' AS ok
                FROM {lines(g)} WHERE trim(coalesce(line, '')) <> ''"""
        )
        count("web", one("SELECT count(*) FROM web_lines"))
        c.execute(
            """CREATE TEMP TABLE web_raw AS SELECT filename, rowid, line, ok,
                   CASE WHEN ok THEN json_extract_string(line, ['$.order_id', '$.customer.id', '$.customer.email',
                        '$.created_at', '$.updated_at', '$.total.amount', '$.total.currency', '$.status']) END AS f
               FROM web_lines"""
        )
        c.execute(
            f"""CREATE TEMP TABLE web AS SELECT filename, rowid, line, ok, nz(f[1]) AS order_id, nz(f[2]) AS cid,
                   nz(f[3]) AS email, rfc3339(f[4]) AS created_at, f[4] AS created_raw, rfc3339(f[5]) AS updated_at,
                   money(f[6]) AS amount, upper(coalesce(nz(f[7]), '{base}')) AS currency, lower(f[8]) AS status
               FROM web_raw"""
        )
        reason = """CASE WHEN NOT ok THEN 'bad_json' WHEN order_id IS NULL THEN 'missing_id'
                    WHEN created_at IS NULL THEN 'bad_date' WHEN amount IS NULL THEN 'bad_amount'
                    WHEN currency NOT IN (SELECT currency FROM fx) THEN 'unknown_currency'
                    WHEN status NOT IN ('paid','refunded','cancelled','pending') OR status IS NULL THEN 'bad_value' END"""
        classify("web", "web", reason, "line")
        c.execute(
            f"""CREATE TEMP TABLE web_win AS SELECT * FROM (
                   SELECT *, row_number() OVER (PARTITION BY order_id
                       ORDER BY updated_at DESC NULLS LAST, filename DESC, rowid DESC) AS rn
                   FROM web WHERE ({reason}) IS NULL) WHERE rn = 1 AND status IN ('paid', 'refunded')"""
        )
        c.execute(
            """INSERT INTO txn
               SELECT 'web', order_id, filename, cid, norm_email(email), NULL, created_at, amount, currency, 'purchase', false
               FROM web_win
               UNION ALL
               SELECT 'web', order_id, filename, cid, norm_email(email), NULL, coalesce(updated_at, created_at),
                      -amount, currency, 'refund', false
               FROM web_win WHERE status = 'refunded'"""
        )

    # ---- app (JSONL)
    g = globs(args.input, "app", [".jsonl", ".jsonl.gz"])
    if g:
        c.execute(
            f"""CREATE TEMP TABLE app_raw AS SELECT filename, row_number() OVER () AS rowid, line,
                   coalesce(try(json_type(line)), '') = 'OBJECT' AS ok
                FROM {lines(g)} WHERE trim(coalesce(line, '')) <> ''"""
        )
        count("app", one("SELECT count(*) FROM app_raw"))
        c.execute(
            f"""CREATE TEMP TABLE app AS SELECT filename, rowid, line, ok, nz(f[1]) AS txn, norm_email(f[2]) AS email,
                   norm_phone(f[3]) AS phone, f[3] AS phone_raw,
                   CASE WHEN regexp_full_match(f[4], '-?\\d+') THEN to_timestamp(try_cast(f[4] AS BIGINT)) END AS ts,
                   CASE WHEN regexp_full_match(f[5], '-?\\d+') THEN try_cast(f[5] AS DECIMAL(18,0)) / 100 END AS amount,
                   upper(coalesce(nz(f[6]), '{base}')) AS currency, lower(f[7]) AS kind
               FROM (SELECT *, CASE WHEN ok THEN json_extract_string(line, ['$.txn', '$.user_email', '$.user_phone',
                        '$.ts', '$.amount_cents', '$.currency', '$.kind']) END AS f FROM app_raw)"""
        )
        reason = """CASE WHEN NOT ok THEN 'bad_json' WHEN txn IS NULL THEN 'missing_id' WHEN ts IS NULL THEN 'bad_date'
                    WHEN amount IS NULL THEN 'bad_amount' WHEN currency NOT IN (SELECT currency FROM fx) THEN 'unknown_currency'
                    WHEN kind NOT IN ('purchase','refund') OR kind IS NULL THEN 'bad_value' END"""
        classify("app", "app", reason, "line")
        c.execute(
            f"""INSERT INTO txn SELECT 'app', txn, filename, NULL, email, phone, ts,
                   CASE WHEN kind = 'refund' THEN -abs(amount) ELSE amount END, currency, kind,
                   email IS NULL AND phone IS NULL
                FROM (SELECT *, row_number() OVER (PARTITION BY txn ORDER BY filename DESC, rowid DESC) AS rn
                      FROM app WHERE ({reason}) IS NULL) WHERE rn = 1"""
        )

    # ---- generic transactions
    g = globs(args.input, "transactions", [".csv", ".csv.gz"])
    if g:
        c.execute(
            f"""CREATE TEMP TABLE tx_raw AS SELECT filename, nz(customer_id) AS customer_id, occurred_at, amount AS amount_raw,
                   upper(coalesce(nz(currency), '{base}')) AS currency, nz(order_id) AS order_id,
                   coalesce(nz(channel), 'transactions') AS ch,
                   coalesce(rfc3339(occurred_at),
                            CASE WHEN regexp_full_match(trim(occurred_at), '\\d{{4}}-\\d\\d-\\d\\d')
                                 THEN try_cast(trim(occurred_at) AS DATE)::TIMESTAMPTZ END) AS ts,
                   money(amount) AS amount
                FROM {csv(g, ['customer_id','occurred_at','amount','currency','order_id','channel'])}"""
        )
        count("transactions", one("SELECT count(*) FROM tx_raw"))
        reason = """CASE WHEN customer_id IS NULL THEN 'missing_id' WHEN ts IS NULL THEN 'bad_date'
                    WHEN amount IS NULL THEN 'bad_amount'
                    WHEN currency NOT IN (SELECT currency FROM fx) THEN 'unknown_currency' END"""
        classify("transactions", "tx_raw", reason, "concat_ws(',', customer_id, occurred_at, amount_raw, currency, order_id, ch)")
        c.execute(
            f"""INSERT INTO txn SELECT ch, order_id, filename, customer_id, NULL, NULL, ts, amount, currency,
                   CASE WHEN amount < 0 THEN 'refund' ELSE 'purchase' END, false
                FROM tx_raw WHERE ({reason}) IS NULL"""
        )

    # ---- identity resolution: any key matching CRM wins; else a guest.
    c.execute(
        """CREATE TEMP TABLE txn_keys AS SELECT *, row_number() OVER () AS tid FROM txn"""
    )
    c.execute(
        """CREATE TEMP TABLE resolved AS
           SELECT t.*,
                  coalesce(c.customer_id, ke.customer_id, kp.customer_id) AS crm_id,
                  CASE WHEN t.given_id IS NOT NULL THEN t.given_id
                       ELSE 'G-' || printf('%016x', hash(least('email:' || t.email, 'phone:' || t.phone))) END AS guest_id
           FROM txn_keys t
           LEFT JOIN crm c ON c.customer_id = t.given_id
           LEFT JOIN keymap ke ON ke.key = 'email:' || t.email
           LEFT JOIN keymap kp ON kp.key = 'phone:' || t.phone"""
    )
    c.execute(
        """CREATE TEMP TABLE tx_out AS
           SELECT md5(r.channel || ':' || coalesce(r.source_id, '') || ':' || r.kind || ':' || r.tid) AS transaction_id,
                  CASE WHEN r.anonymous THEN NULL ELSE coalesce(r.crm_id, r.guest_id) END AS customer_id,
                  r.channel, r.source_id, r.occurred_at, r.amount_original * fx.rate AS amount_base,
                  r.amount_original, r.currency, r.kind, strftime(r.occurred_at, '%Y-%m') AS month
           FROM resolved r JOIN fx USING (currency)"""
    )

    # ---- events (JSONL)
    g = globs(args.input, "events", [".jsonl", ".jsonl.gz"])
    c.execute("CREATE TEMP TABLE ev_out(customer_id VARCHAR, email VARCHAR, type VARCHAR, ts TIMESTAMPTZ)")
    if g:
        c.execute(
            f"""CREATE TEMP TABLE ev AS SELECT filename, line, ok, nz(f[1]) AS cid, norm_email(f[2]) AS email,
                   nz(f[3]) AS type, rfc3339(f[4]) AS ts
                FROM (SELECT filename, line, coalesce(try(json_type(line)), '') = 'OBJECT' AS ok,
                         CASE WHEN coalesce(try(json_type(line)), '') = 'OBJECT'
                              THEN json_extract_string(line, ['$.customer_id', '$.email', '$.type', '$.ts']) END AS f
                      FROM {lines(g)} WHERE trim(coalesce(line, '')) <> '')"""
        )
        count("events", one("SELECT count(*) FROM ev"))
        reason = """CASE WHEN NOT ok THEN 'bad_json' WHEN cid IS NULL AND email IS NULL THEN 'missing_id'
                    WHEN ts IS NULL THEN 'bad_date' END"""
        classify("events", "ev", reason, "line")
        c.execute(
            f"""INSERT INTO ev_out SELECT coalesce(ev.cid, k.customer_id), ev.email, ev.type, ev.ts
                FROM ev LEFT JOIN keymap k ON ev.cid IS NULL AND k.key = 'email:' || ev.email
                WHERE ({reason}) IS NULL"""
        )

    # CSV rows with the wrong field count (all CSV kinds).
    c.execute(
        """INSERT INTO rejects SELECT s.file_path, s.file_path, 'bad_row', e.csv_line
           FROM reject_errors e JOIN reject_scans s USING (scan_id, file_id)"""
    )
    bad_rows = one("SELECT count(*) FROM reject_errors")
    # Rejected CSV rows were not counted by the per-kind count(*) (read_csv skipped them).
    counts["csv_bad_rows"] = bad_rows

    # ---- customers: CRM + guests with at least one transaction.
    c.execute(
        """CREATE TEMP TABLE cust_tx AS SELECT customer_id, min(occurred_at) AS first_seen,
               list(DISTINCT channel ORDER BY channel) AS channels
           FROM tx_out WHERE customer_id IS NOT NULL GROUP BY customer_id"""
    )
    c.execute(
        """CREATE TEMP TABLE customers AS
           SELECT c.customer_id, false AS is_guest, c.email, c.phone, c.first_name, c.last_name, c.country,
                  c.signup_date, c.email_opt_in, t.first_seen, coalesce(t.channels, []) AS channels
           FROM crm c LEFT JOIN cust_tx t USING (customer_id)
           UNION ALL
           SELECT t.customer_id, true, NULL, NULL, NULL, NULL, NULL, NULL, false, t.first_seen, t.channels
           FROM cust_tx t ANTI JOIN crm c USING (customer_id)"""
    )

    # ---- write Parquet ZSTD
    for d in ("customers", "transactions", "events"):
        os.makedirs(os.path.join(out, d), exist_ok=True)
    c.execute(f"COPY customers TO '{out}/customers/part-0.parquet' (FORMAT parquet, COMPRESSION zstd)")
    c.execute(
        f"COPY tx_out TO '{out}/transactions' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (month), OVERWRITE_OR_IGNORE)"
    )
    c.execute(f"COPY ev_out TO '{out}/events/part-0.parquet' (FORMAT parquet, COMPRESSION zstd)")
    c.execute(f"COPY rejects TO '{out}/rejects.parquet' (FORMAT parquet, COMPRESSION zstd)")

    rej = dict(c.execute("SELECT reason, count(*) FROM rejects GROUP BY 1 ORDER BY 1").fetchall())
    summary = {
        "records": sum(v for k, v in counts.items()),
        "records_by_kind": counts,
        "rejected": sum(rej.values()),
        "rejected_by_reason": rej,
        "crm_duplicates": crm_dup,
        "customers": one("SELECT count(*) FROM customers"),
        "guests": one("SELECT count(*) FROM customers WHERE is_guest"),
        "transactions": one("SELECT count(*) FROM tx_out"),
        "anonymous_transactions": one("SELECT count(*) FROM tx_out WHERE customer_id IS NULL"),
        "events": one("SELECT count(*) FROM ev_out"),
        "seconds": round(time.time() - t0, 2),
        "duckdb": duckdb.__version__,
        "threads": args.threads,
    }
    c.close()
    shutil.rmtree(os.path.join(out, ".tmp"), ignore_errors=True)
    print(json.dumps(summary))


if __name__ == "__main__":
    sys.exit(main())
