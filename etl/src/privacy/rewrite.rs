//! Rewriting warehouse files without the people being erased: their rows
//! keep their dates and amounts under the pseudonym, and lose everything
//! that identifies them. Generic over a file's schema: a row belongs to a
//! person by its `customer_id`, by its event key set, or by its CRM record
//! key (`crm:<id>`); in such a row every column named below is rewritten.
//!
//! | column | becomes |
//! |---|---|
//! | `customer_id` | the pseudonym |
//! | `key_customer_id` | the pseudonym (their own id) or a keyed hash (another id they gave) |
//! | `key_email`, `key_phone`, `key` of the CRM key history | a keyed hash (`h:<hex>`: key sets stay distinct, so events still join) |
//! | `email`, `phone`, `first_name`, `last_name`, `birth_date` | empty |
//! | `record_key`, `key` = `crm:<id>` | `crm:<pseudonym>` |
//!
//! Rejects have no customer: a reject whose raw text or detail mentions one
//! of the person's emails (any case), phones (any separators) or ids keeps
//! its file, line and reason, and loses the text.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::{Array, ArrayRef, Date32Array, RecordBatch, StringArray};
use cvm_shared::privacy::key::HASH_PREFIX;
use cvm_shared::privacy::{KeyKind, PrivacyKey};

use crate::warehouse::WarehouseError;
use crate::warehouse::parquet_io::{self, writer_properties};

/// What replaces a reject's text.
pub const ERASED_TEXT: &str = "[erased on request]";

/// The people being erased, as the warehouse knows them.
#[derive(Debug, Default)]
pub struct People {
    /// Their ids (CRM or guest id) → pseudonym.
    pub ids: HashMap<String, String>,
    /// Their event key sets (key_customer_id, key_email, key_phone; "" for null) → pseudonym.
    pub keysets: HashMap<[String; 3], String>,
    /// Every email they used, normalised.
    pub emails: HashSet<String>,
    /// Every phone they used, E.164.
    pub phones: HashSet<String>,
    /// Every id they gave (CRM id, loyalty card, web customer id).
    pub given_ids: HashSet<String>,
}

impl People {
    /// Whether nobody is to be erased.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Whether `text` mentions one of them (for rejects' raw text).
    pub fn mentioned_in(&self, text: &str) -> bool {
        let lower = text.to_lowercase();
        if self.emails.iter().any(|e| lower.contains(e.as_str())) {
            return true;
        }
        let digits: String = text.chars().filter(char::is_ascii_digit).collect();
        if self
            .phones
            .iter()
            .map(|p| p.trim_start_matches('+'))
            .any(|p| p.len() >= 6 && digits.contains(p))
        {
            return true;
        }
        self.ids
            .keys()
            .chain(self.given_ids.iter())
            .any(|id| contains_token(text, id))
    }
}

/// Whether `id` occurs in `text` not as part of a longer word (so `C1` is
/// not found in `C10`).
fn contains_token(text: &str, id: &str) -> bool {
    if id.is_empty() {
        return false;
    }
    let word = |c: char| c.is_alphanumeric() || c == '_' || c == '-';
    text.match_indices(id).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + id.len()..].chars().next();
        !before.is_some_and(word) && !after.is_some_and(word)
    })
}

