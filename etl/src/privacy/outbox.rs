//! The file outbox (`CVM_MAIL_OUTBOX_DIR`): one `.eml` file per message the
//! portal "sent" without an SMTP server. A message to an erased person is
//! a copy of their personal data: it is deleted (the database keeps the
//! message's fate, under the pseudonym).

use std::path::Path;

use super::PrivacyError;
use super::rewrite::People;
use crate::warehouse::WarehouseError;

/// Deletes the `.eml` files of `dir` addressed to or mentioning one of
/// `people`; returns how many.
pub fn scrub(dir: &Path, people: &People) -> Result<usize, PrivacyError> {
    let mut n = 0;
    for path in super::files_with_extension(dir, "eml")? {
        let bytes = std::fs::read(&path).map_err(|source| WarehouseError::Io {
            path: path.clone(),
            source,
        })?;
        if people.mentioned_in(&String::from_utf8_lossy(&bytes)) {
            std::fs::remove_file(&path).map_err(|source| WarehouseError::Io {
                path: path.clone(),
                source,
            })?;
            n += 1;
        }
    }
    Ok(n)
}
