//! `cvm-etl`: the nightly batch jobs of cvm. Errors end as one line on stderr
//! and a documented exit code, never a panic or a backtrace.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use cvm_etl::jobs::evaluate;
use cvm_etl::jobs::ingest::{self, IngestOptions};
use cvm_etl::jobs::load;
use cvm_etl::jobs::nightly;
use cvm_etl::jobs::score;
use cvm_etl::privacy;
use cvm_etl::warehouse::publish::Warehouse;
use cvm_shared::Settings;

/// mimalloc: the jobs make millions of small allocations from several threads,
/// where glibc malloc took about a third of ingest's CPU time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use cvm_etl::exit::{self, ExitStatus};

#[derive(Parser)]
#[command(
    name = "cvm-etl",
    version,
    about = "Nightly customer value ETL: ingest multi-channel drops into a Parquet warehouse and score customers"
)]
struct Cli {
    #[command(flatten)]
    global: cvm_shared::cli::GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Whose data, where (every privacy command).
#[derive(clap::Args)]
struct PrivacyTarget {
    /// The customer's id.
    #[arg(long)]
    customer: String,
    /// The warehouse folder.
    #[arg(long)]
    warehouse: PathBuf,
    /// Database URL: sqlite://PATH or postgres://... (overrides CVM_DATABASE_URL).
    #[arg(long)]
    db: Option<String>,
}

#[derive(Subcommand)]
enum PrivacyCommand {
    /// Write one zip archive of everything held about a customer (right of access).
    Export {
        #[command(flatten)]
        target: PrivacyTarget,
        /// The archive to write (.zip).
        #[arg(long)]
        out: PathBuf,
    },
    /// Erase a customer's personal data from the database, every kept warehouse version, scores and rejects, and from future drops (needs CVM_PRIVACY_KEY).
    Erase {
        #[command(flatten)]
        target: PrivacyTarget,
        /// Why (kept in the audit log), e.g. a ticket number.
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Read a drop folder and publish a new warehouse version.
    Ingest {
        /// The drop folder (crm/, pos/, web/, app/, transactions/, events/, fx/).
        #[arg(long)]
        input: PathBuf,
        /// The warehouse folder (created if missing).
        #[arg(long)]
        warehouse: PathBuf,
        /// Base currency (overrides CVM_BASE_CURRENCY).
        #[arg(long)]
        base_currency: Option<String>,
        /// Time zone of POS local times (overrides CVM_POS_TIME_ZONE).
        #[arg(long)]
        pos_time_zone: Option<String>,
        /// Default phone country code (overrides CVM_DEFAULT_COUNTRY_CODE).
        #[arg(long)]
        default_country_code: Option<String>,
        /// Largest share of rejected records that still publishes (overrides CVM_REJECT_LIMIT).
        #[arg(long)]
        reject_limit: Option<String>,
        /// Consolidate and write the whole history again instead of only what the
        /// drop changes (the same result; use it to repair a warehouse or check the nightly path).
        #[arg(long)]
        full_rebuild: bool,
    },
    /// Compute customer value scores as of a date into scores/as_of=DATE/.
    Score {
        /// The warehouse folder.
        #[arg(long)]
        warehouse: PathBuf,
        /// The day to score (YYYY-MM-DD, inclusive, UTC).
        #[arg(long, value_parser = iso_date)]
        as_of: chrono::NaiveDate,
        /// Time unit of recency and T: week or day (overrides CVM_PERIOD).
        #[arg(long)]
        period: Option<String>,
    },
    /// The nightly job: ingest a drop, score as of a date, load into the database; one lock for all.
    Nightly {
        /// The drop folder.
        #[arg(long)]
        input: PathBuf,
        /// The warehouse folder.
        #[arg(long)]
        warehouse: PathBuf,
        /// Database URL: sqlite://PATH or postgres://... (overrides CVM_DATABASE_URL; no load without one).
        #[arg(long)]
        db: Option<String>,
        /// The day to score (default: today in scoring.time_zone / CVM_TIME_ZONE).
        #[arg(long, value_parser = iso_date)]
        as_of: Option<chrono::NaiveDate>,
    },
    /// Re-score past dates (each day from --from to --to) from the published warehouse.
    Backfill {
        /// The warehouse folder.
        #[arg(long)]
        warehouse: PathBuf,
        /// First day (YYYY-MM-DD).
        #[arg(long, value_parser = iso_date)]
        from: chrono::NaiveDate,
        /// Last day (YYYY-MM-DD, inclusive).
        #[arg(long, value_parser = iso_date)]
        to: chrono::NaiveDate,
    },
    /// Upsert the warehouse's customers and a scoring run's scores into the database.
    Load {
        /// The warehouse folder.
        #[arg(long)]
        warehouse: PathBuf,
        /// Database URL: sqlite://PATH or postgres://... (overrides CVM_DATABASE_URL).
        #[arg(long)]
        db: Option<String>,
        /// The scoring run to load (YYYY-MM-DD); default: the latest scores/as_of=DATE.
        #[arg(long, value_parser = iso_date)]
        as_of: Option<chrono::NaiveDate>,
    },
    /// Fit BG/NBD on a calibration period and compare its holdout predictions with what customers did.
    Evaluate {
        /// The warehouse folder.
        #[arg(long)]
        warehouse: PathBuf,
        /// Last day of the calibration period (YYYY-MM-DD, inclusive, UTC).
        #[arg(long, value_parser = iso_date)]
        calibration_end: chrono::NaiveDate,
        /// Last day of the holdout period (YYYY-MM-DD, inclusive, UTC).
        #[arg(long, value_parser = iso_date)]
        holdout_end: chrono::NaiveDate,
        /// Time unit of recency and T: week or day (overrides CVM_PERIOD).
        #[arg(long)]
        period: Option<String>,
    },
    /// Generate a demo drop, ingest it and score it: the whole product on a laptop.
    Demo {
        /// Folder for the drop and the warehouse.
        #[arg(long, default_value = "demo")]
        dir: PathBuf,
        /// Number of CRM customers.
        #[arg(long, default_value_t = 2000)]
        customers: u64,
        /// Random seed.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// A customer's data rights: export everything held about them, or erase them everywhere.
    Privacy {
        #[command(subcommand)]
        action: PrivacyCommand,
    },
    /// Point the warehouse's `current` at a published version again (after a bad drop, or when `current` was lost).
    Restore {
        /// The warehouse folder.
        #[arg(long)]
        warehouse: PathBuf,
        /// The version: a folder name under WAREHOUSE/_versions/ (a wrong one lists them).
        #[arg(long)]
        version: String,
    },
    /// Write a realistic synthetic drop (deterministic for a seed).
    Generate {
        /// Folder to write the drop into.
        #[arg(long)]
        out: PathBuf,
        /// Number of CRM customers.
        #[arg(long, default_value_t = 1000)]
        customers: u64,
        /// Random seed.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Share of deliberately bad records (0 to 0.5).
        #[arg(long, default_value_t = 0.0)]
        dirty_ratio: f64,
        /// Compress files with gzip.
        #[arg(long)]
        gzip: bool,
        /// Split the last N days off as daily drops: OUT/history/ then
        /// OUT/YYYY-MM-DD/ per day, each holding what was made or changed that
        /// day (ingest them in that order). 0: one drop in OUT.
        #[arg(long, default_value_t = 0)]
        days: u32,
    },
}

/// A date flag: exactly `YYYY-MM-DD` (the window is checked once settings are known).
fn iso_date(s: &str) -> Result<chrono::NaiveDate, String> {
    cvm_shared::config::parse_iso_date(s)
        .ok_or_else(|| "expected a date written YYYY-MM-DD, such as 2026-03-31".to_string())
}

/// Date flags must lie in the plausible window (`Settings::date_window`),
/// the same one every record time is held to.
fn plausible(s: &Settings, dates: &[(&str, Option<chrono::NaiveDate>)]) -> Result<(), Failure> {
    let window = s.date_window();
    for (flag, date) in dates {
        if let Some(d) = date {
            window.check(flag, *d).map_err(usage)?;
        }
    }
    Ok(())
}

/// A failure with the exit code it maps to.
struct Failure {
    code: u8,
    error: anyhow::Error,
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Failure {
        Failure {
            code: exit::FAILED,
            error: e.into(),
        }
    }
}

fn usage(e: impl Into<anyhow::Error>) -> Failure {
    Failure {
        code: exit::USAGE,
        error: e.into(),
    }
}

/// A library error, ending the run with the exit code it knows.
fn failure<E: ExitStatus + Into<anyhow::Error>>(e: E) -> Failure {
    Failure {
        code: e.exit_code(),
        error: e.into(),
    }
}

/// The paths a command's output can be found at (not in quiet mode).
fn print_run_files(run_dir: &std::path::Path, files: &[(&str, &str)]) {
    for (what, file) in files {
        eprintln!("{what}: {}", run_dir.join(file).display());
    }
}

fn run_privacy(cli: &Cli, action: &PrivacyCommand) -> Result<(), Failure> {
    let (PrivacyCommand::Export { target, .. } | PrivacyCommand::Erase { target, .. }) = action;
    let s = settings(cli, &[("database.url", &target.db)])?;
    let (customer, warehouse) = (&target.customer, &target.warehouse);
    let Some(db_url) = s.database.url.clone() else {
        return Err(usage(anyhow::anyhow!(
            "no database: pass --db URL or set CVM_DATABASE_URL"
        )));
    };
    match action {
        PrivacyCommand::Export { out, .. } => {
            let summary = privacy::export(warehouse, &db_url, customer, out).map_err(failure)?;
            if !cli.global.quiet {
                let rows: usize = summary.parts.iter().map(|p| p.1).sum();
                eprintln!(
                    "exported {} ({} parts, {rows} rows{}) to {}",
                    customer,
                    summary.parts.len(),
                    if summary.erased {
                        "; erased: nothing personal"
                    } else {
                        ""
                    },
                    summary.path.display()
                );
            }
            Ok(())
        }
        PrivacyCommand::Erase { reason, .. } => {
            let outbox = PathBuf::from(&s.mail.outbox_dir);
            let r = privacy::erase(warehouse, &db_url, customer, reason, Some(&outbox))
                .map_err(failure)?;
            if !cli.global.quiet {
                let w = &r.warehouse;
                eprintln!(
                    "{} {} as {}: warehouse {} of {} erasure(s) found, {} file(s) rewritten, {} older version(s) deleted{}",
                    if r.newly_erased {
                        "erased"
                    } else {
                        "already erased:"
                    },
                    customer,
                    r.pseudonym,
                    w.found,
                    w.erasures,
                    w.files_rewritten,
                    w.versions_deleted,
                    w.version
                        .as_deref()
                        .map(|v| format!(", version {v} published"))
                        .unwrap_or_default()
                );
            }
            Ok(())
        }
    }
}

/// Settings from file, environment and flags, validated; starts the logs.
fn settings(cli: &Cli, flags: &[(&str, &Option<String>)]) -> Result<Settings, Failure> {
    let mut s = Settings::load(cli.global.config.as_deref()).map_err(usage)?;
    for (name, value) in flags {
        if let Some(v) = value {
            s.set(name, v).map_err(usage)?;
        }
    }
    if let Some(f) = &cli.global.log_format {
        s.set("log.format", f).map_err(usage)?;
    }
    s.validate().map_err(usage)?;
    cvm_shared::logging::init(&s.log.format, cli.global.quiet, false);
    Ok(s)
}

fn run(cli: Cli) -> Result<(), Failure> {
    match &cli.command {
        Command::Ingest {
            input,
            warehouse,
            base_currency,
            pos_time_zone,
            default_country_code,
            reject_limit,
            full_rebuild,
        } => {
            let s = settings(
                &cli,
                &[
                    ("ingest.base_currency", base_currency),
                    ("ingest.pos_time_zone", pos_time_zone),
                    ("ingest.default_country_code", default_country_code),
                    ("ingest.reject_limit", reject_limit),
                ],
            )?;
            let opts = IngestOptions {
                input: input.clone(),
                warehouse: warehouse.clone(),
                settings: s,
                progress: !cli.global.quiet,
                full_rebuild: *full_rebuild,
            };
            match ingest::run(&opts) {
                Ok(report) => {
                    if !cli.global.quiet {
                        eprint!("{}", ingest::summary_table(&report.manifest));
                        print_run_files(&report.run_dir, &[("manifest", "manifest.json")]);
                    }
                    Ok(())
                }
                Err(e) => Err(failure(e)),
            }
        }
        Command::Score {
            warehouse,
            as_of,
            period,
        } => {
            let s = settings(&cli, &[("scoring.period", period)])?;
            plausible(&s, &[("--as-of", Some(*as_of))])?;
            let opts = score::ScoreOptions {
                warehouse: warehouse.clone(),
                as_of: *as_of,
                settings: s,
            };
            match score::run(&opts) {
                Ok(report) => {
                    if !cli.global.quiet {
                        eprint!("{}", score::summary_table(&report.manifest));
                        print_run_files(
                            &report.run_dir,
                            &[("manifest", "manifest.json"), ("report", "report.html")],
                        );
                    }
                    Ok(())
                }
                Err(e) => Err(failure(e)),
            }
        }
        Command::Nightly {
            input,
            warehouse,
            db,
            as_of,
        } => {
            let s = settings(&cli, &[("database.url", db)])?;
            plausible(&s, &[("--as-of", *as_of)])?;
            let as_of = as_of.unwrap_or_else(|| nightly::today_in(s.business_time_zone()));
            let opts = nightly::NightlyOptions {
                input: input.clone(),
                warehouse: warehouse.clone(),
                db_url: s.database.url.clone(),
                as_of,
                settings: s,
                progress: !cli.global.quiet,
            };
            match nightly::run(&opts) {
                Ok(r) => {
                    if !cli.global.quiet {
                        eprint!("{}", ingest::summary_table(&r.ingest.manifest));
                        eprint!("{}", score::summary_table(&r.score.manifest));
                        if let Some(l) = &r.load {
                            eprintln!(
                                "loaded {} customers ({} newly inactive) and {} scores (run {})",
                                l.customers, l.deactivated, l.scores, l.run_id
                            );
                        }
                        eprintln!(
                            "runs: {} {}",
                            r.ingest.run_dir.display(),
                            r.score.run_dir.display()
                        );
                    }
                    Ok(())
                }
                Err(e) => Err(failure(e)),
            }
        }
        Command::Backfill {
            warehouse,
            from,
            to,
        } => {
            let s = settings(&cli, &[])?;
            plausible(&s, &[("--from", Some(*from)), ("--to", Some(*to))])?;
            if from > to {
                return Err(usage(anyhow::anyhow!("--from {from} is after --to {to}")));
            }
            let reports = nightly::backfill(warehouse, *from, *to, &s).map_err(failure)?;
            if !cli.global.quiet {
                for r in &reports {
                    eprintln!(
                        "{} {}: {} customers, {}",
                        r.manifest.as_of,
                        r.manifest.status,
                        r.manifest.customers,
                        r.manifest.output
                    );
                }
            }
            Ok(())
        }
        Command::Privacy { action } => run_privacy(&cli, action),
        Command::Load {
            warehouse,
            db,
            as_of,
        } => {
            let s = settings(&cli, &[("database.url", db)])?;
            plausible(&s, &[("--as-of", *as_of)])?;
            let Some(db_url) = s.database.url.clone() else {
                return Err(usage(anyhow::anyhow!(
                    "no database: pass --db URL or set CVM_DATABASE_URL"
                )));
            };
            let opts = load::LoadOptions {
                warehouse: warehouse.clone(),
                db_url,
                as_of: *as_of,
            };
            match load::run(&opts) {
                Ok(r) => {
                    if !cli.global.quiet {
                        let as_of = r
                            .as_of
                            .map_or_else(|| "none".to_string(), |d| d.to_string());
                        eprintln!(
                            "loaded {} customers ({} newly inactive) and {} scores as of {as_of} in {:.1} s (run {})",
                            r.customers, r.deactivated, r.scores, r.seconds, r.run_id
                        );
                    }
                    Ok(())
                }
                Err(e) => Err(failure(e)),
            }
        }
        Command::Evaluate {
            warehouse,
            calibration_end,
            holdout_end,
            period,
        } => {
            let s = settings(&cli, &[("scoring.period", period)])?;
            plausible(
                &s,
                &[
                    ("--calibration-end", Some(*calibration_end)),
                    ("--holdout-end", Some(*holdout_end)),
                ],
            )?;
            let opts = evaluate::EvaluateOptions {
                warehouse: warehouse.clone(),
                calibration_end: *calibration_end,
                holdout_end: *holdout_end,
                settings: s,
            };
            match evaluate::run(&opts) {
                Ok(report) => {
                    if !cli.global.quiet {
                        eprint!("{}", evaluate::summary_table(&report.manifest));
                        eprintln!("predictions: {}", report.manifest.output);
                        print_run_files(&report.run_dir, &[("report", "report.html")]);
                    }
                    Ok(())
                }
                Err(e) => Err(failure(e)),
            }
        }
        Command::Demo {
            dir,
            customers,
            seed,
        } => {
            let s = settings(&cli, &[])?;
            demo(dir, *customers, *seed, s, cli.global.quiet)
        }
        Command::Restore { warehouse, version } => {
            settings(&cli, &[])?;
            // Never create a warehouse here: a typo in the path is an error.
            if !warehouse.join("_versions").is_dir() {
                return Err(usage(anyhow::anyhow!(
                    "{} is not a cvm warehouse (no _versions/ folder): check --warehouse",
                    warehouse.display()
                )));
            }
            let wh = Warehouse::open(warehouse).map_err(failure)?;
            let dir = wh.restore(version).map_err(failure)?;
            if !cli.global.quiet {
                eprintln!(
                    "current -> {}; scores computed from another version: re-score (score or backfill) and load again",
                    dir.display()
                );
            }
            Ok(())
        }
        Command::Generate {
            out,
            customers,
            seed,
            dirty_ratio,
            gzip,
            days,
        } => {
            // Generation needs no settings, but a bad config is still an error.
            settings(&cli, &[])?;
            let opts = cvm_etl::generate::GenerateOptions {
                customers: *customers,
                seed: *seed,
                dirty_ratio: *dirty_ratio,
                gzip: *gzip,
                days: *days,
                ..Default::default()
            };
            let summary = cvm_etl::generate::generate(out, &opts).map_err(failure)?;
            if !cli.global.quiet {
                eprintln!(
                    "wrote {} records in {} files for {} customers (+{} guests) to {}",
                    summary.records,
                    summary.files.len(),
                    summary.customers,
                    summary.guests,
                    out.display()
                );
                if summary.drops.len() > 1 {
                    eprintln!(
                        "drops, in the order to ingest them: {}",
                        summary.drops.join(" ")
                    );
                }
            }
            Ok(())
        }
    }
}

/// The demo: a deterministic drop (regenerated each time) through the whole
/// nightly job into an embedded SQLite database.
fn demo(
    dir: &std::path::Path,
    customers: u64,
    seed: u64,
    s: Settings,
    quiet: bool,
) -> Result<(), Failure> {
    let drop = dir.join("drop");
    let wh = dir.join("warehouse");
    let db = dir.join("cvm.db");
    if drop.exists() {
        std::fs::remove_dir_all(&drop)
            .map_err(|e| anyhow::anyhow!("cannot clear {}: {e}", drop.display()))?;
    }
    let opts = cvm_etl::generate::GenerateOptions {
        customers,
        seed,
        dirty_ratio: 0.002,
        ..Default::default()
    };
    let g = cvm_etl::generate::generate(&drop, &opts).map_err(failure)?;
    let db_url = s
        .database
        .url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", db.display()));
    let r = nightly::run(&nightly::NightlyOptions {
        input: drop.clone(),
        warehouse: wh.clone(),
        db_url: Some(db_url.clone()),
        as_of: opts.end,
        settings: s,
        progress: !quiet,
    })
    .map_err(failure)?;
    if !quiet {
        eprint!("{}", ingest::summary_table(&r.ingest.manifest));
        eprint!("{}", score::summary_table(&r.score.manifest));
        eprintln!();
        eprintln!(
            "demo drop      {} ({} records, {} files)",
            drop.display(),
            g.records,
            g.files.len()
        );
        eprintln!("warehouse      {}", wh.display());
        eprintln!("  customers    {}", wh.join("customers").display());
        eprintln!("  transactions {}", wh.join("transactions").display());
        eprintln!("  scores       {}", r.score.manifest.output);
        eprintln!(
            "report         {}",
            r.score.run_dir.join("report.html").display()
        );
        eprintln!(
            "rejects        {}",
            r.ingest.run_dir.join("rejects.parquet").display()
        );
        if let Some(l) = &r.load {
            eprintln!(
                "database       {} ({} customers, {} scores loaded)",
                cvm_shared::db::redact_url(&db_url),
                l.customers,
                l.scores
            );
            // The portal reads the same database: say how to open it.
            let url = cvm_shared::db::redact_url(&db_url);
            eprintln!();
            eprintln!(
                "portal         open the customers, scores and surveys in the GraphQL portal:"
            );
            eprintln!("  cvm-portal token create --name me --role marketer --db {url}");
            eprintln!("  CVM_DATABASE_URL={url} cvm-portal serve --dev");
            eprintln!("  then http://127.0.0.1:8080/graphiql (header Authorization: Bearer TOKEN)");
            eprintln!(
                "  (from a checkout: `cargo run --release -p cvm-portal -- ...`; campaigns it sends go to outbox/ as .eml files)"
            );
        }
    }
    Ok(())
}

/// The error and its causes on one line. Most messages already end with
/// their cause (`path: No such file or directory (os error 2)`), so a cause is
/// appended only when the text so far does not contain it.
fn one_line(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text.replace('\n', " ")
}

fn main() -> ExitCode {
    // A bug must still end as one line, not a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("cvm-etl: internal error{at}: {msg} (please report this)");
    }));
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { exit::USAGE } else { 0 });
        }
    };
    // Ingest allocates and frees at a rate where purging at once costs ~30%
    // of its time (it purges at once only in a first load's last steps, see
    // `memory::PurgeAtOnce`); the other commands trade a little time for
    // half the memory: `score` on 1M customers peaked at 2.4 GiB, not 1.3.
    if !matches!(
        cli.command,
        Command::Ingest { .. } | Command::Nightly { .. } | Command::Demo { .. }
    ) {
        cvm_etl::memory::set_purge_delay(0);
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("cvm-etl: error: {}", one_line(&f.error));
            ExitCode::from(f.code)
        }
    }
}
