//! The typed records every source produces, and the outcome every input record
//! ends in. Sources turn raw rows into these; the pipeline never looks at a
//! source's raw format again.

use std::fmt;

use chrono::NaiveDate;
use cvm_shared::{Amount, BaseAmount, Channel, Currency, Rate, TxnKind};

use crate::text_rows::TextRows;

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
    /// A record of a person erased on request (the erasure ledger), dropped
    /// on arrival; not counted toward the reject limit.
    Erased,
}

/// Where a record was read: index of its file in the run's file list and the
/// 1-based physical line on which it starts. Ordered as read. Both in one
/// u64 (every record of a drop carries one): the file in the high
/// [`Pos::FILE_BITS`] bits, the line in the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Pos(u64);

impl Pos {
    /// Bits of the file index: a drop holds at most 2^20 (1,048,576) files
    /// (checked when it is discovered).
    pub const FILE_BITS: u32 = 20;
    /// Bits of the line: 2^44 lines, some 17 trillion, more than any file
    /// a disk holds; a later line counts as the last.
    const LINE_BITS: u32 = 64 - Pos::FILE_BITS;
    const LINES: u64 = (1 << Pos::LINE_BITS) - 1;

    /// Line `line` of file `file` (an index below 2^[`Pos::FILE_BITS`]).
    pub fn new(file: u32, line: u64) -> Pos {
        debug_assert!(u64::from(file) < 1 << Pos::FILE_BITS);
        Pos((u64::from(file) << Pos::LINE_BITS) | line.min(Pos::LINES))
    }

    /// Index into the run's sorted file list.
    pub fn file(self) -> u32 {
        (self.0 >> Pos::LINE_BITS) as u32
    }

    /// 1-based physical line where the record starts.
    pub fn line(self) -> u64 {
        self.0 & Pos::LINES
    }
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

    /// Owned copies of borrowed keys.
    pub fn from_refs([customer_id, email, phone]: KeyRefs<'_>) -> Keys {
        Keys {
            customer_id: customer_id.map(Into::into),
            email: email.map(Into::into),
            phone: phone.map(Into::into),
        }
    }

    /// Customer id, email and phone, borrowed.
    pub fn refs(&self) -> KeyRefs<'_> {
        [
            self.customer_id.as_deref(),
            self.email.as_deref(),
            self.phone.as_deref(),
        ]
    }
}

/// A record's keys borrowed: customer id, email and phone (as in [`Keys`]).
pub type KeyRefs<'a> = [Option<&'a str>; 3];

/// One consolidated transaction, before identity resolution. Its ids are not
/// stored: they derive from the key of the record it came from (see
/// [`TxnIds`]), which saves three strings a row on the largest dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnRow {
    /// Where its transaction, source and order ids come from.
    pub ids: TxnIds,
    /// Channel it came from.
    pub channel: Channel,
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

/// How a row's ids derive from its record key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnIds {
    /// A record with an id of its own, keyed `<channel>:<id>` (`pos:R1`,
    /// `app:A-77`, `web:W-1001`): the transaction id is the key (plus
    /// `:refund` for a refunded order's refund), the source id is `<id>`,
    /// and a web order's order id is `<id>` too.
    Keyed {
        /// The refund row of a refunded web order.
        refund: bool,
    },
    /// A generic transaction: `tx:<hash>` (16 hex digits of the stable hash
    /// of its numbered key); its `order_id`, if any, is also its source id.
    Generic {
        /// The stable hash of the numbered record key.
        hash: u64,
        /// The order reference given.
        order_id: Option<Box<str>>,
    },
}

/// A transaction id, built from its parts without allocating; compares and
/// prints as the text it stands for.
#[derive(Debug, Clone, Copy)]
pub struct TxnId<'a> {
    head: &'a str,
    tail: IdTail,
}

#[derive(Debug, Clone, Copy)]
enum IdTail {
    None,
    Refund,
    /// A generic id's hash, printed as 16 lower-case hex digits.
    Hash(u64),
}

/// 16 lower-case hex digits of `h`: fixed width, so they sort as `h` does
/// (the form of generic transaction and event ids).
pub fn hex16(h: u64) -> [u8; 16] {
    let mut hex = [0u8; 16];
    for (i, b) in hex.iter_mut().enumerate() {
        *b = b"0123456789abcdef"[((h >> (60 - 4 * i)) & 0xf) as usize];
    }
    hex
}

impl<'a> TxnId<'a> {
    /// The tail's text: up to 16 bytes, and how many.
    fn tail(&self) -> ([u8; 16], usize) {
        let mut out = [0u8; 16];
        let text: &[u8] = match &self.tail {
            IdTail::None => b"",
            IdTail::Refund => b":refund",
            IdTail::Hash(h) => return (hex16(*h), 16),
        };
        out[..text.len()].copy_from_slice(text);
        (out, text.len())
    }

