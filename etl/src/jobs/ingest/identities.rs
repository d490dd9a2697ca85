//! The identities step: the latest CRM records (stored ones the drop did not
//! replace, plus the drop's winners), the directory of keys they and their
//! superseded versions claim, and the guests formed by the keys no CRM
//! record claims. Resolution runs over the whole history, so a CRM record
//! arriving tonight claims a guest's earlier purchases.

use rayon::prelude::*;
use rustc_hash::FxHashSet as HashSet;

use super::touched::Touched;
use super::transactions::Txns;
use crate::consolidate::identity::{self, Directory, Guests, KeyClaim, Latest};
use crate::consolidate::versions::{RecordState, Resolution, RowMonths};
use crate::memory::release_freed;
use crate::record::{CrmIdentities, CrmRecord, KeyRefs};

/// The latest CRM records: the stored ones the drop leaves alone, and the
/// drop's; and the stored ones the drop replaced.
pub(super) struct LatestCrm {
    /// Stored CRM customers the drop leaves alone (their rows are carried
    /// over from the stored files as the customers are written).
    pub stored: CrmIdentities,
    /// The drop's winners, one record per CRM customer, owning its strings.
    pub records: Vec<CrmRecord>,
    /// Stored CRM customers whose record the drop replaced.
    pub replaced: CrmIdentities,
}

impl LatestCrm {
    /// How many CRM customers.
    pub fn len(&self) -> usize {
        self.stored.len() + self.records.len()
    }
}

/// The stored CRM customers the drop leaves alone, plus the drop's winners
/// (whose record state is pushed onto `state` as they are moved).
pub(super) fn latest_crm(
    mut stored: CrmIdentities,
    winners: Resolution<CrmRecord>,
    state: &mut Vec<RecordState>,
) -> LatestCrm {
    // CRM record keys are `crm:<customer id>` (see `sources::crm`): compared
    // by id, so no key is built for each of a million stored customers.
    let crm_replaced: HashSet<&str> = winners
        .replaced
        .iter()
        .filter_map(|k| k.strip_prefix("crm:"))
        .collect();
    let replaced = stored.remove_where(|id| crm_replaced.contains(id));
    drop(crm_replaced);
    let mut records: Vec<CrmRecord> = Vec::with_capacity(winners.winner_count());
    for w in winners.winners.into_iter().flatten() {
        // A CRM record's key is needed only here: moved, not cloned.
        state.push(RecordState {
            key: w.key,
            version: w.version.get(),
            digest: w.digest,
            months: RowMonths::EMPTY,
        });
        records.push(w.body);
    }
    release_freed();
    LatestCrm {
        stored,
        records,
        replaced,
    }
}

/// The key directory of the latest records, with the stored key history and
/// the keys of every version superseded tonight: the stored latest records
/// the drop replaced, and the drop's own superseded versions.
pub(super) fn directory<'a>(
    latest: &'a LatestCrm,
    history: &'a [KeyClaim],
    superseded: &'a [CrmRecord],
) -> Directory<'a> {
    let superseded_claims = latest
        .replaced
        .iter()
        .flat_map(identity::identity_claims)
        .chain(superseded.iter().flat_map(identity::crm_claims));
    let latest = Latest::new(&latest.stored, &latest.records);
    Directory::with_history(latest, history, superseded_claims)
}

/// The keys whose CRM owner may change tonight: every key of the CRM
/// records the drop adds, of the stored ones they replace, and of its own
/// superseded versions. A key set none of whose keys is here keeps the CRM
/// customer it had (the directory changes only at these keys).
pub(super) struct DirtyKeys<'a> {
    ids: HashSet<&'a str>,
    emails: HashSet<&'a str>,
    phones: HashSet<&'a str>,
}

impl DirtyKeys<'_> {
    /// Whether any of `keys` is one.
    pub(super) fn touch(&self, [id, email, phone]: KeyRefs<'_>) -> bool {
        id.is_some_and(|k| self.ids.contains(k))
            || email.is_some_and(|k| self.emails.contains(k))
            || phone.is_some_and(|k| self.phones.contains(k))
    }
}

