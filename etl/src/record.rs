//! The typed records every source produces, and the outcome every input record
//! ends in. Sources turn raw rows into these; the pipeline never looks at a
//! source's raw format again.

use std::fmt;

use chrono::NaiveDate;
use cvm_shared::{Amount, BaseAmount, Channel, Currency, Rate, TxnKind};

/// Stable reason codes for rejected records (written to `rejects.parquet`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// The record's time is unparseable or impossible.
    BadDate,
    /// Unparseable money.
    BadAmount,
    /// A currency with no rate to the base currency.
    UnknownCurrency,
    /// An absent, null or empty record id.
    MissingId,
    /// A JSONL line that is not a JSON object (or has mistyped fields).
    BadJson,
    /// A CSV row whose field count differs from the header.
    BadRow,
    /// A field with a value outside its allowed set (status, kind, boolean, rate, date of birth...).
    BadValue,
    /// Text that is not valid UTF-8.
    BadEncoding,
}

impl RejectReason {
    /// All reasons, in report order.
    pub const ALL: [RejectReason; 8] = [
        RejectReason::BadDate,
        RejectReason::BadAmount,
        RejectReason::UnknownCurrency,
        RejectReason::MissingId,
        RejectReason::BadJson,
        RejectReason::BadRow,
        RejectReason::BadValue,
        RejectReason::BadEncoding,
    ];

    /// The stable code.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::BadDate => "bad_date",
            RejectReason::BadAmount => "bad_amount",
            RejectReason::UnknownCurrency => "unknown_currency",
            RejectReason::MissingId => "missing_id",
            RejectReason::BadJson => "bad_json",
            RejectReason::BadRow => "bad_row",
            RejectReason::BadValue => "bad_value",
            RejectReason::BadEncoding => "bad_encoding",
        }
    }

    /// Parses a stable code back (as written to `rejects.parquet`).
    pub fn parse(code: &str) -> Option<RejectReason> {
        RejectReason::ALL.into_iter().find(|r| r.as_str() == code)
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a record was rejected: the code and a human detail (field and value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// Stable code.
    pub reason: RejectReason,
    /// What was wrong, e.g. `purchased_at "2026-13-01" is not a date`.
    pub detail: String,
}

impl Reject {
    /// A reject with a detail message.
    pub fn new(reason: RejectReason, detail: impl Into<String>) -> Reject {
        Reject {
            reason,
            detail: detail.into(),
        }
    }
}

/// The outcome every input record ends in, exactly one each.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Taken into the warehouse.
    Accepted,
    /// A superseded version of a record (or one already in the warehouse).
    Duplicate,
    /// Dropped by a business rule (void receipts, cancelled or pending orders).
    Ignored,
    /// A transaction with no customer key: kept as revenue, scores no customer.
    Anonymous,
    /// Bad input, written to the run's rejects.
    Rejected,
}

/// Where a record was read: index of its file in the run's file list and the
/// 1-based physical line on which it starts. Ordered as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Pos {
    /// Index into the run's sorted file list.
    pub file: u32,
    /// 1-based physical line where the record starts.
    pub line: u64,
}

/// The keys a transaction or event names its customer by, already normalised
/// (emails lower-cased, phones in E.164).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Keys {
    /// A customer id as given (CRM id, loyalty card, web customer id).
    pub customer_id: Option<Box<str>>,
    /// Normalised email.
    pub email: Option<Box<str>>,
    /// Phone in E.164.
    pub phone: Option<Box<str>>,
}

impl Keys {
    /// True when no key is present (an anonymous record).
    pub fn is_empty(&self) -> bool {
        self.customer_id.is_none() && self.email.is_none() && self.phone.is_none()
    }
}

