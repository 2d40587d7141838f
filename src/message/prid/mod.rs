//! Pre-registration ID (PRID) format rules.
//!
//! MOSIP issues PRIDs from its kernel `prid` generator and checks them with
//! `kernel-idvalidator-prid` (mosip/commons). Both apply the same filters, so an ID that fails
//! them cannot have been issued by pre-registration: rejecting it here, before any database
//! work, turns a corrupted or forged batch entry into a clear per-ID error instead of a lookup
//! miss. The filters, with the kernel defaults (`mosip.kernel.prid.*`):
//!
//! - exactly `length` (14) ASCII digits;
//! - no prefix from `not_start_with` (`0`, `1`);
//! - no ascending or descending run of `sequence_limit` (3) digits (`123`, `987`, `012`; the run
//!   does not wrap, so `890` is fine);
//! - no digit repeated within `repeating_limit` (2) positions, the kernel regex
//!   `(\d)\d{0,limit-1}\1`;
//! - no block of `repeating_block_limit` (3) digits that appears again later, without overlap,
//!   the kernel regex `(\d{N,}).*\1`;
//! - none of `restricted_numbers` (`786`, `666`) as a substring;
//! - the last digit is the Verhoeff check digit of the others.
//!
//! Deployments that changed the kernel settings mirror them in `[validation.prid_rules]`;
//! deployments that don't want the kernel rules at all pick a looser [`PridFormat`].
//!
//! The kernel expresses the repeat rules as regexes; here every rule is a loop over bytes, so a
//! check allocates nothing and costs a few hundred comparisons at most, which matters because
//! every PRID of every batch goes through it.

use rand::Rng;
use serde::{Deserialize, Serialize};

/// Which PRID rule set applies (`validation.prid_format` in config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PridFormat {
    /// The MOSIP kernel rules, tuned by [`PridRules`].
    #[default]
    Mosip,
    /// Exactly 14 ASCII digits: for IDs issued by a generator other than the kernel's.
    Digits14,
    /// Anything the `prereg_id varchar(36)` column can hold without surprises.
    Any,
}

/// Tunables of the MOSIP rule set (`[validation.prid_rules]` in config); Default = MOSIP kernel
/// defaults.
///
/// A limit of 0 switches its rule off, as a kernel limit of 0 does. Empty strings in
/// `not_start_with` and `restricted_numbers` are ignored: every ID starts with and contains the
/// empty string, so honouring them would reject everything, which no configuration means.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PridRules {
    pub length: usize,
    pub not_start_with: Vec<String>,
    pub sequence_limit: usize,
    pub repeating_limit: usize,
    pub repeating_block_limit: usize,
    pub restricted_numbers: Vec<String>,
}

impl Default for PridRules {
    fn default() -> Self {
        PridRules {
            length: 14,
            not_start_with: vec!["0".to_owned(), "1".to_owned()],
            sequence_limit: 3,
            repeating_limit: 2,
            repeating_block_limit: 3,
            restricted_numbers: vec!["786".to_owned(), "666".to_owned()],
        }
    }
}

/// Longest `Any` PRID: the `prereg_id` column is `varchar(36)`.
const ANY_MAX_LEN: usize = 36;

/// Compiled validator: built once at start-up, used on the hot path (no allocation per check).
#[derive(Debug, Clone)]
pub(crate) struct PridValidator {
    format: Format,
}

/// The format with the rules it needs; only `Mosip` carries tunables.
#[derive(Debug, Clone)]
enum Format {
    Mosip(PridRules),
    Digits14,
    Any,
}

impl PridValidator {
    pub(crate) fn new(format: PridFormat, rules: PridRules) -> Self {
        let format = match format {
            PridFormat::Mosip => Format::Mosip(rules),
            PridFormat::Digits14 => Format::Digits14,
            PridFormat::Any => Format::Any,
        };
        PridValidator { format }
    }

