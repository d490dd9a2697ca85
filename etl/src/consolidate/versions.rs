//! Latest-version-wins across files and runs.
//!
//! Every record has a key; among the versions of a key read in this run the
//! one with the greatest `version` wins, ties going to the later read. That
//! winner then meets the version already in the warehouse: it replaces it when
//! it is newer (or as new and different), and is a `duplicate` otherwise, so
//! re-running a drop changes nothing.

use std::hash::BuildHasher;

use rayon::prelude::*;
use rustc_hash::{FxBuildHasher, FxHashMap};

use crate::record::{Numbering, OptTime, Pos, RecordKey, Versioned};

/// The latest version seen of a source record (the `_state/records` table), so
/// that re-deliveries across runs are recognised even when the winning version
/// produced no rows (a cancelled order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordState {
    /// Record key.
    pub key: RecordKey,
    /// Version order (`updated_at`), if the source has one.
    pub version: Option<i64>,
    /// Content hash of the winning version.
    pub digest: u64,
    /// The months its rows lie in (transactions; none for CRM records and
    /// versions without rows), so a night finds the stored rows a newer
    /// version replaces by reading those months alone.
    pub months: RowMonths,
}

/// The months (numbered `year * 12 + month - 1`) of a transaction record's
/// rows: its row's and its refund's, [`RowMonths::NONE`] where it has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RowMonths(pub [i32; 2]);

impl RowMonths {
    /// No month: no row there.
    pub const NONE: i32 = i32::MIN;
    /// A record without rows.
    pub const EMPTY: RowMonths = RowMonths([Self::NONE; 2]);
    /// Not known: read from a table of an earlier cvm, which kept none
    /// (found again from the transactions before the table is written).
    pub const UNKNOWN: RowMonths = RowMonths([i32::MAX; 2]);

    /// The months of rows at `row` and `refund` (microseconds UTC).
    pub fn of(row: Option<i64>, refund: Option<i64>) -> RowMonths {
        RowMonths([row, refund].map(|at| at.map_or(Self::NONE, month_number)))
    }

    /// The months that hold a row, as numbers.
    pub fn numbers(self) -> impl Iterator<Item = i32> {
        debug_assert_ne!(self, Self::UNKNOWN);
        self.0.into_iter().filter(|&m| m != Self::NONE)
    }
}

/// The month number (`year * 12 + month - 1`) of an instant (microseconds
/// UTC); total over `i64` (its years are within ±300,000).
pub fn month_number(micros: i64) -> i32 {
    let (y, m, _) = crate::calendar::civil_from_days(micros.div_euclid(86_400_000_000));
    (y * 12 + i64::from(m) - 1) as i32
}

/// The stored record state a resolution looks versions up in.
pub trait StoredVersions {
    /// The stored state of `key`, if any.
    fn version_of(&self, key: &str) -> Option<&RecordState>;
}

impl StoredVersions for FxHashMap<RecordKey, RecordState> {
    fn version_of(&self, key: &str) -> Option<&RecordState> {
        self.get(key)
    }
}

impl StoredVersions for FxHashMap<&str, &RecordState> {
    fn version_of(&self, key: &str) -> Option<&RecordState> {
        self.get(key).copied()
    }
}

/// Rows sorted by key, as `_state/records.parquet` holds them: looked up by
/// binary search, which needs no table beside the rows.
impl StoredVersions for [RecordState] {
    fn version_of(&self, key: &str) -> Option<&RecordState> {
        self.binary_search_by(|r| (*r.key).cmp(key))
            .ok()
            .map(|i| &self[i])
    }
}

/// What became of one versioned record read in this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// It wins and replaces (or adds) its key in the warehouse.
    Wins,
    /// Superseded by another version (in this run or already stored).
    Duplicate,
}

/// The outcome of resolving a set of new versions against the stored state.
#[derive(Debug)]
pub struct Resolution<T> {
    /// Winning new records, in read order, in the batches they were given in
    /// (a file's, or a read batch's), so a caller can consume and free them
    /// batch by batch.
    pub winners: Vec<Vec<Versioned<T>>>,
    /// Positions of the superseded new records.
    pub duplicates: Vec<Pos>,
    /// Keys whose stored version is replaced by a winner.
    pub replaced: Vec<RecordKey>,
}

