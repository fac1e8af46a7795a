//! How a session is read from Redis: the keys of one lookup and the record they decode to.
//! Shared by the store and the tracking feed, below both.

use super::StoreError;
use crate::keys;
use crate::session::SessionRecord;

/// The keys a session check reads: the record and its last activity (one slot).
pub(super) fn session_keys(id: &str) -> Vec<String> {
    vec![keys::session(id), keys::seen(id)]
}

/// The record from `MGET session seen`, with the later of the two activity times.
pub(super) fn decode(raw: Vec<Option<String>>) -> Result<Option<SessionRecord>, StoreError> {
    let mut raw = raw.into_iter();
    let Some(mut record) = decode_record(raw.next().flatten())? else {
        return Ok(None);
    };
    if let Some(seen) = raw.next().flatten().and_then(|s| s.parse::<u64>().ok()) {
        record.last_seen_at = record.last_seen_at.max(seen);
    }
    Ok(Some(record))
}

/// The record from `GET session` alone (its activity time as the record has it).
pub(super) fn decode_record(json: Option<String>) -> Result<Option<SessionRecord>, StoreError> {
    json.map(|json| serde_json::from_str(&json).map_err(|e| StoreError::Corrupt(e.to_string())))
        .transpose()
}