    fn bytes(&self) -> impl Iterator<Item = u8> + '_ {
        let (tail, len) = self.tail();
        self.head.bytes().chain(tail.into_iter().take(len))
    }

    /// True when the id is `text`.
    pub fn is(&self, text: &str) -> bool {
        self.bytes().eq(text.bytes())
    }
}

impl fmt::Display for TxnId<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.head)?;
        // The tail is ASCII by construction.
        let (tail, len) = self.tail();
        f.write_str(std::str::from_utf8(&tail[..len]).map_err(|_| fmt::Error)?)
    }
}

impl PartialEq for TxnId<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for TxnId<'_> {}

impl PartialOrd for TxnId<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for TxnId<'_> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // Two generic ids (same head, fixed-width hex) order as their hashes:
        // the common case of sorting a day's generic transactions, unprinted.
        if let (IdTail::Hash(a), IdTail::Hash(b)) = (&self.tail, &other.tail)
            && self.head == other.head
        {
            return a.cmp(b);
        }
        self.bytes().cmp(other.bytes())
    }
}

/// The prefix of a generic transaction's id.
const GENERIC_PREFIX: &str = "tx:";

impl TxnRow {
    /// The transaction id of this row of the record keyed `record_key`.
    pub fn transaction_id<'a>(&self, record_key: &'a str) -> TxnId<'a> {
        match &self.ids {
            TxnIds::Keyed { refund } => TxnId {
                head: record_key,
                tail: if *refund {
                    IdTail::Refund
                } else {
                    IdTail::None
                },
            },
            TxnIds::Generic { hash, .. } => TxnId {
                head: GENERIC_PREFIX,
                tail: IdTail::Hash(*hash),
            },
        }
    }

    /// The record's id in its source system, if it has one.
    pub fn source_id<'a>(&'a self, record_key: &'a str) -> Option<&'a str> {
        match &self.ids {
            // The prefix is a few ASCII letters: a byte scan beats a str search.
            TxnIds::Keyed { .. } => {
                let colon = record_key.bytes().position(|b| b == b':')?;
                record_key.get(colon + 1..)
            }
            TxnIds::Generic { order_id, .. } => order_id.as_deref(),
        }
    }

    /// The order reference, when the source has one (web orders, generic `order_id`).
    pub fn order_id<'a>(&'a self, record_key: &'a str) -> Option<&'a str> {
        match &self.ids {
            TxnIds::Keyed { .. } if self.channel == Channel::Web => self.source_id(record_key),
            TxnIds::Keyed { .. } => None,
            TxnIds::Generic { order_id, .. } => order_id.as_deref(),
        }
    }
}

/// A transaction-bearing record: no row (ignored by rule), one row, or a
/// refunded web order's purchase plus the refund made at `refunded_at`.
/// Sources give its [`Keys`]; once read, a drop's records name their key
/// set by index instead (`TxnRecord<u32>`), each distinct key set held once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnRecord<K = Keys> {
    /// Who it belongs to; empty for anonymous records.
    pub keys: K,
    /// The transaction it yields when it wins; `None` when this version, if
    /// it wins, is ignored by rule (cancelled, pending).
    pub row: Option<TxnRow>,
    /// When the purchase in `row` was refunded in full (refunded web orders).
    pub refunded_at: OptTime,
}

impl<K> TxnRecord<K> {
    /// The same record with its keys replaced by `f`'s value of them.
    pub fn map_keys<L>(self, f: impl FnOnce(K) -> L) -> TxnRecord<L> {
        TxnRecord {
            keys: f(self.keys),
            row: self.row,
            refunded_at: self.refunded_at,
        }
    }

    /// True when this version, if it wins, is ignored by rule.
    pub fn ignored(&self) -> bool {
        self.row.is_none()
    }

    /// How many consolidated transactions it yields.
    pub fn row_count(&self) -> usize {
        match (&self.row, self.refunded_at.get()) {
            (None, _) => 0,
            (Some(_), None) => 1,
            (Some(_), Some(_)) => 2,
        }
    }

    /// Its keys and the consolidated transactions it yields, moved out, in
    /// order: the row, then its refund.
    pub fn into_rows(self) -> (K, impl Iterator<Item = TxnRow>) {
        let refund = self.row.as_ref().zip(self.refunded_at.get()).map(refund_of);
        (self.keys, self.row.into_iter().chain(refund))
    }
}

