//! Connection-style pagination (`first`, `after`, opaque cursors) for the
//! lists that grow: messages, consults, alerts, the audit trail.
//!
//! A cursor is the list's keyset position (a sequence, or a time and an id)
//! as base64 JSON ([`OpaqueCursor`]); each list's key has a field name of its
//! own and refuses unknown fields, so a cursor of one list is refused by
//! another (`BAD_USER_INPUT`) rather than misread. The stores read one row
//! more than asked, to tell whether a next page exists, and never skip rows
//! with `OFFSET`.

use async_graphql::connection::{Connection, CursorType, Edge, OpaqueCursor};
use async_graphql::OutputType;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::api::error::ApiError;

/// Rows a page holds when `first` is not given.
pub const DEFAULT_FIRST: usize = 50;
/// Most rows a page holds.
pub const MAX_FIRST: usize = 200;

/// What a client asked of a list: how many, and after which row.
pub struct Page<K> {
    pub first: usize,
    pub after: Option<K>,
}

impl<K: Serialize + DeserializeOwned> Page<K> {
    /// Checks `first` (1–200, default 50) and decodes `after`.
    pub fn of(first: Option<i32>, after: Option<String>) -> Result<Page<K>, ApiError> {
        let first = match first {
            None => DEFAULT_FIRST,
            Some(n) if (1..=MAX_FIRST as i32).contains(&n) => n as usize,
            Some(_) => return Err(ApiError::bad_input("first: 1–200")),
        };
        let after = match after {
            None => None,
            Some(text) => Some(
                OpaqueCursor::<K>::decode_cursor(&text)
                    .map_err(|_| ApiError::bad_input("after: not a cursor of this list"))?
                    .0,
            ),
        };
        Ok(Page { first, after })
    }

    /// How many rows to read: one more than a page, to know if another follows.
    pub fn limit(&self) -> u32 {
        self.first as u32 + 1
    }
}

/// The connection of `rows` (each with its key), read with [`Page::limit`].
pub fn connection<K, N>(mut rows: Vec<(K, N)>, first: usize) -> Connection<OpaqueCursor<K>, N>
where
    K: Serialize + DeserializeOwned + Send + Sync,
    N: OutputType,
{
    let more = rows.len() > first;
    rows.truncate(first);
    let mut c = Connection::new(false, more);
    c.edges
        .extend(rows.into_iter().map(|(k, n)| Edge::new(OpaqueCursor(k), n)));
    c
}

/// A message's place: its sequence in the consult.
#[derive(Serialize, Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields)]
pub struct MessageKey {
    pub m: u64,
}

/// A consult's place, newest first: when it was requested, and its id.
#[derive(Serialize, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct ConsultKey {
    pub c: (u64, String),
}

/// An alert's place, newest first: when it was raised, and its id.
#[derive(Serialize, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct AlertKey {
    pub a: (u64, String),
}

/// An audit entry's place: its sequence in the chain.
#[derive(Serialize, Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields)]
pub struct AuditKey {
    pub l: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_of_one_list_is_refused_by_another() {
        let audit = OpaqueCursor(AuditKey { l: 7 }).encode_cursor();
        let back = Page::<AuditKey>::of(Some(10), Some(audit.clone())).unwrap();
        assert_eq!(back.after.map(|k| k.l), Some(7));
        assert!(Page::<MessageKey>::of(None, Some(audit)).is_err());
        assert!(Page::<AlertKey>::of(None, Some("not base64 !".into())).is_err());
    }

    #[test]
    fn first_defaults_to_50_and_is_bounded() {
        assert_eq!(Page::<AuditKey>::of(None, None).unwrap().first, 50);
        assert_eq!(Page::<AuditKey>::of(Some(200), None).unwrap().limit(), 201);
        assert!(Page::<AuditKey>::of(Some(0), None).is_err());
        assert!(Page::<AuditKey>::of(Some(201), None).is_err());
    }

    #[test]
    fn a_page_says_whether_more_follow() {
        let rows: Vec<(AuditKey, i32)> = (1..=3).map(|i| (AuditKey { l: i }, i as i32)).collect();
        let c = connection(rows.clone(), 2);
        assert_eq!(c.edges.len(), 2);
        assert!(c.has_next_page);
        let c = connection(rows, 3);
        assert!(!c.has_next_page);
    }
}
