// TEMPORARY STUB (overwritten by the PRID rules module)
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PridFormat {
    #[default]
    Mosip,
    Digits14,
    Any,
}
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct PridRules {
    pub length: usize,
    pub not_start_with: Vec<String>,
    pub sequence_limit: usize,
    pub repeating_limit: usize,
    pub repeating_block_limit: usize,
    pub restricted_numbers: Vec<String>,
}
#[derive(Debug, Clone)]
pub struct PridValidator;
impl PridValidator {
    pub fn new(_format: PridFormat, _rules: PridRules) -> Self {
        PridValidator
    }
    pub fn is_valid(&self, candidate: &str) -> bool {
        candidate.len() == 14
    }
}
pub fn generate_valid<R: rand::Rng + ?Sized>(_rules: &PridRules, rng: &mut R) -> String {
    format!(
        "{:014}",
        rng.random_range(20000000000000u64..99999999999999)
    )
}
