//! Identity resolution: CRM records are the golden identities; every other
//! key (loyalty card, email, phone) maps to the CRM customer that carries it,
//! and keys that match no CRM record form guest customers.
//!
//! Guests: keys seen together on one transaction belong to one guest (union
//! find), so a guest who paid once by email and once by email + phone is one
//! customer. A guest keeps a given customer id if it has one (the smallest);
//! otherwise its id is derived from its smallest key, so the same guest gets
//! the same id every night.

use std::hash::BuildHasher;

use hashbrown::HashTable;
use rustc_hash::{FxBuildHasher, FxHashMap as HashMap, FxHashSet as HashSet};

use cvm_shared::identity::guest_id;

use crate::record::{CrmIdentities, CrmIdentity, CrmRecord, KeyRefs, Keys};

/// Which customer key a claim is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeyKind {
    /// A normalised email.
    Email,
    /// A phone in E.164.
    Phone,
}

impl KeyKind {
    /// The value of the `kind` column.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Email => "email",
            KeyKind::Phone => "phone",
        }
    }
}

/// A key and the CRM customer it belongs to, as carried by a CRM record at
/// `updated_at`. `S` is `Box<str>` when read, `&str` when written from borrowed rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyClaim<S = Box<str>> {
    /// Email or phone.
    pub kind: KeyKind,
    /// The normalised key.
    pub key: S,
    /// The CRM customer.
    pub customer_id: S,
    /// `updated_at` of the CRM record that carried it (microseconds UTC).
    pub updated_at: Option<i64>,
}

/// A key's owner ranked by the `updated_at` of the record carrying it, then
/// by customer id (for determinism): the greater wins.
type Rank<'a> = (Option<i64>, &'a str);

/// The latest CRM identities, by slot: the stored customers (a removed one's
/// slot holds none), then the run's own records.
#[derive(Debug, Clone, Copy, Default)]
pub struct Latest<'a> {
    stored: Option<&'a CrmIdentities>,
    records: &'a [CrmRecord],
}

impl<'a> Latest<'a> {
    /// The `stored` customers, then the `records`.
    pub fn new(stored: &'a CrmIdentities, records: &'a [CrmRecord]) -> Latest<'a> {
        Latest {
            stored: Some(stored),
            records,
        }
    }

    /// The `records` alone.
    pub fn of_records(records: &'a [CrmRecord]) -> Latest<'a> {
        Latest {
            stored: None,
            records,
        }
    }

    fn stored_slots(&self) -> usize {
        self.stored.map_or(0, CrmIdentities::slots)
    }

    /// How many slots.
    fn slots(&self) -> usize {
        self.stored_slots() + self.records.len()
    }

    /// The identity in slot `i`, unless it is a removed stored one.
    fn slot(&self, i: usize) -> Option<CrmIdentity<'a>> {
        let n = self.stored_slots();
        match self.stored {
            Some(stored) if i < n => stored.slot(i),
            _ => self.records.get(i - n).map(CrmRecord::identity),
        }
    }

    /// The identity in slot `i`, known to hold one.
    fn at(&self, i: u32) -> CrmIdentity<'a> {
        self.slot(i as usize).unwrap_or(CrmIdentity {
            customer_id: "",
            email: None,
            phone: None,
            updated_at: None,
        })
    }

    /// Every identity held, with its slot.
    fn iter(&self) -> impl Iterator<Item = (u32, CrmIdentity<'a>)> + '_ {
        (0..self.slots()).filter_map(|i| self.slot(i).map(|c| (i as u32, c)))
    }
}

/// The hash a [`Directory`] table files a key under.
fn key_hash(key: &str) -> u64 {
    FxBuildHasher.hash_one(key)
}

/// The key of `kind` an identity carries (`None`: its customer id).
fn key_of(c: CrmIdentity<'_>, kind: Option<KeyKind>) -> Option<&str> {
    match kind {
        None => Some(c.customer_id),
        Some(KeyKind::Email) => c.email,
        Some(KeyKind::Phone) => c.phone,
    }
}

/// The slot of the latest identity that owns each key of one kind, found
/// by the key's text in the identity: 4 bytes a key, where a map from the
/// borrowed text to its owner's rank took 56 (over a gigabyte for nine
/// million customers).
#[derive(Debug, Default)]
struct Owners {
    kind: Option<KeyKind>,
    table: HashTable<u32>,
}