/// Rewrites one batch; None when no row of it belongs to `people`.
pub fn batch(
    b: &RecordBatch,
    people: &People,
    key: &PrivacyKey,
) -> Result<Option<RecordBatch>, String> {
    let owners = owners(b, people);
    let rejects = b.column_by_name("raw").is_some() && b.column_by_name("reason").is_some();
    let mentioned: Vec<bool> = if rejects {
        let raw = strings(b, "raw");
        let detail = strings(b, "detail");
        (0..b.num_rows())
            .map(|i| {
                let of = |a: Option<&StringArray>| {
                    a.is_some_and(|a| !a.is_null(i) && people.mentioned_in(a.value(i)))
                };
                of(raw) || of(detail)
            })
            .collect()
    } else {
        Vec::new()
    };
    if owners.iter().all(Option::is_none) && !mentioned.contains(&true) {
        return Ok(None);
    }
    let schema = b.schema();
    let kinds = strings(b, "kind");
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(b.num_columns());
    for (field, array) in schema.fields().iter().zip(b.columns()) {
        let name = field.name().as_str();
        let nullable = field.is_nullable();
        let new: Option<ArrayRef> = match (name, array.as_any().downcast_ref::<StringArray>()) {
            ("raw" | "detail", Some(a)) if rejects => Some(map_strings(a, |i, v| {
                (mentioned[i] && v.is_some()).then(|| Some(ERASED_TEXT.to_owned()))
            })),
            (_, Some(a)) => {
                let rewrite = |i: usize, v: Option<&str>| -> Option<Option<String>> {
                    let p = owners[i]?;
                    let v = v?;
                    // Already a hash in a pseudonymised warehouse: kept.
                    let hashed = |kind| {
                        Some(Some(format!(
                            "{HASH_PREFIX}{}",
                            key.hash_of_stored(kind, v)
                        )))
                    };
                    let cleared = || {
                        if nullable {
                            Some(None)
                        } else {
                            hashed(KeyKind::Name)
                        }
                    };
                    match name {
                        "customer_id" => Some(Some(p.to_owned())),
                        "key_customer_id" => {
                            if people.ids.get(v).map(String::as_str) == Some(p) {
                                Some(Some(p.to_owned()))
                            } else {
                                hashed(KeyKind::CustomerId)
                            }
                        }
                        "key_email" => hashed(KeyKind::Email),
                        "key_phone" => hashed(KeyKind::Phone),
                        "email" | "phone" | "first_name" | "last_name" => cleared(),
                        "record_key" | "key" if v.starts_with("crm:") => {
                            Some(Some(format!("crm:{p}")))
                        }
                        "key" => {
                            let kind = match kinds.map(|k| k.value(i)) {
                                Some("phone") => KeyKind::Phone,
                                _ => KeyKind::Email,
                            };
                            hashed(kind)
                        }
                        _ => None,
                    }
                };
                let touched =
                    (0..a.len()).any(|i| rewrite(i, (!a.is_null(i)).then(|| a.value(i))).is_some());
                touched.then(|| map_strings(a, rewrite))
            }
            ("birth_date", None) => array.as_any().downcast_ref::<Date32Array>().map(|d| {
                let values: Date32Array = (0..d.len())
                    .map(|i| (owners[i].is_none() && !d.is_null(i)).then(|| d.value(i)))
                    .collect();
                Arc::new(values) as ArrayRef
            }),
            _ => None,
        };
        columns.push(new.unwrap_or_else(|| array.clone()));
    }
    RecordBatch::try_new(schema, columns)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// Each row's owner's pseudonym, if it belongs to someone being erased.
fn owners<'a>(b: &RecordBatch, people: &'a People) -> Vec<Option<&'a str>> {
    let n = b.num_rows();
    let customer = strings(b, "customer_id");
    let record = strings(b, "key").or_else(|| strings(b, "record_key"));
    let keys = ["key_customer_id", "key_email", "key_phone"].map(|c| strings(b, c));
    let by_keyset = customer.is_none() && keys.iter().any(Option::is_some);
    (0..n)
        .map(|i| {
            fn text(a: Option<&StringArray>, i: usize) -> Option<&str> {
                a.and_then(|a| (!a.is_null(i)).then(|| a.value(i)))
            }
            if let Some(p) = text(customer, i).and_then(|c| people.ids.get(c)) {
                return Some(p.as_str());
            }
            if by_keyset {
                let triple = keys.map(|k| text(k, i).unwrap_or("").to_owned());
                if let Some(p) = people.keysets.get(&triple) {
                    return Some(p.as_str());
                }
            }
            text(record, i)
                .and_then(|r| r.strip_prefix("crm:"))
                .and_then(|id| people.ids.get(id))
                .map(String::as_str)
        })
        .collect()
}

