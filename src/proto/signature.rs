//! Entry signatures: signing an entry with a [`SecretKey`] and checking the [`Seal`] it
//! carries.
//!
//! A seal is the signer's ed25519 public key and a signature over a canonical encoding of
//! every other field (postcard of `SignedFields` after a domain separation prefix). A seal
//! is checked once, when an entry arrives from a peer; the log on disk is trusted
//! (checksummed, written by us), so a million-entry replay does no crypto. Which signed
//! entries *count* is the roster's decision ([`crate::core::roster`]).

use crate::proto::comb::CombTable;
use crate::proto::entry::{Entry, EntryId, EntryKind};
use crate::proto::hlc::Hlc;
use crate::proto::keys::{PublicKey, Seal};
use curve25519_dalek::edwards::EdwardsPoint;
use curve25519_dalek::Scalar;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use serde::Serialize;
use sha2::{Digest as _, Sha512};
use std::collections::HashMap;
use std::fmt;
use std::sync::OnceLock;
use thiserror::Error;

/// Prefix of every signed message, so a signature made for an entry can never be replayed
/// as a signature over anything else signed with the same key.
const SIGNING_DOMAIN: &[u8] = b"lootsync entry v1\0";

/// Everything an entry's signature covers: every field except the signature itself, with
/// the signer's key included so a signature cannot be re-attributed.
#[derive(Serialize)]
struct SignedFields<'a> {
    id: &'a EntryId,
    at: Hlc,
    actor: &'a str,
    target: &'a str,
    delta: i64,
    new_total: i64,
    reason: &'a str,
    kind: &'a EntryKind,
    signer: &'a PublicKey,
}

fn signed_fields<'a>(entry: &'a Entry, signer: &'a PublicKey) -> SignedFields<'a> {
    SignedFields {
        id: &entry.id,
        at: entry.at,
        actor: &entry.actor,
        target: &entry.target,
        delta: entry.delta,
        new_total: entry.new_total,
        reason: &entry.reason,
        kind: &entry.kind,
        signer,
    }
}

fn signed_message(entry: &Entry, signer: &PublicKey) -> Vec<u8> {
    let mut message = SIGNING_DOMAIN.to_vec();
    message.extend(
        postcard::to_stdvec(&signed_fields(entry, signer)).expect("signed fields always serialize"),
    );
    message
}

/// Why an entry's seal does not verify.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum SignatureError {
    /// The signer field is not a valid ed25519 key.
    #[error("signer is not a valid public key")]
    BadSigner,
    /// The signature does not match the entry.
    #[error("signature does not match the entry")]
    BadSignature,
}

/// A secret signing key (an officer's, or the group's root key: both are plain ed25519
/// keypairs). Made from its 32 secret bytes; where those come from (a key file, fresh
/// entropy) is the business of the store layer's `store::keys`, so signing stays pure.
pub struct SecretKey(SigningKey);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(public {})", self.public())
    }
}

impl SecretKey {
    /// A key from its 32 secret bytes (read from a key file, drawn from the OS, or a fixed
    /// seed in tests and the simulator).
    pub fn from_seed(seed: [u8; 32]) -> SecretKey {
        SecretKey(SigningKey::from_bytes(&seed))
    }

    /// The matching public key.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }

    /// Signs `entry` in place (replacing any earlier seal).
    pub fn sign(&self, entry: &mut Entry) {
        let signer = self.public();
        let signature = self.0.sign(&signed_message(entry, &signer)).to_bytes();
        let mut r = [0u8; 32];
        let mut s = [0u8; 32];
        r.copy_from_slice(&signature[..32]);
        s.copy_from_slice(&signature[32..]);
        entry.seal = Some(Seal { signer, r, s });
    }
}

