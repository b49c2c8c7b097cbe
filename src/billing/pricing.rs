//! Price resolution: which price rules apply, what a quantity costs under them, and where a
//! plan's catalog has holes (DESIGN "Price resolution" and "Pinned details").
//!
//! Pure functions only. Amounts are left unrounded here; rounding to the currency happens
//! per invoice line (`super::money::round_to_currency`).

use std::cmp::Ordering;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;

use rust_decimal::Decimal;
use uuid::Uuid;

use super::phase::PhaseKind;

/// What one unit price is charged per.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Interval {
    /// Per hour of the slice (PACKAGE products).
    Hour,
    /// Per billing period, prorated by seconds (PACKAGE products).
    Month,
    /// Per unit of recorded usage (metered products).
    Unit,
}

impl Interval {
    /// The API spelling (`HOUR`, `MONTH`, `UNIT`).
    pub fn as_str(self) -> &'static str {
        match self {
            Interval::Hour => "HOUR",
            Interval::Month => "MONTH",
            Interval::Unit => "UNIT",
        }
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How tiers price a quantity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TierMode {
    /// The whole quantity at the price of the tier it falls in.
    Volume,
    /// Each unit at the price of the tier that unit falls in.
    Graduated,
}

impl TierMode {
    /// The API spelling (`VOLUME`, `GRADUATED`).
    pub fn as_str(self) -> &'static str {
        match self {
            TierMode::Volume => "VOLUME",
            TierMode::Graduated => "GRADUATED",
        }
    }
}

impl fmt::Display for TierMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One price of a plan: for a phase and a product, in a currency, optionally for one region,
/// up to an optional maximum quantity (the tier's upper bound, inclusive).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PriceRule {
    pub id: Uuid,
    pub phase: PhaseKind,
    pub product_id: Uuid,
    pub currency: String,
    /// `None`: any region (used when the customer's region has no rules of its own).
    pub region: Option<String>,
    /// `None`: unbounded (the top tier).
    pub max_quantity: Option<Decimal>,
    pub unit_amount: Decimal,
    pub interval: Interval,
}

/// The part of a quantity priced by one tier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TierCharge {
    pub rule_id: Uuid,
    pub quantity: Decimal,
    pub unit_amount: Decimal,
    /// `quantity × unit_amount`, unrounded.
    pub amount: Decimal,
}

/// The answer of [`resolve_price`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolution {
    /// False when the quantity, or part of it, found no price and was charged zero.
    pub matched: bool,
    /// The tier the quantity falls in; `None` when there is none.
    pub rule: Option<PriceRule>,
    /// That tier's unit price (zero without one).
    pub unit_amount: Decimal,
    /// The price of the whole quantity for one interval, unrounded.
    pub amount: Decimal,
    /// The interval of the applicable rules; `None` only when no rule applies at all.
    pub interval: Option<Interval>,
    /// Volume: the one tier used. Graduated: every tier that priced some units, in order.
    pub tiers: Vec<TierCharge>,
}

impl Resolution {
    /// Nothing (more) could be priced: zero, and flagged so that an admin can see the hole.
    fn unmatched(interval: Option<Interval>, amount: Decimal, tiers: Vec<TierCharge>) -> Self {
        Resolution {
            matched: false,
            rule: None,
            unit_amount: Decimal::ZERO,
            amount,
            interval,
            tiers,
        }
    }
}

/// Orders tier maxima ascending, with the unbounded tier (`None`) last.
fn cmp_max(a: Option<Decimal>, b: Option<Decimal>) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) => a.cmp(&b),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

/// Steps 1–2 of price resolution: the rules of `phase` and `product_id` in `currency` (ASCII
/// case ignored); of those, the region's own rules when it has any, else the region-less
/// ones (regions compare exactly; no region means region-less rules only).
///
/// Sorted by maximum quantity ascending, unbounded last; equal maxima keep input order.
pub fn applicable_rules<'a>(
    rules: &'a [PriceRule],
    phase: PhaseKind,
    product_id: Uuid,
    currency: &str,
    region: Option<&str>,
) -> Vec<&'a PriceRule> {
    applicable_among(rules.iter(), phase, product_id, currency, region)
}