impl Owners {
    fn get(&self, latest: &Latest<'_>, key: &str) -> Option<u32> {
        self.table
            .find(key_hash(key), |&i| {
                key_of(latest.at(i), self.kind) == Some(key)
            })
            .copied()
    }
}

/// The golden identities from CRM, borrowing the records' strings (a
/// million customers' ids, emails and phones are not copied).
#[derive(Debug, Default)]
pub struct Directory<'a> {
    latest: Latest<'a>,
    ids: Owners,
    /// Owner of each email the latest records carry.
    by_email: Owners,
    /// Owner of each phone, as `by_email`.
    by_phone: Owners,
    /// Every latest carrier of a key several latest records carry.
    shared: HashSet<SharedKey<'a>>,
    /// Keys of superseded CRM versions: the most recent carrier of each
    /// (a key a latest record carries goes to that record's owner first).
    history: HashMap<(KeyKind, &'a str), Rank<'a>>,
    /// Emails and phones shared by more than one CRM record (counted once each).
    pub conflicts: u64,
    /// Whether the superseded versions added to the stored history.
    pub history_changed: bool,
}

/// The email and phone claims of a CRM record's fields.
pub fn claims_of<'a>(
    customer_id: &'a str,
    email: Option<&'a str>,
    phone: Option<&'a str>,
    updated_at: Option<i64>,
) -> impl Iterator<Item = KeyClaim<&'a str>> {
    [(KeyKind::Email, email), (KeyKind::Phone, phone)]
        .into_iter()
        .filter_map(move |(kind, key)| {
            key.map(|key| KeyClaim {
                kind,
                key,
                customer_id,
                updated_at,
            })
        })
}

/// The email and phone claims of a CRM record.
pub fn crm_claims(r: &CrmRecord) -> impl Iterator<Item = KeyClaim<&str>> {
    identity_claims(r.identity())
}

/// The email and phone claims of a CRM customer.
pub fn identity_claims(r: CrmIdentity<'_>) -> impl Iterator<Item = KeyClaim<&str>> {
    claims_of(r.customer_id, r.email, r.phone, r.updated_at)
}

impl<'a> Directory<'a> {
    /// Builds the directory from the latest CRM records alone.
    pub fn from_crm(records: &'a [CrmRecord]) -> Directory<'a> {
        Directory::with_history(Latest::of_records(records), &[], std::iter::empty())
    }

    /// Builds the directory: a key carried by a latest record goes to the
    /// most recently updated one (then the greater id); any other key to the
    /// customer whose record carried it most recently, from the `stored`
    /// history and this run's `superseded` claims (data contract, section 5).
    pub fn with_history(
        latest: Latest<'a>,
        stored: &'a [KeyClaim],
        superseded: impl IntoIterator<Item = KeyClaim<&'a str>>,
    ) -> Directory<'a> {
        // The ids and each kind's owners are built side by side: a million
        // customers' inserts are most of the directory's cost.
        let (ids, ((by_email, email_shared), (by_phone, phone_shared))) = rayon::join(
            || owners(&latest, None).0,
            || {
                rayon::join(
                    || owners(&latest, Some(KeyKind::Email)),
                    || owners(&latest, Some(KeyKind::Phone)),
                )
            },
        );
        let mut d = Directory {
            latest,
            ids,
            by_email,
            by_phone,
            ..Directory::default()
        };
        d.shared = email_shared.into_iter().chain(phone_shared).collect();
        let conflicted: HashSet<(KeyKind, &str)> =
            d.shared.iter().map(|&(kind, key, _)| (kind, key)).collect();
        d.conflicts = conflicted.len() as u64;
        let stored = stored.iter().map(|c| {
            let claim = KeyClaim {
                kind: c.kind,
                key: &*c.key,
                customer_id: &*c.customer_id,
                updated_at: c.updated_at,
            };
            (claim, false)
        });
        let mut history: HashMap<(KeyKind, &'a str), Rank<'a>> = HashMap::default();
        for (c, is_new) in stored.chain(superseded.into_iter().map(|c| (c, true))) {
            // A key its customer's latest record still carries needs no
            // history: when that record is superseded, it is recorded with a
            // rank at least as high. This keeps re-deliveries out of the state.
            if d.latest_carries(&c) {
                continue;
            }
            let rank = (c.updated_at, c.customer_id);
            match history.get_mut(&(c.kind, c.key)) {
                Some(cur) if *cur >= rank => {}
                Some(cur) => {
                    *cur = rank;
                    d.history_changed |= is_new;
                }
                None => {
                    history.insert((c.kind, c.key), rank);
                    d.history_changed |= is_new;
                }
            }
        }
        d.history = history;
        d
    }

    /// The latest owner of `key` of `kind`.
    fn latest_owner(&self, kind: KeyKind, key: &str) -> Option<&'a str> {
        let owners = match kind {
            KeyKind::Email => &self.by_email,
            KeyKind::Phone => &self.by_phone,
        };
        owners
            .get(&self.latest, key)
            .map(|i| self.latest.at(i).customer_id)
    }

