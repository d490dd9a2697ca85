//! The events step: the resolved event log, each event naming its customer
//! as transactions do (CRM, else guest), else by the id it gives, written
//! into the staged version.

use std::path::Path;

use rayon::prelude::*;

use crate::consolidate::events::EventLog;
use crate::consolidate::identity::{Directory, Guests};
use crate::warehouse::{self, WarehouseError};

/// Writes `events` into `version/events` (nothing when no version is being
/// staged). The log is consumed: it is freed before the customers are built.
pub(super) fn write(
    version: Option<&Path>,
    mut events: EventLog,
    directory: &Directory<'_>,
    guests: &Guests,
) -> Result<(), WarehouseError> {
    let Some(version) = version else {
        return Ok(());
    };
    events.sort_parts();
    // The order to write in (a merge on one thread) beside each key set's customer.
    let (ordered, customers): (_, Vec<Option<&str>>) = rayon::join(
        || events.ordered(),
        || {
            (0..events.keysets.len() as u32)
                .into_par_iter()
                .map(|k| {
                    let keys = events.keys(k);
                    directory
                        .resolve(&keys)
                        .or_else(|| guests.resolve(&keys).map(|g| &*g.id))
                        .or_else(|| events.text.get(events.keysets[k as usize][0]))
                })
                .collect()
        },
    );
    warehouse::events::write_log(&version.join("events"), &events, &ordered, &customers).map(drop)
}