/// Checks an entry's seal, if it has one. An unsigned entry passes (whether it *counts* is
/// the roster's decision).
///
/// This is the reference rule (ed25519-dalek's `verify_strict`); [`Verifier`] decides
/// exactly the same, faster, for many entries.
pub fn verify(entry: &Entry) -> Result<(), SignatureError> {
    let Some(seal) = &entry.seal else {
        return Ok(());
    };
    let key = VerifyingKey::from_bytes(&seal.signer.0).map_err(|_| SignatureError::BadSigner)?;
    let mut bytes = [0u8; 64];
    bytes[..32].copy_from_slice(&seal.r);
    bytes[32..].copy_from_slice(&seal.s);
    let signature = ed25519_dalek::Signature::from_bytes(&bytes);
    key.verify_strict(&signed_message(entry, &seal.signer), &signature)
        .map_err(|_| SignatureError::BadSignature)
}

/// How many signers' keys a [`Verifier`] keeps. A group has a handful
/// of officers; anyone with the group key can sign with fresh keys, so the cache is bounded
/// and emptied when full, except for the signers with a table.
const MAX_CACHED_SIGNERS: usize = 64;

/// Checks of one signer's entries before its [`CombTable`] is built. A table costs about
/// as much as eight checks without it and halves every later one; an officer
/// signs thousands of entries, while someone signing with a fresh key per entry (anyone
/// holding the group key can) then never makes the verifier build one.
const TABLE_AFTER_CHECKS: u32 = 16;

/// How many signers get a table (each [`SIGNER_TABLE_WIDTH`] table is 215 KiB): bounds
/// the memory to about 3.4 MiB whatever keys arrive.
const MAX_SIGNER_TABLES: usize = 16;
const _: () = assert!(MAX_SIGNER_TABLES < MAX_CACHED_SIGNERS);

/// Digit width of a signer's table: 43 additions per `[k]A`, 1,376 points.
const SIGNER_TABLE_WIDTH: usize = 6;

/// Digit width of the one base-point table shared by every verifier: 32 additions per
/// `[s]B`, 4,096 points (640 KiB, built once per process, in about 1 ms).
const BASE_TABLE_WIDTH: usize = 8;

/// The base point's table, built on first use.
fn base_table() -> &'static CombTable {
    static TABLE: OnceLock<CombTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        CombTable::new(
            &curve25519_dalek::constants::ED25519_BASEPOINT_POINT,
            BASE_TABLE_WIDTH,
        )
    })
}

/// What a [`Verifier`] keeps about one signer whose key can sign (a point not of small
/// order).
struct Signer {
    /// The key negated, for `[s]B + [k](−A)`.
    minus_a: EdwardsPoint,
    /// Entries checked so far (saturating), to decide when a table pays.
    checked: u32,
    /// `−A`'s table, once the signer has had [`TABLE_AFTER_CHECKS`] checks.
    table: Option<Box<CombTable>>,
}

/// Checks the seals of many entries with exactly the rule of [`verify`]
/// (`verify_strict`), caching per signer what the rule needs from the key.
///
/// Why not random-linear-combination batch verification: `verify_strict` is cofactorless
/// and compares encodings, while a batch equation with random coefficients lets an R with a
/// torsion component through about half of the time, depending on which other entries share
/// the batch. Peers receiving the same entry in different datagrams would then disagree,
/// and the sets would never converge. Switching every peer to ZIP-215 (cofactored, where
/// batch and single agree) would make new peers keep crafted entries that peers of earlier
/// versions drop as forgeries: a permanent difference between versions that reconciliation
/// can never close. So the rule stays `verify_strict`, and the speed comes from not redoing
/// per-signer work: the key is decompressed and checked once, and for a signer seen often
/// `[k]A` uses a precomputed table of the key ([`CombTable`]), like `[s]B` uses the base
/// point's. Either way the same point `R' = [s]B − [k]A` is computed, so the answer cannot
/// depend on which path computed it.
pub struct Verifier {
    /// Per signer, worked out once: the error if the key is not a point
    /// (`BadSigner`) or of small order (no signature by it verifies strictly), else what
    /// checking its signatures needs, so no entry pays for decompressing its key again.
    signers: HashMap<PublicKey, Result<Signer, SignatureError>>,
    /// Tables among `signers` (at most [`MAX_SIGNER_TABLES`]).
    tables: usize,
    /// Checks before a signer's table is built ([`TABLE_AFTER_CHECKS`]; tests lower it to
    /// run every check through the tables).
    table_after: u32,
    message: Vec<u8>,
}