    /// The owner of `key` of `kind`: its latest owner, else the most recent
    /// carrier in the history.
    fn owner(&self, kind: KeyKind, key: &str) -> Option<&'a str> {
        self.latest_owner(kind, key)
            .or_else(|| self.history.get(&(kind, key)).map(|&(_, id)| id))
    }

    /// Whether the claimed customer's latest record carries the claimed key.
    fn latest_carries(&self, c: &KeyClaim<&str>) -> bool {
        match self.latest_owner(c.kind, c.key) {
            None => false,
            Some(owner) => {
                owner == c.customer_id || self.shared.contains(&(c.kind, c.key, c.customer_id))
            }
        }
    }

    /// The key history to store: the most recent carrier of every key of a
    /// superseded CRM version, stored or new (unordered).
    pub fn history(&self) -> Vec<KeyClaim<&'a str>> {
        self.history
            .iter()
            .map(|(&(kind, key), &(updated_at, customer_id))| KeyClaim {
                kind,
                key,
                customer_id,
                updated_at,
            })
            .collect()
    }

    /// The CRM customer any of `keys` maps to: id first, then email, then phone.
    pub fn resolve(&self, keys: &Keys) -> Option<&'a str> {
        self.resolve_refs(keys.refs())
    }

    /// [`Directory::resolve`] of borrowed keys.
    pub fn resolve_refs(&self, [id, email, phone]: KeyRefs<'_>) -> Option<&'a str> {
        if let Some(id) = id
            && let Some(i) = self.ids.get(&self.latest, id)
        {
            return Some(self.latest.at(i).customer_id);
        }
        if let Some(e) = email
            && let Some(id) = self.owner(KeyKind::Email, e)
        {
            return Some(id);
        }
        phone.and_then(|p| self.owner(KeyKind::Phone, p))
    }

    /// Whether `id` is a CRM customer.
    pub fn is_crm(&self, id: &str) -> bool {
        self.ids.get(&self.latest, id).is_some()
    }
}

/// A key several latest records carry, and one of its carriers.
type SharedKey<'a> = (KeyKind, &'a str, &'a str);

/// The owner of each key of `kind` (`None`: the customer id) the `latest`
/// records carry: the most recently updated carrier (then the greater id);
/// and every carrier of a key several carry.
fn owners<'a>(latest: &Latest<'a>, kind: Option<KeyKind>) -> (Owners, Vec<SharedKey<'a>>) {
    let mut table: HashTable<u32> = HashTable::with_capacity(latest.slots());
    let mut shared = Vec::new();
    let rank = |c: CrmIdentity<'a>| (c.updated_at, c.customer_id);
    for (i, r) in latest.iter() {
        let Some(key) = key_of(r, kind) else { continue };
        let h = key_hash(key);
        let found = table.find_mut(h, |&j| key_of(latest.at(j), kind) == Some(key));
        match found {
            None => {
                table.insert_unique(h, i, |&j| {
                    key_hash(key_of(latest.at(j), kind).unwrap_or_default())
                });
            }
            Some(cur) => {
                let owner = latest.at(*cur);
                if let Some(kind) = kind
                    && owner.customer_id != r.customer_id
                {
                    shared.push((kind, key, owner.customer_id));
                    shared.push((kind, key, r.customer_id));
                }
                if rank(r) > rank(owner) {
                    *cur = i;
                }
            }
        }
    }
    (Owners { kind, table }, shared)
}

/// A guest customer (not in CRM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guest {
    /// Its id: a given customer id, or `G-` + hash of its smallest key.
    pub id: Box<str>,
    /// Smallest email among its keys.
    pub email: Option<Box<str>>,
    /// Smallest phone among its keys.
    pub phone: Option<Box<str>>,
}

