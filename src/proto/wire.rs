//! The wire codec: every datagram Loot Sync sends, in one place.
//!
//! A datagram is one version byte followed by a postcard-encoded [`Envelope`]. Postcard is
//! a stable, documented format; decoding is bounded by the datagram itself (at most
//! [`MAX_DATAGRAM`] bytes), trailing bytes are rejected, and every decoded entry and list is
//! checked against its bounds before the sync core sees it.

use crate::proto::digest::{Digest, Key};
use crate::proto::entry::{Entry, EntryError, MAX_NAME_BYTES};
use crate::proto::fingerprint::Fingerprint;
use crate::proto::limits::{MAX_DATAGRAM, MAX_MESSAGE};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Version byte that leads every datagram. Bump on any incompatible change.
pub const WIRE_VERSION: u8 = 3;
/// Longest group name carried in an envelope.
pub const MAX_GROUP_BYTES: usize = 32;
/// Most digests in one [`Mode::Ids`] list or want list (they must fit one datagram anyway).
pub const MAX_IDS: usize = 64;

/// A random per-process node id; lets a daemon ignore its own looped-back multicast.
pub type NodeId = u64;

/// Address-validation cookie: a responder gives one to each requester address; a request
/// echoing it proves the requester receives at that address (so it is not a spoofed
/// source), which lifts the 3x answer limit.
pub type Cookie = [u8; 8];

/// What every datagram carries: who sent it, for which group, and the message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Group (ledger) name; peers only talk within one name.
    pub group: String,
    /// Sender's node id.
    pub from: NodeId,
    /// Sender's whisper (unicast) port; its IP is the datagram's source address.
    pub whisper_port: u16,
    /// The message.
    pub body: Body,
}

/// The four message types.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Body {
    /// Heartbeat: makes "grouped" observable and carries the set fingerprint.
    Hello(Hello),
    /// New entries, multicast in real time (local adjusts, and entries a sync found the
    /// group lacking).
    LogEntry(Vec<Entry>),
    /// "Tell me what I am missing."
    SyncRequest(SyncRequest),
    /// "Here is what you need", over whisper.
    SyncResponse(SyncResponse),
}

impl Body {
    /// The seed's name for this message type, as printed in SYNC log lines.
    pub fn kind(&self) -> &'static str {
        match self {
            Body::Hello(_) => "HELLO",
            Body::LogEntry(_) => "LOG_ENTRY",
            Body::SyncRequest(_) => "SYNC_REQUEST",
            Body::SyncResponse(_) => "SYNC_RESPONSE",
        }
    }

    /// Number of entries carried (for log lines).
    pub fn entry_count(&self) -> usize {
        match self {
            Body::LogEntry(entries) => entries.len(),
            Body::SyncResponse(SyncResponse::Ranges(r)) => r.entries.len(),
            _ => 0,
        }
    }
}

/// Heartbeat contents.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// Sender's node name (for status output).
    pub name: String,
    /// Fingerprint of the sender's whole entry set (includes its count).
    pub fingerprint: Fingerprint,
    /// Sender's newest key, if any (diagnostics only: never used to decide what to send).
    pub newest: Option<Key>,
}

/// A request to reconcile.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum SyncRequest {
    /// Multicast on group join: "does anyone differ from this fingerprint?". Peers that
    /// differ answer with a one-datagram [`SyncResponse::Summary`], never with entries, so
    /// a joiner is not flooded by every member at once.
    Probe {
        /// Requester's whole-set fingerprint.
        fingerprint: Fingerprint,
    },
    /// One round of range-based reconciliation, sent over whisper to one chosen peer.
    Ranges(RangesRequest),
}

/// One round of reconciliation from the requester.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RangesRequest {
    /// Matches the response datagrams to this request.
    pub request_id: u64,
    /// Ranges, each with the requester's fingerprint or id list.
    pub runs: Vec<Run>,
    /// Digests of entries the requester knows the responder has and wants sent.
    pub want: Vec<Digest>,
    /// The cookie the responder last gave us, echoed to prove our address.
    pub cookie: Option<Cookie>,
    /// Zero bytes filling a request that carries no cookie up to a full datagram, so the
    /// responder's 3x allowance already covers a useful first answer (as QUIC pads its
    /// first packet). Empty otherwise.
    pub padding: Vec<u8>,
}

/// A response.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum SyncResponse {
    /// Reply to a probe from a peer whose set differs: its fingerprint.
    Summary {
        /// Responder's node name.
        name: String,
        /// Responder's whole-set fingerprint.
        fingerprint: Fingerprint,
        /// Cookie for the prober to echo in its range requests.
        cookie: Option<Cookie>,
    },
    /// One datagram of the answer to a [`RangesRequest`].
    Ranges(RangesResponse),
}

