//! Engagement events in compact form. Events are most of a drop and take no
//! part in identity resolution, so they are kept as fixed-size rows whose
//! text (keys, types, file names) lives once in shared tables; record keys and
//! event ids are kept as the hashes they are made of.

use std::sync::Arc;

use cvm_shared::identity::stable_hash;
use rustc_hash::FxHashMap as HashMap;

use crate::record::{EventFields, KeyRefs, Keys};

/// The index standing for an absent value.
pub const NONE: u32 = u32::MAX;

/// Distinct strings, each stored once and named by its index.
#[derive(Debug, Default)]
pub struct Strings {
    index: HashMap<Arc<str>, u32>,
    values: Vec<Arc<str>>,
}

impl Strings {
    /// The index of `s`, added when new.
    pub fn intern(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.values.len() as u32;
        let v: Arc<str> = s.into();
        self.values.push(v.clone());
        self.index.insert(v, i);
        i
    }

    /// The string at `i`; `None` for [`NONE`].
    pub fn get(&self, i: u32) -> Option<&str> {
        self.values.get(i as usize).map(|s| &**s)
    }
}

/// Customer id, email and phone of an event, as indices into the text table.
pub type KeySet = [u32; 3];

/// One event. The record key is `ev:<digest>#<n>` (see [`record_key`]) and
/// the event id `ev:<id>`, both as 16 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    /// When (microseconds UTC).
    pub ts: i64,
    /// Hash of the record key (the event id).
    pub id: u64,
    /// Content hash of the line.
    pub digest: u64,
    /// Occurrence of identical lines in the file (1-based).
    pub n: u32,
    /// Index into [`EventLog::keysets`].
    pub keys: u32,
    /// Event type: index into the text table.
    pub kind: u32,
    /// Source file: index into the text table. The log of a run is seeded
    /// with the run's file names, so for new events it is also the file index.
    pub file: u32,
}

impl Event {
    /// The order events are written in: time, then id. Ids are fixed-width
    /// hex, so hash order is id order.
    pub fn order(&self) -> (i64, u64) {
        (self.ts, self.id)
    }
}

/// Events with the tables their indices point into.
#[derive(Debug, Default)]
pub struct EventLog {
    /// Every key, type and file name.
    pub text: Strings,
    keyset_index: HashMap<KeySet, u32>,
    /// Distinct key sets.
    pub keysets: Vec<KeySet>,
    /// The events, in read order, in parts (a file's, a stored batch's): a
    /// log appended to another moves its parts, so no event is ever copied
    /// into a second vector as big as the whole log.
    parts: Vec<Vec<Event>>,
}

/// `ev:` and 16 hex digits of `h`, the form of event ids and record keys.
pub fn hex_id(h: u64) -> String {
    format!("ev:{h:016x}")
}

/// The record key of the `n`-th occurrence of a line with `digest` in a file.
pub fn record_key(digest: u64, n: u32) -> String {
    format!("{}#{n}", hex_id(digest))
}

/// The event id (the hash of [`record_key`]`(digest, n)`), without building
/// the key as a string: it is computed for every event read.
pub fn event_id(digest: u64, n: u32) -> u64 {
    let mut buf = [0u8; 32];
    let len = id_bytes(digest, Some(n), &mut buf);
    stable_hash(&buf[..len])
}

/// Writes [`hex_id`]`(digest)`, or with an occurrence [`record_key`]`(digest,
/// n)`, into `buf`; returns its length. The hex digits are copied, not
/// formatted: ids are made for every event read and written.
pub fn id_bytes(digest: u64, n: Option<u32>, buf: &mut [u8; 32]) -> usize {
    use std::io::Write;
    // "ev:", 16 hex digits, '#' and at most 10 digits: 30 bytes.
    buf[..3].copy_from_slice(b"ev:");
    buf[3..19].copy_from_slice(&crate::record::hex16(digest));
    let Some(n) = n else { return 19 };
    let mut rest = &mut buf[19..];
    let _ = write!(rest, "#{n}");
    32 - rest.len()
}

/// The hash `text` was made from by [`hex_id`].
pub fn parse_hex_id(text: &str) -> Option<u64> {
    let hex = text.strip_prefix("ev:")?;
    // from_str_radix would take a sign; the form is exactly 16 hex digits.
    (hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u64::from_str_radix(hex, 16).ok())
        .flatten()
}

/// The digest and occurrence of a [`record_key`].
pub fn parse_record_key(text: &str) -> Option<(u64, u32)> {
    let (id, n) = text.split_once('#')?;
    let n: u32 = n
        .parse()
        .ok()
        .filter(|_| n.bytes().all(|b| b.is_ascii_digit()))?;
    Some((parse_hex_id(id)?, n))
}