impl<T> Resolution<T> {
    /// The winners in read order.
    pub fn winners(&self) -> impl Iterator<Item = &Versioned<T>> {
        self.winners.iter().flatten()
    }

    /// Number of winners.
    pub fn winner_count(&self) -> usize {
        self.winners.iter().map(Vec::len).sum()
    }
}

/// Resolves `new` (batches in read order) against `stored`.
pub fn resolve<T: Numbering>(
    new: Vec<Vec<Versioned<T>>>,
    stored: &(impl StoredVersions + ?Sized),
) -> Resolution<T> {
    resolve_mixed(new, stored, |_| false)
}

/// Resolves keyed and numbered records together: a numbered record already
/// stored (`numbered_stored`) is a duplicate; the rest resolve as [`resolve`]
/// does. Keyed and numbered keys never coincide (numbered ones end in `#n`).
/// Winners are filtered in place, batch by batch, so no second copy of the
/// records is made.
pub fn resolve_mixed<T: Numbering>(
    new: Vec<Vec<Versioned<T>>>,
    stored: &(impl StoredVersions + ?Sized),
    numbered_stored: impl Fn(&str) -> bool,
) -> Resolution<T> {
    resolve_handing_over(new, stored, numbered_stored, drop)
}

/// Resolves as [`resolve`] does, handing each superseded record to
/// `superseded` (in read order) instead of dropping it: a CRM customer keeps
/// the emails and phones of its earlier versions.
pub fn resolve_keeping_superseded<T: Numbering>(
    new: Vec<Vec<Versioned<T>>>,
    stored: &(impl StoredVersions + ?Sized),
    superseded: impl FnMut(Versioned<T>),
) -> Resolution<T> {
    resolve_handing_over(new, stored, |_| false, superseded)
}

fn resolve_handing_over<T: Numbering>(
    mut new: Vec<Vec<Versioned<T>>>,
    stored: &(impl StoredVersions + ?Sized),
    numbered_stored: impl Fn(&str) -> bool,
    mut on_superseded: impl FnMut(Versioned<T>),
) -> Resolution<T> {
    let mut superseded: Vec<Vec<bool>> = new
        .iter()
        .map(|batch| {
            batch
                .iter()
                .map(|v| v.numbered() && numbered_stored(&v.key))
                .collect()
        })
        .collect();
    // Every record's number in read order, grouped by key.
    let numbers = Numbers::of(&new);
    let total = numbers.total();
    // Within a run of equal hashes (almost always one key), the current best
    // version per key; later reads win ties. A part of the keys at a time
    // (by their hash's top bits), so only that part's order is held.
    let mut best: Vec<(&str, (usize, usize))> = Vec::new();
    for part in 0..KeyOrder::PARTS {
        let order = KeyOrder::part(
            total,
            part,
            new.iter()
                .flatten()
                .zip(superseded.iter().flatten())
                .enumerate()
                .filter(|(_, (_, sup))| !**sup)
                .map(|(n, (rec, _))| (n, &*rec.key)),
        );
        for run in order.shared_runs() {
            best.clear();
            for n in run {
                let (b, i) = numbers.at(n);
                let rec = &new[b][i];
                match best.iter_mut().find(|(k, _)| *k == &*rec.key) {
                    None => best.push((&rec.key, (b, i))),
                    Some((_, at)) => {
                        let (pb, pi) = *at;
                        if rec.version >= new[pb][pi].version {
                            superseded[pb][pi] = true;
                            *at = (b, i);
                        } else {
                            superseded[b][i] = true;
                        }
                    }
                }
            }
        }
    }
    drop(best);
    let mut duplicates = Vec::new();
    let mut replaced = Vec::new();
    for (batch, superseded) in new.iter_mut().zip(superseded) {
        let mut sup = superseded.into_iter();
        // In place, like `retain`, but the superseded records are moved out.
        let losers = batch.extract_if(.., |rec| {
            // Numbered keys are never in the record state (see `resolve_mixed`).
            let state = if rec.numbered() {
                None
            } else {
                stored.version_of(&rec.key)
            };
            let fate = match state {
                _ if sup.next().unwrap_or(true) => Fate::Duplicate,
                Some(s)
                    if rec.version < OptTime::new(s.version)
                        || (rec.version.get() == s.version && rec.digest == s.digest) =>
                {
                    Fate::Duplicate
                }
                Some(_) => {
                    replaced.push(rec.key.clone());
                    Fate::Wins
                }
                None => Fate::Wins,
            };
            if fate == Fate::Duplicate {
                duplicates.push(rec.pos);
            }
            fate == Fate::Duplicate
        });
        losers.for_each(&mut on_superseded);
    }
    Resolution {
        winners: new,
        duplicates,
        replaced,
    }
}