/// The [`DirtyKeys`] of tonight's CRM records.
pub(super) fn dirty_keys<'a>(latest: &'a LatestCrm, superseded: &'a [CrmRecord]) -> DirtyKeys<'a> {
    let mut d = DirtyKeys {
        ids: HashSet::default(),
        emails: HashSet::default(),
        phones: HashSet::default(),
    };
    let records = latest
        .records
        .iter()
        .chain(superseded)
        .map(CrmRecord::identity);
    for r in records.chain(latest.replaced.iter()) {
        d.ids.insert(r.customer_id);
        d.emails.extend(r.email);
        d.phones.extend(r.phone);
    }
    d
}

/// Forms the guests from the keys no CRM record claims, and names every
/// key set's customer: its CRM customer, else its guest. Resolution runs
/// once per key set, not per row, and not at all for a key set known to be
/// a CRM customer's none of whose keys is `dirty`. The customers a key set
/// leaves or joins, the customer of every key set the drop added rows to,
/// and the months of the rows held that move, are touched (tracked when
/// `track`). Returns the key sets that changed customer too, by index (when
/// tracked).
pub(super) fn assign(
    txns: &mut Txns,
    directory: &Directory<'_>,
    dirty: &DirtyKeys<'_>,
    track: bool,
) -> (Guests, Touched, Vec<bool>) {
    let sets = &txns.keysets;
    let used = &txns.used;
    // How each key set is named: kept as it is (known to be a CRM
    // customer's, none of whose keys changed owner), by its CRM customer,
    // by its guest (no CRM customer), or none (no row, or no key).
    const KEPT: u8 = 0;
    const CRM: u8 = 1;
    const GUEST: u8 = 2;
    const NONE: u8 = 3;
    let how: Vec<u8> = (0..sets.len() as u32)
        .into_par_iter()
        .map(|k| {
            let keys = sets.keys(k);
            if !used[k as usize] || sets.is_anonymous(k) {
                NONE
            } else if sets.crm(k) && !dirty.touch(keys) {
                KEPT
            } else if directory.resolve_refs(keys).is_some() {
                CRM
            } else {
                GUEST
            }
        })
        .collect();
    let guests = Guests::build(
        (0..sets.len() as u32)
            .filter(|&k| how[k as usize] == GUEST)
            .map(|k| sets.keys(k)),
    );
    // Borrowed: a key set's customer is copied only when it changes (a few
    // hundred a night, of over a million key sets), and only those are
    // kept (one entry a key set was 24 bytes, 290 MB over 12M key sets).
    // Whether it changes is found in parallel too: compared on one thread,
    // the names took a tenth of a second.
    let changes: Vec<(u32, Option<&str>)> = (0..sets.len() as u32)
        .into_par_iter()
        .filter_map(|k| {
            let named = match how[k as usize] {
                KEPT => return None,
                CRM => directory.resolve_refs(sets.keys(k)),
                GUEST => guests.resolve_refs(sets.keys(k)).map(|g| &*g.id),
                _ => None,
            };
            (named != sets.customer(k)).then_some((k, named))
        })
        .collect();
    for (k, &how) in how.iter().enumerate() {
        if how != KEPT {
            txns.keysets.set_crm(k as u32, how == CRM);
        }
    }
    drop(how);
    let mut touched = Touched::tracking(track);
    let tracked = touched.tracked();
    let mut moved = vec![false; if tracked { txns.keysets.len() } else { 0 }];
    let mut any_moved = false;
    let stored_sets = txns.stored_sets;
    if tracked {
        // The customer of every key set the drop added rows to that keeps it.
        let mut changed = changes.iter().map(|&(k, _)| k as usize).peekable();
        for k in 0..txns.keysets.len() {
            if changed.next_if_eq(&k).is_some() {
                continue;
            }
            if txns.used[k]
                && txns.fresh[k]
                && let Some(id) = txns.keysets.customer(k as u32)
            {
                touched.customer(id);
            }
        }
    }
    for (k, new) in changes {
        let k = k as usize;
        let old = txns.keysets.customer(k as u32);
        if tracked && txns.used[k] {
            if k < stored_sets {
                for end in [old, new].into_iter().flatten() {
                    touched.altered(end);
                }
            } else if let Some(id) = new {
                // A key set new tonight: its rows are all added.
                touched.customer(id);
            }
            moved[k] = true;
            any_moved = true;
        }
        txns.keysets.set_customer(k as u32, new);
    }
    if any_moved {
        for t in txns.iter().filter(|t| moved[t.keyset as usize]) {
            touched.month(t.row.occurred_at);
        }
    }
    (guests, touched, moved)
}
