//! Writers for one chunk's records, one per source kind, with the formats and
//! quirks real feeds have, and the bookkeeping of what the ingest should make
//! of every record.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::dirty::Corruptor;
use super::population::{DAY, GuestKey, Person, Phone, Via, decimals, rate};
use super::{ChunkResult, Drops, GenerateError, GenerateOptions, OutcomeCounts, Sink, Span};
use crate::record::RejectReason::{
    self, BadAmount, BadDate, BadJson, BadRow, MissingId, UnknownCurrency,
};
use crate::sources::csv_line;

/// Header of `crm/customers.csv` (canonical columns plus an extra one the ingest ignores).
pub(crate) const CRM_HEADER: &str = "customer_id,email,phone,first_name,last_name,country,signup_date,birth_date,email_opt_in,updated_at,loyalty_tier";
/// The generator writes the columns the POS parser reads.
const POS_COLS: [&str; 8] = crate::sources::pos::COLUMNS;
const TX_COLS: [&str; 6] = [
    "customer_id",
    "occurred_at",
    "amount",
    "currency",
    "order_id",
    "channel",
];

const POS_BAD: [RejectReason; 5] = [BadDate, BadAmount, UnknownCurrency, MissingId, BadRow];
const WEB_BAD: [RejectReason; 5] = [BadDate, BadAmount, UnknownCurrency, MissingId, BadJson];
// App `ts` and `amount_cents` are numbers: a wrong value there could be read as
// either a bad date/amount or a mistyped field, so app records only get defects
// with one unambiguous reading.
const APP_BAD: [RejectReason; 3] = [UnknownCurrency, MissingId, BadJson];
const TX_BAD: [RejectReason; 5] = [BadDate, BadAmount, UnknownCurrency, MissingId, BadRow];
const EVENT_BAD: [RejectReason; 3] = [BadDate, MissingId, BadJson];
const CRM_BAD: [RejectReason; 2] = [MissingId, BadRow];

/// A CSV output file with its column layout.
struct CsvOut {
    sink: Sink,
    /// Output column j holds canonical field `order[j]`.
    order: Vec<usize>,
    /// An extra column the contract does not name (ignored by the ingest).
    extra: Option<&'static str>,
}

impl CsvOut {
    fn new(
        mut sink: Sink,
        cols: &[&str],
        order: Vec<usize>,
        extra: Option<&'static str>,
        bom: bool,
    ) -> Result<CsvOut, GenerateError> {
        if bom {
            sink.raw(b"\xEF\xBB\xBF")?;
        }
        let mut header: Vec<&str> = order.iter().map(|&i| cols[i]).collect();
        header.extend(extra);
        sink.raw(header.join(",").as_bytes())?;
        sink.end_line()?;
        Ok(CsvOut { sink, order, extra })
    }

    /// Writes a row given in canonical column order; `break_row` adds or drops a field.
    fn row(
        &mut self,
        fields: &[String],
        extra: &str,
        break_row: bool,
        dirty: &mut Corruptor,
    ) -> Result<(), GenerateError> {
        let mut out: Vec<String> = self.order.iter().map(|&i| fields[i].clone()).collect();
        if self.extra.is_some() {
            out.push(extra.to_string());
        }
        if break_row {
            dirty.break_row(&mut out);
        }
        self.sink.record(&csv_line(&out))
    }
}

/// Appends `v` as a JSON string.
fn jstr(out: &mut String, v: &str) {
    out.push('"');
    for ch in v.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Civil date and time of Unix seconds (UTC): (year, month, day, hour, minute, second).
fn civil(secs: i64) -> (i64, u32, u32, u32, u32, u32) {
    let sod = secs.rem_euclid(DAY);
    let (y, m, d) = crate::calendar::civil_from_days(secs.div_euclid(DAY));
    (
        y,
        m,
        d,
        (sod / 3600) as u32,
        (sod % 3600 / 60) as u32,
        (sod % 60) as u32,
    )
}

/// `YYYY-MM-DD` of Unix seconds.
fn fmt_date(secs: i64) -> String {
    let (y, m, d, ..) = civil(secs);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `YYYY-MM-DD HH:MM:SS` of Unix seconds, as a UTC wall-clock time.
fn fmt_local(secs: i64) -> String {
    let (y, m, d, hh, mm, ss) = civil(secs);
    format!("{y:04}-{m:02}-{d:02} {hh:02}:{mm:02}:{ss:02}")
}

/// RFC 3339 of Unix seconds, written in the zone `offset_min` minutes east of UTC.
fn fmt_rfc3339(secs: i64, offset_min: i32) -> String {
    let (y, m, d, hh, mm, ss) = civil(secs + i64::from(offset_min) * 60);
    let mut s = format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}");
    if offset_min == 0 {
        s.push('Z');
    } else {
        let sign = if offset_min < 0 { '-' } else { '+' };
        let a = offset_min.unsigned_abs();
        let _ = write!(s, "{sign}{:02}:{:02}", a / 60, a % 60);
    }
    s
}

/// Money text of `minor` units with `dec` decimals.
fn fmt_money(minor: i64, dec: u32) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let a = minor.unsigned_abs();
    if dec == 0 {
        format!("{sign}{a}")
    } else {
        format!("{sign}{}.{:02}", a / 100, a % 100)
    }
}

