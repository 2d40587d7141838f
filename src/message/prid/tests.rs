use proptest::prelude::*;
use rand::{SeedableRng, rngs::StdRng};

use super::*;

fn mosip() -> PridValidator {
    PridValidator::new(PridFormat::Mosip, PridRules::default())
}

/// The names of the default rules `candidate` breaks, so each vector below proves it fails
/// the rule it is about and no other.
fn broken_rules(candidate: &str) -> Vec<&'static str> {
    let rules = PridRules::default();
    let bytes = candidate.as_bytes();
    type Check = fn(&PridRules, &[u8]) -> bool;
    let checks: [(&str, Check); 6] = [
        ("length", length_ok),
        ("prefix", prefix_ok),
        ("restricted", restricted_ok),
        ("repeat", repeat_ok),
        ("sequence", sequence_ok),
        ("block", block_ok),
    ];
    let mut broken: Vec<&str> = checks
        .iter()
        .filter(|(_, check)| !check(&rules, bytes))
        .map(|(name, _)| *name)
        .collect();
    if length_ok(&rules, bytes) && !verhoeff_valid(bytes) {
        broken.push("verhoeff");
    }
    broken
}

#[test]
fn contract_vectors() {
    assert!(mosip().is_valid("75124301328620"));
    assert!(!mosip().is_valid("75124301326313"));
    assert!(!verhoeff_valid(b"75124301326313"));
}

/// Row `k` of the permutation table must be row 1 applied `k` times: a typo there keeps
/// generated IDs self-consistent while silently losing transposition detection.
#[test]
fn verhoeff_permutations_are_powers_of_the_first() {
    for pair in VERHOEFF_P.windows(2) {
        for (previous, next) in pair[0].iter().zip(pair[1]) {
            assert_eq!(next, VERHOEFF_P[1][usize::from(*previous)]);
        }
    }
}

/// Published Verhoeff examples (Wikipedia, the original paper's worked cases).
#[test]
fn verhoeff_known_check_digits() {
    assert_eq!(verhoeff_check_digit(b"236"), b'3');
    assert_eq!(verhoeff_check_digit(b"12345"), b'1');
    assert_eq!(verhoeff_check_digit(b"142857"), b'0');
    assert!(verhoeff_valid(b"2363"));
    assert!(!verhoeff_valid(b"2336"));
}

#[test]
fn verhoeff_inverse_is_the_inverse() {
    for (element, inverse) in VERHOEFF_INV.iter().enumerate() {
        assert_eq!(VERHOEFF_D[element][usize::from(*inverse)], 0);
    }
}

#[test]
fn each_rule_rejects_on_its_own() {
    let vectors = [
        ("7512430132862", "length"),
        ("751243013286205", "length"),
        ("7512430132862x", "length"),
        ("17524301328643", "prefix"),
        ("05124301328625", "prefix"),
        ("75124301327865", "restricted"),
        ("75124301328829", "repeat"),
        ("75124301328285", "repeat"),
        ("75124301234865", "sequence"),
        ("75124301987520", "sequence"),
        ("75201243013281", "sequence"),
        ("75124301975127", "block"),
        ("75124301328621", "verhoeff"),
    ];
    for (candidate, rule) in vectors {
        assert_eq!(broken_rules(candidate), [rule], "{candidate}");
        assert!(!mosip().is_valid(candidate), "{candidate}");
    }
}

#[test]
fn sequences_do_not_wrap() {
    assert_eq!(broken_rules("75124301890247"), Vec::<&str>::new());
    assert!(mosip().is_valid("75124301890247"));
}

#[test]
fn zero_limits_switch_rules_off() {
    let rules = PridRules {
        sequence_limit: 0,
        repeating_limit: 0,
        repeating_block_limit: 0,
        not_start_with: vec![String::new()],
        restricted_numbers: vec![String::new()],
        ..PridRules::default()
    };
    let validator = PridValidator::new(PridFormat::Mosip, rules);
    for candidate in ["75124301234865", "75124301328829", "75124301975127"] {
        assert!(validator.is_valid(candidate), "{candidate}");
    }
}