/// [`applicable_rules`] over any run of rules, kept in their order.
fn applicable_among<'a>(
    rules: impl Iterator<Item = &'a PriceRule> + Clone,
    phase: PhaseKind,
    product_id: Uuid,
    currency: &str,
    region: Option<&str>,
) -> Vec<&'a PriceRule> {
    let candidates = rules.filter(|rule| {
        rule.phase == phase
            && rule.product_id == product_id
            && rule.currency.eq_ignore_ascii_case(currency)
    });
    let regional: Vec<&PriceRule> = match region {
        Some(region) => candidates
            .clone()
            .filter(|rule| rule.region.as_deref() == Some(region))
            .collect(),
        None => Vec::new(),
    };
    // A region with rules of its own uses only those, even where they leave holes.
    let mut chosen = if regional.is_empty() {
        candidates.filter(|rule| rule.region.is_none()).collect()
    } else {
        regional
    };
    // Stable, so that duplicates (rejected by `validate_tiers`) resolve deterministically.
    chosen.sort_by(|a, b| cmp_max(a.max_quantity, b.max_quantity));
    chosen
}

/// A plan's rules by (phase, product), built once per catalog snapshot: a quote looks at
/// the few rules of its phase and product instead of every price of the plan. Positions
/// into the plan's rules, sorted stably, so each group keeps the rules' own order and
/// resolves exactly as [`resolve_price`] over all of them.
#[derive(Clone, Debug, Default)]
pub struct RuleIndex(Vec<u32>);

impl RuleIndex {
    pub fn new(rules: &[PriceRule]) -> Self {
        let mut order: Vec<u32> = (0..rules.len())
            .map(|i| u32::try_from(i).unwrap_or(u32::MAX))
            .collect();
        order.sort_by_key(|&i| key(&rules[i as usize]));
        RuleIndex(order)
    }

    /// [`applicable_rules`] over `rules`, the ones this index was built from: the same
    /// rules in the same order, from the phase and product's group only.
    pub fn applicable<'a>(
        &self,
        rules: &'a [PriceRule],
        phase: PhaseKind,
        product_id: Uuid,
        currency: &str,
        region: Option<&str>,
    ) -> Vec<&'a PriceRule> {
        if self.0.len() != rules.len() {
            // Not built from these rules: the full scan.
            return applicable_rules(rules, phase, product_id, currency, region);
        }
        let wanted = (phase, product_id);
        let at = |i: &u32| key(&rules[*i as usize]);
        let start = self.0.partition_point(|i| at(i) < wanted);
        let end = start + self.0[start..].partition_point(|i| at(i) == wanted);
        let group = self.0[start..end].iter().map(|&i| &rules[i as usize]);
        applicable_among(group, phase, product_id, currency, region)
    }
}

fn key(rule: &PriceRule) -> (PhaseKind, Uuid) {
    (rule.phase, rule.product_id)
}

/// Prices `quantity` of a product for one interval under the plan's `rules`.
///
/// Volume: the rule with the smallest maximum ≥ quantity, else the unbounded one, prices the
/// whole quantity; with neither, the answer is zero and `matched: false`. Graduated: units in
/// `(previous max, max]` are priced at that tier; units above a top tier that has a maximum
/// are priced zero and the answer is `matched: false` (with `rule: None`, unit price zero, and
/// the amount of the units that were priced). Quantity 0 is matched whenever a rule applies.
/// No applicable rule at all: zero, `matched: false`, `interval: None`.
///
/// Quantities are expected to be non-negative (validated at input). Arithmetic saturates
/// instead of panicking on absurd magnitudes.
pub fn resolve_price(
    rules: &[PriceRule],
    phase: PhaseKind,
    product_id: Uuid,
    currency: &str,
    region: Option<&str>,
    quantity: Decimal,
    mode: TierMode,
) -> Resolution {
    let tiers = applicable_rules(rules, phase, product_id, currency, region);
    resolve_tiers(&tiers, quantity, mode)
}

/// Steps 3 on of [`resolve_price`], over the applicable rules in their order (as
/// [`applicable_rules`] returns them).
pub fn resolve_tiers(tiers: &[&PriceRule], quantity: Decimal, mode: TierMode) -> Resolution {
    let Some(first) = tiers.first() else {
        return Resolution::unmatched(None, Decimal::ZERO, Vec::new());
    };
    let interval = Some(first.interval);
    // At or below zero no tier boundary is crossed, so graduated pricing equals volume.
    if mode == TierMode::Volume || quantity <= Decimal::ZERO {
        resolve_volume(tiers, quantity, interval)
    } else {
        resolve_graduated(tiers, quantity, interval)
    }
}