/// Guests found among the keys that match no CRM record.
#[derive(Debug, Default)]
pub struct Guests {
    by_key: NodeIndex,
    /// The guests, sorted by id.
    pub list: Vec<Guest>,
}

/// What a key is, ordered as its text with the kind as a prefix sorts
/// (`email:` < `id:` < `phone:`): a guest's id derives from that text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Node {
    Email,
    Id,
    Phone,
}

impl Node {
    fn prefix(self) -> &'static str {
        match self {
            Node::Email => "email:",
            Node::Id => "id:",
            Node::Phone => "phone:",
        }
    }
}

/// `keys`' nodes, borrowed: the id, then the email, then the phone.
fn nodes(keys: KeyRefs<'_>) -> impl Iterator<Item = (Node, &str)> {
    let [id, email, phone] = keys;
    let id = id.map(|k| (Node::Id, k));
    let email = email.map(|k| (Node::Email, k));
    let phone = phone.map(|k| (Node::Phone, k));
    id.into_iter().chain(email).chain(phone)
}

/// A number per node, one table per kind: looked up with borrowed text, so
/// a row's keys are found without building a string (once a row, for
/// millions of rows, that was most of identity resolution's allocations).
#[derive(Debug, Default)]
struct NodeIndex([HashMap<Box<str>, usize>; 3]);

impl NodeIndex {
    fn get(&self, (node, key): (Node, &str)) -> Option<usize> {
        self.0[node as usize].get(key).copied()
    }

    /// The node's number, `next` when it is new.
    fn number(&mut self, (node, key): (Node, &str), next: usize) -> usize {
        let table = &mut self.0[node as usize];
        match table.get(key) {
            Some(&i) => i,
            None => {
                table.insert(key.into(), next);
                next
            }
        }
    }

    fn iter(&self) -> impl Iterator<Item = ((Node, &str), usize)> {
        [Node::Email, Node::Id, Node::Phone]
            .into_iter()
            .flat_map(|n| self.0[n as usize].iter().map(move |(k, &i)| ((n, &**k), i)))
    }

    fn map(&mut self, mut f: impl FnMut(usize) -> usize) {
        for table in &mut self.0 {
            for i in table.values_mut() {
                *i = f(*i);
            }
        }
    }
}

fn find(parent: &mut [usize], mut i: usize) -> usize {
    while parent[i] != i {
        parent[i] = parent[parent[i]];
        i = parent[i];
    }
    i
}