impl EventLog {
    /// An empty log whose text table starts with `files`, so index i is file i.
    pub fn with_files<'a>(files: impl IntoIterator<Item = &'a str>) -> EventLog {
        let mut log = EventLog::default();
        for f in files {
            log.text.intern(f);
        }
        log
    }

    /// The index of a key set, added when new.
    pub fn keyset(
        &mut self,
        customer_id: Option<&str>,
        email: Option<&str>,
        phone: Option<&str>,
    ) -> u32 {
        let mut at = |v: Option<&str>| v.map_or(NONE, |s| self.text.intern(s));
        let ks = [at(customer_id), at(email), at(phone)];
        self.keyset_of(ks)
    }

    fn keyset_of(&mut self, ks: KeySet) -> u32 {
        let next = self.keysets.len() as u32;
        let i = *self.keyset_index.entry(ks).or_insert(next);
        if i == next {
            self.keysets.push(ks);
        }
        i
    }

    /// The index of the key set of these keys, if the log has it.
    pub fn find_keyset(
        &self,
        customer_id: Option<&str>,
        email: Option<&str>,
        phone: Option<&str>,
    ) -> Option<u32> {
        let at = |v: Option<&str>| match v {
            None => Some(NONE),
            Some(s) => self.text.index.get(s).copied(),
        };
        let ks = [at(customer_id)?, at(email)?, at(phone)?];
        self.keyset_index.get(&ks).copied()
    }

    /// Adds an event after the others.
    pub fn push(&mut self, e: Event) {
        match self.parts.last_mut() {
            Some(part) => part.push(e),
            None => self.parts.push(vec![e]),
        }
    }

    /// Starts a new part with room for `capacity` events, so the next pushes
    /// fill one allocation of that size.
    pub fn start_part(&mut self, capacity: usize) {
        self.parts.push(Vec::with_capacity(capacity));
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.parts.iter().map(Vec::len).sum()
    }

    /// True when the log holds no events.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The events in order.
    pub fn iter(&self) -> impl Iterator<Item = &Event> + Clone {
        self.parts.iter().flatten()
    }

    /// Orders each part by time then id (in parallel, in place), which makes
    /// ordering the whole log (as the writer does) a merge of sorted runs.
    pub fn sort_parts(&mut self) {
        use rayon::prelude::*;
        self.parts
            .par_iter_mut()
            .for_each(|p| p.sort_unstable_by_key(Event::order));
    }

    /// The events ordered by [`Event::order`]: a merge of the parts when
    /// they are sorted (see [`EventLog::sort_parts`]), else a sort. Either
    /// way no second copy of the events is made.
    pub fn ordered(&self) -> Vec<&Event> {
        use rayon::prelude::*;
        use std::cmp::Reverse;
        use std::collections::{BinaryHeap, binary_heap::PeekMut};
        let mut out = Vec::with_capacity(self.len());
        if !self.parts.iter().all(|p| p.is_sorted_by_key(Event::order)) {
            out.extend(self.iter());
            out.par_sort_unstable_by_key(|e: &&Event| e.order());
            return out;
        }
        // The next event of each part (its order, part, index); ties go to the earlier part.
        type Head = Reverse<((i64, u64), usize, usize)>;
        let mut heads: BinaryHeap<Head> = self
            .parts
            .iter()
            .enumerate()
            .filter_map(|(p, part)| part.first().map(|e| Reverse((e.order(), p, 0))))
            .collect();
        while let Some(mut top) = heads.peek_mut() {
            let Reverse((_, p, i)) = *top;
            let part = &self.parts[p];
            out.push(&part[i]);
            match part.get(i + 1) {
                Some(next) => *top = Reverse((next.order(), p, i + 1)),
                None => {
                    PeekMut::pop(top);
                }
            }
        }
        out
    }

    /// The keys of key set `i`, borrowed.
    pub fn keyset_refs(&self, i: u32) -> KeyRefs<'_> {
        self.keysets[i as usize].map(|j| self.text.get(j))
    }

    /// The keys of key set `i`, as owned values.
    pub fn keys(&self, i: u32) -> Keys {
        let [c, e, p] = self.keysets[i as usize];
        let get = |j: u32| self.text.get(j).map(Into::into);
        Keys {
            customer_id: get(c),
            email: get(e),
            phone: get(p),
        }
    }

    /// Moves `other`'s events in after this log's, re-indexing their text.
    /// `file` indices are kept: both logs must number files the same way.
    pub fn append(&mut self, other: EventLog) {
        self.append_with(other, false);
    }

    /// Moves in a log read from the warehouse (see [`EventLog::append`]),
    /// whose `file` fields index its own text table and are re-indexed too.
    pub fn append_stored(&mut self, other: EventLog) {
        self.append_with(other, true);
    }

    /// Like [`EventLog::append_stored`], but its events go before this log's.
    pub fn prepend_stored(&mut self, other: EventLog) {
        let mine = std::mem::take(&mut self.parts);
        self.append_with(other, true);
        self.parts.extend(mine);
    }

    fn append_with(&mut self, other: EventLog, files_are_text: bool) {
        let text: Vec<u32> = other
            .text
            .values
            .iter()
            .map(|s| self.text.intern(s))
            .collect();
        let map = |i: u32| if i == NONE { NONE } else { text[i as usize] };
        let keysets: Vec<u32> = other
            .keysets
            .iter()
            .map(|ks| self.keyset_of(ks.map(map)))
            .collect();
        for mut part in other.parts {
            for e in &mut part {
                e.keys = keysets[e.keys as usize];
                e.kind = text[e.kind as usize];
                if files_are_text {
                    e.file = text[e.file as usize];
                }
            }
            // Kept until the end of the run: no spare capacity.
            part.shrink_to_fit();
            self.parts.push(part);
        }
    }
}