/// Volume pricing over tiers sorted by [`applicable_rules`].
fn resolve_volume(
    tiers: &[&PriceRule],
    quantity: Decimal,
    interval: Option<Interval>,
) -> Resolution {
    // Sorted ascending with the unbounded rule last: the first rule that covers the quantity
    // is the one with the smallest maximum ≥ quantity, or else the unbounded one.
    let covering = tiers
        .iter()
        .find(|rule| rule.max_quantity.is_none_or(|max| quantity <= max));
    let Some(rule) = covering else {
        return Resolution::unmatched(interval, Decimal::ZERO, Vec::new());
    };
    let amount = quantity.saturating_mul(rule.unit_amount);
    Resolution {
        matched: true,
        rule: Some((*rule).clone()),
        unit_amount: rule.unit_amount,
        amount,
        interval: Some(rule.interval),
        tiers: vec![TierCharge {
            rule_id: rule.id,
            quantity,
            unit_amount: rule.unit_amount,
            amount,
        }],
    }
}

/// Graduated pricing of a positive quantity over tiers sorted by [`applicable_rules`].
fn resolve_graduated(
    tiers: &[&PriceRule],
    quantity: Decimal,
    interval: Option<Interval>,
) -> Resolution {
    let mut charges = Vec::new();
    let mut amount = Decimal::ZERO;
    // Units up to `priced` have a price already.
    let mut priced = Decimal::ZERO;
    let mut last: Option<&PriceRule> = None;
    for rule in tiers {
        let ceiling = rule.max_quantity.map_or(quantity, |max| max.min(quantity));
        // A tier whose maximum is not above the previous one has no units of its own.
        if ceiling > priced {
            let units = ceiling - priced;
            let charge = units.saturating_mul(rule.unit_amount);
            amount = amount.saturating_add(charge);
            charges.push(TierCharge {
                rule_id: rule.id,
                quantity: units,
                unit_amount: rule.unit_amount,
                amount: charge,
            });
            priced = ceiling;
            last = Some(rule);
        }
        if priced >= quantity {
            break;
        }
    }
    match last {
        Some(rule) if priced >= quantity => Resolution {
            matched: true,
            rule: Some(rule.clone()),
            unit_amount: rule.unit_amount,
            amount,
            interval: Some(rule.interval),
            tiers: charges,
        },
        // Units above the top bounded tier: priced zero, flagged.
        _ => Resolution::unmatched(interval, amount, charges),
    }
}

/// A combination of phase × product × currency × region that some quantity cannot be priced in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogGap {
    pub phase: PhaseKind,
    pub product_id: Uuid,
    pub currency: String,
    pub region: Option<String>,
    /// `None`: no rule at all for this combination; `Some(q)`: quantities above `q` are unpriced.
    pub above_quantity: Option<Decimal>,
    /// A sentence for the admin.
    pub reason: String,
}

/// Every hole of a plan: for each phase × product × currency × region (in input order; `None`
/// in `regions` stands for customers without a region), a gap when no rule applies, or when
/// the applicable tiers have no unbounded rule (then quantities above the top maximum are
/// unpriced).
pub fn catalog_gaps(
    rules: &[PriceRule],
    phases: &[PhaseKind],
    product_ids: &[Uuid],
    currencies: &[String],
    regions: &[Option<String>],
) -> Vec<CatalogGap> {
    let mut gaps = Vec::new();
    for &phase in phases {
        for &product_id in product_ids {
            for currency in currencies {
                gaps.extend(regions.iter().filter_map(|region| {
                    gap_for(rules, phase, product_id, currency, region.as_deref())
                }));
            }
        }
    }
    gaps
}

/// The gap of one phase × product × currency × region, if it has one.
fn gap_for(
    rules: &[PriceRule],
    phase: PhaseKind,
    product_id: Uuid,
    currency: &str,
    region: Option<&str>,
) -> Option<CatalogGap> {
    let tiers = applicable_rules(rules, phase, product_id, currency, region);
    let whom = match region {
        Some(region) => format!("region {region}"),
        None => "customers without a region".to_owned(),
    };
    // Sorted with the unbounded rule last: the last rule tells whether there is one.
    let (above_quantity, reason) = match tiers.last().map(|top| top.max_quantity) {
        Some(None) => return None,
        None => (
            None,
            format!("no {phase} price for product {product_id} in {currency} for {whom}"),
        ),
        Some(Some(max)) => (
            Some(max),
            format!(
                "{phase} prices for product {product_id} in {currency} for {whom} stop at \
                 quantity {max}: larger quantities are unpriced"
            ),
        ),
    };
    Some(CatalogGap {
        phase,
        product_id,
        currency: currency.to_owned(),
        region: region.map(str::to_owned),
        above_quantity,
        reason,
    })
}

