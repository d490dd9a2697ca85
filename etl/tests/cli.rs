//! The `cvm-etl` binary as a scheduler sees it: exit codes, one-line errors,
//! and crash safety when the process dies in the middle of publishing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

fn etl(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cvm-etl"));
    c.args(args).env_remove("CVM_CONFIG").env("CVM_LOG", "warn");
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A one-line error that names what to fix and no backtrace.
fn assert_one_line_error(o: &Output, code: i32, needle: &str) {
    let e = stderr(o);
    assert_eq!(o.status.code(), Some(code), "{e}");
    let lines: Vec<&str> = e.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line expected: {e}");
    assert!(lines[0].contains(needle), "{e}");
    assert!(!e.contains("panicked") && !e.contains("backtrace"), "{e}");
}

fn small_drop(root: &Path, receipts: usize) {
    std::fs::create_dir_all(root.join("pos")).unwrap();
    let mut s =
        String::from("receipt_id,store_id,purchased_at,customer_id,phone,total,currency,status\n");
    for i in 0..receipts {
        s.push_str(&format!(
            "R{i},S1,2026-03-01 10:00:00,C{},,{}.50,,\n",
            i % 7,
            i % 50
        ));
    }
    std::fs::write(root.join("pos/p.csv"), s).unwrap();
}

fn ingest(input: &Path, wh: &Path, envs: &[(&str, &str)]) -> Output {
    etl(
        &[
            "ingest",
            "--input",
            input.to_str().unwrap(),
            "--warehouse",
            wh.to_str().unwrap(),
        ],
        envs,
    )
}

/// Published version ids and anything else under `_versions/`.
fn versions(wh: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(wh.join("_versions"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn transaction_count(wh: &Path) -> usize {
    cvm_etl::warehouse::transactions::read(&wh.join("transactions"))
        .unwrap()
        .len()
}

/// A warehouse a newer cvm wrote (a higher format in `_state/small.json`)
/// stops ingest and score with exit 2 and one line saying so, and
/// publishes nothing: an older cvm would misread files it does not know.
#[test]
fn a_warehouse_of_a_newer_cvm_is_a_one_line_usage_error_and_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, wh) = (tmp.path().join("in"), tmp.path().join("wh"));
    small_drop(&input, 20);
    assert!(ingest(&input, &wh, &[]).status.success());
    let small = wh.join("current").join("_state").join("small.json");
    let text = std::fs::read_to_string(&small).unwrap();
    let format = format!("\"format\": {}", cvm_etl::warehouse::state::FORMAT);
    assert!(text.contains(&format), "{text}");
    let newer = format!("\"format\": {}", cvm_etl::warehouse::state::FORMAT + 1);
    std::fs::write(&small, text.replace(&format, &newer)).unwrap();
    let before = versions(&wh);
    small_drop(&input, 30);
    let o = ingest(&input, &wh, &[]);
    assert_one_line_error(&o, 2, "written by a newer cvm");
    assert_eq!(versions(&wh), before);
    let o = etl(
        &[
            "score",
            "--warehouse",
            wh.to_str().unwrap(),
            "--as-of",
            "2026-03-31",
        ],
        &[],
    );
    assert_one_line_error(&o, 2, "written by a newer cvm");
}

#[test]
fn a_missing_input_folder_is_a_one_line_usage_error() {
    let d = tempfile::tempdir().unwrap();
    let wh = d.path().join("wh");
    let o = etl(
        &[
            "ingest",
            "--input",
            "/nonexistent/drop",
            "--warehouse",
            wh.to_str().unwrap(),
        ],
        &[],
    );
    assert_one_line_error(&o, 2, "/nonexistent/drop");
}

#[test]
fn an_empty_drop_is_a_one_line_usage_error() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("drop")).unwrap();
    let o = etl(
        &[
            "ingest",
            "--input",
            d.path().join("drop").to_str().unwrap(),
            "--warehouse",
            d.path().join("wh").to_str().unwrap(),
        ],
        &[],
    );
    assert_one_line_error(&o, 2, "holds no input files");
}

