//! What a run changed in the transactions: the customers whose rows changed
//! (their purchase totals are summed again) and the month partitions that
//! hold a changed row (written again; the others are shared with the version
//! the run started from).

use rustc_hash::FxHashSet as HashSet;

use crate::warehouse::StoredTxn;
use crate::warehouse::months::{Month, month_of};

/// The customers and months whose transactions a run changed: a row added,
/// removed, or moved to another customer (both ends, and the row's month).
/// Not tracked on a first load or a full rebuild: then every customer is
/// summed and every month written.
#[derive(Debug, Default)]
pub(super) struct Touched(Option<Changed>);

#[derive(Debug, Default)]
struct Changed {
    customers: HashSet<Box<str>>,
    /// Those of them whose stored rows changed: a row removed or replaced,
    /// or a stored key set moved to or from them. The others only gained
    /// rows.
    altered: HashSet<Box<str>>,
    months: HashSet<Month>,
}

impl Touched {
    /// Nothing changed yet, tracked or not.
    pub fn tracking(on: bool) -> Touched {
        Touched(on.then(Changed::default))
    }

    /// Notes that customer `id` gained a row.
    pub fn customer(&mut self, id: &str) {
        if let Some(c) = &mut self.0
            && !c.customers.contains(id)
        {
            c.customers.insert(id.into());
        }
    }

    /// Notes that a stored row of customer `id` changed (see `Changed::altered`).
    pub fn altered(&mut self, id: &str) {
        self.customer(id);
        if let Some(c) = &mut self.0
            && !c.altered.contains(id)
        {
            c.altered.insert(id.into());
        }
    }

    /// Notes that a row at `occurred_at` was added, removed or changed.
    pub fn month(&mut self, occurred_at: i64) {
        if let Some(c) = &mut self.0 {
            c.months.insert(month_of(occurred_at));
        }
    }

    /// Notes that month `m` is written again.
    pub fn whole_month(&mut self, m: Month) {
        if let Some(c) = &mut self.0 {
            c.months.insert(m);
        }
    }

    /// Notes that stored row `t`, of `customer`, is removed or replaced.
    pub fn row(&mut self, t: &StoredTxn, customer: Option<&str>) {
        if let Some(id) = customer {
            self.altered(id);
        }
        self.month(t.row.occurred_at);
    }

    /// Both.
    pub fn merge(mut self, other: Touched) -> Touched {
        if let (Some(a), Some(b)) = (&mut self.0, other.0) {
            a.customers.extend(b.customers);
            a.altered.extend(b.altered);
            a.months.extend(b.months);
        }
        self
    }

    /// Whether changes are tracked.
    pub fn tracked(&self) -> bool {
        self.0.is_some()
    }

    /// The customers, when tracked.
    pub fn customers(&self) -> Option<&HashSet<Box<str>>> {
        self.0.as_ref().map(|c| &c.customers)
    }

    /// Whether customer `id`'s stored rows are all still theirs, unchanged
    /// (when tracked: else none is known to be).
    pub fn grown_only(&self, id: &str) -> bool {
        self.0.as_ref().is_some_and(|c| !c.altered.contains(id))
    }

    /// The months, when tracked.
    pub fn months(&self) -> Option<&HashSet<Month>> {
        self.0.as_ref().map(|c| &c.months)
    }
}