/// Checks a plan's price rules as a whole: no two rules may be the same tier (same phase,
/// product, currency, region and maximum quantity; `10` and `10.0` are the same), and with
/// graduated tiers every rule of one ladder (same phase, product, currency and region) must
/// share one interval. Volume ladders, and rules across currencies and regions, may mix
/// intervals: the chosen rule's interval applies. The error names the rules.
pub fn validate_tiers(rules: &[PriceRule], mode: TierMode) -> Result<(), String> {
    type TierKey = (PhaseKind, Uuid, String, Option<String>, Option<Decimal>);
    type LadderKey = (PhaseKind, Uuid, String, Option<String>);
    let mut tiers: HashMap<TierKey, Uuid> = HashMap::new();
    let mut intervals: HashMap<LadderKey, (Interval, Uuid)> = HashMap::new();
    for rule in rules {
        // Currency case is ignored by resolution, so it is ignored here too.
        let key = (
            rule.phase,
            rule.product_id,
            rule.currency.to_ascii_uppercase(),
            rule.region.clone(),
            rule.max_quantity.map(|max| max.normalize()),
        );
        match tiers.entry(key) {
            Entry::Occupied(existing) => {
                let region = rule.region.as_deref().unwrap_or("any");
                let max = rule
                    .max_quantity
                    .map_or_else(|| "none".to_owned(), |max| max.normalize().to_string());
                return Err(format!(
                    "price rules {} and {} are the same tier ({} price for product {} in {}, \
                     region {region}, maximum quantity {max})",
                    existing.get(),
                    rule.id,
                    rule.phase,
                    rule.product_id,
                    rule.currency,
                ));
            }
            Entry::Vacant(slot) => {
                slot.insert(rule.id);
            }
        }
        if mode != TierMode::Graduated {
            continue;
        }
        let ladder = (
            rule.phase,
            rule.product_id,
            rule.currency.to_ascii_uppercase(),
            rule.region.clone(),
        );
        match intervals.entry(ladder) {
            Entry::Occupied(existing) => {
                let (interval, first_id) = *existing.get();
                if interval != rule.interval {
                    return Err(format!(
                        "price rules {first_id} ({interval}) and {} ({}) of the {} phase for \
                         product {} in {}, region {}, have different intervals; one graduated \
                         ladder takes one",
                        rule.id,
                        rule.interval,
                        rule.phase,
                        rule.product_id,
                        rule.currency,
                        rule.region.as_deref().unwrap_or("any"),
                    ));
                }
            }
            Entry::Vacant(slot) => {
                slot.insert((rule.interval, rule.id));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::dec;

    const PRODUCT: Uuid = Uuid::from_u128(0xA);
    const OTHER_PRODUCT: Uuid = Uuid::from_u128(0xB);

    fn rule(
        id: u128,
        region: Option<&str>,
        max: Option<Decimal>,
        unit_amount: Decimal,
    ) -> PriceRule {
        PriceRule {
            id: Uuid::from_u128(id),
            phase: PhaseKind::Final,
            product_id: PRODUCT,
            currency: "USD".to_owned(),
            region: region.map(str::to_owned),
            max_quantity: max,
            unit_amount,
            interval: Interval::Month,
        }
    }

    mod index {
        use super::*;
        use proptest::prelude::*;

        const PHASES: [PhaseKind; 3] = [PhaseKind::Trial, PhaseKind::Discount, PhaseKind::Final];
        const CURRENCIES: [&str; 3] = ["USD", "usd", "EUR"];
        const REGIONS: [Option<&str>; 3] = [None, Some("us-east"), Some("eu-west")];

        fn arb_rule() -> impl Strategy<Value = PriceRule> {
            (
                0usize..3,
                0u128..3,
                0usize..3,
                0usize..3,
                prop::option::of(0u32..50),
                0u32..500,
            )
                .prop_map(|(ph, product, cur, reg, max, cents)| PriceRule {
                    id: Uuid::new_v4(),
                    phase: PHASES[ph],
                    product_id: Uuid::from_u128(product),
                    currency: CURRENCIES[cur].to_owned(),
                    region: REGIONS[reg].map(str::to_owned),
                    max_quantity: max.map(Decimal::from),
                    unit_amount: Decimal::new(i64::from(cents), 2),
                    interval: Interval::Month,
                })
        }

        proptest! {
            /// Whatever the rules (duplicates, holes, mixed case), the index finds the same
            /// rules in the same order as the full scan, for every phase, product, currency
            /// and region.
            #[test]
            fn the_index_finds_what_the_full_scan_finds(
                rules in prop::collection::vec(arb_rule(), 0..40),
                ph in 0usize..3, product in 0u128..4, cur in 0usize..3, reg in 0usize..3,
            ) {
                let (phase, product) = (PHASES[ph], Uuid::from_u128(product));
                let ids = |found: Vec<&PriceRule>| found.iter().map(|r| r.id).collect::<Vec<_>>();
                let index = RuleIndex::new(&rules);
                prop_assert_eq!(
                    ids(index.applicable(&rules, phase, product, CURRENCIES[cur], REGIONS[reg])),
                    ids(applicable_rules(&rules, phase, product, CURRENCIES[cur], REGIONS[reg]))
                );
            }
        }
    }

    /// Region-less tiers: ≤10 at 1.00, ≤100 at 0.80, above at 0.50 (listed out of order).
    fn three_tiers() -> Vec<PriceRule> {
        vec![
            rule(3, None, None, dec!(0.50)),
            rule(2, None, Some(dec!(100)), dec!(0.80)),
            rule(1, None, Some(dec!(10)), dec!(1.00)),
        ]
    }

    fn resolve(
        rules: &[PriceRule],
        region: Option<&str>,
        q: Decimal,
        mode: TierMode,
    ) -> Resolution {
        resolve_price(rules, PhaseKind::Final, PRODUCT, "USD", region, q, mode)
    }

    fn ids(rules: &[&PriceRule]) -> Vec<u128> {
        rules.iter().map(|rule| rule.id.as_u128()).collect()
    }

    #[test]
    fn applicable_rules_filter_and_sort() {
        let mut rules = three_tiers();
        rules.push(PriceRule {
            phase: PhaseKind::Trial,
            ..rule(4, None, None, dec!(0))
        });
        rules.push(PriceRule {
            product_id: OTHER_PRODUCT,
            ..rule(5, None, None, dec!(9))
        });
        rules.push(PriceRule {
            currency: "EUR".to_owned(),
            ..rule(6, None, None, dec!(9))
        });
        let found = applicable_rules(&rules, PhaseKind::Final, PRODUCT, "USD", None);
        assert_eq!(ids(&found), [1, 2, 3]);
        // Currency compares without case.
        let found = applicable_rules(&rules, PhaseKind::Final, PRODUCT, "usd", None);
        assert_eq!(ids(&found), [1, 2, 3]);
        let found = applicable_rules(&rules, PhaseKind::Trial, PRODUCT, "USD", None);
        assert_eq!(ids(&found), [4]);
        assert!(applicable_rules(&rules, PhaseKind::Discount, PRODUCT, "USD", None).is_empty());
        assert!(applicable_rules(&rules, PhaseKind::Final, PRODUCT, "JPY", None).is_empty());
    }

    #[test]
    fn a_region_with_rules_uses_only_its_own() {
        let mut rules = three_tiers();
        rules.push(rule(10, Some("eu"), Some(dec!(50)), dec!(2)));
        rules.push(rule(11, Some("eu"), Some(dec!(5)), dec!(3)));
        let eu = applicable_rules(&rules, PhaseKind::Final, PRODUCT, "USD", Some("eu"));
        assert_eq!(ids(&eu), [11, 10]);
        // A region without rules of its own falls back to the region-less ones.
        let us = applicable_rules(&rules, PhaseKind::Final, PRODUCT, "USD", Some("us"));
        assert_eq!(ids(&us), [1, 2, 3]);
        // Regions match exactly.
        let upper = applicable_rules(&rules, PhaseKind::Final, PRODUCT, "USD", Some("EU"));
        assert_eq!(ids(&upper), [1, 2, 3]);
        // No region: region-less only, never a region's rules.
        let none = applicable_rules(&rules, PhaseKind::Final, PRODUCT, "USD", None);
        assert_eq!(ids(&none), [1, 2, 3]);
    }

    #[test]
    fn region_only_rules_leave_region_less_customers_unpriced() {
        let rules = vec![rule(1, Some("eu"), None, dec!(2))];
        let r = resolve(&rules, None, dec!(1), TierMode::Volume);
        assert!(!r.matched);
        assert_eq!(r.interval, None);
        assert!(resolve(&rules, Some("eu"), dec!(1), TierMode::Volume).matched);
    }

    #[test]
    fn volume_picks_the_smallest_max_at_or_above_quantity() {
        let rules = three_tiers();
        let r = resolve(&rules, None, dec!(5), TierMode::Volume);
        assert!(r.matched);
        assert_eq!(r.rule.as_ref().map(|rule| rule.id.as_u128()), Some(1));
        assert_eq!(r.unit_amount, dec!(1.00));
        assert_eq!(r.amount, dec!(5.00));
        assert_eq!(r.interval, Some(Interval::Month));
        assert_eq!(
            r.tiers,
            vec![TierCharge {
                rule_id: Uuid::from_u128(1),
                quantity: dec!(5),
                unit_amount: dec!(1.00),
                amount: dec!(5.00),
            }]
        );
        // A quantity equal to a maximum belongs to that tier.
        let r = resolve(&rules, None, dec!(10), TierMode::Volume);
        assert_eq!(r.unit_amount, dec!(1.00));
        assert_eq!(r.amount, dec!(10));
        let r = resolve(&rules, None, dec!(10.5), TierMode::Volume);
        assert_eq!(r.unit_amount, dec!(0.80));
        assert_eq!(r.amount, dec!(8.4));
        // Above every maximum: the unbounded rule, for the whole quantity.
        let r = resolve(&rules, None, dec!(1000), TierMode::Volume);
        assert_eq!(r.rule.as_ref().map(|rule| rule.id.as_u128()), Some(3));
        assert_eq!(r.amount, dec!(500));
    }

    #[test]
    fn volume_above_the_top_bounded_tier_is_a_hole() {
        let rules = vec![
            rule(1, None, Some(dec!(10)), dec!(1)),
            rule(2, None, Some(dec!(100)), dec!(0.8)),
        ];
        let r = resolve(&rules, None, dec!(150), TierMode::Volume);
        assert_eq!(
            r,
            Resolution {
                matched: false,
                rule: None,
                unit_amount: Decimal::ZERO,
                amount: Decimal::ZERO,
                interval: Some(Interval::Month),
                tiers: Vec::new(),
            }
        );
    }

    #[test]
    fn no_rule_at_all_is_unmatched_zero() {
        for mode in [TierMode::Volume, TierMode::Graduated] {
            for q in [dec!(0), dec!(3)] {
                let r = resolve(&[], None, q, mode);
                assert_eq!(
                    r,
                    Resolution {
                        matched: false,
                        rule: None,
                        unit_amount: Decimal::ZERO,
                        amount: Decimal::ZERO,
                        interval: None,
                        tiers: Vec::new(),
                    }
                );
            }
        }
    }

    #[test]
    fn quantity_zero_is_matched_and_free() {
        let rules = three_tiers();
        for mode in [TierMode::Volume, TierMode::Graduated] {
            let r = resolve(&rules, None, Decimal::ZERO, mode);
            assert!(r.matched, "{mode}");
            assert!(r.amount.is_zero(), "{mode}");
            assert_eq!(
                r.rule.as_ref().map(|rule| rule.id.as_u128()),
                Some(1),
                "{mode}"
            );
            assert_eq!(r.unit_amount, dec!(1.00), "{mode}");
        }
        // Even when the only rule is bounded.
        let bounded = vec![rule(1, None, Some(dec!(1)), dec!(4))];
        assert!(resolve(&bounded, None, Decimal::ZERO, TierMode::Graduated).matched);
    }

    #[test]
    fn graduated_prices_each_unit_in_its_tier() {
        let rules = three_tiers();
        // 10 × 1.00 + 90 × 0.80 + 50 × 0.50 = 10 + 72 + 25.
        let r = resolve(&rules, None, dec!(150), TierMode::Graduated);
        assert!(r.matched);
        assert_eq!(r.amount, dec!(107));
        assert_eq!(r.rule.as_ref().map(|rule| rule.id.as_u128()), Some(3));
        assert_eq!(r.unit_amount, dec!(0.50));
        let split: Vec<_> = r
            .tiers
            .iter()
            .map(|t| (t.rule_id.as_u128(), t.quantity, t.amount))
            .collect();
        assert_eq!(
            split,
            [
                (1, dec!(10), dec!(10)),
                (2, dec!(90), dec!(72)),
                (3, dec!(50), dec!(25))
            ]
        );
        // Exactly at a maximum: only the tiers up to it.
        let r = resolve(&rules, None, dec!(10), TierMode::Graduated);
        assert_eq!(r.amount, dec!(10));
        assert_eq!(r.tiers.len(), 1);
        assert_eq!(r.rule.as_ref().map(|rule| rule.id.as_u128()), Some(1));
        let r = resolve(&rules, None, dec!(10.5), TierMode::Graduated);
        assert_eq!(r.amount, dec!(10.4));
        assert_eq!(r.unit_amount, dec!(0.80));
        // Below the first maximum graduated equals volume.
        assert_eq!(
            resolve(&rules, None, dec!(3), TierMode::Graduated).amount,
            resolve(&rules, None, dec!(3), TierMode::Volume).amount
        );
    }

    #[test]
    fn graduated_excess_above_a_bounded_top_tier_is_free_and_unmatched() {
        let rules = vec![
            rule(1, None, Some(dec!(10)), dec!(1)),
            rule(2, None, Some(dec!(100)), dec!(0.8)),
        ];
        let r = resolve(&rules, None, dec!(150), TierMode::Graduated);
        assert!(!r.matched);
        assert_eq!(r.rule, None);
        assert_eq!(r.unit_amount, Decimal::ZERO);
        // The 50 units above 100 cost nothing; the others keep their price.
        assert_eq!(r.amount, dec!(82));
        assert_eq!(r.tiers.len(), 2);
        assert_eq!(r.interval, Some(Interval::Month));
    }

    #[test]
    fn a_regional_top_tier_is_a_hole_even_if_region_less_rules_cover_it() {
        let mut rules = three_tiers();
        rules.push(rule(10, Some("eu"), Some(dec!(10)), dec!(2)));
        for mode in [TierMode::Volume, TierMode::Graduated] {
            let r = resolve(&rules, Some("eu"), dec!(20), mode);
            assert!(!r.matched, "{mode}");
            assert!(
                resolve(&rules, Some("eu"), dec!(10), mode).matched,
                "{mode}"
            );
            assert!(resolve(&rules, None, dec!(20), mode).matched, "{mode}");
        }
        assert_eq!(
            resolve(&rules, Some("eu"), dec!(20), TierMode::Graduated).amount,
            dec!(20)
        );
    }

    #[test]
    fn amounts_are_not_rounded() {
        let rules = vec![rule(1, None, None, dec!(0.333333333333))];
        let r = resolve(&rules, None, dec!(3), TierMode::Volume);
        assert_eq!(r.amount, dec!(0.999999999999));
        let r = resolve(&rules, None, dec!(0.000001), TierMode::Graduated);
        assert_eq!(r.amount, dec!(0.000000333333333333));
    }

    #[test]
    fn absurd_quantities_saturate_instead_of_panicking() {
        let rules = three_tiers();
        let r = resolve(&rules, None, Decimal::MAX, TierMode::Volume);
        assert_eq!(r.amount, Decimal::MAX / dec!(2));
        let pricey = vec![rule(1, None, None, dec!(1000))];
        for mode in [TierMode::Volume, TierMode::Graduated] {
            assert_eq!(
                resolve(&pricey, None, Decimal::MAX, mode).amount,
                Decimal::MAX
            );
        }
    }

    #[test]
    fn catalog_gaps_lists_every_hole_in_input_order() {
        let mut rules = three_tiers();
        // EU: bounded only. EUR: nothing. TRIAL: an unbounded rule.
        rules.push(rule(10, Some("eu"), Some(dec!(10)), dec!(2)));
        rules.push(PriceRule {
            phase: PhaseKind::Trial,
            ..rule(20, None, None, dec!(0))
        });
        let gaps = catalog_gaps(
            &rules,
            &[PhaseKind::Trial, PhaseKind::Final],
            &[PRODUCT],
            &["USD".to_owned(), "EUR".to_owned()],
            &[None, Some("eu".to_owned()), Some("us".to_owned())],
        );
        let summary: Vec<_> = gaps
            .iter()
            .map(|g| {
                (
                    g.phase,
                    g.currency.as_str(),
                    g.region.as_deref(),
                    g.above_quantity,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (PhaseKind::Trial, "EUR", None, None),
                (PhaseKind::Trial, "EUR", Some("eu"), None),
                (PhaseKind::Trial, "EUR", Some("us"), None),
                (PhaseKind::Final, "USD", Some("eu"), Some(dec!(10))),
                (PhaseKind::Final, "EUR", None, None),
                (PhaseKind::Final, "EUR", Some("eu"), None),
                (PhaseKind::Final, "EUR", Some("us"), None),
            ]
        );
        assert!(gaps.iter().all(|g| g.product_id == PRODUCT));
        assert_eq!(
            gaps[3].reason,
            format!(
                "FINAL prices for product {PRODUCT} in USD for region eu stop at quantity 10: \
                 larger quantities are unpriced"
            )
        );
        assert_eq!(
            gaps[0].reason,
            format!("no TRIAL price for product {PRODUCT} in EUR for customers without a region")
        );
    }

    #[test]
    fn catalog_without_holes_has_no_gaps() {
        let gaps = catalog_gaps(
            &three_tiers(),
            &[PhaseKind::Final],
            &[PRODUCT],
            &["USD".to_owned()],
            &[None, Some("anywhere".to_owned())],
        );
        assert!(gaps.is_empty());
        assert!(catalog_gaps(&three_tiers(), &[], &[PRODUCT], &[], &[None]).is_empty());
    }

    #[test]
    fn validate_tiers_accepts_a_sound_plan() {
        let mut rules = three_tiers();
        rules.push(rule(10, Some("eu"), Some(dec!(10)), dec!(2)));
        rules.push(PriceRule {
            currency: "EUR".to_owned(),
            ..rule(11, None, Some(dec!(10)), dec!(2))
        });
        // Another phase or product may use another interval.
        rules.push(PriceRule {
            phase: PhaseKind::Trial,
            interval: Interval::Hour,
            ..rule(12, None, None, dec!(0))
        });
        rules.push(PriceRule {
            product_id: OTHER_PRODUCT,
            interval: Interval::Unit,
            ..rule(13, None, None, dec!(0.1))
        });
        assert_eq!(validate_tiers(&rules, TierMode::Graduated), Ok(()));
        assert_eq!(validate_tiers(&[], TierMode::Volume), Ok(()));
    }

    #[test]
    fn validate_tiers_rejects_duplicate_tiers() {
        let mut rules = three_tiers();
        rules.push(rule(9, None, Some(dec!(10.000)), dec!(3)));
        let err = validate_tiers(&rules, TierMode::Volume)
            .expect_err("10 and 10.000 are the same maximum");
        assert!(err.contains(&Uuid::from_u128(1).to_string()), "{err}");
        assert!(err.contains(&Uuid::from_u128(9).to_string()), "{err}");
        assert!(err.contains("maximum quantity 10"), "{err}");

        let mut rules = three_tiers();
        rules.push(PriceRule {
            currency: "usd".to_owned(),
            ..rule(9, None, None, dec!(3))
        });
        let err = validate_tiers(&rules, TierMode::Volume).expect_err("two unbounded USD rules");
        assert!(err.contains("maximum quantity none"), "{err}");

        let rules = vec![
            rule(1, Some("eu"), None, dec!(1)),
            rule(2, Some("eu"), None, dec!(2)),
        ];
        let err = validate_tiers(&rules, TierMode::Volume).expect_err("two unbounded EU rules");
        assert!(err.contains("region eu"), "{err}");
    }

    #[test]
    fn validate_tiers_mixes_intervals_except_within_a_graduated_ladder() {
        let mut rules = three_tiers();
        // Another currency may take another interval, in either mode.
        rules.push(PriceRule {
            currency: "EUR".to_owned(),
            interval: Interval::Hour,
            ..rule(9, None, None, dec!(0.01))
        });
        assert_eq!(validate_tiers(&rules, TierMode::Graduated), Ok(()));
        // Within one ladder: a volume ladder may mix, a graduated one may not.
        rules.push(PriceRule {
            interval: Interval::Hour,
            ..rule(10, None, Some(dec!(1000)), dec!(0.01))
        });
        assert_eq!(validate_tiers(&rules, TierMode::Volume), Ok(()));
        let err = validate_tiers(&rules, TierMode::Graduated)
            .expect_err("MONTH and HOUR within one graduated ladder");
        assert!(err.contains("(MONTH)") && err.contains("(HOUR)"), "{err}");
        assert!(err.contains(&Uuid::from_u128(3).to_string()), "{err}");
        assert!(err.contains(&Uuid::from_u128(10).to_string()), "{err}");
    }
}