/// Records kept in chunks, numbered in order across them.
pub(crate) struct Numbers {
    /// Each chunk's first record's number (an empty chunk shares its
    /// successor's).
    starts: Vec<usize>,
    total: usize,
}

impl Numbers {
    /// The numbering of `chunks`.
    pub fn of<T>(chunks: &[Vec<T>]) -> Numbers {
        let mut total = 0;
        let starts = chunks
            .iter()
            .map(|c| {
                total += c.len();
                total - c.len()
            })
            .collect();
        Numbers { starts, total }
    }

    /// How many records.
    pub fn total(&self) -> usize {
        self.total
    }

    /// The chunk and index of record `n`.
    pub fn at(&self, n: usize) -> (usize, usize) {
        let c = self.starts.partition_point(|&s| s <= n) - 1;
        (c, n - self.starts[c])
    }
}

/// Keys grouped by hash without a table of them: each key's hash and
/// position packed in one u64 (the position in as many low bits as the
/// count needs, the hash's high bits above), sorted in parallel. On a drop
/// of millions of records this is the largest allocation of the step that
/// uses it, 8 bytes a key (or a part of the keys), allocated once.
pub(crate) struct KeyOrder {
    entries: Vec<u64>,
    positions: u64,
}

impl KeyOrder {
    /// Into how many parts [`KeyOrder::part`] splits keys (a power of two).
    pub const PARTS: u64 = 2;

    /// The order of `keys`, (position, key) pairs with positions below `n`.
    pub fn new<'a>(n: usize, keys: impl Iterator<Item = (usize, &'a str)>) -> KeyOrder {
        KeyOrder::of(n, n, keys.map(|(i, k)| (i, key_hash(k))))
    }

    /// The order of the `part`-th of [`KeyOrder::PARTS`] parts of `keys`
    /// (by the top bits of their hash: equal keys fall in one part), for a
    /// caller that holds a part's order at a time.
    pub fn part<'a>(n: usize, part: u64, keys: impl Iterator<Item = (usize, &'a str)>) -> KeyOrder {
        let shift = u64::BITS - KeyOrder::PARTS.trailing_zeros();
        let mine = keys
            .map(|(i, k)| (i, key_hash(k)))
            .filter(move |(_, h)| h.checked_shr(shift).unwrap_or(0) == part);
        // Room for a part and an eighth: hashes split evenly.
        KeyOrder::of(n, n / KeyOrder::PARTS as usize * 9 / 8, mine)
    }

    fn of(n: usize, room: usize, keys: impl Iterator<Item = (usize, u64)>) -> KeyOrder {
        let positions = (1u64 << (usize::BITS - n.leading_zeros())) - 1;
        let mut entries: Vec<u64> = Vec::with_capacity(room);
        entries.extend(keys.map(|(i, h)| (h & !positions) | i as u64));
        entries.par_sort_unstable();
        KeyOrder { entries, positions }
    }

    /// The positions of each run of two or more keys sharing a hash (almost
    /// always one key, more than once), in position order.
    pub fn shared_runs(&self) -> impl Iterator<Item = impl Iterator<Item = usize> + '_> {
        let p = self.positions;
        self.entries
            .chunk_by(move |x, y| x & !p == y & !p)
            .filter(|r| r.len() > 1)
            .map(move |r| r.iter().map(move |e| (e & p) as usize))
    }
}