/// One datagram of a range-reconciliation answer. Each datagram stands alone: its runs say
/// exactly which key spans it answers, so when some datagrams are lost the requester asks
/// again for just the spans nobody answered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RangesResponse {
    /// The request this answers.
    pub request_id: u64,
    /// This datagram's index, from 0.
    pub part: u16,
    /// How many datagrams the whole answer has.
    pub parts: u16,
    /// The responder's view of the spans this datagram covers.
    pub runs: Vec<Run>,
    /// Entries the requester lacks (within the covered spans, or asked for by id).
    pub entries: Vec<Entry>,
    /// Digests the requester listed that the responder lacks: the requester should
    /// multicast those entries (the group probably lacks them too).
    pub want: Vec<Digest>,
    /// Cookie for the requester to echo, when its request did not carry a valid one.
    pub cookie: Option<Cookie>,
}

/// Contiguous ranges: the first starts at `lower`, each item ends at its `upper`
/// (exclusive) and the next starts there.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// Inclusive lower bound of the first item.
    pub lower: Key,
    /// The ranges, in key order.
    pub items: Vec<RangeItem>,
}

/// One range of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RangeItem {
    /// Exclusive upper bound.
    pub upper: Key,
    /// What the sender says about its entries in the range.
    pub mode: Mode,
}

/// What a side says about one range.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Mode {
    /// Resolved: nothing more to do for this range.
    Done,
    /// The sender's fingerprint of the range.
    Fingerprint(Fingerprint),
    /// The digest of every entry the sender holds in the range (entries are identified by
    /// content, so two bodies under one `id` field are two items here).
    Ids(Vec<Digest>),
}

/// Why a datagram was rejected or could not be built.
#[derive(Debug, Error)]
pub enum WireError {
    /// Empty datagram.
    #[error("empty datagram")]
    Empty,
    /// Datagram larger than [`MAX_DATAGRAM`].
    #[error("datagram of {0} bytes exceeds {MAX_DATAGRAM}")]
    TooLarge(usize),
    /// Unknown version byte.
    #[error("unsupported wire version {0}")]
    Version(u8),
    /// Postcard could not decode it.
    #[error("malformed datagram: {0}")]
    Malformed(#[from] postcard::Error),
    /// Decoded, but bytes were left over.
    #[error("{0} trailing bytes after message")]
    Trailing(usize),
    /// An entry inside broke a bound.
    #[error("invalid entry: {0}")]
    Entry(#[from] EntryError),
    /// Some other field broke a bound.
    #[error("field out of bounds: {0}")]
    Bounds(&'static str),
}

impl WireError {
    /// Short label for drop counters.
    pub fn label(&self) -> &'static str {
        match self {
            WireError::Empty | WireError::Malformed(_) | WireError::Trailing(_) => "malformed",
            WireError::TooLarge(_) => "too_large",
            WireError::Version(_) => "bad_version",
            WireError::Entry(_) => "invalid_entry",
            WireError::Bounds(_) => "out_of_bounds",
        }
    }
}

/// Encodes an envelope into a clear datagram; fails if it would exceed [`MAX_MESSAGE`].
pub fn encode(envelope: &Envelope) -> Result<Vec<u8>, WireError> {
    let mut out = vec![WIRE_VERSION];
    let body = postcard::to_stdvec(envelope)?;
    out.extend_from_slice(&body);
    if out.len() > MAX_MESSAGE {
        return Err(WireError::TooLarge(out.len()));
    }
    Ok(out)
}

/// Entries in their encoded form, one after another: each is `postcard(Entry)`, exactly the
/// payload of the entry's log record, so a responder copies stored bytes into an answer
/// instead of decoding each entry and encoding it again.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EncodedEntries {
    count: usize,
    bytes: Vec<u8>,
}

impl EncodedEntries {
    /// Appends one entry's encoding (as [`encoded_len`] counts it: a log record's payload).
    pub fn push_encoded(&mut self, encoded: &[u8]) {
        self.count += 1;
        self.bytes.extend_from_slice(encoded);
    }

    /// Appends `entry`, encoding it (for entries that are not stored yet).
    pub fn push(&mut self, entry: &Entry) -> Result<(), WireError> {
        // Encoded aside, so a failure leaves the entries already held intact.
        self.push_encoded(&postcard::to_stdvec(entry)?);
        Ok(())
    }

