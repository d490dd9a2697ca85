//! The customers step: one row per CRM customer and per guest, with
//! `first_seen` and `channels` from the consolidated transactions.

use rayon::prelude::*;
use rustc_hash::FxHashMap as HashMap;

use cvm_shared::Channel;

use super::transactions::Txns;
use crate::consolidate::identity::Guests;
use crate::record::CrmRecord;
use crate::warehouse::CustomerRow;

/// CRM customers (taking their strings) plus guests, with `first_seen` and
/// `channels` from the history: from what each key set's rows add up to
/// (kept in the key set table, so no row is read for them), per customer.
pub(super) fn build(crm: Vec<CrmRecord>, guests: &Guests, txns: &Txns) -> Vec<CustomerRow> {
    let mut seen: HashMap<&str, (i64, u8)> =
        HashMap::with_capacity_and_hasher(crm.len() + guests.list.len(), Default::default());
    let sets = &txns.keysets;
    for (id, r) in sets.customers().iter().zip(sets.all_rows()) {
        if let Some(id) = id.as_deref().filter(|_| r.rows > 0) {
            let e = seen.entry(id).or_insert((i64::MAX, 0));
            e.0 = e.0.min(r.first_at);
            e.1 |= r.channels;
        }
    }
    let channels = |mask: u8| {
        Channel::ALL
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, c)| *c)
            .collect()
    };
    let mut out: Vec<CustomerRow> = Vec::with_capacity(crm.len() + guests.list.len());
    out.extend(crm.into_iter().map(|c| {
        let (first_txn, mask) = seen.get(&*c.customer_id).copied().unwrap_or((i64::MAX, 0));
        let signup = c
            .signup_date
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc().timestamp_micros());
        let first_seen = [Some(first_txn).filter(|t| *t != i64::MAX), signup]
            .into_iter()
            .flatten()
            .min();
        CustomerRow {
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
            first_seen,
            channels: channels(mask),
        }
    }));
    out.extend(guests.list.iter().map(|g| {
        let (first_txn, mask) = seen.get(&*g.id).copied().unwrap_or((i64::MAX, 0));
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
    out.par_sort_unstable_by(|a, b| a.customer_id.cmp(&b.customer_id));
    out
}