#[test]
fn a_malformed_config_or_setting_names_the_setting() {
    let d = tempfile::tempdir().unwrap();
    small_drop(&d.path().join("drop"), 3);
    let (input, wh) = (d.path().join("drop"), d.path().join("wh"));
    let cfg = d.path().join("cvm.toml");
    std::fs::write(&cfg, "[ingest]\nbase_currency = [\n").unwrap();
    let args = [
        "ingest",
        "--input",
        input.to_str().unwrap(),
        "--warehouse",
        wh.to_str().unwrap(),
    ];
    let with_cfg: Vec<&str> = args
        .iter()
        .copied()
        .chain(["--config", cfg.to_str().unwrap()])
        .collect();
    assert_one_line_error(&etl(&with_cfg, &[]), 2, "cvm.toml");
    assert_one_line_error(
        &etl(&args, &[("CVM_POS_TIME_ZONE", "Mars/Base")]),
        2,
        "ingest.pos_time_zone",
    );
    assert_one_line_error(
        &etl(&args, &[("CVM_REJECT_LIMIT", "lots")]),
        2,
        "CVM_REJECT_LIMIT",
    );
    assert_one_line_error(
        &etl(&args, &[("CVM_DEFAULT_COUNTRY_CODE", "x1")]),
        2,
        "default_country_code",
    );
    assert_one_line_error(
        &etl(&args, &[("CVM_BASE_CURRENCY", "EURO")]),
        2,
        "base_currency",
    );
}

