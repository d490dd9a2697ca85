//! The customers step: one row per CRM customer and per guest, with
//! `first_seen` and `channels` from the consolidated transactions. The
//! drop's CRM customers and every guest are made here; the stored CRM
//! customers the drop left alone are carried over from the stored files as
//! the new ones are written ([`Customers::fate`]), so they are never held.

use chrono::NaiveDate;
use rayon::prelude::*;
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use cvm_shared::Channel;

use super::identities::LatestCrm;
use super::transactions::Txns;
use crate::consolidate::identity::Guests;
use crate::warehouse::CustomerRow;
use crate::warehouse::customers::Fate;

/// The customers of the version being written.
pub(super) struct Customers<'t> {
    /// The drop's CRM customers and every guest, sorted by id.
    pub rows: Vec<CustomerRow>,
    /// How many stored CRM customers are carried over.
    pub carried: usize,
    /// Each customer's earliest transaction time and channels (a bit per
    /// `Channel::ALL`), from what its key sets' rows add up to.
    seen: HashMap<&'t str, (i64, u8)>,
    /// The customers whose transactions changed, when tracked: only their
    /// stored rows can change (`first_seen`, `channels`).
    changed: Option<&'t HashSet<Box<str>>>,
}

impl Customers<'_> {
    /// How many customers the version has.
    pub fn len(&self) -> usize {
        self.rows.len() + self.carried
    }

    /// What becomes of a stored customer's row: a guest's is dropped
    /// (guests are formed anew every run, and are all in `rows`); a CRM
    /// customer's is updated when its transactions changed (or when changes
    /// are not tracked), else kept as stored.
    pub fn fate(&self, id: &str, is_guest: bool) -> Fate {
        match (is_guest, self.changed) {
            (true, _) => Fate::Drop,
            (false, Some(changed)) if !changed.contains(id) => Fate::Keep,
            (false, _) => Fate::Update,
        }
    }

    /// Makes a stored CRM customer's row this version's: `first_seen` and
    /// `channels` from tonight's transactions.
    pub fn update(&self, row: &mut CustomerRow) {
        let (first_txn, mask) = self.seen(&row.customer_id);
        row.first_seen = first_seen(first_txn, row.signup_date);
        row.channels = channels(mask);
    }

    fn seen(&self, id: &str) -> (i64, u8) {
        self.seen.get(id).copied().unwrap_or((i64::MAX, 0))
    }
}

/// The drop's CRM customers (taking their strings) plus guests, with
/// `first_seen` and `channels` from the history: from what each key set's
/// rows add up to (kept in the key set table, so no row is read for them),
/// per customer.
pub(super) fn build<'t>(
    crm: LatestCrm,
    guests: &Guests,
    txns: &'t Txns,
    changed: Option<&'t HashSet<Box<str>>>,
) -> Customers<'t> {
    let carried = crm.stored.len();
    // The stored CRM customers are needed no longer: their rows are carried
    // over from the files.
    drop(crm.stored);
    let sets = &txns.keysets;
    // Only the rows made here need what their key sets add up to: the
    // drop's CRM customers', every guest's, and those of the stored CRM
    // customers whose transactions changed. A stored CRM customer's other
    // key sets (most of a million) are passed over in parallel, unhashed
    // into the map.
    let made: Option<HashSet<&str>> = changed.map(|changed| {
        let drop_crm = crm.records.iter().map(|c| &*c.customer_id);
        changed.iter().map(|id| &**id).chain(drop_crm).collect()
    });
    let picked: Vec<(&str, u32)> = (0..sets.len() as u32)
        .into_par_iter()
        .filter_map(|k| {
            let id = sets.customer(k).filter(|_| sets.rows(k).rows > 0)?;
            let wanted = match &made {
                Some(made) => !sets.crm(k) || made.contains(id),
                None => true,
            };
            wanted.then_some((id, k))
        })
        .collect();
    drop(made);
    let mut seen: HashMap<&str, (i64, u8)> =
        HashMap::with_capacity_and_hasher(picked.len(), Default::default());
    for (id, k) in picked {
        let r = sets.rows(k);
        let e = seen.entry(id).or_insert((i64::MAX, 0));
        e.0 = e.0.min(r.first_at);
        e.1 |= r.channels;
    }
    let seen_of = |id: &str| seen.get(id).copied().unwrap_or((i64::MAX, 0));
    let mut rows: Vec<CustomerRow> = Vec::with_capacity(crm.records.len() + guests.list.len());
    rows.extend(crm.records.into_iter().map(|c| {
        let (first_txn, mask) = seen_of(&c.customer_id);
        CustomerRow {
            first_seen: first_seen(first_txn, c.signup_date),
            channels: channels(mask),
            customer_id: c.customer_id,
            is_guest: false,
            email: c.email,
            phone: c.phone,
            first_name: c.first_name,
            last_name: c.last_name,
            country: c.country,
            signup_date: c.signup_date,
            birth_date: c.birth_date,
            email_opt_in: c.email_opt_in,
            updated_at: c.updated_at,
        }
    }));
    rows.extend(guests.list.iter().map(|g| {
        let (first_txn, mask) = seen_of(&g.id);
        CustomerRow {
            customer_id: g.id.clone(),
            is_guest: true,
            email: g.email.clone(),
            phone: g.phone.clone(),
            first_name: None,
            last_name: None,
            country: None,
            signup_date: None,
            birth_date: None,
            email_opt_in: false,
            updated_at: None,
            first_seen: Some(first_txn).filter(|t| *t != i64::MAX),
            channels: channels(mask),
        }
    }));
    rows.par_sort_unstable_by(|a, b| a.customer_id.cmp(&b.customer_id));
    Customers {
        rows,
        carried,
        seen,
        changed,
    }
}

/// A CRM customer's `first_seen`: the earlier of its first transaction
/// (`i64::MAX` for none) and its signup day.
fn first_seen(first_txn: i64, signup: Option<NaiveDate>) -> Option<i64> {
    let signup = signup
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_micros());
    [Some(first_txn).filter(|t| *t != i64::MAX), signup]
        .into_iter()
        .flatten()
        .min()
}

/// The channels of a mask of bits (`Channel::ALL`'s order).
fn channels(mask: u8) -> Vec<Channel> {
    Channel::ALL
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, c)| *c)
        .collect()
}