impl Default for Verifier {
    fn default() -> Verifier {
        Verifier {
            signers: HashMap::new(),
            tables: 0,
            table_after: TABLE_AFTER_CHECKS,
            message: Vec::new(),
        }
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Verifier({} signers cached, {} tables)",
            self.signers.len(),
            self.tables
        )
    }
}

impl Verifier {
    /// A verifier that builds a signer's table after `checks` checks by it (0: on first
    /// sight), for tests and benchmarks that must exercise one path or the other.
    pub fn with_table_after(checks: u32) -> Verifier {
        Verifier {
            table_after: checks,
            ..Verifier::default()
        }
    }

    /// Checks an entry's seal; the same answer as [`verify`] for every input.
    pub fn verify(&mut self, entry: &Entry) -> Result<(), SignatureError> {
        let Some(seal) = &entry.seal else {
            return Ok(());
        };
        // verify_strict's order: the signature's encoding (s < ℓ), then the points.
        let Some(s) = Option::<Scalar>::from(Scalar::from_canonical_bytes(seal.s)) else {
            return self
                .signer(&seal.signer)
                .and(Err(SignatureError::BadSignature));
        };
        self.message.clear();
        self.message.extend_from_slice(SIGNING_DOMAIN);
        let fields = signed_fields(entry, &seal.signer);
        let message = postcard::to_extend(&fields, std::mem::take(&mut self.message))
            .expect("signed fields always serialize");
        let mut hash = Sha512::new();
        hash.update(seal.r);
        hash.update(seal.signer.0);
        hash.update(&message);
        self.message = message;
        let k = Scalar::from_hash(hash);
        let signer = self.signer(&seal.signer)?;
        // R' = [s]B - [k]A; verify_strict accepts iff R' encodes to exactly R and R is not
        // of small order. R' always encodes canonically, so equal bytes also mean R decodes
        // (to R'): verify_strict's decompression of R adds nothing, and is skipped.
        let expected = match &signer.table {
            Some(table) => {
                let mut sum = table.mul(&k);
                base_table().add_product(&mut sum, &s);
                sum
            }
            None => EdwardsPoint::vartime_double_scalar_mul_basepoint(&k, &signer.minus_a, &s),
        };
        if expected.compress().0 == seal.r && !expected.is_small_order() {
            // Only good seals count towards a table: junk must not earn one.
            if let Some(Ok(signer)) = self.signers.get_mut(&seal.signer) {
                signer.checked = signer.checked.saturating_add(1);
            }
            Ok(())
        } else {
            Err(SignatureError::BadSignature)
        }
    }

    /// Checks the seals of a batch of entries (one datagram's or response's), one result
    /// per entry, in order; each the same as [`verify`] would give.
    pub fn verify_all(&mut self, entries: &[Entry]) -> Vec<Result<(), SignatureError>> {
        entries.iter().map(|entry| self.verify(entry)).collect()
    }

    /// The cached facts about `key`, worked out on first sight, counting one more check by
    /// it (and building its table when that pays).
    fn signer(&mut self, key: &PublicKey) -> Result<&Signer, SignatureError> {
        if !self.signers.contains_key(key) {
            if self.signers.len() >= MAX_CACHED_SIGNERS {
                // Keep the signers that earned a table (at most a quarter of the cache):
                // a stream of one-off keys must not make the officers rebuild theirs.
                self.signers
                    .retain(|_, signer| signer.as_ref().is_ok_and(|s| s.table.is_some()));
            }
            let signer = match VerifyingKey::from_bytes(&key.0) {
                Err(_) => Err(SignatureError::BadSigner),
                Ok(point) if point.is_weak() => Err(SignatureError::BadSignature),
                Ok(point) => Ok(Signer {
                    minus_a: -point.to_edwards(),
                    checked: 0,
                    table: None,
                }),
            };
            self.signers.insert(*key, signer);
        }
        let wants_table = match &self.signers[key] {
            Ok(signer) if signer.table.is_none() && signer.checked >= self.table_after => {
                Some(signer.checked)
            }
            _ => None,
        };
        if let Some(checked) = wants_table {
            if self.tables >= MAX_SIGNER_TABLES {
                self.free_a_table_for(checked);
            }
            if self.tables < MAX_SIGNER_TABLES {
                if let Some(Ok(signer)) = self.signers.get_mut(key) {
                    signer.table = Some(Box::new(CombTable::new(
                        &signer.minus_a,
                        SIGNER_TABLE_WIDTH,
                    )));
                    self.tables += 1;
                }
            }
        }
        let entry = self.signers.get(key).expect("inserted above");
        entry.as_ref().map_err(|err| err.clone())
    }