/// The hash that groups a key's versions (its high bits are used). Unit
/// tests keep the two highest, so that runs of equal hashes hold several
/// keys, as a real collision would.
fn key_hash(key: &str) -> u64 {
    let h = FxBuildHasher.hash_one(key);
    if cfg!(test) { h & (3 << 62) } else { h }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A test record's body is whether it is numbered.
    impl Numbering for bool {
        fn numbered(&self) -> bool {
            *self
        }
    }

    /// The rule written plainly: records in read order, a table of the
    /// best version per key; returns the positions of the winners.
    fn winners_by_the_rule(batches: &[Vec<Versioned<bool>>]) -> Vec<Pos> {
        let mut best: std::collections::HashMap<&str, Pos> = Default::default();
        let mut version: std::collections::HashMap<Pos, OptTime> = Default::default();
        for r in batches.iter().flatten() {
            version.insert(r.pos, r.version);
            match best.get(&*r.key) {
                Some(at) if r.version < version[at] => {}
                _ => {
                    best.insert(&r.key, r.pos);
                }
            }
        }
        let mut w: Vec<Pos> = best.into_values().collect();
        w.sort();
        w
    }

    #[test]
    fn sorted_state_rows_resolve_like_a_table_of_them() {
        let rows: Vec<RecordState> = [("a", Some(1), 1), ("c", Some(5), 2), ("e", None, 3)]
            .into_iter()
            .map(|(k, v, d)| state(k, v, d).1)
            .collect();
        let table: FxHashMap<RecordKey, RecordState> =
            rows.iter().map(|r| (r.key.clone(), r.clone())).collect();
        for key in ["", "a", "b", "c", "d", "e", "f"] {
            assert_eq!(rows.version_of(key), table.version_of(key), "{key}");
        }
        let new = || {
            vec![vec![
                v("c", Some(5), 2, 1),
                v("c", Some(6), 9, 2),
                v("b", None, 1, 3),
                v("e", None, 3, 4),
            ]]
        };
        let (by_rows, by_table) = (resolve(new(), rows.as_slice()), resolve(new(), &table));
        let lines = |r: &Resolution<bool>| r.winners().map(|w| w.pos.line()).collect::<Vec<_>>();
        assert_eq!(lines(&by_rows), [2, 3]);
        assert_eq!(lines(&by_rows), lines(&by_table));
        assert_eq!(by_rows.replaced, by_table.replaced);
        assert_eq!(by_rows.duplicates, by_table.duplicates);
    }

    proptest! {
        #[test]
        fn the_winner_of_each_key_is_its_latest_version_then_its_last_read(
            sizes in proptest::collection::vec(0usize..6, 1..5),
            picks in proptest::collection::vec((0u8..6, proptest::option::of(0i64..3)), 30),
        ) {
            let mut picks = picks.into_iter().cycle();
            let mut line = 0;
            let batches: Vec<Vec<Versioned<bool>>> = sizes
                .iter()
                .map(|&n| {
                    (0..n)
                        .map(|_| {
                            let (k, version) = picks.next().unwrap_or_default();
                            line += 1;
                            v(&format!("k{k}"), version, line, line)
                        })
                        .collect()
                })
                .collect();
            let want = winners_by_the_rule(&batches);
            let r = resolve(batches, &FxHashMap::<RecordKey, RecordState>::default());
            let have: Vec<Pos> = r.winners().map(|w| w.pos).collect();
            prop_assert_eq!(have, want);
        }
    }

    fn v(key: &str, version: Option<i64>, digest: u64, line: u64) -> Versioned<bool> {
        Versioned {
            key: key.into(),
            version: version.into(),
            digest,
            pos: Pos::new(0, line),
            body: false,
        }
    }

    fn state(key: &str, version: Option<i64>, digest: u64) -> (RecordKey, RecordState) {
        (
            key.into(),
            RecordState {
                key: key.into(),
                version,
                digest,
                months: RowMonths::EMPTY,
            },
        )
    }

    #[test]
    fn the_latest_version_wins_and_ties_go_to_the_later_read() {
        let r = resolve(
            vec![
                vec![v("a", Some(2), 1, 1), v("a", Some(1), 2, 2)],
                vec![],
                vec![v("a", Some(2), 3, 3), v("b", None, 4, 4)],
            ],
            &FxHashMap::<RecordKey, RecordState>::default(),
        );
        let lines: Vec<u64> = r.winners().map(|w| w.pos.line()).collect();
        assert_eq!(lines, [3, 4]);
        assert_eq!(
            r.duplicates.iter().map(|p| p.line()).collect::<Vec<_>>(),
            [1, 2]
        );
    }

    #[test]
    fn a_version_with_a_time_beats_one_without() {
        let r = resolve(
            vec![vec![v("a", Some(0), 1, 1)], vec![v("a", None, 2, 2)]],
            &FxHashMap::<RecordKey, RecordState>::default(),
        );
        assert_eq!(r.winners().map(|w| w.pos.line()).collect::<Vec<_>>(), [1]);
    }

    #[test]
    fn stored_versions_are_kept_unless_beaten() {
        let stored: FxHashMap<_, _> = [
            state("old", Some(5), 9),
            state("same", Some(5), 9),
            state("newer", Some(5), 9),
            state("changed", None, 1),
        ]
        .into_iter()
        .collect();
        let r = resolve(
            vec![vec![
                v("old", Some(4), 1, 1),
                v("same", Some(5), 9, 2),
                v("newer", Some(6), 2, 3),
                v("changed", None, 2, 4),
                v("fresh", None, 3, 5),
            ]],
            &stored,
        );
        assert_eq!(
            r.winners().map(|w| &*w.key).collect::<Vec<_>>(),
            ["newer", "changed", "fresh"]
        );
        assert_eq!(
            r.replaced.iter().map(|k| &**k).collect::<Vec<_>>(),
            ["newer", "changed"]
        );
        assert_eq!(r.duplicates.len(), 2);
    }

    #[test]
    fn superseded_records_are_handed_over_in_read_order() {
        let stored: FxHashMap<_, _> = [state("a", Some(5), 9)].into_iter().collect();
        let mut lost = Vec::new();
        let r = resolve_keeping_superseded(
            vec![
                vec![v("a", Some(4), 1, 1), v("b", Some(1), 2, 2)],
                vec![v("b", Some(2), 3, 3), v("a", Some(5), 9, 4)],
            ],
            &stored,
            |l| lost.push(l.pos.line()),
        );
        assert_eq!(r.winners().map(|w| w.pos.line()).collect::<Vec<_>>(), [3]);
        assert_eq!(lost, [1, 2, 4]);
        assert_eq!(r.duplicates.len(), 3);
    }
}