/// Collects the events of one input file, numbering identical lines.
#[derive(Debug)]
pub struct FileEvents {
    file: u32,
    seen: HashMap<u64, u32>,
    /// The events read so far.
    pub log: EventLog,
}

impl FileEvents {
    /// Events of the run's `file`-th file.
    pub fn new(file: u32) -> FileEvents {
        FileEvents {
            file,
            seen: HashMap::default(),
            log: EventLog::default(),
        }
    }

    /// Adds the next event read.
    pub fn push(&mut self, f: &EventFields<'_>) {
        // Identical lines in one file stay distinct records: `#n` counts them.
        let n = self.seen.entry(f.digest).or_default();
        *n += 1;
        let n = *n;
        let keys = self
            .log
            .keyset(f.customer_id.as_deref(), f.email.as_deref(), None);
        let kind = self.log.text.intern(&f.event_type);
        self.log.push(Event {
            ts: f.ts,
            id: event_id(f.digest, n),
            digest: f.digest,
            n,
            keys,
            kind,
            file: self.file,
        });
    }
}

/// What became of the new events of a run.
#[derive(Debug, Default)]
pub struct EventResolution {
    /// How many new events won (and are added).
    pub winners: usize,
    /// File index of each duplicate.
    pub duplicate_files: Vec<u32>,
    /// File index of each winner.
    pub winner_files: Vec<u32>,
}

/// Record keys (digest, occurrence) of stored events that are not in a log.
pub type KnownEvents = rustc_hash::FxHashSet<(u64, u32)>;