/// Expected outcomes of one chunk, per source kind.
#[derive(Default)]
struct Tally {
    crm: OutcomeCounts,
    pos: OutcomeCounts,
    web: OutcomeCounts,
    app: OutcomeCounts,
    tx: OutcomeCounts,
    events: OutcomeCounts,
}

/// How a POS receipt names its customer.
struct PosIdent {
    customer_id: String,
    phone: String,
}

/// Writes one chunk's files.
pub(crate) struct ChunkWriter {
    chunk: u64,
    span: Span,
    rng: ChaCha8Rng,
    dirty: Corruptor,
    /// Which drop a record made at a given time goes to.
    drops: Drops,
    // One output per drop (see `Drops`), for each kind.
    pos: Vec<CsvOut>,
    tx: Vec<CsvOut>,
    web: Vec<Sink>,
    web_updates: Vec<Sink>,
    app: Vec<Sink>,
    events: Vec<Sink>,
    events_written: u64,
    crm: Vec<Vec<u8>>,
    crm_records: Vec<u64>,
    tally: Tally,
    consolidated: u64,
    /// Accepted CRM customers per email / phone, to count key conflicts.
    crm_keys: HashMap<String, u32>,
    next_id: u64,
}

impl ChunkWriter {
    /// Opens the chunk's files (`pos/part-00003.csv`, ...). File quirks go to fixed chunks.
    pub fn new(
        out: &Path,
        opts: &GenerateOptions,
        span: Span,
        chunk: u64,
        dirty_rng: ChaCha8Rng,
    ) -> Result<ChunkWriter, GenerateError> {
        let part = format!("part-{chunk:05}");
        let gz = opts.gzip;
        let drops = Drops::new(opts, &span);
        let mut w = ChunkWriter {
            chunk,
            span,
            rng: ChaCha8Rng::seed_from_u64(opts.seed ^ 0x9E37_79B9_7F4A_7C15),
            dirty: Corruptor::new(dirty_rng, opts.dirty_ratio),
            drops,
            pos: Vec::new(),
            tx: Vec::new(),
            web: Vec::new(),
            web_updates: Vec::new(),
            app: Vec::new(),
            events: Vec::new(),
            events_written: 0,
            crm: Vec::new(),
            crm_records: Vec::new(),
            tally: Tally::default(),
            consolidated: 0,
            crm_keys: HashMap::new(),
            next_id: 0,
        };
        w.rng.set_stream(chunk);
        for d in 0..w.drops.count() {
            let pre = w.drops.prefix(d).to_string();
            // Chunk 1's POS file has CRLF line ends, chunk 0's a BOM, chunk 2's
            // columns in another order, chunk 3's an extra column.
            let pos_sink = Sink::create(out, &format!("{pre}pos/{part}.csv"), gz, chunk == 1)?;
            let pos_order = if chunk == 2 {
                vec![5, 6, 0, 2, 7, 3, 4, 1]
            } else {
                (0..8).collect()
            };
            w.pos.push(CsvOut::new(
                pos_sink,
                &POS_COLS,
                pos_order,
                (chunk == 3).then_some("cashier"),
                chunk == 0,
            )?);
            // Chunk 1's legacy feed has no optional `channel` column.
            let tx_order = if chunk == 1 {
                (0..5).collect()
            } else {
                (0..6).collect()
            };
            let tx_sink = Sink::create(out, &format!("{pre}transactions/{part}.csv"), gz, false)?;
            w.tx.push(CsvOut::new(tx_sink, &TX_COLS, tx_order, None, false)?);
            w.web.push(Sink::create(
                out,
                &format!("{pre}web/{part}.jsonl"),
                gz,
                false,
            )?);
            w.web_updates.push(Sink::create(
                out,
                &format!("{pre}web/updates-{chunk:05}.jsonl"),
                gz,
                false,
            )?);
            w.app.push(Sink::create(
                out,
                &format!("{pre}app/{part}.jsonl"),
                gz,
                false,
            )?);
            w.events.push(Sink::create(
                out,
                &format!("{pre}events/{part}.jsonl"),
                gz,
                false,
            )?);
            w.crm.push(Vec::with_capacity(1 << 16));
            w.crm_records.push(0);
        }
        Ok(w)
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.random::<f64>() < p
    }