    /// `Mosip`: every rule of the module doc. `Digits14`: exactly 14 ASCII digits, nothing
    /// else. `Any`: 1..=36 chars, printable ASCII (0x21..=0x7E), because prereg_id is
    /// varchar(36) and whitespace or control characters in an ID are a corruption, not an ID.
    pub(crate) fn is_valid(&self, candidate: &str) -> bool {
        let bytes = candidate.as_bytes();
        match &self.format {
            Format::Mosip(rules) => mosip_valid(rules, bytes),
            Format::Digits14 => bytes.len() == 14 && all_digits(bytes),
            Format::Any => {
                (1..=ANY_MAX_LEN).contains(&bytes.len())
                    && bytes.iter().all(|b| (0x21..=0x7E).contains(b))
            }
        }
    }
}

/// Generates a random PRID valid under the given rules (used by `prereg-sync loadgen` and tests).
///
/// Candidates are built digit by digit, skipping digits that would break the repeat or sequence
/// rules with the digits before them, then closed with the Verhoeff check digit; the few that
/// still fail (a check digit that breaks a local rule, a repeated block, a restricted number, a
/// forbidden prefix) are discarded and rebuilt. Under the kernel defaults more than half of the
/// candidates pass, so a million IDs take about a second in release builds.
///
/// # Panics
///
/// If no valid PRID turns up in a million attempts: the rules are then unsatisfiable (a length of
/// 0, a `sequence_limit` of 1, a `repeating_limit` of 10 or more with more than ten digits...),
/// and a load generator that cannot produce IDs has nothing better to do than stop and say so.
pub fn generate_valid<R: Rng + ?Sized>(rules: &PridRules, rng: &mut R) -> String {
    const MAX_ATTEMPTS: usize = 1_000_000;
    let mut digits = vec![b'0'; rules.length];
    for _ in 0..MAX_ATTEMPTS {
        if fill_candidate(rules, &mut digits, rng) && mosip_valid(rules, &digits) {
            return digits.iter().map(|&digit| char::from(digit)).collect();
        }
    }
    panic!(
        "no PRID valid under {rules:?} after {MAX_ATTEMPTS} attempts: the rules are unsatisfiable"
    );
}

/// Fills `digits` with random digits that respect the repeat and sequence rules locally, then the
/// check digit. Each position draws until a digit fits the ones before it (about 1.4 draws under
/// the defaults, cheaper than testing all ten); false when some position finds none in 100 draws
/// (rules too strict locally): the caller retries, and gives up eventually.
fn fill_candidate<R: Rng + ?Sized>(rules: &PridRules, digits: &mut [u8], rng: &mut R) -> bool {
    const DRAWS_PER_POSITION: usize = 100;
    let Some(payload_len) = digits.len().checked_sub(1) else {
        return false;
    };
    for position in 0..payload_len {
        let fits = (0..DRAWS_PER_POSITION).any(|_| {
            digits[position] = rng.random_range(b'0'..=b'9');
            let prefix = &digits[..=position];
            !repeats_at_end(rules.repeating_limit, prefix)
                && !sequence_at_end(rules.sequence_limit, prefix)
        });
        if !fits {
            return false;
        }
    }
    digits[payload_len] = verhoeff_check_digit(&digits[..payload_len]);
    true
}

/// Every MOSIP rule; the length-and-digits rule goes first because the others assume digits.
fn mosip_valid(rules: &PridRules, bytes: &[u8]) -> bool {
    length_ok(rules, bytes)
        && prefix_ok(rules, bytes)
        && restricted_ok(rules, bytes)
        && repeat_ok(rules, bytes)
        && sequence_ok(rules, bytes)
        && block_ok(rules, bytes)
        && verhoeff_valid(bytes)
}

/// Exactly `length` ASCII digits; a length of 0 accepts nothing, there being no check digit.
fn length_ok(rules: &PridRules, bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.len() == rules.length && all_digits(bytes)
}

fn all_digits(bytes: &[u8]) -> bool {
    bytes.iter().all(u8::is_ascii_digit)
}

fn prefix_ok(rules: &PridRules, bytes: &[u8]) -> bool {
    !rules
        .not_start_with
        .iter()
        .any(|prefix| !prefix.is_empty() && bytes.starts_with(prefix.as_bytes()))
}

fn restricted_ok(rules: &PridRules, bytes: &[u8]) -> bool {
    !rules.restricted_numbers.iter().any(|number| {
        !number.is_empty() && bytes.windows(number.len()).any(|w| w == number.as_bytes())
    })
}