/// Keeps the new events of `log` (those after the first `stored` ones) that
/// are not stored yet (neither in the log nor `known`), the last read of
/// each record key winning; the others are removed and reported as
/// duplicates. Stored events are never replaced.
pub fn resolve(log: &mut EventLog, stored: usize, known: &KnownEvents) -> EventResolution {
    use rayon::prelude::*;
    // Keys are split into shards by digest, so each shard's hash table is a
    // sixteenth of the whole and shards run in parallel.
    const SHARD_BITS: u32 = 4;
    let key = |e: &Event| (e.digest, e.n);
    let shard = |e: &Event| (e.digest >> (64 - SHARD_BITS)) as usize;
    let events = log.parts.iter().flatten();
    let duplicates: Vec<Vec<usize>> = (0..1usize << SHARD_BITS)
        .into_par_iter()
        .map(|s| {
            let in_log: KnownEvents = events
                .clone()
                .take(stored)
                .filter(|e| shard(e) == s)
                .map(key)
                .collect();
            let mut last: HashMap<(u64, u32), usize> = HashMap::default();
            let mut dup = Vec::new();
            for (i, e) in events.clone().enumerate().skip(stored) {
                if shard(e) != s {
                    continue;
                }
                if in_log.contains(&key(e)) || known.contains(&key(e)) {
                    dup.push(i);
                } else if let Some(prev) = last.insert(key(e), i) {
                    dup.push(prev);
                }
            }
            dup
        })
        .collect();
    let mut keep = vec![true; log.len()];
    for i in duplicates.into_iter().flatten() {
        keep[i] = false;
    }
    let mut out = EventResolution::default();
    let mut at = 0;
    for part in &mut log.parts {
        part.retain(|e| {
            let (i, kept) = (at, keep[at]);
            at += 1;
            if i < stored {
                return true;
            }
            if kept {
                out.winners += 1;
                out.winner_files.push(e.file);
            } else {
                out.duplicate_files.push(e.file);
            }
            kept
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev<'a>(
        id: Option<&'a str>,
        email: Option<&'a str>,
        kind: &'a str,
        digest: u64,
    ) -> EventFields<'a> {
        EventFields {
            customer_id: id.map(Into::into),
            email: email.map(Into::into),
            event_type: kind.into(),
            ts: 5,
            digest,
        }
    }

    #[test]
    fn an_event_id_is_the_hash_of_its_record_key() {
        for (digest, n) in [
            (0, 0),
            (0, 1),
            (0xab, 2),
            (9, 10),
            (1 << 60, 99),
            (u64::MAX, u32::MAX),
        ] {
            assert_eq!(
                event_id(digest, n),
                stable_hash(record_key(digest, n).as_bytes())
            );
            let mut buf = [0u8; 32];
            let len = id_bytes(digest, Some(n), &mut buf);
            assert_eq!(&buf[..len], record_key(digest, n).as_bytes());
            let len = id_bytes(digest, None, &mut buf);
            assert_eq!(&buf[..len], hex_id(digest).as_bytes());
        }
    }

    #[test]
    fn ids_and_keys_round_trip_through_text() {
        assert_eq!(record_key(0xab, 2), "ev:00000000000000ab#2");
        assert_eq!(parse_record_key("ev:00000000000000ab#2"), Some((0xab, 2)));
        assert_eq!(parse_hex_id(&hex_id(u64::MAX)), Some(u64::MAX));
        for bad in [
            "ev:ab#1",
            "ev:+00000000000000a#1",
            "x:00000000000000ab#1",
            "ev:00000000000000ab#",
            "ev:00000000000000ab#+1",
        ] {
            assert_eq!(parse_record_key(bad), None, "{bad}");
        }
    }

    #[test]
    fn identical_lines_are_numbered_and_text_is_shared() {
        let mut f = FileEvents::new(3);
        f.push(&ev(Some("C1"), None, "email_open", 7));
        f.push(&ev(Some("C1"), None, "email_open", 7));
        f.push(&ev(None, Some("a@b.c"), "web_visit", 8));
        let read: Vec<Event> = f.log.iter().copied().collect();
        let ns: Vec<u32> = read.iter().map(|e| e.n).collect();
        assert_eq!(ns, [1, 2, 1]);
        assert_eq!(read[0].keys, read[1].keys);
        assert_eq!(read[1].id, stable_hash(b"ev:0000000000000007#2"));
        let mut all = EventLog::with_files(["a", "b", "c", "d"]);
        all.append(f.log);
        let e = *all.iter().nth(2).unwrap();
        assert_eq!(e.file, 3);
        assert_eq!(all.text.get(e.kind), Some("web_visit"));
        assert_eq!(all.keys(e.keys).email.as_deref(), Some("a@b.c"));
        assert_eq!(all.keys(e.keys).customer_id, None);
    }

    proptest::proptest! {
        #[test]
        fn the_log_in_order_is_every_event_sorted_by_time_then_id(
            parts in proptest::collection::vec(
                proptest::collection::vec((-3i64..3, 0u64..4), 0..6), 0..5),
            sort_first: bool,
        ) {
            let mut log = EventLog::default();
            for part in &parts {
                log.start_part(part.len());
                for &(ts, id) in part {
                    log.push(Event { ts, id, digest: 0, n: 1, keys: 0, kind: 0, file: 0 });
                }
            }
            if sort_first {
                log.sort_parts();
            }
            let got: Vec<(i64, u64)> = log.ordered().iter().map(|e| e.order()).collect();
            let mut want: Vec<(i64, u64)> = parts.concat();
            want.sort_unstable();
            proptest::prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn stored_known_and_earlier_reads_are_duplicates() {
        let mut log = EventLog::default();
        let e = |digest, n, file| Event {
            ts: 0,
            id: digest,
            digest,
            n,
            keys: 0,
            kind: 0,
            file,
        };
        // The stored event, then three files' parts; (7, 1) is stored but
        // known only by its key.
        let parts = [
            vec![e(1, 1, 9)],
            vec![e(1, 1, 0), e(2, 1, 0), e(u64::MAX, 1, 0)],
            vec![e(2, 1, 1), e(7, 1, 1), e(2, 2, 1)],
            vec![e(u64::MAX, 1, 2)],
        ];
        for part in parts {
            log.start_part(part.len());
            part.into_iter().for_each(|ev| log.push(ev));
        }
        let known: KnownEvents = [(7, 1)].into_iter().collect();
        let r = resolve(&mut log, 1, &known);
        assert_eq!(r.winners, 3);
        assert_eq!(r.winner_files, [1, 1, 2]);
        assert_eq!(r.duplicate_files, [0, 0, 0, 1]);
        assert_eq!(
            log.iter().copied().collect::<Vec<_>>(),
            [e(1, 1, 9), e(2, 1, 1), e(2, 2, 1), e(u64::MAX, 1, 2)]
        );
    }
}