    /// A chunk-unique sequence number for record ids.
    fn seq(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Writes everything about one person: CRM rows, purchases, events.
    /// `newline_name` gives this customer a first name with a line break.
    pub fn person(&mut self, p: &Person, newline_name: bool) -> Result<(), GenerateError> {
        if p.guest.is_none() {
            self.crm_rows(p, newline_name);
        }
        const ALL: [Via; 4] = [Via::Pos, Via::Web, Via::App, Via::Legacy];
        for purchase in &p.purchases {
            let mut via = p.primary;
            if self.chance(0.25) {
                let v = ALL[self.rng.random_range(0..4)];
                if p.can_use(v) {
                    via = v;
                }
            }
            let home = p.country().currency;
            let currency = if home != "USD" && self.chance(0.05) {
                "USD"
            } else {
                home
            };
            let dec = decimals(currency);
            let local = purchase.usd_cents as f64 / rate(currency);
            let minor = if dec == 0 {
                (local / 100.0).round()
            } else {
                local.round()
            }
            .max(1.0) as i64;
            match via {
                Via::Pos => self.pos_sale(p, purchase.at, currency, minor)?,
                Via::Web => self.web_order(p, purchase.at, currency, minor)?,
                Via::App => self.app_purchase(p, purchase.at, currency, minor)?,
                Via::Legacy => self.legacy(p, purchase.at, currency, minor)?,
            }
        }
        self.events_of(p)
    }

    /// An email as a person types it: mixed case, stray blanks.
    fn email_variant(&mut self, email: &str) -> String {
        match self.rng.random_range(0..10) {
            0 | 1 => {
                let mut out = String::with_capacity(email.len());
                let mut up = true;
                for ch in email.chars() {
                    out.push(if up { ch.to_ascii_uppercase() } else { ch });
                    up = matches!(ch, '.' | '@');
                }
                out
            }
            2 => email.to_ascii_uppercase(),
            3 => format!("  {email} "),
            _ => email.to_string(),
        }
    }

    /// A phone as written in a feed. National forms only for the default
    /// country (+1), where the ingest adds the code back.
    fn phone_variant(&mut self, phone: &Phone) -> String {
        let n = &phone.national;
        let cc = phone.cc;
        let (a, rest) = n.split_at(3.min(n.len()));
        let (b, c) = rest.split_at(3.min(rest.len()));
        let k = if cc == "1" {
            self.rng.random_range(0..8)
        } else {
            self.rng.random_range(0..3)
        };
        match k {
            0 => format!("+{cc}{n}"),
            1 => format!("+{cc} {a} {b} {c}"),
            2 => format!("+{cc}-{a}-{b}-{c}"),
            3 => format!("({a}) {b}-{c}"),
            4 => format!("{a}-{b}-{c}"),
            5 => format!("{a} {b} {c}"),
            6 => format!("{cc}{n}"),
            _ => format!("{cc} {a} {b} {c}"),
        }
    }

    fn crm_rows(&mut self, p: &Person, newline_name: bool) {
        let versions = if self.chance(0.03) { 2 } else { 1 };
        let first_update = p.acquired + self.rng.random_range(0..30 * DAY);
        let mut updates = vec![first_update];
        if versions == 2 {
            updates.push(first_update + self.rng.random_range(DAY..200 * DAY));
            if self.chance(0.5) {
                // The newer version first: only `updated_at` decides, not file order.
                updates.reverse();
            }
        }
        let id = p.id.clone().unwrap_or_default();
        let email = p.email.as_deref().map(|e| {
            if self.chance(0.1) {
                self.email_variant(e)
            } else {
                e.to_string()
            }
        });
        let phone = p.phone.as_ref().map(|ph| {
            let (a, rest) = ph.national.split_at(3.min(ph.national.len()));
            if self.chance(0.5) {
                format!("+{}{}", ph.cc, ph.national)
            } else {
                format!("+{} {a} {rest}", ph.cc)
            }
        });
        let first = if newline_name {
            "Anne\nMarie".to_string()
        } else {
            p.first.to_string()
        };
        let country = if self.chance(0.02) {
            String::new()
        } else {
            p.country().code.to_string()
        };
        let birth = if self.chance(0.03) {
            String::new()
        } else {
            // 1945-01-01 .. 2006-12-31
            fmt_date(self.rng.random_range(-788_918_400..1_167_523_200))
        };
        let tier = ["", "silver", "gold"][self.rng.random_range(0..3)];
        let mut good = 0;
        for updated in updates {
            let d = self.drops.of(updated);
            let opt_in =
                ["true", "false", "1", "0", "yes", "no", "Y", "N", ""][self.rng.random_range(0..9)];
            let mut fields = vec![
                id.clone(),
                email.clone().unwrap_or_default(),
                phone.clone().unwrap_or_default(),
                first.clone(),
                p.last.clone(),
                country.clone(),
                fmt_date(p.acquired),
                birth.clone(),
                opt_in.to_string(),
                fmt_rfc3339(updated, 0),
                tier.to_string(),
            ];
            match self.dirty.pick(&CRM_BAD) {
                Some(MissingId) => fields[0] = String::new(),
                Some(_) => self.dirty.break_row(&mut fields),
                None => good += 1,
            }
            self.crm[d].extend_from_slice(csv_line(&fields).as_bytes());
            self.crm[d].push(b'\n');
            self.crm_records[d] += 1;
        }
        self.tally.crm.rejected += versions - good;
        if good > 0 {
            self.tally.crm.accepted += 1;
            self.tally.crm.duplicate += good - 1;
            if let Some(e) = &p.email {
                *self.crm_keys.entry(format!("e:{e}")).or_default() += 1;
            }
            if let Some(ph) = &p.phone {
                *self
                    .crm_keys
                    .entry(format!("p:{}{}", ph.cc, ph.national))
                    .or_default() += 1;
            }
        }
    }

    fn pos_sale(
        &mut self,
        p: &Person,
        at: i64,
        currency: &str,
        minor: i64,
    ) -> Result<(), GenerateError> {
        // Stores open 08:00-21:59: no local time falls in a night-time DST gap.
        let day = at.div_euclid(DAY) * DAY;
        let at = day + 8 * 3600 + at.rem_euclid(DAY) * 14 / 24;
        let phone = |w: &mut Self| {
            p.phone
                .as_ref()
                .map(|ph| w.phone_variant(ph))
                .unwrap_or_default()
        };
        let id = p.id.clone().unwrap_or_default();
        let ident = if p.guest.is_some() {
            PosIdent {
                customer_id: String::new(),
                phone: phone(self),
            }
        } else {
            let u: f64 = self.rng.random();
            if u < 0.55 || (u < 0.9 && p.phone.is_none()) {
                PosIdent {
                    customer_id: id,
                    phone: String::new(),
                }
            } else if u < 0.65 {
                PosIdent {
                    customer_id: id,
                    phone: phone(self),
                }
            } else if u < 0.9 {
                PosIdent {
                    customer_id: String::new(),
                    phone: phone(self),
                }
            } else {
                // No loyalty card shown: an anonymous receipt.
                PosIdent {
                    customer_id: String::new(),
                    phone: String::new(),
                }
            }
        };
        let status = if self.chance(0.1) { "" } else { "sale" };
        self.pos_row(
            &ident,
            at,
            &fmt_money(minor, decimals(currency)),
            currency,
            status,
        )?;
        if self.chance(0.06) {
            let back = at + self.rng.random_range(1..31) * DAY;
            if back <= self.span.end {
                let refund = if self.chance(0.7) {
                    minor
                } else {
                    (minor / 2).max(1)
                };
                let signed = if self.chance(0.5) { -refund } else { refund };
                self.pos_row(
                    &ident,
                    back,
                    &fmt_money(signed, decimals(currency)),
                    currency,
                    "return",
                )?;
            }
        }
        if self.chance(0.02) {
            let wrong = (minor * self.rng.random_range(2..5)).max(1);
            self.pos_row(
                &ident,
                at + 120,
                &fmt_money(wrong, decimals(currency)),
                currency,
                "void",
            )?;
        }
        Ok(())
    }

    fn pos_row(
        &mut self,
        ident: &PosIdent,
        at: i64,
        total: &str,
        currency: &str,
        status: &str,
    ) -> Result<(), GenerateError> {
        let n = self.seq();
        let receipt = format!("R{:05}-{n:07}", self.chunk);
        let store = self.rng.random_range(1..41);
        let store_id = if self.chance(0.03) {
            format!("S{store:03}, Mall")
        } else {
            format!("S{store:03}")
        };
        let time = if self.chance(0.85) {
            fmt_local(at)
        } else {
            fmt_rfc3339(at, [0, 60, 480, -300][self.rng.random_range(0..4)])
        };
        let cashier = format!("K{}", self.rng.random_range(1..30));
        // A void's other fields are never checked by some readers: keep voids good.
        let bad = if status == "void" {
            None
        } else {
            self.dirty.pick(&POS_BAD)
        };
        let mut f = vec![
            receipt,
            store_id,
            time,
            ident.customer_id.clone(),
            ident.phone.clone(),
            total.to_string(),
            currency.to_string(),
            status.to_string(),
        ];
        match bad {
            Some(BadDate) => f[2] = self.dirty.bad_local_time().to_string(),
            Some(BadAmount) => f[5] = self.dirty.bad_amount().to_string(),
            Some(UnknownCurrency) => f[6] = self.dirty.unknown_currency().to_string(),
            Some(MissingId) => f[0] = String::new(),
            _ => {}
        }
        let d = self.drops.of(at);
        self.pos[d].row(&f, &cashier, bad == Some(BadRow), &mut self.dirty)?;
        let t = &mut self.tally.pos;
        if bad.is_some() {
            t.rejected += 1;
        } else if status == "void" {
            t.ignored += 1;
        } else if ident.customer_id.is_empty() && ident.phone.is_empty() {
            t.anonymous += 1;
            self.consolidated += 1;
        } else {
            t.accepted += 1;
            self.consolidated += 1;
        }
        Ok(())
    }

    fn web_order(
        &mut self,
        p: &Person,
        at: i64,
        currency: &str,
        minor: i64,
    ) -> Result<(), GenerateError> {
        let n = self.seq();
        let order_id = format!("W{:05}-{n:07}", self.chunk);
        let mut customer = String::from("{");
        let email = p.email.as_deref().map(|e| self.email_variant(e));
        let mode = if p.guest.is_some() || p.id.is_none() {
            1
        } else if email.is_none() {
            0
        } else {
            // id 50%, email 25%, both 25%
            match self.rng.random_range(0..4) {
                0 | 1 => 0,
                2 => 1,
                _ => 2,
            }
        };
        if mode != 1 {
            customer.push_str("\"id\":");
            jstr(&mut customer, p.id.as_deref().unwrap_or_default());
        }
        if mode != 0
            && let Some(e) = &email
        {
            if mode == 2 {
                customer.push(',');
            }
            customer.push_str("\"email\":");
            jstr(&mut customer, e);
        }
        customer.push('}');

        // Lifecycle: the statuses this order is delivered with, oldest first.
        let u: f64 = self.rng.random();
        let statuses: &[&str] = if u < 0.78 {
            &["paid"]
        } else if u < 0.86 {
            &["pending", "paid"]
        } else if u < 0.91 {
            &["paid", "refunded"]
        } else if u < 0.95 {
            &["cancelled"]
        } else if u < 0.97 {
            &["pending", "cancelled"]
        } else {
            &["pending"]
        };
        let offset = if self.chance(0.3) {
            0
        } else {
            p.country().offset_min
        };
        let created = fmt_rfc3339(at, offset);
        let mut updated = at + self.rng.random_range(60..3600);
        let amount = fmt_money(minor, decimals(currency));
        let numeric = self.chance(0.2);
        let items = self.items(minor, decimals(currency));
        let mut good_last: Option<&str> = None;
        let mut good = 0u64;
        let mut bad = 0u64;
        let redeliver = self.chance(0.01);
        let n = statuses.len() + usize::from(redeliver);
        for v in 0..n {
            let status = statuses[v.min(statuses.len() - 1)];
            if v > 0 && v < statuses.len() {
                updated += if status == "refunded" {
                    self.rng.random_range(DAY..20 * DAY)
                } else {
                    self.rng.random_range(600..2 * DAY)
                };
            }
            // Only versions that are revenue get defects: a reader may skip checks on the rest.
            let defect = if matches!(status, "paid" | "refunded") {
                self.dirty.pick(&WEB_BAD)
            } else {
                None
            };
            let mut line = String::with_capacity(320);
            match defect {
                Some(MissingId) => match self.dirty.index(3) {
                    0 => line.push_str("{\"order_id\":\"\","),
                    1 => line.push_str("{\"order_id\":null,"),
                    _ => line.push('{'),
                },
                _ => {
                    line.push_str("{\"order_id\":");
                    jstr(&mut line, &order_id);
                    line.push(',');
                }
            }
            line.push_str("\"customer\":");
            line.push_str(&customer);
            line.push_str(",\"created_at\":");
            let created_text = if defect == Some(BadDate) {
                self.dirty.bad_rfc3339()
            } else {
                created.as_str()
            };
            jstr(&mut line, created_text);
            line.push_str(",\"updated_at\":");
            jstr(&mut line, &fmt_rfc3339(updated, 0));
            line.push_str(",\"total\":{\"amount\":");
            match defect {
                Some(BadAmount) => jstr(&mut line, self.dirty.bad_amount()),
                _ if numeric => line.push_str(&amount),
                _ => jstr(&mut line, &amount),
            }
            line.push_str(",\"currency\":");
            let cur = if defect == Some(UnknownCurrency) {
                self.dirty.unknown_currency()
            } else {
                currency
            };
            jstr(&mut line, cur);
            line.push_str("},\"status\":");
            jstr(&mut line, status);
            line.push_str(",\"items\":");
            line.push_str(&items);
            line.push('}');
            if defect == Some(BadJson) {
                self.dirty.break_json(&mut line);
            }
            // Later versions are re-delivered in the same file or in the chunk's updates file.
            let d = self.drops.of(updated);
            if v > 0 && self.chance(0.5) {
                self.web_updates[d].record(&line)?;
            } else {
                self.web[d].record(&line)?;
            }
            if defect.is_some() {
                bad += 1;
            } else {
                good += 1;
                good_last = Some(status);
            }
        }
        let t = &mut self.tally.web;
        t.rejected += bad;
        if let Some(status) = good_last {
            t.duplicate += good - 1;
            match status {
                "paid" => {
                    t.accepted += 1;
                    self.consolidated += 1;
                }
                "refunded" => {
                    t.accepted += 1;
                    self.consolidated += 2;
                }
                _ => t.ignored += 1,
            }
        }
        Ok(())
    }

    /// The order's items as a JSON array whose prices add up to the total.
    fn items(&mut self, minor: i64, dec: u32) -> String {
        let k = self.rng.random_range(1..4).min(minor.max(1)) as usize;
        let mut out = String::from("[");
        let mut left = minor;
        for i in 0..k {
            let price = if i + 1 == k { left } else { (left / 2).max(1) };
            left -= price;
            if i > 0 {
                out.push(',');
            }
            let sku = self.rng.random_range(100..999);
            let _ = write!(
                out,
                "{{\"sku\":\"SKU-{sku}\",\"qty\":1,\"price\":\"{}\"}}",
                fmt_money(price, dec)
            );
        }
        out.push(']');
        out
    }

    fn app_purchase(
        &mut self,
        p: &Person,
        at: i64,
        currency: &str,
        minor: i64,
    ) -> Result<(), GenerateError> {
        let cents = if decimals(currency) == 0 {
            minor * 100
        } else {
            minor
        };
        let (use_email, use_phone) = match p.guest {
            Some(GuestKey::Email) => (true, false),
            Some(_) => (false, true),
            None => {
                let u: f64 = self.rng.random();
                let (e, ph) = (p.email.is_some(), p.phone.is_some());
                if u < 0.4 && e && ph {
                    (true, true)
                } else if (u < 0.8 && e) || !ph {
                    (true, false)
                } else {
                    (false, true)
                }
            }
        };
        let email = if use_email {
            p.email.as_deref().map(|e| self.email_variant(e))
        } else {
            None
        };
        let phone = if use_phone {
            p.phone.as_ref().map(|ph| self.phone_variant(ph))
        } else {
            None
        };
        self.app_row(
            email.as_deref(),
            phone.as_deref(),
            at,
            cents,
            currency,
            "purchase",
        )?;
        if self.chance(0.05) {
            let later = at + self.rng.random_range(DAY..20 * DAY);
            if later <= self.span.end {
                let back = if self.chance(0.7) {
                    cents
                } else {
                    (cents / 2).max(1)
                };
                self.app_row(
                    email.as_deref(),
                    phone.as_deref(),
                    later,
                    back,
                    currency,
                    "refund",
                )?;
            }
        }
        Ok(())
    }

    fn app_row(
        &mut self,
        email: Option<&str>,
        phone: Option<&str>,
        ts: i64,
        cents: i64,
        currency: &str,
        kind: &str,
    ) -> Result<(), GenerateError> {
        let n = self.seq();
        let txn = format!("A{:05}-{n:07}", self.chunk);
        let null_absent = self.chance(0.5);
        let defect = self.dirty.pick(&APP_BAD);
        let mut line = String::with_capacity(200);
        line.push('{');
        match defect {
            Some(MissingId) => match self.dirty.index(3) {
                0 => line.push_str("\"txn\":\"\","),
                1 => line.push_str("\"txn\":null,"),
                _ => {}
            },
            _ => {
                line.push_str("\"txn\":");
                jstr(&mut line, &txn);
                line.push(',');
            }
        }
        for (name, v) in [("user_email", email), ("user_phone", phone)] {
            match v {
                Some(v) => {
                    let _ = write!(line, "\"{name}\":");
                    jstr(&mut line, v);
                    line.push(',');
                }
                None if null_absent => {
                    let _ = write!(line, "\"{name}\":null,");
                }
                None => {}
            }
        }
        let cur = if defect == Some(UnknownCurrency) {
            self.dirty.unknown_currency()
        } else {
            currency
        };
        let _ = write!(line, "\"ts\":{ts},\"amount_cents\":{cents},\"currency\":");
        jstr(&mut line, cur);
        line.push_str(",\"kind\":");
        jstr(&mut line, kind);
        line.push('}');
        if defect == Some(BadJson) {
            self.dirty.break_json(&mut line);
        }
        let d = self.drops.of(ts);
        self.app[d].record(&line)?;
        if defect.is_some() {
            self.tally.app.rejected += 1;
        } else {
            self.tally.app.accepted += 1;
            self.consolidated += 1;
        }
        Ok(())
    }

    fn legacy(
        &mut self,
        p: &Person,
        at: i64,
        currency: &str,
        minor: i64,
    ) -> Result<(), GenerateError> {
        let order_id = if self.chance(0.85) {
            let n = self.seq();
            format!("T{:05}-{n:07}", self.chunk)
        } else {
            String::new()
        };
        let channel = ["catalog", "callcenter", "partner"][self.rng.random_range(0..3)];
        self.legacy_row(p, at, minor, currency, &order_id, channel)?;
        if !order_id.is_empty() && self.chance(0.07) {
            let later = at + self.rng.random_range(DAY..30 * DAY);
            if later <= self.span.end {
                self.legacy_row(p, later, -minor, currency, &order_id, channel)?;
            }
        }
        Ok(())
    }

    fn legacy_row(
        &mut self,
        p: &Person,
        at: i64,
        minor: i64,
        currency: &str,
        order_id: &str,
        channel: &str,
    ) -> Result<(), GenerateError> {
        let occurred = if self.chance(0.4) {
            // A date-only time is 00:00 UTC; write the day the purchase is on.
            fmt_date(at)
        } else if self.chance(0.5) {
            fmt_rfc3339(at, 0)
        } else {
            fmt_rfc3339(at, p.country().offset_min)
        };
        let cur = if currency == "USD" && self.chance(0.5) {
            ""
        } else {
            currency
        };
        let mut f = vec![
            p.id.clone().unwrap_or_default(),
            occurred,
            fmt_money(minor, decimals(currency)),
            cur.to_string(),
            order_id.to_string(),
            channel.to_string(),
        ];
        let bad = self.dirty.pick(&TX_BAD);
        match bad {
            Some(MissingId) => f[0] = String::new(),
            Some(BadDate) => f[1] = self.dirty.bad_date_or_time().to_string(),
            Some(BadAmount) => f[2] = self.dirty.bad_amount().to_string(),
            Some(UnknownCurrency) => f[3] = self.dirty.unknown_currency().to_string(),
            _ => {}
        }
        let d = self.drops.of(at);
        self.tx[d].row(&f, "", bad == Some(BadRow), &mut self.dirty)?;
        if bad.is_some() {
            self.tally.tx.rejected += 1;
        } else {
            self.tally.tx.accepted += 1;
            self.consolidated += 1;
        }
        Ok(())
    }

    fn events_of(&mut self, p: &Person) -> Result<(), GenerateError> {
        if p.guest == Some(GuestKey::Phone) {
            return Ok(());
        }
        let from = (p.acquired - 30 * DAY).max(self.span.start);
        let years = (self.span.end - from) as f64 / (365.0 * DAY as f64);
        let n = super::population::event_count(&mut self.rng, p.engagement, years);
        for _ in 0..n {
            let ts = self.rng.random_range(from..=self.span.end);
            let u: f64 = self.rng.random();
            let kind = if u < 0.35 {
                "email_open"
            } else if u < 0.60 {
                "web_visit"
            } else if u < 0.75 {
                "app_open"
            } else if u < 0.90 {
                "email_click"
            } else if u < 0.95 {
                "support_ticket"
            } else {
                "review"
            };
            let key = match (&p.id, &p.email, p.guest) {
                (Some(_), Some(e), None) if self.chance(0.3) => ("email", self.email_variant(e)),
                (Some(id), _, _) => ("customer_id", id.clone()),
                (None, Some(e), _) => ("email", self.email_variant(e)),
                (None, None, _) => continue,
            };
            let defect = self.dirty.pick(&EVENT_BAD);
            let mut line = String::with_capacity(96);
            line.push('{');
            if defect != Some(MissingId) {
                let _ = write!(line, "\"{}\":", key.0);
                jstr(&mut line, &key.1);
                line.push(',');
            }
            line.push_str("\"type\":");
            jstr(&mut line, kind);
            line.push_str(",\"ts\":");
            let t = if defect == Some(BadDate) {
                self.dirty.bad_rfc3339().to_string()
            } else {
                fmt_rfc3339(ts, 0)
            };
            jstr(&mut line, &t);
            line.push('}');
            if defect == Some(BadJson) {
                self.dirty.break_json(&mut line);
            }
            let d = self.drops.of(ts);
            self.events[d].record(&line)?;
            self.events_written += 1;
            if self.chunk == 0 && self.events_written == 5 {
                // Blank lines are not records; the ingest must skip them.
                self.events[d].raw(b"\n  \n")?;
            }
            if defect.is_some() {
                self.tally.events.rejected += 1;
            } else {
                self.tally.events.accepted += 1;
            }
        }
        Ok(())
    }

    /// Closes the chunk's files.
    pub(crate) fn finish(self) -> Result<ChunkResult, GenerateError> {
        let mut files = Vec::new();
        let sinks = (self.pos.into_iter().map(|o| o.sink))
            .chain(self.tx.into_iter().map(|o| o.sink))
            .chain(self.web)
            .chain(self.web_updates)
            .chain(self.app)
            .chain(self.events);
        for sink in sinks {
            files.push(sink.finish()?);
        }
        let t = self.tally;
        Ok(ChunkResult {
            crm: self.crm.into_iter().zip(self.crm_records).collect(),
            files,
            outcomes: vec![
                ("crm", t.crm),
                ("pos", t.pos),
                ("web", t.web),
                ("app", t.app),
                ("transactions", t.tx),
                ("events", t.events),
            ],
            bad: self.dirty.counts,
            prospects: 0,
            guests: 0,
            consolidated: self.consolidated,
            conflicts: self.crm_keys.values().filter(|&&n| n >= 2).count() as u64,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn civil_matches_chrono() {
        for secs in [
            0i64,
            951_782_400,
            1_709_260_500,
            1_735_689_599,
            -788_918_400,
            4_102_444_800,
        ] {
            let want = chrono::DateTime::from_timestamp(secs, 0)
                .unwrap()
                .format("%Y-%m-%d %H:%M:%S")
                .to_string();
            assert_eq!(fmt_local(secs), want);
        }
        assert_eq!(fmt_rfc3339(1_709_260_500, 480), "2024-03-01T10:35:00+08:00");
        assert_eq!(
            fmt_rfc3339(1_709_260_500, -300),
            "2024-02-29T21:35:00-05:00"
        );
    }

    #[test]
    fn money_text() {
        assert_eq!(fmt_money(1250, 2), "12.50");
        assert_eq!(fmt_money(-5, 2), "-0.05");
        assert_eq!(fmt_money(1234, 0), "1234");
    }
}
