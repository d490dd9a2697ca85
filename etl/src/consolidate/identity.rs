//! Identity resolution: CRM records are the golden identities; every other
//! key (loyalty card, email, phone) maps to the CRM customer that carries it,
//! and keys that match no CRM record form guest customers.
//!
//! Guests: keys seen together on one transaction belong to one guest (union
//! find), so a guest who paid once by email and once by email + phone is one
//! customer. A guest keeps a given customer id if it has one (the smallest);
//! otherwise its id is derived from its smallest key, so the same guest gets
//! the same id every night.

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use cvm_shared::identity::guest_id;

use crate::record::{CrmRecord, Keys};

/// The golden identities from CRM, borrowing the records' strings (a
/// million customers' ids, emails and phones are not copied).
#[derive(Debug, Default)]
pub struct Directory<'a> {
    ids: HashSet<&'a str>,
    by_email: HashMap<&'a str, &'a str>,
    by_phone: HashMap<&'a str, &'a str>,
    /// Emails and phones shared by more than one CRM record (counted once each).
    pub conflicts: u64,
}

impl<'a> Directory<'a> {
    /// Builds the directory; a shared email or phone goes to the most
    /// recently updated record (then the greater id, for determinism).
    pub fn from_crm(records: impl IntoIterator<Item = &'a CrmRecord>) -> Directory<'a> {
        let mut d = Directory::default();
        let mut email_owner: HashMap<&'a str, (Option<i64>, &'a str)> = HashMap::default();
        let mut phone_owner: HashMap<&'a str, (Option<i64>, &'a str)> = HashMap::default();
        let mut conflicted: HashSet<(bool, &'a str)> = HashSet::default();
        for r in records {
            d.ids.insert(&r.customer_id);
            let rank = (r.updated_at, &*r.customer_id);
            for (is_email, key, owners) in [
                (true, &r.email, &mut email_owner),
                (false, &r.phone, &mut phone_owner),
            ] {
                let Some(k) = key.as_deref() else { continue };
                match owners.get_mut(k) {
                    None => {
                        owners.insert(k, rank);
                    }
                    Some(cur) => {
                        if cur.1 != rank.1 {
                            conflicted.insert((is_email, k));
                        }
                        if rank > *cur {
                            *cur = rank;
                        }
                    }
                }
            }
        }
        d.conflicts = conflicted.len() as u64;
        d.by_email = email_owner
            .into_iter()
            .map(|(k, (_, id))| (k, id))
            .collect();
        d.by_phone = phone_owner
            .into_iter()
            .map(|(k, (_, id))| (k, id))
            .collect();
        d
    }

    /// The CRM customer any of `keys` maps to: id first, then email, then phone.
    pub fn resolve(&self, keys: &Keys) -> Option<&'a str> {
        if let Some(id) = keys.customer_id.as_deref()
            && let Some(found) = self.ids.get(id)
        {
            return Some(found);
        }
        if let Some(e) = keys.email.as_deref()
            && let Some(id) = self.by_email.get(e)
        {
            return Some(id);
        }
        keys.phone
            .as_deref()
            .and_then(|p| self.by_phone.get(p))
            .copied()
    }

    /// Whether `id` is a CRM customer.
    pub fn is_crm(&self, id: &str) -> bool {
        self.ids.contains(id)
    }
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
    by_key: HashMap<String, usize>,
    /// The guests, sorted by id.
    pub list: Vec<Guest>,
}

fn nodes(keys: &Keys) -> impl Iterator<Item = String> + '_ {
    let id = keys.customer_id.iter().map(|k| format!("id:{k}"));
    let email = keys.email.iter().map(|k| format!("email:{k}"));
    let phone = keys.phone.iter().map(|k| format!("phone:{k}"));
    id.chain(email).chain(phone)
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
    pub fn build<'a>(unresolved: impl IntoIterator<Item = &'a Keys>) -> Guests {
        let mut index: HashMap<String, usize> = HashMap::default();
        let mut parent: Vec<usize> = Vec::new();
        for keys in unresolved {
            let mut first: Option<usize> = None;
            for n in nodes(keys) {
                let next = parent.len();
                let i = *index.entry(n).or_insert(next);
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
        let mut members: HashMap<usize, Vec<&str>> = HashMap::default();
        for (k, &i) in &index {
            let root = find(&mut parent, i);
            members.entry(root).or_default().push(k);
        }
        let mut comps: Vec<(Guest, usize)> = members
            .into_iter()
            .map(|(root, mut keys)| {
                keys.sort_unstable();
                let given = keys.iter().find_map(|k| k.strip_prefix("id:"));
                let id: Box<str> = match given {
                    Some(id) => id.into(),
                    None => guest_id(keys[0]).into(),
                };
                let email = keys
                    .iter()
                    .find_map(|k| k.strip_prefix("email:"))
                    .map(Into::into);
                let phone = keys
                    .iter()
                    .find_map(|k| k.strip_prefix("phone:"))
                    .map(Into::into);
                (Guest { id, email, phone }, root)
            })
            .collect();
        comps.sort_by(|a, b| a.0.id.cmp(&b.0.id));
        let slot: HashMap<usize, usize> = comps
            .iter()
            .enumerate()
            .map(|(i, (_, root))| (*root, i))
            .collect();
        let by_key = index
            .into_iter()
            .map(|(k, i)| (k, slot[&find(&mut parent, i)]))
            .collect();
        Guests {
            by_key,
            list: comps.into_iter().map(|(g, _)| g).collect(),
        }
    }

    /// The guest any of `keys` belongs to.
    pub fn resolve(&self, keys: &Keys) -> Option<&Guest> {
        nodes(keys)
            .find_map(|n| self.by_key.get(&n))
            .map(|&i| &self.list[i])
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

    #[test]
    fn guests_join_keys_seen_together_and_keep_stable_ids() {
        let k1 = keys(None, Some("g@x"), None);
        let k2 = keys(None, Some("g@x"), Some("+1999"));
        let k3 = keys(None, None, Some("+1999"));
        let k4 = keys(Some("L77"), None, None);
        let g = Guests::build([&k1, &k2, &k3, &k4]);
        assert_eq!(g.list.len(), 2);
        let a = g.resolve(&k3).unwrap();
        assert_eq!(a.id, guest_id("email:g@x").into());
        assert_eq!(a.phone.as_deref(), Some("+1999"));
        assert_eq!(&*g.resolve(&k4).unwrap().id, "L77");
        // Built again in another order: the same ids.
        let again = Guests::build([&k4, &k3, &k2, &k1]);
        assert_eq!(again.list, g.list);
    }
}
