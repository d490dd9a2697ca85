//! A customer's data export (right of access): one self-describing zip
//! archive of everything held about them, JSON for documents and CSV for
//! tables, with a README saying what each part is.
//!
//! From the database: the profile and latest scores, the consent history,
//! survey invitations and answers, campaign messages, unsubscribes and
//! suppressions of their addresses, and the staff access log about them.
//! From the warehouse (when given): the current version's customer row,
//! transactions, events (through the key-set table), superseded CRM keys,
//! and every score row of every kept scoring date, each with every column
//! the files have (source file and channel included).
//!
//! An erased customer's export says so and holds nothing personal: the
//! pseudonym and the erasure's date only.

use std::collections::{BTreeSet, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde_json::json;

use super::key::PrivacyKey;
use super::scan::{self, ScanError, Table};
use super::vault::Vault;
use crate::db::models::audit_log::{self, AuditAction, AuditQuery, NewAuditEntry};
use crate::db::models::consent_changes;
use crate::db::models::customers::{self, Customer};
use crate::db::models::scores::Score;
use crate::db::schema::{
    answers, campaigns, invitations, outbox, scores, suppressions, surveys, unsubscribes,
};
use crate::db::{DbConnection, DbError};
use crate::privacy::erase;

/// What to export, for whom, where.
#[derive(Debug, Clone)]
pub struct ExportRequest<'a> {
    /// The customer's id (or an erased customer's former id or pseudonym).
    pub customer_id: &'a str,
    /// Staff token name, or `cli:<user>`.
    pub actor: &'a str,
    /// The warehouse folder; None: the database's part only (the README says so).
    pub warehouse: Option<&'a Path>,
    /// The privacy key, to recognise an erased customer by their former id.
    pub key: Option<&'a PrivacyKey>,
    /// The archive to write (replaced atomically).
    pub out: &'a Path,
    /// Now.
    pub at: NaiveDateTime,
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSummary {
    /// The archive.
    pub path: PathBuf,
    /// Whether the customer was erased (the archive says so and holds nothing personal).
    pub erased: bool,
    /// Each part's file name and number of rows (1 for a document).
    pub parts: Vec<(String, usize)>,
}

/// Why an export failed (nothing is left behind).
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// No such customer.
    #[error("no customer {0:?} in the database: check the id")]
    NotFound(String),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// A warehouse file could not be read.
    #[error("reading the warehouse: {0}")]
    Scan(#[from] ScanError),
    /// The archive could not be written.
    #[error("writing {path}: {message}")]
    Write {
        /// The archive.
        path: PathBuf,
        /// What failed.
        message: String,
    },
}

/// One part of the archive.
struct Part {
    name: String,
    what: String,
    rows: usize,
    bytes: Vec<u8>,
}

impl Part {
    fn csv(name: &str, what: &str, table: &Table) -> Part {
        let mut w = csv::Writer::from_writer(Vec::new());
        // Writing to memory cannot fail.
        let _ = w.write_record(&table.columns);
        for row in &table.rows {
            let _ = w.write_record(row);
        }
        Part {
            name: name.into(),
            what: what.into(),
            rows: table.rows.len(),
            bytes: w.into_inner().unwrap_or_default(),
        }
    }

    fn json(name: &str, what: &str, value: &serde_json::Value) -> Part {
        Part {
            name: name.into(),
            what: what.into(),
            rows: 1,
            bytes: serde_json::to_vec_pretty(value).unwrap_or_default(),
        }
    }
}

fn table(columns: &[&str], rows: Vec<Vec<String>>) -> Table {
    Table {
        columns: columns.iter().map(|c| c.to_string()).collect(),
        rows,
    }
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map(T::to_string).unwrap_or_default()
}

fn time(t: NaiveDateTime) -> String {
    t.and_utc().to_rfc3339()
}

fn opt_time(t: Option<NaiveDateTime>) -> String {
    t.map(time).unwrap_or_default()
}

/// Exports `req.customer_id` to `req.out` and records it in the audit log.
pub fn export_customer(
    conn: &mut DbConnection,
    req: &ExportRequest<'_>,
) -> Result<ExportSummary, ExportError> {
    let id = req.customer_id;
    let row = customers::find(conn, id)?;
    let erasure = match (&row, req.key) {
        (Some(r), _) if r.erased => erase::find(conn, &r.customer_id)?,
        (None, Some(key)) => erase::find(conn, &key.pseudonym(id))?,
        _ => None,
    };
    let parts = match (row, erasure) {
        (_, Some(e)) => vec![Part::json(
            "erasure.json",
            "This customer was erased on request: nothing personal is held. Their \
             purchases' dates and amounts are kept under the pseudonym, without anything \
             that identifies them.",
            &json!({
                "erased": true,
                "pseudonym": e.pseudonym,
                "erased_at": time(e.erased_at),
                "warehouse_erased_at": e.warehouse_done_at.map(time),
            }),
        )],
        (None, None) => return Err(ExportError::NotFound(id.to_owned())),
        (Some(row), None) => {
            let mut parts = database_parts(conn, &row)?;
            if let Some(wh) = req.warehouse {
                parts.extend(warehouse_parts(wh, &row)?);
            }
            parts
        }
    };
    let erased = parts.iter().any(|p| p.name == "erasure.json");
    // An erased customer's entry names the pseudonym, never the former id.
    let audited = match (erased, req.key) {
        (true, Some(key)) if !id.starts_with(super::key::PSEUDONYM_PREFIX) => key.pseudonym(id),
        _ => id.to_owned(),
    };
    let readme = readme(req, erased, &parts);
    write_zip(req.out, &readme, &parts)?;
    let entry = NewAuditEntry {
        at: req.at,
        actor: req.actor,
        action: AuditAction::Export,
        detail: Some("data export"),
    };
    conn.transaction::<_, DbError, _>(|c| audit_log::insert(c, &entry, &[audited]))?;
    Ok(ExportSummary {
        path: req.out.to_path_buf(),
        erased,
        parts: parts.iter().map(|p| (p.name.clone(), p.rows)).collect(),
    })
}

fn database_parts(conn: &mut DbConnection, row: &Customer) -> Result<Vec<Part>, ExportError> {
    let id = row.customer_id.as_str();
    let score: Option<Score> = crate::with_backend!(conn, c => scores::table
        .find(id)
        .select(Score::as_select())
        .first(c)
        .optional())
    .map_err(DbError::query("scores", "select"))?;
    let profile = json!({
        "customer_id": row.customer_id,
        "is_guest": row.is_guest,
        "email": row.email,
        "phone": row.phone,
        "first_name": row.first_name,
        "last_name": row.last_name,
        "country": row.country,
        "signup_date": row.signup_date.map(|d| d.to_string()),
        "birth_date": row.birth_date.map(|d| d.to_string()),
        "email_opt_in": row.email_opt_in,
        "consent_updated_at": row.consent_updated_at.map(time),
        "first_seen": row.first_seen.map(time),
        "channels": row.channels.split(',').filter(|c| !c.is_empty()).collect::<Vec<_>>(),
        "active": row.active,
        "loaded_at": time(row.loaded_at),
        "latest_scores": score.as_ref().map(score_json),
    });
    let mut parts = vec![Part::json(
        "profile.json",
        "The customer as the database holds them (from the CRM, or from their purchases \
         for a guest), with their latest scores.",
        &profile,
    )];

    let history = consent_changes::of_customers(conn, std::slice::from_ref(&row.customer_id))?;
    let rows = history
        .iter()
        .map(|h| {
            vec![
                time(h.at),
                h.email_opt_in.to_string(),
                h.source.as_str().to_owned(),
                opt(&h.record),
                time(h.recorded_at),
            ]
        })
        .collect();
    parts.push(Part::csv(
        "consent_history.csv",
        "Every change of their marketing email consent: when, what it became, why \
         (crm, unsubscribe, staff, erasure) and the record that caused it.",
        &table(
            &["at", "email_opt_in", "source", "record", "recorded_at"],
            rows,
        ),
    ));

    type AnswerRow = (
        i64,
        String,
        String,
        NaiveDateTime,
        NaiveDateTime,
        Option<i64>,
        Option<i32>,
        Option<i32>,
        Option<String>,
        Option<NaiveDateTime>,
        Option<NaiveDateTime>,
    );
    let answered: Vec<AnswerRow> = crate::with_backend!(conn, c => invitations::table
        .inner_join(surveys::table)
        .left_join(answers::table)
        .filter(invitations::customer_id.eq(id))
        .order(invitations::id)
        .select((
            surveys::id,
            surveys::name,
            surveys::question,
            invitations::created_at,
            invitations::expires_at,
            invitations::campaign_id,
            answers::score.nullable(),
            answers::csat.nullable(),
            answers::comment.nullable(),
            answers::answered_at.nullable(),
            answers::updated_at.nullable(),
        ))
        .load(c))
    .map_err(DbError::query("invitations", "select for export"))?;
    let rows = answered
        .into_iter()
        .map(|a| {
            vec![
                a.0.to_string(),
                a.1,
                a.2,
                time(a.3),
                time(a.4),
                opt(&a.5),
                opt(&a.6),
                opt(&a.7),
                a.8.unwrap_or_default(),
                opt_time(a.9),
                opt_time(a.10),
            ]
        })
        .collect();
    parts.push(Part::csv(
        "survey_answers.csv",
        "Every survey invitation they received, and their answer if they gave one \
         (NPS score 0-10, CSAT 1-5, comment).",
        &table(
            &[
                "survey_id",
                "survey",
                "question",
                "invited_at",
                "expires_at",
                "campaign_id",
                "score",
                "csat",
                "comment",
                "answered_at",
                "updated_at",
            ],
            rows,
        ),
    ));

    type MessageRow = (
        i64,
        String,
        String,
        Option<String>,
        String,
        i32,
        NaiveDateTime,
        Option<NaiveDateTime>,
    );
    let messages: Vec<MessageRow> = crate::with_backend!(conn, c => outbox::table
        .inner_join(campaigns::table)
        .filter(outbox::customer_id.eq(id))
        .order(outbox::id)
        .select((
            campaigns::id,
            campaigns::name,
            campaigns::subject,
            outbox::address,
            outbox::status,
            outbox::attempts,
            outbox::queued_at,
            outbox::sent_at,
        ))
        .load(c))
    .map_err(DbError::query("outbox", "select for export"))?;
    let mut addresses: BTreeSet<String> = row.email.iter().cloned().collect();
    addresses.extend(messages.iter().filter_map(|m| m.3.clone()));
    let rows = messages
        .into_iter()
        .map(|m| {
            vec![
                m.0.to_string(),
                m.1,
                m.2,
                m.3.unwrap_or_default(),
                m.4,
                m.5.to_string(),
                time(m.6),
                opt_time(m.7),
            ]
        })
        .collect();
    parts.push(Part::csv(
        "messages.csv",
        "Every campaign message meant for them: the campaign, its subject (the template \
         each recipient's subject was made from), the address, its fate (sent, \
         suppressed, control: held back to measure the campaign, ...) and when.",
        &table(
            &[
                "campaign_id",
                "campaign",
                "subject",
                "address",
                "status",
                "attempts",
                "queued_at",
                "sent_at",
            ],
            rows,
        ),
    ));

    let unsubscribed: Vec<(NaiveDateTime, String, String, Option<i64>)> = crate::with_backend!(conn, c => unsubscribes::table
        .filter(unsubscribes::customer_id.eq(id))
        .order(unsubscribes::id)
        .select((unsubscribes::at, unsubscribes::address, unsubscribes::source, unsubscribes::campaign_id))
        .load(c))
    .map_err(DbError::query("unsubscribes", "select for export"))?;
    addresses.extend(unsubscribed.iter().map(|u| u.1.clone()));
    let rows = unsubscribed
        .into_iter()
        .map(|u| vec![time(u.0), u.1, u.2, opt(&u.3)])
        .collect();
    parts.push(Part::csv(
        "unsubscribes.csv",
        "Every time they unsubscribed, how (page, one_click, mailto, staff) and through \
         which campaign's link.",
        &table(&["at", "address", "source", "campaign_id"], rows),
    ));

    let listed: Vec<String> = addresses.into_iter().collect();
    let suppressed: Vec<(String, String, NaiveDateTime, Option<i64>)> = crate::with_backend!(conn, c => suppressions::table
        .filter(suppressions::address.eq_any(&listed))
        .order(suppressions::address)
        .select((suppressions::address, suppressions::reason, suppressions::at, suppressions::campaign_id))
        .load(c))
    .map_err(DbError::query("suppressions", "select for export"))?;
    let rows = suppressed
        .into_iter()
        .map(|s| vec![s.0, s.1, time(s.2), opt(&s.3)])
        .collect();
    parts.push(Part::csv(
        "suppressions.csv",
        "Their addresses that are never mailed again, and why.",
        &table(&["address", "reason", "at", "campaign_id"], rows),
    ));

    let q = AuditQuery {
        customer_id: Some(id.to_owned()),
        ..AuditQuery::default()
    };
    let accesses = audit_log::list(conn, &q, i64::MAX)?;
    let rows = accesses
        .into_iter()
        .rev()
        .map(|a| {
            vec![
                time(a.at),
                a.actor,
                a.action.as_str().to_owned(),
                opt(&a.detail),
            ]
        })
        .collect();
    parts.push(Part::csv(
        "staff_access.csv",
        "Every time staff read their personal data, exported it, or changed their \
         consent: when, who (the staff token's name) and what.",
        &table(&["at", "staff", "action", "detail"], rows),
    ));
    Ok(parts)
}

fn score_json(s: &Score) -> serde_json::Value {
    json!({
        "as_of": s.as_of.to_string(),
        "orders": s.orders,
        "frequency": s.frequency,
        "total_revenue": s.total_revenue,
        "first_purchase": s.first_purchase.map(|d| d.to_string()),
        "last_purchase": s.last_purchase.map(|d| d.to_string()),
        "rfm_segment": s.rfm_segment,
        "p_alive": s.p_alive,
        "clv_12m": s.clv_12m,
        "churn_risk": s.churn_risk,
        "lifecycle_stage": s.lifecycle_stage,
        "value_tier": s.value_tier,
        "loyalty_index": s.loyalty_index,
        "nps_last": s.nps_last,
        "nps_class": s.nps_class,
        "engagement_90d": s.engagement_90d,
    })
}

/// The warehouse's current version folder.
fn current_version(warehouse: &Path) -> PathBuf {
    let current = warehouse.join("current");
    std::fs::canonicalize(&current).unwrap_or(current)
}

/// `t` with the hashes of a pseudonymised warehouse replaced by their clear
/// values (the person's own data); hashes the vault lacks stay.
fn revealed(vault: &Vault, mut t: Table) -> Table {
    if vault.is_empty() {
        return t;
    }
    for cell in t.rows.iter_mut().flatten() {
        if let Some(clear) = vault.reveal(cell).filter(|c| c != cell) {
            *cell = clear.to_owned();
        }
    }
    t
}

fn warehouse_parts(warehouse: &Path, row: &Customer) -> Result<Vec<Part>, ExportError> {
    let id = row.customer_id.clone();
    let version = current_version(warehouse);
    let vault = Vault::read(warehouse)?;
    let me: HashSet<String> = [id.clone()].into();
    let mut parts = Vec::new();
    let mut keys: BTreeSet<(String, String)> = BTreeSet::new();
    let mut note_keys = |t: &Table| {
        for (column, kind) in [
            ("key_customer_id", "customer_id"),
            ("key_email", "email"),
            ("key_phone", "phone"),
            ("email", "email"),
            ("phone", "phone"),
        ] {
            if let Some(i) = t.columns.iter().position(|c| c == column) {
                for r in &t.rows {
                    if !r[i].is_empty() {
                        keys.insert((kind.to_owned(), r[i].clone()));
                    }
                }
            }
        }
    };

    let customers_t = scan::rows_with(
        &scan::parquet_files(&version.join("customers"))?,
        "customer_id",
        &me,
    )?;
    let customers_t = revealed(&vault, customers_t);
    note_keys(&customers_t);
    parts.push(Part::csv(
        "warehouse/customers.csv",
        "Their row in the warehouse's customers dataset (the resolved customer).",
        &customers_t,
    ));

    let txns = scan::rows_with(
        &scan::parquet_files(&version.join("transactions"))?,
        "customer_id",
        &me,
    )?;
    let txns = revealed(&vault, txns);
    note_keys(&txns);
    parts.push(Part::csv(
        "warehouse/transactions.csv",
        "Every purchase and refund resolved to them, on every channel: amounts, \
         currency, when, the keys the source record gave (key_*), the source record \
         and the input file it came from.",
        &txns,
    ));

    // Events name no customer: their key sets do. A night writes the key
    // sets it changes as a delta beside the table: a delta row stands for
    // the table's row with its keys.
    let state = version.join("_state");
    let column = |t: &Table, name: &str| t.columns.iter().position(|c| c == name);
    let triple_of = |t: &Table, r: &[String]| -> [String; 3] {
        ["key_customer_id", "key_email", "key_phone"]
            .map(|name| column(t, name).map(|i| r[i].clone()).unwrap_or_default())
    };
    let delta = scan::rows_where(
        &scan::if_exists(state.join("event_keysets-delta.parquet")),
        |_, _| true,
    )?;
    let in_delta: HashSet<[String; 3]> = delta.rows.iter().map(|r| triple_of(&delta, r)).collect();
    let mut keysets = scan::rows_with(
        &scan::if_exists(state.join("event_keysets.parquet")),
        "customer_id",
        &me,
    )?;
    let table_rows = std::mem::take(&mut keysets.rows);
    keysets.rows = (table_rows.into_iter())
        .filter(|r| !in_delta.contains(&triple_of(&keysets, r)))
        .collect();
    if keysets.columns.is_empty() {
        keysets.columns = delta.columns.clone();
    }
    let delta_customer = column(&delta, "customer_id");
    keysets.rows.extend(
        (delta.rows.iter())
            .filter(|r| delta_customer.is_some_and(|i| me.contains(&r[i])))
            .cloned(),
    );
    let sets: HashSet<[String; 3]> = keysets
        .rows
        .iter()
        .map(|r| triple_of(&keysets, r))
        .collect();
    note_keys(&revealed(&vault, keysets.clone()));
    let events = scan::rows_where(&scan::parquet_files(&version.join("events"))?, |b, i| {
        // Events of an earlier cvm still name their customer.
        if scan::text(b, "customer_id", i).is_some_and(|c| c == id) {
            return true;
        }
        let get = |c: &str| scan::text(b, c, i).unwrap_or("").to_owned();
        !sets.is_empty()
            && sets.contains(&[get("key_customer_id"), get("key_email"), get("key_phone")])
    })?;
    let events = revealed(&vault, events);
    parts.push(Part::csv(
        "warehouse/events.csv",
        "Their engagement events (app and web activity): type, when, the keys it \
         carried and the input file.",
        &events,
    ));

    let history = scan::rows_with(
        &scan::if_exists(version.join("_state").join("crm_keys.parquet")),
        "customer_id",
        &me,
    )?;
    let history = revealed(&vault, history);
    note_keys(&history);
    if let Some(k) = column(&history, "key") {
        let kind = column(&history, "kind");
        for r in &history.rows {
            let kind = kind.map(|i| r[i].clone()).unwrap_or_else(|| "key".into());
            keys.insert((kind, r[k].clone()));
        }
    }
    parts.push(Part::csv(
        "warehouse/crm_key_history.csv",
        "Emails and phones of their earlier CRM records (they keep purchases made with them).",
        &history,
    ));

    let scored = scan::rows_with(
        &scan::parquet_files(&warehouse.join("scores"))?,
        "customer_id",
        &me,
    )?;
    parts.push(Part::csv(
        "warehouse/scores.csv",
        "Every score row kept for them, one per scoring date (scoring.md defines each score).",
        &scored,
    ));

    keys.insert(("customer_id".into(), id.clone()));
    let listed: Vec<serde_json::Value> = keys
        .into_iter()
        .map(|(kind, value)| json!({"kind": kind, "value": value}))
        .collect();
    parts.push(Part::json(
        "keys.json",
        "Every key that maps to them: their ids, emails and phones, from any channel.",
        &json!({ "keys": listed }),
    ));
    Ok(parts)
}

fn readme(req: &ExportRequest<'_>, erased: bool, parts: &[Part]) -> String {
    let mut s = String::new();
    s.push_str("# Personal data export\n\n");
    if erased {
        s.push_str(
            "The customer this export was asked for was erased on request. Nothing personal \
             about them is held any more; `erasure.json` says when.\n\n",
        );
    } else {
        s.push_str(&format!(
            "Everything held about customer `{}`, exported {}.\n\n",
            req.customer_id,
            time(req.at)
        ));
        if req.warehouse.is_none() {
            s.push_str(
                "This export holds the database's part only: the warehouse (purchases, \
                 events, score history) was not available to the process that made it. \
                 `cvm-etl privacy export --warehouse DIR` includes it.\n\n",
            );
        }
        s.push_str(
            "Tables are CSV (UTF-8, a header row, empty cells for unknown values; times are \
             RFC 3339 UTC); documents are JSON. Amounts are in the shop's base currency \
             unless a column says otherwise.\n\n",
        );
    }
    s.push_str("| file | rows | what it holds |\n|---|---|---|\n");
    for p in parts {
        s.push_str(&format!("| `{}` | {} | {} |\n", p.name, p.rows, p.what));
    }
    s
}

fn write_zip(out: &Path, readme: &str, parts: &[Part]) -> Result<(), ExportError> {
    let failed = |message: String| ExportError::Write {
        path: out.to_path_buf(),
        message,
    };
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| failed(e.to_string()))?;
    }
    let tmp = out.with_extension("zip.tmp");
    let written = write_parts(&tmp, readme, parts)
        .and_then(|()| std::fs::rename(&tmp, out).map_err(|e| e.to_string()));
    written.map_err(|message| {
        // Nothing half-written is left behind.
        let _ = std::fs::remove_file(&tmp);
        failed(message)
    })
}

fn write_parts(tmp: &Path, readme: &str, parts: &[Part]) -> Result<(), String> {
    let file = std::fs::File::create(tmp).map_err(|e| e.to_string())?;
    let mut zip = zip::ZipWriter::new(file);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    let mut add = |name: &str, bytes: &[u8]| -> Result<(), String> {
        zip.start_file(name, options).map_err(|e| e.to_string())?;
        zip.write_all(bytes).map_err(|e| e.to_string())
    };
    add("README.md", readme.as_bytes())?;
    for p in parts {
        add(&p.name, &p.bytes)?;
    }
    let file = zip.finish().map_err(|e| e.to_string())?;
    file.sync_all().map_err(|e| e.to_string())
}