fn strings<'a>(b: &'a RecordBatch, name: &str) -> Option<&'a StringArray> {
    b.column_by_name(name)?
        .as_any()
        .downcast_ref::<StringArray>()
}

/// `a` with row `i` replaced by `f(i, value)` where it returns Some.
fn map_strings(
    a: &StringArray,
    f: impl Fn(usize, Option<&str>) -> Option<Option<String>>,
) -> ArrayRef {
    let mut out = StringBuilder::with_capacity(a.len(), a.value_data().len());
    for i in 0..a.len() {
        let v = (!a.is_null(i)).then(|| a.value(i));
        match f(i, v) {
            Some(Some(new)) => out.append_value(new),
            Some(None) => out.append_null(),
            None => out.append_option(v),
        }
    }
    Arc::new(out.finish())
}

/// Rewrites the Parquet file `path` into `dest` (which may be `path`
/// itself, replaced atomically) if any row of it changes; returns whether it did.
pub fn parquet_file(
    path: &Path,
    dest: &Path,
    people: &People,
    key: &PrivacyKey,
) -> Result<bool, WarehouseError> {
    let failed = |message: String| WarehouseError::Format {
        path: path.to_path_buf(),
        message,
    };
    let reader = parquet_io::open_file(path)?;
    let schema = arrow_array::RecordBatchReader::schema(&reader);
    let mut out = Vec::new();
    let mut changed = false;
    for b in reader {
        let b = b.map_err(|e| failed(e.to_string()))?;
        match batch(&b, people, key).map_err(failed)? {
            Some(new) => {
                changed = true;
                out.push(new);
            }
            None => out.push(b),
        }
    }
    if changed {
        parquet_io::write_batches(dest, &schema, &writer_properties(&[]), out)?;
    }
    Ok(changed)
}

/// Rewrites a CSV side file (`customer_id` column) whose rows name one of
/// them; returns whether it did.
pub fn csv_file(path: &Path, people: &People) -> Result<bool, WarehouseError> {
    let failed = |message: String| WarehouseError::Format {
        path: path.to_path_buf(),
        message,
    };
    let mut reader = csv::Reader::from_path(path).map_err(|e| failed(e.to_string()))?;
    let header = reader.headers().map_err(|e| failed(e.to_string()))?.clone();
    let Some(col) = header.iter().position(|h| h == "customer_id") else {
        return Ok(false);
    };
    let mut rows = Vec::new();
    let mut changed = false;
    for r in reader.records() {
        let r = r.map_err(|e| failed(e.to_string()))?;
        let mut fields: Vec<String> = r.iter().map(str::to_owned).collect();
        if let Some(p) = fields.get(col).and_then(|id| people.ids.get(id)) {
            fields[col] = p.clone();
            changed = true;
        }
        rows.push(fields);
    }
    if changed {
        parquet_io::write_atomically(path, |out| {
            let mut w = csv::Writer::from_writer(out);
            w.write_record(&header).map_err(|e| failed(e.to_string()))?;
            for r in &rows {
                w.write_record(r).map_err(|e| failed(e.to_string()))?;
            }
            w.into_inner().map_err(|e| failed(e.to_string()))
        })?;
    }
    Ok(changed)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;

    #[test]
    fn a_reject_mentions_a_person_by_email_any_case_phone_any_separators_or_whole_id() {
        let people = People {
            ids: [("C1".to_string(), "erased-x".to_string())].into(),
            emails: ["ann@example.com".to_string()].into(),
            phones: ["+441632960001".to_string()].into(),
            ..People::default()
        };
        assert!(people.mentioned_in("C9,Ann@Example.COM,x"));
        assert!(people.mentioned_in("r1,+44 (1632) 960-001,9.99"));
        assert!(people.mentioned_in("C1,,Ann"));
        assert!(!people.mentioned_in("C10,bob@example.com,+441632960002"));
    }
}