#[test]
fn over_the_reject_limit_exits_3_and_publishes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let input = d.path().join("drop");
    small_drop(&input, 10);
    std::fs::write(
        input.join("pos/bad.csv"),
        "receipt_id,purchased_at,total\nX1,never,1\n",
    )
    .unwrap();
    let wh = d.path().join("wh");
    let o = etl(
        &[
            "ingest",
            "--input",
            input.to_str().unwrap(),
            "--warehouse",
            wh.to_str().unwrap(),
        ],
        &[],
    );
    assert_one_line_error(&o, 3, "over the limit");
    assert!(!wh.join("current").exists());
    // The same drop passes with a looser limit.
    let o = etl(
        &[
            "ingest",
            "--input",
            input.to_str().unwrap(),
            "--warehouse",
            wh.to_str().unwrap(),
            "--reject-limit",
            "0.2",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn a_crash_at_any_point_of_publishing_leaves_the_last_version_readable() {
    let d = tempfile::tempdir().unwrap();
    let (first, second) = (d.path().join("first"), d.path().join("second"));
    small_drop(&first, 5);
    small_drop(&second, 9);
    let wh = d.path().join("wh");
    let run = |input: &Path, crash: Option<&str>| {
        let envs: Vec<(&str, &str)> = crash
            .map(|c| ("CVM_TEST_CRASH_AT", c))
            .into_iter()
            .collect();
        ingest(input, &wh, &envs)
    };
    assert!(run(&first, None).status.success());
    let published = std::fs::read_link(wh.join("current")).unwrap();
    let count = || transaction_count(&wh);
    assert_eq!(count(), 5);
    for point in ["before_publish", "before_switch"] {
        let o = run(&second, Some(point));
        assert!(!o.status.success(), "the process was aborted at {point}");
        assert_eq!(
            std::fs::read_link(wh.join("current")).unwrap(),
            published,
            "{point}"
        );
        assert_eq!(count(), 5, "old state intact after a crash at {point}");
    }
    let o = run(&second, Some("after_switch"));
    assert!(!o.status.success());
    assert_eq!(count(), 9, "a crash after the switch keeps the new version");
    // The next run completes and sweeps what the crashes left.
    let o = run(&second, None);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(count(), 9);
    let leftovers: Vec<_> = std::fs::read_dir(wh.join("_versions"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// `ingest` of a drop holding `files`, into a fresh warehouse beside it.
fn ingest_files(root: &Path, files: &[(&str, &str)]) -> Output {
    let input = root.join("drop");
    for (rel, text) in files {
        let p = input.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    etl(
        &[
            "ingest",
            "--input",
            input.to_str().unwrap(),
            "--warehouse",
            root.join("wh").to_str().unwrap(),
        ],
        &[],
    )
}

#[test]
fn conflicting_fx_rates_exit_2_naming_the_file_the_currency_and_both_rates() {
    let d = tempfile::tempdir().unwrap();
    let o = ingest_files(
        d.path(),
        &[
            (
                "fx/rates.csv",
                "currency,rate_to_base\nEUR,1.08\nCNY,0.14\nEUR,2.0\n",
            ),
            (
                "transactions/t.csv",
                "customer_id,occurred_at,amount,currency\nC1,2026-03-01,10,EUR\n",
            ),
        ],
    );
    assert_one_line_error(
        &o,
        2,
        "fx/rates.csv line 4: currency EUR has rate 2, but fx/rates.csv line 2 gives 1.08",
    );
    assert!(!d.path().join("wh/current").exists(), "nothing published");
}

#[test]
fn a_csv_header_naming_a_column_twice_exits_2_naming_the_column() {
    let d = tempfile::tempdir().unwrap();
    let o = ingest_files(
        d.path(),
        &[(
            "crm/c.csv",
            "customer_id,email,phone,Email\nC1,a@example.com,,b@example.com\n",
        )],
    );
    assert_one_line_error(&o, 2, "names column \"email\" twice (columns 2 and 4)");
    assert!(stderr(&o).contains("crm/c.csv"), "{}", stderr(&o));
}

#[test]
fn an_unreadable_input_file_names_the_file_and_its_cause_once() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("drop/pos/p.csv.gz");
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &b"receipt_id,total\nR1,5\n".repeat(1000)).unwrap();
    let bytes = gz.finish().unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let o = ingest_files(d.path(), &[]);
    assert_one_line_error(&o, 1, "cannot read input file");
    let e = stderr(&o);
    let cause = e.trim_end().rsplit("p.csv.gz: ").next().unwrap();
    assert!(!cause.is_empty() && !cause.contains("p.csv.gz"), "{e}");
    assert_eq!(e.matches(cause).count(), 1, "cause printed once: {e}");
}

#[test]
fn date_flags_are_exactly_yyyy_mm_dd_within_the_plausible_dates() {
    let d = tempfile::tempdir().unwrap();
    let wh = d.path().join("wh");
    let wh = wh.to_str().unwrap();
    for bad in [
        "+10000-01-01",
        "2026-1-1",
        "26-01-01",
        "2026-01-01T00:00:00Z",
    ] {
        let o = etl(&["score", "--warehouse", wh, "--as-of", bad], &[]);
        assert_eq!(o.status.code(), Some(2), "{bad}: {}", stderr(&o));
        assert!(stderr(&o).contains("YYYY-MM-DD"), "{bad}: {}", stderr(&o));
    }
    let cases: [&[&str]; 8] = [
        &["score", "--as-of", "9999-12-31"],
        &["score", "--as-of", "2200-01-01"],
        &["score", "--as-of", "1969-12-31"],
        &["nightly", "--input", wh, "--as-of", "2200-01-01"],
        &["backfill", "--from", "2026-01-01", "--to", "2200-01-01"],
        &[
            "load",
            "--as-of",
            "2200-01-01",
            "--db",
            "sqlite:///tmp/x.db",
        ],
        &[
            "evaluate",
            "--calibration-end",
            "1997-09-30",
            "--holdout-end",
            "2200-01-01",
        ],
        &["score", "--as-of", "1999-12-31"],
    ];
    for (i, args) in cases.iter().enumerate() {
        let mut all = args.to_vec();
        all.extend(["--warehouse", wh]);
        // The last case moves the window's start with CVM_EARLIEST_DATE.
        let env: &[(&str, &str)] = if i == 7 {
            &[("CVM_EARLIEST_DATE", "2000-01-01")]
        } else {
            &[]
        };
        let o = etl(&all, env);
        assert_one_line_error(&o, 2, "is outside the plausible dates");
        assert!(!Path::new(wh).join("scores").exists());
    }
}

#[test]
fn a_second_run_on_a_locked_warehouse_exits_4() {
    let d = tempfile::tempdir().unwrap();
    let input = d.path().join("drop");
    small_drop(&input, 3);
    let wh = d.path().join("wh");
    let _held = cvm_etl::warehouse::publish::Warehouse::open(&wh).unwrap();
    let o = etl(
        &[
            "ingest",
            "--input",
            input.to_str().unwrap(),
            "--warehouse",
            wh.to_str().unwrap(),
        ],
        &[],
    );
    assert_one_line_error(&o, 4, "locked");
}

#[test]
fn an_os_error_is_printed_once() {
    let o = etl(
        &[
            "generate",
            "--out",
            "x",
            "--config",
            "/nonexistent/cvm.toml",
        ],
        &[],
    );
    assert_one_line_error(&o, 2, "/nonexistent/cvm.toml");
    assert_eq!(
        stderr(&o).matches("os error 2").count(),
        1,
        "{}",
        stderr(&o)
    );
}

#[test]
fn logs_carry_no_colour_codes_when_stderr_is_not_a_terminal() {
    let d = tempfile::tempdir().unwrap();
    let input = d.path().join("drop");
    small_drop(&input, 3);
    std::fs::write(input.join("notes.txt"), "not an input").unwrap();
    let o = etl(
        &[
            "ingest",
            "--input",
            input.to_str().unwrap(),
            "--warehouse",
            d.path().join("wh").to_str().unwrap(),
        ],
        &[("CVM_LOG", "info")],
    );
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    assert!(
        e.contains("not an input file"),
        "the warning is logged: {e}"
    );
    assert!(!e.contains('\u{1b}'), "no ANSI escape codes: {e:?}");
}

#[test]
fn a_missing_or_dangling_current_beside_published_versions_exits_2_naming_the_restore() {
    let d = tempfile::tempdir().unwrap();
    let (first, wh) = (d.path().join("first"), d.path().join("wh"));
    small_drop(&first, 5);
    let second = d.path().join("second");
    std::fs::create_dir_all(second.join("pos")).unwrap();
    std::fs::write(
        second.join("pos/p2.csv"),
        "receipt_id,purchased_at,customer_id,total\nN1,2026-03-02 10:00:00,C1,3.00\n",
    )
    .unwrap();
    assert!(ingest(&first, &wh, &[]).status.success());
    let published = versions(&wh);
    assert_eq!(published.len(), 1);
    let id = &published[0];
    std::fs::remove_file(wh.join("current")).unwrap();
    let o = ingest(&second, &wh, &[]);
    assert_one_line_error(
        &o,
        2,
        &format!("cvm-etl restore --warehouse {}", wh.display()),
    );
    assert!(
        stderr(&o).contains(&format!("--version {id}")),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        versions(&wh),
        published,
        "nothing published, nothing pruned"
    );
    std::os::unix::fs::symlink("_versions/gone", wh.join("current")).unwrap();
    assert_one_line_error(&ingest(&second, &wh, &[]), 2, "does not exist");
    assert_eq!(versions(&wh), published);
    // The restore the message names repairs it, and the history is kept.
    let o = etl(
        &[
            "restore",
            "--warehouse",
            wh.to_str().unwrap(),
            "--version",
            id,
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(ingest(&second, &wh, &[]).status.success());
    assert_eq!(transaction_count(&wh), 6);
}

#[test]
fn restore_refuses_an_unknown_version_and_lists_the_published_ones() {
    let d = tempfile::tempdir().unwrap();
    let (input, wh) = (d.path().join("drop"), d.path().join("wh"));
    small_drop(&input, 3);
    assert!(ingest(&input, &wh, &[]).status.success());
    let id = versions(&wh).remove(0);
    let o = etl(
        &[
            "restore",
            "--warehouse",
            wh.to_str().unwrap(),
            "--version",
            "nope",
        ],
        &[],
    );
    assert_one_line_error(&o, 2, &format!("published: {id}"));
    let nowhere = d.path().join("nowhere");
    let o = etl(
        &[
            "restore",
            "--warehouse",
            nowhere.to_str().unwrap(),
            "--version",
            &id,
        ],
        &[],
    );
    assert_one_line_error(&o, 2, "not a cvm warehouse");
    assert!(!nowhere.exists());
}

#[test]
fn score_over_a_current_that_is_not_a_warehouse_version_exits_2_and_writes_no_scores() {
    let d = tempfile::tempdir().unwrap();
    let (input, wh) = (d.path().join("drop"), d.path().join("wh"));
    small_drop(&input, 5);
    assert!(ingest(&input, &wh, &[]).status.success());
    let score = |as_of: &str| {
        etl(
            &[
                "score",
                "--warehouse",
                wh.to_str().unwrap(),
                "--as-of",
                as_of,
            ],
            &[],
        )
    };
    assert!(score("2026-03-01").status.success());
    std::fs::create_dir_all(d.path().join("elsewhere")).unwrap();
    std::fs::remove_file(wh.join("current")).unwrap();
    std::os::unix::fs::symlink(d.path().join("elsewhere"), wh.join("current")).unwrap();
    assert_one_line_error(&score("2026-03-02"), 2, "not a cvm warehouse version");
    assert!(!wh.join("scores/as_of=2026-03-02").exists());
    assert!(wh.join("scores/as_of=2026-03-01").exists());
}

#[test]
fn a_failed_publish_removes_its_staging_folder_and_prints_the_os_error_once() {
    let d = tempfile::tempdir().unwrap();
    let (first, second, wh) = (
        d.path().join("first"),
        d.path().join("second"),
        d.path().join("wh"),
    );
    small_drop(&first, 5);
    small_drop(&second, 9);
    assert!(ingest(&first, &wh, &[]).status.success());
    let published = versions(&wh);
    let current = std::fs::read_link(wh.join("current")).unwrap();
    for point in ["before_publish", "before_switch", "after_switch"] {
        let o = ingest(&second, &wh, &[("CVM_TEST_FAIL_AT", point)]);
        assert_one_line_error(&o, 1, "No space left on device");
        assert_eq!(
            stderr(&o).matches("os error 28").count(),
            1,
            "{}",
            stderr(&o)
        );
        if point == "after_switch" {
            // Published before the failure: kept, and only it was added.
            assert_eq!(transaction_count(&wh), 9);
            assert_eq!(versions(&wh).len(), 2, "{:?}", versions(&wh));
        } else {
            assert_eq!(
                versions(&wh),
                published,
                "nothing left by a failure at {point}"
            );
            assert_eq!(std::fs::read_link(wh.join("current")).unwrap(), current);
        }
    }
}

#[test]
fn an_empty_drop_leaves_no_warehouse_behind() {
    let d = tempfile::tempdir().unwrap();
    let (input, wh) = (d.path().join("drop"), d.path().join("wh"));
    std::fs::create_dir_all(&input).unwrap();
    assert_one_line_error(&ingest(&input, &wh, &[]), 2, "holds no input files");
    assert!(!wh.exists());
}

#[test]
fn a_sqlite_database_in_a_missing_folder_is_a_usage_error_and_creates_nothing() {
    let d = tempfile::tempdir().unwrap();
    let missing = d.path().join("typo/sub");
    let url = format!("sqlite://{}", missing.join("cvm.db").display());
    let o = etl(
        &[
            "load",
            "--warehouse",
            d.path().join("wh").to_str().unwrap(),
            "--db",
            &url,
        ],
        &[],
    );
    assert_one_line_error(&o, 2, "does not exist");
    assert!(!d.path().join("typo").exists());
}