#[test]
fn digits14_wants_fourteen_digits_only() {
    let validator = PridValidator::new(PridFormat::Digits14, PridRules::default());
    assert!(validator.is_valid("00000000000000"));
    assert!(validator.is_valid("75124301326313"));
    assert!(!validator.is_valid("7512430132631"));
    assert!(!validator.is_valid("751243013263134"));
    assert!(!validator.is_valid("7512430132631a"));
    assert!(!validator.is_valid("７5124301326313"));
}

#[test]
fn any_wants_printable_ascii_up_to_36() {
    let validator = PridValidator::new(PridFormat::Any, PridRules::default());
    assert!(validator.is_valid("x"));
    assert!(validator.is_valid("PRID-2024/~!"));
    assert!(validator.is_valid(&"a".repeat(36)));
    assert!(!validator.is_valid(""));
    assert!(!validator.is_valid(&"a".repeat(37)));
    assert!(!validator.is_valid("has space"));
    assert!(!validator.is_valid("tab\t"));
    assert!(!validator.is_valid("\u{7f}"));
    assert!(!validator.is_valid("é"));
}

#[test]
fn generation_follows_custom_rules() {
    let rules = PridRules {
        length: 10,
        not_start_with: vec!["9".to_owned()],
        ..PridRules::default()
    };
    let validator = PridValidator::new(PridFormat::Mosip, rules.clone());
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..1000 {
        let prid = generate_valid(&rules, &mut rng);
        assert_eq!(prid.len(), 10);
        assert!(!prid.starts_with('9'));
        assert!(validator.is_valid(&prid), "{prid}");
    }
}

#[test]
#[should_panic(expected = "unsatisfiable")]
fn generation_gives_up_on_unsatisfiable_rules() {
    let rules = PridRules {
        length: 0,
        ..PridRules::default()
    };
    generate_valid(&rules, &mut StdRng::seed_from_u64(1));
}

proptest! {
    #[test]
    fn generated_prids_are_valid_and_check_every_digit(seed in any::<u64>()) {
        let validator = mosip();
        let prid = generate_valid(&PridRules::default(), &mut StdRng::seed_from_u64(seed));
        prop_assert_eq!(prid.len(), 14);
        prop_assert!(all_digits(prid.as_bytes()));
        prop_assert!(validator.is_valid(&prid), "{}", prid);
        let mut bytes = prid.into_bytes();
        let last = bytes[13];
        for digit in (b'0'..=b'9').filter(|&digit| digit != last) {
            bytes[13] = digit;
            prop_assert!(!verhoeff_valid(&bytes));
            prop_assert!(!validator.is_valid(std::str::from_utf8(&bytes)?));
        }
    }

    #[test]
    fn arbitrary_strings_never_panic(candidate in ".*") {
        for format in [PridFormat::Mosip, PridFormat::Digits14, PridFormat::Any] {
            PridValidator::new(format, PridRules::default()).is_valid(&candidate);
        }
        if candidate.len() != 14 {
            prop_assert!(!mosip().is_valid(&candidate));
        }
    }

    #[test]
    fn near_miss_lengths_fail(digits in "[0-9]{0,13}|[0-9]{15,20}") {
        prop_assert!(!mosip().is_valid(&digits));
    }

    #[test]
    fn adjacent_transpositions_break_the_check_digit(
        seed in any::<u64>(),
        position in 0usize..13,
    ) {
        let prid = generate_valid(&PridRules::default(), &mut StdRng::seed_from_u64(seed));
        let mut bytes = prid.into_bytes();
        prop_assume!(bytes[position] != bytes[position + 1]);
        bytes.swap(position, position + 1);
        prop_assert!(!verhoeff_valid(&bytes));
        prop_assert!(!mosip().is_valid(std::str::from_utf8(&bytes)?));
    }
}