impl Guests {
    /// Groups the keys of transactions that match no CRM record into guests.
    pub fn build<'a>(unresolved: impl IntoIterator<Item = KeyRefs<'a>>) -> Guests {
        let mut index = NodeIndex::default();
        let mut parent: Vec<usize> = Vec::new();
        for keys in unresolved {
            let mut first: Option<usize> = None;
            for n in nodes(keys) {
                let next = parent.len();
                let i = index.number(n, next);
                if i == next {
                    parent.push(i);
                }
                match first {
                    None => first = Some(i),
                    Some(f) => {
                        let (a, b) = (find(&mut parent, f), find(&mut parent, i));
                        if a != b {
                            parent[a.max(b)] = a.min(b);
                        }
                    }
                }
            }
        }
        // Collect each component's keys.
        let mut members: HashMap<usize, Vec<(Node, &str)>> = HashMap::default();
        for (n, i) in index.iter() {
            let root = find(&mut parent, i);
            members.entry(root).or_default().push(n);
        }
        let mut comps: Vec<(Guest, usize)> = members
            .into_iter()
            .map(|(root, mut keys)| {
                keys.sort_unstable();
                let first = |kind: Node| keys.iter().find(|(n, _)| *n == kind).map(|(_, k)| *k);
                let id: Box<str> = match first(Node::Id) {
                    Some(id) => id.into(),
                    None => {
                        let (node, key) = keys[0];
                        guest_id(&format!("{}{key}", node.prefix())).into()
                    }
                };
                let email = first(Node::Email).map(Into::into);
                let phone = first(Node::Phone).map(Into::into);
                (Guest { id, email, phone }, root)
            })
            .collect();
        comps.sort_by(|a, b| a.0.id.cmp(&b.0.id));
        let slot: HashMap<usize, usize> = comps
            .iter()
            .enumerate()
            .map(|(i, (_, root))| (*root, i))
            .collect();
        index.map(|i| slot[&find(&mut parent, i)]);
        Guests {
            by_key: index,
            list: comps.into_iter().map(|(g, _)| g).collect(),
        }
    }

    /// The guest any of `keys` belongs to.
    pub fn resolve(&self, keys: &Keys) -> Option<&Guest> {
        self.resolve_refs(keys.refs())
    }

    /// [`Guests::resolve`] of borrowed keys.
    pub fn resolve_refs(&self, keys: KeyRefs<'_>) -> Option<&Guest> {
        nodes(keys)
            .find_map(|n| self.by_key.get(n))
            .map(|i| &self.list[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crm(id: &str, email: Option<&str>, phone: Option<&str>, updated: Option<i64>) -> CrmRecord {
        CrmRecord {
            customer_id: id.into(),
            email: email.map(Into::into),
            phone: phone.map(Into::into),
            first_name: None,
            last_name: None,
            country: None,
            signup_date: None,
            birth_date: None,
            email_opt_in: false,
            updated_at: updated,
        }
    }

    fn keys(id: Option<&str>, email: Option<&str>, phone: Option<&str>) -> Keys {
        Keys {
            customer_id: id.map(Into::into),
            email: email.map(Into::into),
            phone: phone.map(Into::into),
        }
    }

    #[test]
    fn any_key_maps_to_its_crm_customer() {
        let records = [crm("C1", Some("a@x"), Some("+1555"), None)];
        let d = Directory::from_crm(&records);
        assert_eq!(d.resolve(&keys(Some("C1"), None, None)), Some("C1"));
        assert_eq!(
            d.resolve(&keys(Some("NOPE"), Some("a@x"), None)),
            Some("C1")
        );
        assert_eq!(
            d.resolve(&keys(None, Some("b@x"), Some("+1555"))),
            Some("C1")
        );
        assert_eq!(d.resolve(&keys(None, Some("b@x"), None)), None);
    }

    #[test]
    fn stored_customers_resolve_by_slot_and_a_removed_one_resolves_no_more() {
        let mut stored = CrmIdentities::default();
        for r in [
            crm("C1", Some("a@x"), Some("+1"), Some(10)),
            crm("C2", Some("b@x"), None, Some(10)),
            crm("C3", None, Some("+3"), Some(10)),
        ] {
            stored.push(r.identity());
        }
        // Tonight's record for C2 replaces the stored one, with a new email.
        let replaced = stored.remove_where(|id| id == "C2");
        assert_eq!(replaced.len(), 1);
        let tonight = [crm("C2", Some("new@x"), Some("+3"), Some(20))];
        let d = Directory::with_history(Latest::new(&stored, &tonight), &[], std::iter::empty());
        assert_eq!(d.resolve(&keys(Some("C1"), None, None)), Some("C1"));
        assert_eq!(d.resolve(&keys(None, None, Some("+1"))), Some("C1"));
        assert_eq!(d.resolve(&keys(None, Some("b@x"), None)), None);
        assert_eq!(d.resolve(&keys(None, Some("new@x"), None)), Some("C2"));
        // C2's record is the later update of the phone C3 also carries.
        assert_eq!(d.resolve(&keys(None, None, Some("+3"))), Some("C2"));
        assert_eq!(d.conflicts, 1);
        assert!(d.is_crm("C3") && !d.is_crm("C4"));
    }

    #[test]
    fn a_shared_email_goes_to_the_latest_update_and_counts_once() {
        let records = [
            crm("C1", Some("s@x"), Some("+1"), Some(10)),
            crm("C2", Some("s@x"), Some("+1"), Some(20)),
            crm("C3", Some("s@x"), None, Some(5)),
        ];
        let d = Directory::from_crm(&records);
        assert_eq!(d.resolve(&keys(None, Some("s@x"), None)), Some("C2"));
        assert_eq!(d.conflicts, 2, "one email and one phone");
    }

    /// A directory from `latest` records and `superseded` versions (no stored history).
    fn with_superseded<'a>(latest: &'a [CrmRecord], superseded: &'a [CrmRecord]) -> Directory<'a> {
        Directory::with_history(
            Latest::of_records(latest),
            &[],
            superseded.iter().flat_map(crm_claims),
        )
    }

    #[test]
    fn a_customer_who_changes_phone_keeps_the_old_one() {
        let latest = [crm("C1", Some("a@x"), Some("+2"), Some(20))];
        let old = [crm("C1", Some("a@x"), Some("+1"), Some(10))];
        let d = with_superseded(&latest, &old);
        assert_eq!(d.resolve(&keys(None, None, Some("+1"))), Some("C1"));
        assert_eq!(d.resolve(&keys(None, None, Some("+2"))), Some("C1"));
        assert!(d.history_changed);
        assert_eq!(d.conflicts, 0, "a superseded version is no conflict");
        let without = Directory::from_crm(&latest);
        assert_eq!(without.resolve(&keys(None, None, Some("+1"))), None);
    }

    #[test]
    fn a_customer_who_changes_email_keeps_the_old_one() {
        let latest = [crm("C1", Some("new@x"), None, Some(20))];
        let old = [crm("C1", Some("old@x"), None, Some(10))];
        let d = with_superseded(&latest, &old);
        assert_eq!(d.resolve(&keys(None, Some("old@x"), None)), Some("C1"));
        assert_eq!(d.resolve(&keys(None, Some("new@x"), None)), Some("C1"));
    }

    #[test]
    fn a_key_a_latest_record_carries_beats_the_history() {
        // C1 had +1; C2's latest record took it over (even one updated earlier).
        let latest = [
            crm("C1", None, Some("+9"), Some(30)),
            crm("C2", None, Some("+1"), Some(15)),
        ];
        let old = [crm("C1", None, Some("+1"), Some(20))];
        let d = with_superseded(&latest, &old);
        assert_eq!(d.resolve(&keys(None, None, Some("+1"))), Some("C2"));
        assert_eq!(d.resolve(&keys(None, None, Some("+9"))), Some("C1"));
    }

    #[test]
    fn a_key_no_latest_record_carries_goes_to_its_most_recent_carrier() {
        let latest = [
            crm("C1", None, Some("+8"), Some(40)),
            crm("C2", None, Some("+9"), Some(40)),
        ];
        let old = [
            crm("C2", None, Some("+1"), Some(20)),
            crm("C1", None, Some("+1"), Some(30)),
            crm("C2", None, Some("+1"), Some(10)),
        ];
        let d = with_superseded(&latest, &old);
        assert_eq!(d.resolve(&keys(None, None, Some("+1"))), Some("C1"));
        // The same claims in another order, or split between stored and new: the same owner.
        let stored = [KeyClaim {
            kind: KeyKind::Phone,
            key: Box::from("+1"),
            customer_id: Box::from("C1"),
            updated_at: Some(30),
        }];
        let rev: Vec<CrmRecord> = old.iter().rev().cloned().collect();
        let d2 = Directory::with_history(
            Latest::of_records(&latest),
            &stored,
            rev.iter().flat_map(crm_claims),
        );
        assert_eq!(d2.resolve(&keys(None, None, Some("+1"))), Some("C1"));
        assert_eq!(d2.history(), d.history());
        assert!(
            !d2.history_changed,
            "older claims add nothing to the stored one"
        );
    }

    #[test]
    fn keys_the_latest_record_still_carries_add_no_history() {
        // C1 shares its email with C2, who owns it: C1 still carries it.
        let latest = [
            crm("C1", Some("a@x"), Some("+1"), Some(20)),
            crm("C2", Some("a@x"), None, Some(30)),
        ];
        let redelivered = [
            crm("C1", Some("a@x"), Some("+1"), Some(10)),
            latest[0].clone(),
            latest[1].clone(),
        ];
        let d = with_superseded(&latest, &redelivered);
        assert!(d.history().is_empty());
        assert!(!d.history_changed);
    }

    #[test]
    fn guests_join_keys_seen_together_and_keep_stable_ids() {
        let k1 = keys(None, Some("g@x"), None);
        let k2 = keys(None, Some("g@x"), Some("+1999"));
        let k3 = keys(None, None, Some("+1999"));
        let k4 = keys(Some("L77"), None, None);
        let g = Guests::build([&k1, &k2, &k3, &k4].map(Keys::refs));
        assert_eq!(g.list.len(), 2);
        let a = g.resolve(&k3).unwrap();
        assert_eq!(a.id, guest_id("email:g@x").into());
        assert_eq!(a.phone.as_deref(), Some("+1999"));
        assert_eq!(&*g.resolve(&k4).unwrap().id, "L77");
        // Built again in another order: the same ids.
        let again = Guests::build([&k4, &k3, &k2, &k1].map(Keys::refs));
        assert_eq!(again.list, g.list);
    }
}