    /// With every table taken, drops the table of the signer with the fewest good seals if
    /// a signer with `checked` of them has more than twice as many: keys that signed a few
    /// seals to claim the tables early cannot keep them from the officers who sign
    /// thousands, and two signers of similar use do not take the table in turns.
    fn free_a_table_for(&mut self, checked: u32) {
        let weakest = self
            .signers
            .iter()
            .filter_map(|(key, signer)| match signer {
                Ok(signer) if signer.table.is_some() => Some((signer.checked, *key)),
                _ => None,
            })
            .min_by_key(|(checked, _)| *checked);
        if let Some((least, key)) = weakest {
            if least.saturating_mul(2) < checked {
                if let Some(Ok(signer)) = self.signers.get_mut(&key) {
                    signer.table = None;
                    self.tables -= 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(ms: u64) -> Entry {
        crate::testing::EntryBuilder::at_ms(ms)
            .id_random([3; 10])
            .actor("alice")
            .target("Bob")
            .delta(5)
            .new_total(5)
            .reason("raid")
            .build()
    }

    #[test]
    fn public_key_text_round_trips_and_bad_text_is_named() {
        let key = SecretKey::from_seed([9; 32]).public();
        let text = key.to_string();
        assert_eq!(text.len(), 64);
        assert_eq!(text.parse::<PublicKey>().unwrap(), key);
        assert!("abc".parse::<PublicKey>().is_err());
        assert!("zz".repeat(32).parse::<PublicKey>().is_err());
    }

    #[test]
    fn signature_verifies_and_any_change_breaks_it() {
        let key = SecretKey::from_seed([1; 32]);
        let mut e = points(1_000);
        key.sign(&mut e);
        assert_eq!(verify(&e), Ok(()));
        let mut changed = e.clone();
        changed.delta = 500;
        assert_eq!(verify(&changed), Err(SignatureError::BadSignature));
        let mut reattributed = e.clone();
        reattributed.seal.as_mut().unwrap().signer = SecretKey::from_seed([2; 32]).public();
        assert_eq!(verify(&reattributed), Err(SignatureError::BadSignature));
        let mut flipped = e.clone();
        flipped.seal.as_mut().unwrap().s[0] ^= 1;
        assert!(verify(&flipped).is_err());
        assert_eq!(verify(&points(5)), Ok(()), "unsigned passes the seal check");
    }

    use curve25519_dalek::edwards::CompressedEdwardsY;
    use curve25519_dalek::traits::IsIdentity;

    /// The same answer from the reference rule and from a [`Verifier`] on both of its paths:
    /// the caller's (tests make theirs with tables from first sight, and keep it, so its
    /// cache is exercised), a fresh one (generic double-scalar multiplication) and a fresh
    /// one that builds the signer's table at once. This is the property every peer relies on.
    fn decide(entry: &Entry, verifier: &mut Verifier) -> Result<(), SignatureError> {
        let reference = verify(entry);
        assert_eq!(
            verifier.verify(entry),
            reference,
            "cached verifier disagrees with verify_strict on {:?}",
            entry.seal
        );
        assert_eq!(
            Verifier::default().verify(entry),
            reference,
            "fresh verifier (generic path) disagrees with verify_strict on {:?}",
            entry.seal
        );
        let mut tabled = Verifier::with_table_after(0);
        assert_eq!(
            tabled.verify(entry),
            reference,
            "fresh verifier (table path) disagrees with verify_strict on {:?}",
            entry.seal
        );
        if signing_key(entry) {
            assert_eq!(tabled.tables, 1, "the table path was taken");
        }
        reference
    }

    /// Whether the entry's signer is a key a table is built for (a point not of small order).
    fn signing_key(entry: &Entry) -> bool {
        entry.seal.as_ref().is_some_and(|seal| {
            VerifyingKey::from_bytes(&seal.signer.0).is_ok_and(|key| !key.is_weak())
        })
    }

    /// The eight points of order dividing 8: the torsion part `P - [1/8]([8]P)` of the
    /// first point `[i; 32]` whose torsion part has order 8 generates them.
    fn torsion_points() -> Vec<EdwardsPoint> {
        let eighth = Scalar::from(8u64).invert();
        let t = (0u8..=255)
            .filter_map(|i| CompressedEdwardsY([i; 32]).decompress())
            .map(|p| p - p.mul_by_cofactor() * eighth)
            .find(|t| !(t * Scalar::from(4u64)).is_identity())
            .expect("some point has a torsion part of order 8");
        let points: Vec<EdwardsPoint> = (0..8u64).map(|i| t * Scalar::from(i)).collect();
        assert!(points.iter().all(EdwardsPoint::is_small_order));
        points
    }

    /// Every 32-byte string that decodes to a small-order point, non-canonical encodings
    /// included (y >= p, and x = 0 with the sign bit set).
    fn small_order_encodings() -> Vec<[u8; 32]> {
        let mut encodings = Vec::new();
        for point in torsion_points() {
            let canonical = point.compress().0;
            encodings.push(canonical);
            let mut flipped = canonical;
            flipped[31] ^= 0x80;
            encodings.push(flipped);
        }
        // y + p for the small y values that have such an encoding below 2^255.
        let p_bytes = {
            let mut p = [0xffu8; 32];
            p[0] = 0xed;
            p[31] = 0x7f;
            p
        };
        for y in 0u8..19 {
            for sign in [0u8, 0x80] {
                let mut bytes = p_bytes;
                let (sum, _) = bytes[0].overflowing_add(y);
                bytes[0] = sum;
                bytes[31] |= sign;
                if let Some(point) = CompressedEdwardsY(bytes).decompress() {
                    if point.is_small_order() {
                        encodings.push(bytes);
                    }
                }
            }
        }
        encodings
    }

    /// Signs `entry` by hand with secret scalar `a` (public key `key`, which may differ
    /// from `[a]B` by torsion) and nonce point `r_point`/scalar `r`: s = r + k·a.
    fn sign_raw(entry: &mut Entry, key: [u8; 32], a: Scalar, r: Scalar, r_point: [u8; 32]) {
        let signer = PublicKey(key);
        let mut hash = Sha512::new();
        hash.update(r_point);
        hash.update(key);
        hash.update(signed_message(entry, &signer));
        let k = Scalar::from_hash(hash);
        let s = r + k * a;
        entry.seal = Some(Seal {
            signer,
            r: r_point,
            s: s.to_bytes(),
        });
    }

    #[test]
    fn verifier_agrees_with_verify_strict_on_small_order_keys_and_nonces() {
        let mut verifier = Verifier::with_table_after(0);
        let encodings = small_order_encodings();
        assert!(encodings.len() >= 14, "{} encodings", encodings.len());
        let mut entry = points(7);
        // A small-order key with a small-order R and s = 0 satisfies the cofactored
        // equation for every message (ZIP-215 accepts it); verify_strict must reject it.
        for key in &encodings {
            for r in &encodings {
                for s in [Scalar::ZERO, Scalar::ONE] {
                    entry.seal = Some(Seal {
                        signer: PublicKey(*key),
                        r: *r,
                        s: s.to_bytes(),
                    });
                    assert!(decide(&entry, &mut verifier).is_err());
                }
            }
        }
        // A good key with a small-order R (and the s that would balance it cofactored).
        let key = SecretKey::from_seed([4; 32]);
        key.sign(&mut entry);
        for r in &encodings {
            let mut forged = entry.clone();
            forged.seal.as_mut().unwrap().r = *r;
            assert!(decide(&forged, &mut verifier).is_err());
        }
        assert_eq!(decide(&entry, &mut verifier), Ok(()));
    }

    #[test]
    fn verifier_agrees_with_verify_strict_on_non_canonical_r_and_s() {
        let mut verifier = Verifier::with_table_after(0);
        let key = SecretKey::from_seed([6; 32]);
        let mut entry = points(9);
        key.sign(&mut entry);
        assert_eq!(decide(&entry, &mut verifier), Ok(()));
        let seal = entry.seal.unwrap();
        // s + ℓ: the same scalar mod ℓ, so a non-strict check would accept it.
        let mut s_plus_l = seal.s;
        // ℓ = 2^252 + 27742317777372353535851937790883648493, little-endian.
        let order: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        assert_eq!(Scalar::from_bytes_mod_order(order), Scalar::ZERO);
        let mut carry = 0u16;
        for (byte, add) in s_plus_l.iter_mut().zip(order) {
            let sum = *byte as u16 + add as u16 + carry;
            *byte = sum as u8;
            carry = sum >> 8;
        }
        assert_eq!(carry, 0, "s + ℓ fits in 256 bits");
        let mut forged = entry.clone();
        forged.seal.as_mut().unwrap().s = s_plus_l;
        assert_eq!(
            decide(&forged, &mut verifier),
            Err(SignatureError::BadSignature)
        );
        // The high bits of s set, and R with its sign bit flipped (a different point).
        for (r, s) in [
            (seal.r, {
                let mut s = seal.s;
                s[31] |= 0xe0;
                s
            }),
            (
                {
                    let mut r = seal.r;
                    r[31] ^= 0x80;
                    r
                },
                seal.s,
            ),
        ] {
            let mut forged = entry.clone();
            forged.seal = Some(Seal { r, s, ..seal });
            assert_eq!(
                decide(&forged, &mut verifier),
                Err(SignatureError::BadSignature)
            );
        }
        // A non-canonical encoding of the right R: y + p (only for tiny y) or x = 0 with
        // the sign bit set; both decode to the same point as the canonical encoding, and
        // verify_strict compares encodings, so both are rejected.
        for r in small_order_encodings() {
            let point = CompressedEdwardsY(r).decompress().unwrap();
            if point.compress().0 != r {
                let mut forged = entry.clone();
                forged.seal.as_mut().unwrap().r = r;
                assert!(decide(&forged, &mut verifier).is_err());
            }
        }
    }

    #[test]
    fn verifier_agrees_with_verify_strict_on_mixed_order_keys_and_nonces() {
        // Keys and nonces with a torsion component: the cofactorless equation then holds
        // or not depending on k mod 8, which is exactly where a random-coefficient batch
        // (that multiplies the torsion by an even coefficient half of the time) and a
        // cofactored check (ZIP-215) differ from verify_strict. Hand-signed over many
        // messages, both outcomes must occur, and the verifier must agree on every one.
        let mut verifier = Verifier::with_table_after(0);
        let torsion = torsion_points();
        let a = Scalar::from(1234567u64);
        let r = Scalar::from(7654321u64);
        let (mut accepted, mut rejected) = (0, 0);
        for ms in 0..64u64 {
            let mut entry = points(1_000 + ms);
            let t = &torsion[(ms % 7 + 1) as usize];
            // Mixed-order key, honest nonce.
            let key = (EdwardsPoint::mul_base(&a) + t).compress().0;
            sign_raw(
                &mut entry,
                key,
                a,
                r,
                EdwardsPoint::mul_base(&r).compress().0,
            );
            match decide(&entry, &mut verifier) {
                Ok(()) => accepted += 1,
                Err(_) => rejected += 1,
            }
            // Honest key, nonce with a torsion component: R = [r]B + T never equals
            // [s]B - [k]A exactly, so verify_strict always rejects; a batch whose
            // coefficient for it is a multiple of T's order would not notice.
            let honest = EdwardsPoint::mul_base(&a).compress().0;
            let nonce = (EdwardsPoint::mul_base(&r) + t).compress().0;
            sign_raw(&mut entry, honest, a, r, nonce);
            assert_eq!(
                decide(&entry, &mut verifier),
                Err(SignatureError::BadSignature)
            );
        }
        assert!(
            accepted > 0 && rejected > 0,
            "accepted {accepted}, rejected {rejected}"
        );
    }

    #[test]
    fn mixed_batch_with_one_bad_signature_fails_only_that_entry() {
        let keys = [SecretKey::from_seed([1; 32]), SecretKey::from_seed([2; 32])];
        let mut batch: Vec<Entry> = (0..12u64)
            .map(|i| {
                let mut e = points(100 + i);
                keys[(i % 2) as usize].sign(&mut e);
                e
            })
            .collect();
        batch.push(points(500)); // unsigned: passes
        batch[5].delta += 1; // one bad signature
        let mut verifier = Verifier::with_table_after(0);
        let results = verifier.verify_all(&batch);
        for (entry, result) in batch.iter().zip(&results) {
            assert_eq!(*result, verify(entry));
        }
        let bad: Vec<usize> = (0..results.len())
            .filter(|&i| results[i].is_err())
            .collect();
        assert_eq!(bad, vec![5]);
        // A signer that is not a point is named as such, cached or not.
        let mut e = batch[0].clone();
        let not_a_point = (0u8..=255)
            .map(|i| [i; 32])
            .find(|bytes| CompressedEdwardsY(*bytes).decompress().is_none())
            .expect("some bytes are not a point");
        e.seal.as_mut().unwrap().signer = PublicKey(not_a_point);
        assert_eq!(decide(&e, &mut verifier), Err(SignatureError::BadSigner));
        assert_eq!(decide(&e, &mut verifier), Err(SignatureError::BadSigner));
    }

    #[test]
    fn verifier_agrees_with_verify_strict_on_random_damage() {
        // Flip one byte of R, s or the key of good signatures, over a seeded spread.
        let mut verifier = Verifier::with_table_after(0);
        let key = SecretKey::from_seed([8; 32]);
        let mut state = 0x2545f4914f6cdd1du64;
        for ms in 0..300u64 {
            let mut entry = points(ms);
            key.sign(&mut entry);
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let seal = entry.seal.as_mut().unwrap();
            let field = match state % 3 {
                0 => &mut seal.r,
                1 => &mut seal.s,
                _ => &mut seal.signer.0,
            };
            field[(state >> 8) as usize % 32] ^= (state >> 16) as u8 | 1;
            assert!(decide(&entry, &mut verifier).is_err());
        }
    }

    #[test]
    fn verifier_agrees_with_verify_strict_on_thousands_of_random_seals() {
        // Random signers (a few officers signing often, so their tables are built, and
        // one-off keys), random entries, and about half of the seals tampered in a random
        // way: a flipped bit in R, s, the key or the signed fields, R or s replaced by
        // random bytes or another entry's, s pushed past ℓ. One long-lived verifier with the
        // default table policy, one with tables from first sight, and the reference.
        let officers: Vec<SecretKey> = (0..4u8)
            .map(|i| SecretKey::from_seed([40 + i; 32]))
            .collect();
        let mut state = 0x853c49e6748fea9bu64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut default = Verifier::default();
        let mut tabled = Verifier::with_table_after(0);
        let (mut accepted, mut rejected) = (0, 0);
        let mut previous: Option<Seal> = None;
        for i in 0..3_000u64 {
            let mut entry = points(i * 7 + next() % 7);
            entry.delta = (next() % 1_000) as i64 - 500;
            entry.reason = format!("raid {}", next() % 100);
            let one_off;
            let key = if next() % 8 == 0 {
                one_off = SecretKey::from_seed({
                    let mut seed = [0u8; 32];
                    seed[..8].copy_from_slice(&next().to_le_bytes());
                    seed
                });
                &one_off
            } else {
                &officers[(next() % 4) as usize]
            };
            key.sign(&mut entry);
            let seal = entry.seal.as_mut().unwrap();
            let bit = (next() % 256) as usize;
            match next() % 16 {
                0 => seal.r[bit / 8] ^= 1 << (bit % 8),
                1 => seal.s[bit / 8] ^= 1 << (bit % 8),
                2 => seal.signer.0[bit / 8] ^= 1 << (bit % 8),
                3 => entry.delta ^= 1 << (bit % 63),
                4 => seal.r = std::array::from_fn(|_| next() as u8),
                5 => {
                    seal.s = std::array::from_fn(|_| next() as u8);
                    seal.s[31] &= 0x0f; // mostly canonical, so the points get checked
                }
                6 => {
                    if let Some(other) = &previous {
                        seal.r = other.r;
                    }
                }
                7 => {
                    if let Some(other) = &previous {
                        seal.s = other.s;
                    }
                }
                8 => {
                    // s + ℓ·m for a small m that keeps it below 2^256: never canonical.
                    let order = Scalar::ZERO - Scalar::ONE;
                    let mut carry = 1u16;
                    let order_bytes = order.to_bytes();
                    for (byte, add) in seal.s.iter_mut().zip(order_bytes) {
                        let sum = *byte as u16 + add as u16 + carry;
                        *byte = sum as u8;
                        carry = sum >> 8;
                    }
                }
                _ => {}
            }
            previous = entry.seal;
            let reference = verify(&entry);
            assert_eq!(
                default.verify(&entry),
                reference,
                "default verifier, case {i}"
            );
            assert_eq!(
                tabled.verify(&entry),
                reference,
                "tabled verifier, case {i}"
            );
            match reference {
                Ok(()) => accepted += 1,
                Err(_) => rejected += 1,
            }
        }
        assert!(
            accepted > 1_000 && rejected > 1_000,
            "accepted {accepted}, rejected {rejected}"
        );
        assert!(
            default.tables > 0 && tabled.tables > 0,
            "both verifiers used tables"
        );
    }

    #[test]
    fn a_stream_of_one_off_keys_keeps_the_officers_tables() {
        let officer = SecretKey::from_seed([50; 32]);
        let mut verifier = Verifier::default();
        for ms in 0..=u64::from(TABLE_AFTER_CHECKS) {
            let mut entry = points(ms);
            officer.sign(&mut entry);
            assert_eq!(verifier.verify(&entry), Ok(()));
        }
        assert_eq!(verifier.tables, 1);
        for i in 0..3 * MAX_CACHED_SIGNERS as u64 {
            let mut entry = points(100 + i);
            SecretKey::from_seed([i as u8; 32]).sign(&mut entry);
            assert_eq!(verifier.verify(&entry), Ok(()));
            assert!(verifier.signers.len() <= MAX_CACHED_SIGNERS);
        }
        let kept = &verifier.signers[&officer.public()];
        assert!(kept.as_ref().is_ok_and(|s| s.table.is_some()));
        assert_eq!(verifier.tables, 1, "one-off keys never reach a table");
    }

    /// Keys that claim every table with a few good seals each, or with many bad ones, lose
    /// a table to an officer who then signs many more; answers never change.
    #[test]
    fn tables_claimed_early_go_to_the_signer_who_uses_them_most() {
        let mut verifier = Verifier::default();
        let after = u64::from(TABLE_AFTER_CHECKS);
        // Bad seals by one key: they earn nothing.
        let junk = SecretKey::from_seed([200; 32]);
        for ms in 0..3 * after {
            let mut entry = points(ms);
            junk.sign(&mut entry);
            entry.delta += 1;
            assert_eq!(verifier.verify(&entry), Err(SignatureError::BadSignature));
        }
        assert_eq!(verifier.tables, 0, "bad seals earn no table");
        // Sixteen keys just past the threshold take every table.
        for k in 0..MAX_SIGNER_TABLES as u8 {
            let key = SecretKey::from_seed([100 + k; 32]);
            for ms in 0..=after + 1 {
                let mut entry = points(1_000 + ms);
                key.sign(&mut entry);
                assert_eq!(verifier.verify(&entry), Ok(()));
            }
        }
        assert_eq!(verifier.tables, MAX_SIGNER_TABLES);
        let officer = SecretKey::from_seed([50; 32]);
        let has_table = |verifier: &Verifier| {
            verifier.signers[&officer.public()]
                .as_ref()
                .is_ok_and(|s| s.table.is_some())
        };
        for ms in 0..=4 * after {
            let mut entry = points(5_000 + ms);
            officer.sign(&mut entry);
            assert_eq!(verifier.verify(&entry), Ok(()));
        }
        assert!(has_table(&verifier), "the officer took a table");
        assert_eq!(verifier.tables, MAX_SIGNER_TABLES, "still bounded");
    }
}