/// The full refund, at `at`, of a purchase.
fn refund_of((purchase, at): (&TxnRow, i64)) -> TxnRow {
    TxnRow {
        ids: TxnIds::Keyed { refund: true },
        occurred_at: at,
        amount_original: -purchase.amount_original,
        amount_base: -purchase.amount_base,
        kind: TxnKind::Refund,
        ..purchase.clone()
    }
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

impl CrmRecord {
    /// What identity resolution needs of it.
    pub fn identity(&self) -> CrmIdentity<'_> {
        CrmIdentity {
            customer_id: &self.customer_id,
            email: self.email.as_deref(),
            phone: self.phone.as_deref(),
            updated_at: self.updated_at,
        }
    }
}

/// What identity resolution needs of a CRM customer, borrowed: its id, the
/// keys it claims and when its record last changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrmIdentity<'a> {
    /// The golden customer id.
    pub customer_id: &'a str,
    /// Normalised email.
    pub email: Option<&'a str>,
    /// Phone in E.164.
    pub phone: Option<&'a str>,
    /// When the record last changed (microseconds, UTC).
    pub updated_at: Option<i64>,
}

/// The stored CRM customers as a run holds them: each one's
/// [`CrmIdentity`], its strings in one block of text ([`TextRows`]: a
/// million customers' ids, emails and phones cost about half what owned
/// strings do). The rest of their rows stays in the stored `customers/`
/// files, which the run carries over as it writes its own.
#[derive(Debug, Default)]
pub struct CrmIdentities {
    /// Each one's id, email and phone.
    text: TextRows<3>,
    /// Each one's `updated_at`.
    updated_at: Vec<OptTime>,
    /// Which ones are removed.
    removed: Vec<bool>,
    removed_count: usize,
}

impl CrmIdentities {
    /// Adds one.
    pub fn push(&mut self, c: CrmIdentity<'_>) {
        self.text.push([Some(c.customer_id), c.email, c.phone]);
        self.updated_at.push(OptTime::new(c.updated_at));
        self.removed.push(false);
    }

    /// How many, removed ones left out.
    pub fn len(&self) -> usize {
        self.text.len() - self.removed_count
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many slots: the ones held and the removed ones.
    pub fn slots(&self) -> usize {
        self.text.len()
    }

    /// The one in slot `i` (below [`CrmIdentities::slots`]), unless removed.
    pub fn slot(&self, i: usize) -> Option<CrmIdentity<'_>> {
        (!self.removed[i]).then(|| self.get(i))
    }

    fn get(&self, i: usize) -> CrmIdentity<'_> {
        let [id, email, phone] = self.text.get(i);
        CrmIdentity {
            customer_id: id.unwrap_or_default(),
            email,
            phone,
            updated_at: self.updated_at[i].get(),
        }
    }

    /// Every one not removed, in the order added.
    pub fn iter(&self) -> impl Iterator<Item = CrmIdentity<'_>> + Clone {
        (0..self.text.len())
            .filter(|&i| !self.removed[i])
            .map(|i| self.get(i))
    }

    /// Removes the ones whose id `remove` picks; returns them.
    pub fn remove_where(&mut self, remove: impl Fn(&str) -> bool) -> CrmIdentities {
        let mut out = CrmIdentities::default();
        for i in 0..self.text.len() {
            let c = self.get(i);
            if !self.removed[i] && remove(c.customer_id) {
                out.push(c);
                self.removed[i] = true;
            }
        }
        self.removed_count += out.len();
        out
    }
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

impl<T: Numbering> Versioned<T> {
    /// True for records with no id of their own (see [`Numbering`]).
    pub fn numbered(&self) -> bool {
        self.body.numbered()
    }
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

/// An optional time (microseconds since the Unix epoch, UTC) in 8 bytes,
/// where `Option<i64>` takes 16: `i64::MIN`, hundreds of thousands of years
/// before any time a source accepts, stands for none. Orders as
/// `Option<i64>` does, none first. Millions of records carry two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OptTime(i64);

impl OptTime {
    /// No time.
    pub const NONE: OptTime = OptTime(i64::MIN);

    /// `t`, or none. `Some(i64::MIN)`, which no source makes, becomes the
    /// earliest time there is, still after none.
    pub fn new(t: Option<i64>) -> OptTime {
        match t {
            Some(t) => OptTime(t.max(i64::MIN + 1)),
            None => OptTime::NONE,
        }
    }