/// Resolves records with no id of their own (their key is their content and
/// occurrence number): one already stored is a duplicate, the rest resolve
/// among themselves. No per-record state is kept for them.
pub fn resolve_numbered<T: Numbering>(
    new: Vec<Vec<Versioned<T>>>,
    is_stored: impl Fn(&str) -> bool,
) -> Resolution<T> {
    let none: &[RecordState] = &[];
    resolve_mixed(new, none, is_stored)
}

#[cfg(test)]
mod numbered_tests {
    use super::*;

    #[test]
    fn stored_numbered_records_are_duplicates() {
        let v = |key: &str, line| Versioned {
            key: key.into(),
            version: OptTime::NONE,
            digest: 1,
            pos: Pos::new(0, line),
            body: true,
        };
        let r = resolve_numbered(
            vec![vec![v("tx:a#1", 1), v("tx:a#2", 2), v("tx:b#1", 3)]],
            |k| k == "tx:a#1",
        );
        assert_eq!(
            r.winners().map(|w| &*w.key).collect::<Vec<_>>(),
            ["tx:a#2", "tx:b#1"]
        );
        assert_eq!(r.duplicates, [Pos::new(0, 1)]);
        assert!(r.replaced.is_empty());
    }

    #[test]
    fn keyed_and_numbered_records_resolve_together_in_read_order() {
        let v = |key: &str, numbered, version: Option<i64>, line| Versioned {
            key: key.into(),
            version: version.into(),
            digest: 1,
            pos: Pos::new(0, line),
            body: numbered,
        };
        let stored: FxHashMap<RecordKey, RecordState> = [(
            "pos:1".into(),
            RecordState {
                key: "pos:1".into(),
                version: Some(5),
                digest: 1,
                months: RowMonths::EMPTY,
            },
        )]
        .into_iter()
        .collect();
        let r = resolve_mixed(
            vec![
                vec![v("tx:a#1", true, None, 1), v("pos:1", false, Some(6), 2)],
                vec![
                    v("tx:b#1", true, None, 3),
                    v("pos:2", false, Some(1), 4),
                    v("pos:2", false, Some(0), 5),
                ],
            ],
            &stored,
            |k| k == "tx:a#1",
        );
        assert_eq!(
            r.winners().map(|w| &*w.key).collect::<Vec<_>>(),
            ["pos:1", "tx:b#1", "pos:2"]
        );
        assert_eq!(
            r.duplicates.iter().map(|p| p.line()).collect::<Vec<_>>(),
            [1, 5]
        );
        assert_eq!(r.replaced, [Box::from("pos:1")]);
    }
}