/// `(\d)\d{0,limit-1}\1`: no digit equal to one of the `limit` digits before it.
fn repeat_ok(rules: &PridRules, bytes: &[u8]) -> bool {
    (1..=bytes.len()).all(|end| !repeats_at_end(rules.repeating_limit, &bytes[..end]))
}

/// Whether the last digit of `prefix` equals one of the `limit` digits before it.
fn repeats_at_end(limit: usize, prefix: &[u8]) -> bool {
    match prefix.split_last() {
        Some((last, before)) => before[before.len().saturating_sub(limit)..].contains(last),
        None => false,
    }
}

/// No ascending or descending run of `sequence_limit` digits.
fn sequence_ok(rules: &PridRules, bytes: &[u8]) -> bool {
    (1..=bytes.len()).all(|end| !sequence_at_end(rules.sequence_limit, &bytes[..end]))
}

/// Whether `prefix` ends with a run of `limit` digits, each one more (or each one less) than the
/// one before; runs don't wrap around 9→0, as in the kernel's `0123456789` lookup.
fn sequence_at_end(limit: usize, prefix: &[u8]) -> bool {
    if limit == 0 || prefix.len() < limit {
        return false;
    }
    let run = &prefix[prefix.len() - limit..];
    let ascending = run
        .windows(2)
        .all(|pair| pair[1] == pair[0].wrapping_add(1));
    let descending = run
        .windows(2)
        .all(|pair| pair[1] == pair[0].wrapping_sub(1));
    ascending || descending
}

/// `(\d{N,}).*\1`: no block of `N` digits that appears again after it ends. Longer repeated
/// blocks contain a repeated block of exactly `N`, so checking `N` is enough.
fn block_ok(rules: &PridRules, bytes: &[u8]) -> bool {
    let size = rules.repeating_block_limit;
    if size == 0 || bytes.len() < 2 * size {
        return true;
    }
    (0..=bytes.len() - 2 * size).all(|first| {
        let block = &bytes[first..first + size];
        !bytes[first + size..]
            .windows(size)
            .any(|later| later == block)
    })
}

/// Verhoeff's dihedral-group multiplication table.
const VERHOEFF_D: [[u8; 10]; 10] = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
    [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
    [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
    [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
    [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
    [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
    [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
    [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
    [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
];

/// Verhoeff's position permutations, applied by position modulo 8 from the right.
const VERHOEFF_P: [[u8; 10]; 8] = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 5, 7, 6, 2, 8, 3, 0, 9, 4],
    [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
    [8, 9, 1, 6, 0, 4, 3, 5, 2, 7],
    [9, 4, 5, 3, 1, 2, 6, 8, 7, 0],
    [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
    [2, 7, 9, 3, 8, 0, 6, 4, 1, 5],
    [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
];

/// Verhoeff's inverse table: the check digit that brings a checksum back to 0.
const VERHOEFF_INV: [u8; 10] = [0, 4, 3, 2, 1, 5, 6, 7, 8, 9];

/// Verhoeff checksum of ASCII digits, the rightmost taken at position `offset`.
fn verhoeff_checksum(digits: &[u8], offset: usize) -> u8 {
    digits
        .iter()
        .rev()
        .enumerate()
        .fold(0, |checksum, (position, &digit)| {
            let permuted = VERHOEFF_P[(position + offset) % 8][usize::from(digit - b'0')];
            VERHOEFF_D[usize::from(checksum)][usize::from(permuted)]
        })
}

/// Whether ASCII digits end with their Verhoeff check digit. Verhoeff rather than Luhn because
/// the kernel uses it: it catches every single-digit error and every adjacent transposition.
fn verhoeff_valid(digits: &[u8]) -> bool {
    verhoeff_checksum(digits, 0) == 0
}

/// The ASCII check digit to append to ASCII digits `payload`.
fn verhoeff_check_digit(payload: &[u8]) -> u8 {
    b'0' + VERHOEFF_INV[usize::from(verhoeff_checksum(payload, 1))]
}

#[cfg(test)]
mod tests;