    /// The time, if any.
    pub fn get(self) -> Option<i64> {
        (self != OptTime::NONE).then_some(self.0)
    }
}

impl From<Option<i64>> for OptTime {
    fn from(t: Option<i64>) -> OptTime {
        OptTime::new(t)
    }
}

/// A source record's key (`web:W-1001`, `tx:<16 hex digits>#n`): held
/// inline up to 24 bytes, which every key the sources make fits, so the
/// millions of records of a large drop or history allocate nothing for it.
pub type RecordKey = compact_str::CompactString;

/// Whether a record has an id of its own, or is numbered: keyed by its
/// content and its occurrence in its file (`#n`), so identical rows stay
/// distinct records (generic transactions, events).
pub trait Numbering {
    /// True for a numbered record.
    fn numbered(&self) -> bool;
}

impl<K> Numbering for TxnRecord<K> {
    /// Generic transactions, the numbered ones, are the rows with generic ids.
    fn numbered(&self) -> bool {
        matches!(
            self.row,
            Some(TxnRow {
                ids: TxnIds::Generic { .. },
                ..
            })
        )
    }
}

impl Numbering for CrmRecord {
    fn numbered(&self) -> bool {
        false
    }
}

impl Numbering for EventRecord {
    fn numbered(&self) -> bool {
        true
    }
}

/// A record that may have other versions under the same key; the latest wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    /// Identity of the record across versions, files and runs (`web:W-1001`).
    /// When `numbered` is set, the pipeline appends `#n`, n counting identical
    /// keys within the file, so identical rows stay distinct records.
    pub key: RecordKey,
    /// The version order (e.g. `updated_at` in microseconds); `None` sorts first.
    pub version: OptTime,
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn row(ids: TxnIds) -> TxnRow {
        TxnRow {
            ids,
            channel: Channel::Web,
            occurred_at: 0,
            amount_original: Amount(0),
            currency: Currency::parse("USD").unwrap(),
            amount_base: BaseAmount(0),
            kind: TxnKind::Purchase,
        }
    }

    #[test]
    fn ids_derive_from_the_record_key() {
        let refund = row(TxnIds::Keyed { refund: true });
        assert_eq!(
            refund.transaction_id("web:W:1").to_string(),
            "web:W:1:refund"
        );
        assert_eq!(refund.source_id("web:W:1"), Some("W:1"));
        assert_eq!(refund.order_id("web:W:1"), Some("W:1"));
        let generic = row(TxnIds::Generic {
            hash: 0x0123_4567_89ab_cdef,
            order_id: None,
        });
        assert_eq!(
            generic.transaction_id("tx:ffff#1").to_string(),
            "tx:0123456789abcdef"
        );
        assert_eq!(generic.source_id("tx:ffff#1"), None);
    }

    fn ids() -> impl Strategy<Value = (String, TxnIds)> {
        prop_oneof![
            ("(pos|web):[a-c:]{0,4}", any::<bool>())
                .prop_map(|(k, refund)| (k, TxnIds::Keyed { refund })),
            any::<u64>().prop_map(|hash| (
                "tx:k#1".to_string(),
                TxnIds::Generic {
                    hash,
                    order_id: None
                }
            )),
        ]
    }

    #[test]
    fn records_and_rows_fit_their_memory_budget() {
        // A drop of millions of transactions is held as records between
        // the read and the consolidation, and as rows after it: each byte
        // here is 12 MB on the 12.3M-row benchmark drop. Keys are inline,
        // key sets and files an index.
        assert!(std::mem::size_of::<Versioned<TxnRecord<u32>>>() <= 144);
        assert!(std::mem::size_of::<crate::warehouse::StoredTxn>() <= 112);
        assert_eq!(std::mem::size_of::<OptTime>(), 8);
    }

    proptest! {
        #[test]
        fn positions_order_as_file_then_line(
            a in (0u32..1 << Pos::FILE_BITS, 1u64..1 << 44),
            b in (0u32..1 << Pos::FILE_BITS, 1u64..1 << 44),
        ) {
            let (pa, pb) = (Pos::new(a.0, a.1), Pos::new(b.0, b.1));
            prop_assert_eq!((pa.file(), pa.line()), a);
            prop_assert_eq!(pa.cmp(&pb), a.cmp(&b));
        }

        #[test]
        fn optional_times_order_as_options(a in any::<Option<i64>>(), b in any::<Option<i64>>()) {
            let (a, b) = (a.filter(|t| *t != i64::MIN), b.filter(|t| *t != i64::MIN));
            prop_assert_eq!(OptTime::new(a).cmp(&OptTime::new(b)), a.cmp(&b));
            prop_assert_eq!(OptTime::new(a).get(), a);
        }

        #[test]
        fn transaction_ids_order_as_their_text((ka, a) in ids(), (kb, b) in ids()) {
            let (a, b) = (row(a), row(b));
            let (ia, ib) = (a.transaction_id(&ka), b.transaction_id(&kb));
            prop_assert_eq!(ia.cmp(&ib), ia.to_string().cmp(&ib.to_string()));
            prop_assert!(ia.is(&ia.to_string()));
            prop_assert_eq!(ia.is(&ib.to_string()), ia.to_string() == ib.to_string());
        }
    }
}