/// One consolidated transaction, before identity resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnRow {
    /// Unique, stable id: `pos:R1`, `web:W-1001`, `web:W-1001:refund`, `app:A-77`, `tx:<hex>`.
    pub transaction_id: Box<str>,
    /// Channel it came from.
    pub channel: Channel,
    /// The record's id in its source system (receipt, order, txn), if it has one.
    pub source_id: Option<Box<str>>,
    /// Order reference, when the source has one (web orders, generic `order_id`).
    pub order_id: Option<Box<str>>,
    /// When it happened: microseconds since the Unix epoch, UTC.
    pub occurred_at: i64,
    /// Amount in its own currency: >= 0 for purchases, <= 0 for refunds.
    pub amount_original: Amount,
    /// Its currency.
    pub currency: Currency,
    /// Exact `amount_original x rate`.
    pub amount_base: BaseAmount,
    /// Purchase or refund.
    pub kind: TxnKind,
}

/// A transaction-bearing record: zero, one or two rows (a refunded web order is two).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnRecord {
    /// Who it belongs to; empty for anonymous records.
    pub keys: Keys,
    /// The consolidated transactions it yields when it wins.
    pub rows: Vec<TxnRow>,
    /// True when this version, if it wins, is ignored by rule (cancelled, pending).
    pub ignored: bool,
}

/// A CRM master record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrmRecord {
    /// The golden customer id.
    pub customer_id: Box<str>,
    /// Normalised email.
    pub email: Option<Box<str>>,
    /// Phone in E.164.
    pub phone: Option<Box<str>>,
    /// Given name.
    pub first_name: Option<Box<str>>,
    /// Family name.
    pub last_name: Option<Box<str>>,
    /// ISO 3166-1 alpha-2, upper-case.
    pub country: Option<Box<str>>,
    /// Date the customer signed up.
    pub signup_date: Option<NaiveDate>,
    /// Date of birth.
    pub birth_date: Option<NaiveDate>,
    /// Consent to marketing email.
    pub email_opt_in: bool,
    /// When the record last changed (microseconds, UTC).
    pub updated_at: Option<i64>,
}

/// An engagement event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    /// `customer_id` or `email` (phone unused).
    pub keys: Keys,
    /// Free-text event type (`email_open`, `web_visit`, ...).
    pub event_type: Box<str>,
    /// When it happened (microseconds, UTC).
    pub ts: i64,
}

/// The fields of an event line, borrowed from it where possible; keys normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFields<'a> {
    /// Customer id as given, trimmed.
    pub customer_id: Option<std::borrow::Cow<'a, str>>,
    /// Normalised email.
    pub email: Option<std::borrow::Cow<'a, str>>,
    /// Event type, trimmed.
    pub event_type: std::borrow::Cow<'a, str>,
    /// When it happened (microseconds, UTC).
    pub ts: i64,
    /// Content hash of the line.
    pub digest: u64,
}

impl<'a> From<&'a Versioned<EventRecord>> for EventFields<'a> {
    fn from(v: &'a Versioned<EventRecord>) -> Self {
        let borrow = |s: &'a Option<Box<str>>| s.as_deref().map(std::borrow::Cow::Borrowed);
        EventFields {
            customer_id: borrow(&v.body.keys.customer_id),
            email: borrow(&v.body.keys.email),
            event_type: std::borrow::Cow::Borrowed(&v.body.event_type),
            ts: v.body.ts,
            digest: v.digest,
        }
    }
}

/// A record that may have other versions under the same key; the latest wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    /// Identity of the record across versions, files and runs (`web:W-1001`).
    /// When `numbered` is set, the pipeline appends `#n`, n counting identical
    /// keys within the file, so identical rows stay distinct records.
    pub key: Box<str>,
    /// True for records with no id of their own (generic transactions, events).
    pub numbered: bool,
    /// The version order (e.g. `updated_at` in microseconds); `None` sorts first.
    pub version: Option<i64>,
    /// Hash of the record's content, to tell a re-delivery of the same version.
    pub digest: u64,
    /// Where it was read (the tie-breaker: later wins).
    pub pos: Pos,
    /// The record.
    pub body: T,
}

/// What a source makes of one input record.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// A purchase/refund-bearing record.
    Txn(Versioned<TxnRecord>),
    /// A CRM record.
    Crm(Versioned<CrmRecord>),
    /// An engagement event.
    Event(Versioned<EventRecord>),
    /// A currency rate row.
    Fx(Currency, Rate),
    /// Dropped by a business rule with no versioning (POS void).
    Ignored,
    /// Bad input.
    Rejected(Reject),
}