    /// Number of entries held.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// Encodes `envelope`, whose body is a [`SyncResponse::Ranges`] with an empty `entries`
/// list, as if `entries` were that list: byte for byte what [`encode`] makes of the
/// decoded entries, without encoding them again.
pub fn encode_with_entries(
    envelope: &Envelope,
    entries: &EncodedEntries,
) -> Result<Vec<u8>, WireError> {
    let Body::SyncResponse(SyncResponse::Ranges(response)) = &envelope.body else {
        return Err(WireError::Bounds(
            "entries spliced into a message without them",
        ));
    };
    if !response.entries.is_empty() {
        return Err(WireError::Bounds(
            "entries spliced into a list that has some",
        ));
    }
    let mut out = postcard::to_extend(envelope, vec![WIRE_VERSION])?;
    // Postcard writes a struct's fields in order with nothing after the last; the body is
    // the envelope's last field and `want` and `cookie` the fields after `entries`, so the
    // empty list is the one zero length byte just before their bytes.
    let after = encoded_len(&response.want) + encoded_len(&response.cookie);
    // Checked in release builds too: a field added after `entries` must fail loudly here
    // (and in the byte-for-byte test), never send a datagram spliced in the wrong place.
    let at = out
        .len()
        .checked_sub(after + 1)
        .filter(|&at| out[at] == 0)
        .ok_or(WireError::Bounds(
            "the empty entries list is not where the message layout puts it",
        ))?;
    let rest = out.split_off(at + 1);
    out.truncate(at);
    // A list's length is a varint, as postcard writes a `usize`.
    let mut out = postcard::to_extend(&entries.count, out)?;
    out.extend_from_slice(&entries.bytes);
    out.extend_from_slice(&rest);
    if out.len() > MAX_MESSAGE {
        return Err(WireError::TooLarge(out.len()));
    }
    Ok(out)
}

/// Size in bytes that `value` takes inside a postcard message (used to pack datagrams).
pub fn encoded_len<T: Serialize>(value: &T) -> usize {
    // Counts bytes without building them: the packers call this for every entry they send.
    postcard::experimental::serialized_size(value).unwrap_or(usize::MAX / 4)
}

/// Decodes and validates one datagram.
pub fn decode(datagram: &[u8]) -> Result<Envelope, WireError> {
    let (&version, rest) = datagram.split_first().ok_or(WireError::Empty)?;
    if datagram.len() > MAX_DATAGRAM {
        return Err(WireError::TooLarge(datagram.len()));
    }
    if version != WIRE_VERSION {
        return Err(WireError::Version(version));
    }
    let (envelope, trailing): (Envelope, &[u8]) = postcard::take_from_bytes(rest)?;
    if !trailing.is_empty() {
        return Err(WireError::Trailing(trailing.len()));
    }
    validate(&envelope)?;
    Ok(envelope)
}

fn check_len(len: usize, max: usize, what: &'static str) -> Result<(), WireError> {
    if len > max {
        Err(WireError::Bounds(what))
    } else {
        Ok(())
    }
}

fn validate_runs(runs: &[Run]) -> Result<(), WireError> {
    for run in runs {
        let mut lower = run.lower;
        for item in &run.items {
            if item.upper < lower {
                return Err(WireError::Bounds("range upper below lower"));
            }
            lower = item.upper;
            if let Mode::Ids(ids) = &item.mode {
                check_len(ids.len(), MAX_IDS, "id list")?;
            }
        }
    }
    Ok(())
}

fn validate(envelope: &Envelope) -> Result<(), WireError> {
    check_len(envelope.group.len(), MAX_GROUP_BYTES, "group name")?;
    match &envelope.body {
        Body::Hello(hello) => check_len(hello.name.len(), MAX_NAME_BYTES, "name")?,
        Body::LogEntry(entries) => {
            for entry in entries {
                entry.validate()?;
            }
        }
        Body::SyncRequest(SyncRequest::Probe { .. }) => {}
        Body::SyncRequest(SyncRequest::Ranges(request)) => {
            check_len(request.want.len(), MAX_IDS, "want list")?;
            validate_runs(&request.runs)?;
        }
        Body::SyncResponse(SyncResponse::Summary { name, .. }) => {
            check_len(name.len(), MAX_NAME_BYTES, "name")?
        }
        Body::SyncResponse(SyncResponse::Ranges(response)) => {
            check_len(response.want.len(), MAX_IDS, "want list")?;
            if response.part >= response.parts {
                return Err(WireError::Bounds("part number"));
            }
            validate_runs(&response.runs)?;
            for entry in &response.entries {
                entry.validate()?;
            }
        }
    }
    Ok(())
}

/// Packs entries into as few LOG_ENTRY datagrams as fit under [`MAX_MESSAGE`]; returns
/// each datagram with the number of entries it carries.
pub fn pack_log_entries(
    group: &str,
    from: NodeId,
    whisper_port: u16,
    entries: &[Entry],
) -> Vec<(usize, Vec<u8>)> {
    let base = Envelope {
        group: group.to_string(),
        from,
        whisper_port,
        body: Body::LogEntry(Vec::new()),
    };
    // Room for the version byte, the envelope and a worst-case length prefix.
    let budget = MAX_MESSAGE - 1 - encoded_len(&base) - 4;
    let mut datagrams = Vec::new();
    let mut batch: Vec<Entry> = Vec::new();
    let mut used = 0;
    for entry in entries {
        let size = encoded_len(entry);
        if !batch.is_empty() && used + size > budget {
            datagrams.push(std::mem::take(&mut batch));
            used = 0;
        }
        used += size;
        batch.push(entry.clone());
    }
    if !batch.is_empty() {
        datagrams.push(batch);
    }
    datagrams
        .into_iter()
        .filter_map(|batch| {
            let count = batch.len();
            let envelope = Envelope {
                body: Body::LogEntry(batch),
                ..base.clone()
            };
            encode(&envelope).ok().map(|bytes| (count, bytes))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::entry::MAX_REASON_BYTES;

    fn entry(i: u64) -> Entry {
        crate::testing::EntryBuilder::at_ms(1_700_000_000_000 + i)
            .id_random([i as u8; 10])
            .actor("a".repeat(MAX_NAME_BYTES))
            .target("t".repeat(MAX_NAME_BYTES))
            .delta(5)
            .new_total(5)
            .reason("r".repeat(MAX_REASON_BYTES))
            .build()
    }

    fn envelope(body: Body) -> Envelope {
        Envelope {
            group: "raid".into(),
            from: 42,
            whisper_port: 5000,
            body,
        }
    }

    #[test]
    fn round_trips_every_message() {
        let fp = Fingerprint {
            count: 3,
            sum: u128::MAX - 5,
        };
        let bodies = vec![
            Body::Hello(Hello {
                name: "alice".into(),
                fingerprint: fp,
                newest: Some(entry(1).key()),
            }),
            Body::LogEntry(vec![entry(1)]),
            Body::SyncRequest(SyncRequest::Probe { fingerprint: fp }),
            Body::SyncRequest(SyncRequest::Ranges(RangesRequest {
                request_id: 7,
                runs: vec![Run {
                    lower: Key::MIN,
                    items: vec![
                        RangeItem {
                            upper: entry(1).key(),
                            mode: Mode::Fingerprint(fp),
                        },
                        RangeItem {
                            upper: Key::MAX,
                            mode: Mode::Ids(vec![entry(2).digest()]),
                        },
                    ],
                }],
                want: vec![entry(3).digest()],
                cookie: Some([9; 8]),
                padding: vec![0; 3],
            })),
            Body::SyncResponse(SyncResponse::Summary {
                name: "bob".into(),
                fingerprint: fp,
                cookie: None,
            }),
            Body::SyncResponse(SyncResponse::Ranges(RangesResponse {
                request_id: 7,
                part: 0,
                parts: 2,
                runs: vec![Run {
                    lower: Key::MIN,
                    items: vec![RangeItem {
                        upper: Key::MAX,
                        mode: Mode::Done,
                    }],
                }],
                entries: vec![entry(1)],
                want: vec![entry(2).digest()],
                cookie: Some([1; 8]),
            })),
        ];
        for body in bodies {
            let env = envelope(body);
            let bytes = encode(&env).unwrap();
            assert_eq!(bytes[0], WIRE_VERSION);
            assert_eq!(decode(&bytes).unwrap(), env);
        }
    }

    #[test]
    fn spliced_entries_encode_byte_for_byte_as_decoded_ones() {
        let response = |entries: Vec<Entry>, want: Vec<Digest>, cookie| {
            envelope(Body::SyncResponse(SyncResponse::Ranges(RangesResponse {
                request_id: 300,
                part: 1,
                parts: 2,
                runs: vec![Run {
                    lower: entry(1).key(),
                    items: vec![RangeItem {
                        upper: Key::MAX,
                        mode: Mode::Done,
                    }],
                }],
                entries,
                want,
                cookie,
            })))
        };
        let small = |i: u64| {
            crate::testing::EntryBuilder::at_ms(1_700_000_000_000 + i)
                .id_random([i as u8; 10])
                .actor("a")
                .target("t")
                .delta(-(i as i64) - 1)
                .reason("r")
                .build()
        };
        let cases: Vec<(Vec<Entry>, Vec<Digest>, Option<Cookie>)> = vec![
            (vec![], vec![], None),
            (vec![entry(1)], vec![], None),
            (
                vec![entry(1), entry(2)],
                vec![entry(3).digest()],
                Some([7; 8]),
            ),
            ((0..20).map(small).collect(), vec![], Some([0; 8])),
        ];
        for (entries, want, cookie) in cases {
            let mut encoded = EncodedEntries::default();
            for (i, e) in entries.iter().enumerate() {
                // Both ways in: stored bytes (as a log record's payload) and entries.
                if i % 2 == 0 {
                    encoded.push_encoded(&postcard::to_stdvec(e).unwrap());
                } else {
                    encoded.push(e).unwrap();
                }
            }
            assert_eq!(encoded.len(), entries.len());
            let whole = encode(&response(entries.clone(), want.clone(), cookie)).unwrap();
            let spliced =
                encode_with_entries(&response(Vec::new(), want.clone(), cookie), &encoded).unwrap();
            assert_eq!(spliced, whole);
            assert_eq!(decode(&spliced).unwrap(), response(entries, want, cookie));
        }
        // Lists of 128 and more have a longer length prefix: still what postcard writes.
        for count in [127usize, 128, 300, 20_000] {
            let list = vec![(); count];
            assert_eq!(
                postcard::to_stdvec(&count).unwrap(),
                postcard::to_stdvec(&list).unwrap()
            );
        }
        // Too much to fit one datagram, or a body with no such list: refused.
        let mut many = EncodedEntries::default();
        for i in 0..5 {
            many.push(&entry(i)).unwrap();
        }
        assert!(matches!(
            encode_with_entries(&response(Vec::new(), vec![], None), &many),
            Err(WireError::TooLarge(_))
        ));
        assert!(encode_with_entries(&envelope(Body::LogEntry(vec![])), &many).is_err());
        assert!(encode_with_entries(&response(vec![entry(1)], vec![], None), &many).is_err());
    }

    #[test]
    fn garbage_is_rejected_without_panic() {
        assert!(matches!(decode(&[]), Err(WireError::Empty)));
        assert!(matches!(decode(&[9, 1, 2]), Err(WireError::Version(9))));
        assert!(decode(&[WIRE_VERSION]).is_err());
        assert!(matches!(
            decode(&vec![WIRE_VERSION; 1500]),
            Err(WireError::TooLarge(1500))
        ));
        let good = encode(&envelope(Body::LogEntry(vec![entry(1)]))).unwrap();
        // every truncation fails cleanly
        for cut in 0..good.len() {
            assert!(decode(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut extra = good.clone();
        extra.push(0);
        assert!(matches!(decode(&extra), Err(WireError::Trailing(1))));
        // pseudo-random bytes: never a panic
        let mut x: u64 = 0x9e3779b97f4a7c15;
        for _ in 0..20_000 {
            let len = (x % 300) as usize;
            let mut buf = vec![WIRE_VERSION];
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                buf.push(x as u8);
            }
            let _ = decode(&buf);
        }
    }

    #[test]
    fn decoded_entries_are_bounds_checked() {
        let mut bad = entry(1);
        bad.reason = "r".repeat(MAX_REASON_BYTES + 1);
        // encode skips validation, as a hostile sender would
        let bytes = encode(&envelope(Body::LogEntry(vec![bad]))).unwrap();
        assert!(matches!(decode(&bytes), Err(WireError::Entry(_))));
    }

    #[test]
    fn oversized_message_cannot_be_encoded() {
        let body = Body::LogEntry((0..5).map(entry).collect());
        assert!(matches!(
            encode(&envelope(body)),
            Err(WireError::TooLarge(_))
        ));
    }

    #[test]
    fn log_entries_pack_into_datagrams_under_the_limit() {
        let entries: Vec<Entry> = (0..50).map(entry).collect();
        let datagrams = pack_log_entries("raid", 1, 2, &entries);
        assert!(datagrams.len() >= 15, "max-size entries: ~2-3 per datagram");
        let mut seen = Vec::new();
        for (count, d) in &datagrams {
            assert!(d.len() <= MAX_MESSAGE);
            match decode(d).unwrap().body {
                Body::LogEntry(batch) => {
                    assert_eq!(batch.len(), *count);
                    seen.extend(batch)
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(seen, entries);
    }
}
