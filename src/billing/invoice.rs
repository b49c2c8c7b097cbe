//! Invoice arithmetic: the lines of one subscription for one billing period (DESIGN "Invoice
//! arithmetic" and "Pinned details").
//!
//! Pure functions only: no database, no async, no clock reads. The caller loads the plan(s),
//! items, metered products and usage records and passes them in; [`compute_invoice`] answers
//! the lines and the total.
//!
//! - The charged window (normally the whole period) is cut into [`Slice`]s at phase boundaries
//!   and at plan changes; every slice is `[start, end)`, so a boundary belongs to the later one.
//! - Recurring line, per item and slice (even at zero): the item's price for the slice's phase
//!   applied to its quantity, times `slice seconds / 3600` (HOUR) or
//!   `slice seconds / period seconds` (MONTH), multiplying first and dividing last.
//! - Metered line, per metered product and slice with usage: the slice's usage less what is left
//!   of the included amount of the product's resource (consumed in time order from the period's
//!   start), priced on that billable quantity with the slice's phase prices (UNIT: no fraction).
//! - Each line is rounded to the currency's minor units, half away from zero; the total is the
//!   sum of the rounded lines.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::money::{prorate, round_to_currency};
use super::phase::{PhaseKind, PhaseSpec, phase_at, phase_timeline, truncate_to_second};
use super::pricing::{Interval, PriceRule, Resolution, TierCharge, TierMode, resolve_price};

const SECONDS_PER_HOUR: i64 = 3600;

/// What a plan prices with: its phases, its price rules and how its tiers count.
#[derive(Clone, Copy, Debug)]
pub struct PlanTerms<'a> {
    pub phases: &'a [PhaseSpec],
    pub rules: &'a [PriceRule],
    pub tier_mode: TierMode,
}

/// A configuration (plan and items) in force from `from` until the next span's `from` (a
/// plan or items change cuts the period). The earliest span also covers any time before its
/// `from`.
#[derive(Clone, Copy, Debug)]
pub struct PlanSpan<'a> {
    pub from: DateTime<Utc>,
    pub terms: PlanTerms<'a>,
    /// The items in force; `None`: [`InvoiceInput::items`].
    pub items: Option<&'a [Item]>,
    /// The plan bills its MONTH prices in advance (`IN_ADVANCE`): such lines are flagged
    /// [`Line::advance`].
    pub advance: bool,
}

/// Included amounts (GB) that a package item brings, already multiplied by the item's quantity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Included {
    pub storage_gb: Decimal,
    pub bandwidth_gb: Decimal,
    pub backup_storage_gb: Decimal,
}

/// The resources a package includes an amount of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IncludedResource {
    Storage,
    Bandwidth,
    BackupStorage,
}

impl IncludedResource {
    /// Recognises `storage`, `bandwidth` and `backup_storage` (ASCII case, `_`, `-` and spaces
    /// ignored, so `Backup Storage` counts too); any other resource includes nothing.
    fn parse(resource: &str) -> Option<Self> {
        let key: String = resource
            .chars()
            .filter(|c| !matches!(c, '_' | '-' | ' '))
            .map(|c| c.to_ascii_lowercase())
            .collect();
        match key.as_str() {
            "storage" => Some(Self::Storage),
            "bandwidth" => Some(Self::Bandwidth),
            "backupstorage" => Some(Self::BackupStorage),
            _ => None,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl Included {
    /// The included amount for a metered resource (`storage`, `bandwidth`, `backup_storage`);
    /// `None` for a resource that packages include nothing of.
    pub fn for_resource(&self, resource: &str) -> Option<Decimal> {
        IncludedResource::parse(resource).map(|r| self.get(r))
    }

    fn get(&self, resource: IncludedResource) -> Decimal {
        match resource {
            IncludedResource::Storage => self.storage_gb,
            IncludedResource::Bandwidth => self.bandwidth_gb,
            IncludedResource::BackupStorage => self.backup_storage_gb,
        }
    }
}

/// A recurring item of the subscription (a PACKAGE product).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Item {
    pub product_id: Uuid,
    pub quantity: Decimal,
    pub included: Included,
}

/// A metered product billed from usage, and the resource it measures (`storage`,
/// `bandwidth`, `backup_storage`, or anything else, which has no included amount).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeteredProduct {
    pub product_id: Uuid,
    pub resource: String,
}

/// Usage of a metered product at an instant (counter readings already turned into usage by
/// [`usage_from_readings`]). Quantities are expected non-negative.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UsageRecord {
    pub product_id: Uuid,
    pub at: DateTime<Utc>,
    pub quantity: Decimal,
}

/// Everything one invoice is computed from.
#[derive(Clone, Debug)]
pub struct InvoiceInput<'a> {
    /// The billing period `[period_start, period_end)`: MONTH prices are prorated over its
    /// seconds and included amounts are counted from its start.
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    /// The part of the period to charge, `None` meaning the period's bounds (e.g. `charge_until`
    /// = the cancellation instant). Clamped to the period. Usage before `charge_from` is not
    /// charged but still consumes the included amounts.
    pub charge_from: Option<DateTime<Utc>>,
    pub charge_until: Option<DateTime<Utc>>,
    /// The customer's billingStart; `None`: every instant is in the plan's first phase.
    pub billing_start: Option<DateTime<Utc>>,
    /// The plans in force, by `from`; the first one covers the period's start.
    pub plans: Vec<PlanSpan<'a>>,
    pub items: &'a [Item],
    pub metered: &'a [MeteredProduct],
    /// Usage outside `[period_start, period_end)` or of products not in `metered` is ignored.
    pub usage: &'a [UsageRecord],
    pub currency: &'a str,
    pub region: Option<&'a str>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LineKind {
    Recurring,
    Metered,
    /// Before advance billing: money paid at the first checkout set against recurring
    /// charges (negative). Only invoices issued before it carry these lines.
    Prepaid,
    /// A change mid-period: the unused part of an advance line already billed (negative),
    /// or the new configuration's advance line for the rest of the period (positive).
    Proration,
}

/// One invoice line: one item or metered product over one slice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub kind: LineKind,
    pub product_id: Uuid,
    /// Index into [`InvoiceInput::plans`] of the plan that priced the line.
    pub plan_index: usize,
    /// The phase in force during the whole slice.
    pub phase: PhaseKind,
    /// The slice `[start, end)`.
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// Recurring: the item's quantity. Metered: the billable usage (after included amounts).
    pub quantity: Decimal,
    /// Metered: the usage recorded in the slice. Recurring: zero.
    pub usage: Decimal,
    /// Metered: the part of `usage` covered by included amounts. Recurring: zero.
    pub included: Decimal,
    /// The unit price of the tier the quantity falls in (graduated: the top tier used); zero
    /// when unpriced.
    pub unit_amount: Decimal,
    /// The price rule of that tier.
    pub rule_id: Option<Uuid>,
    /// The prices' interval; `None` when no price applies at all.
    pub interval: Option<Interval>,
    /// False when (part of) the quantity found no price and was charged zero.
    pub matched: bool,
    /// The exact amount, before rounding.
    pub unrounded: Decimal,
    /// `unrounded` rounded to the currency's minor units, half away from zero.
    pub amount: Decimal,
    /// Billed at the start of its period: a MONTH price of a plan billed `IN_ADVANCE`.
    /// HOUR prices, metered usage and unpriced lines are billed at the period's end.
    pub advance: bool,
    /// The tiers that priced the quantity, with their amounts for this line (recurring
    /// lines: times the slice's fraction), unrounded.
    pub tiers: Vec<TierCharge>,
}

impl Line {
    /// The same line as a PRORATION line: as it is (a charge) or negated (a credit).
    pub fn proration(&self, credit: bool) -> Line {
        let sign = if credit {
            Decimal::NEGATIVE_ONE
        } else {
            Decimal::ONE
        };
        Line {
            kind: LineKind::Proration,
            unrounded: self.unrounded * sign,
            amount: self.amount * sign,
            tiers: self
                .tiers
                .iter()
                .map(|t| TierCharge {
                    amount: t.amount * sign,
                    ..t.clone()
                })
                .collect(),
            ..self.clone()
        }
    }
}

/// The sum of rounded lines at the currency's scale.
pub fn total_of(lines: &[Line], currency: &str) -> Decimal {
    lines
        .iter()
        .fold(round_to_currency(Decimal::ZERO, currency), |sum, line| {
            sum.saturating_add(line.amount)
        })
}

/// The computed invoice: its lines (slice by slice in time order; within a slice the items in
/// input order, then the metered products in input order) and their total.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvoiceDraft {
    pub lines: Vec<Line>,
    /// The sum of the rounded lines, at the currency's scale.
    pub total: Decimal,
}

/// A piece of a period with one plan and one phase: `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slice {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// Index into the `plans` the slice was cut from.
    pub plan_index: usize,
    pub phase: PhaseKind,
}

/// Turns running-counter readings (aggregated usage) into usage: the rise from the previous
/// reading; the first reading counts from `previous` (the last reading before these) or from
/// zero; a reading lower than the previous one is a reset, and its usage is the reading itself.
///
/// Readings are taken in time order (equal instants keep their input order).
pub fn usage_from_readings(
    readings: &[(DateTime<Utc>, Decimal)],
    previous: Option<Decimal>,
) -> Vec<(DateTime<Utc>, Decimal)> {
    let mut ordered = readings.to_vec();
    ordered.sort_by_key(|(at, _)| *at);
    let mut last = previous.unwrap_or(Decimal::ZERO);
    ordered
        .into_iter()
        .map(|(at, reading)| {
            let usage = if reading >= last {
                reading.saturating_sub(last)
            } else {
                reading
            };
            last = reading;
            (at, usage)
        })
        .collect()
}

/// The kind of the phase in force at `at`; a plan without phases (rejected by
/// `validate_phases`) is treated as FINAL.
fn phase_kind_at(
    phases: &[PhaseSpec],
    billing_start: Option<DateTime<Utc>>,
    at: DateTime<Utc>,
) -> PhaseKind {
    phases
        .get(phase_at(phases, billing_start, at))
        .map_or(PhaseKind::Final, |spec| spec.kind)
}

/// Cuts `[start, end)` into slices at plan changes and phase boundaries.
///
/// The plan in force at an instant is the span with the latest `from` at or before it (the
/// earliest span before any `from`; on equal `from`s the later span in input order). Phases run
/// back to back from `billing_start` ([`phase_timeline`]); before it, or without one, an instant
/// is in the plan's first phase. Adjacent pieces with the same plan and phase are one slice.
/// All instants are truncated to the second. Empty when `end <= start` or there are no plans.
pub fn slices(
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    billing_start: Option<DateTime<Utc>>,
    plans: &[PlanSpan<'_>],
) -> Vec<Slice> {
    let start = truncate_to_second(start);
    let end = truncate_to_second(end);
    let billing_start = billing_start.map(truncate_to_second);
    let mut out: Vec<Slice> = Vec::new();
    if end <= start {
        return out;
    }
    let mut order: Vec<usize> = (0..plans.len()).collect();
    order.sort_by_key(|&i| truncate_to_second(plans[i].from));
    let clamp = |t: DateTime<Utc>| truncate_to_second(t).clamp(start, end);
    for (k, &plan_index) in order.iter().enumerate() {
        let seg_start = if k == 0 {
            start
        } else {
            clamp(plans[plan_index].from)
        };
        let seg_end = order
            .get(k + 1)
            .map_or(end, |&next| clamp(plans[next].from));
        if seg_start >= seg_end {
            continue;
        }
        let phases = plans[plan_index].terms.phases;
        let mut cuts = vec![seg_start];
        if let Some(anchor) = billing_start {
            cuts.extend(
                phase_timeline(phases, anchor)
                    .iter()
                    .filter_map(|window| window.end)
                    .filter(|&boundary| seg_start < boundary && boundary < seg_end),
            );
        }
        cuts.sort();
        cuts.dedup();
        cuts.push(seg_end);
        for pair in cuts.windows(2) {
            let (piece_start, piece_end) = (pair[0], pair[1]);
            let phase = phase_kind_at(phases, billing_start, piece_start);
            match out.last_mut() {
                Some(last)
                    if last.plan_index == plan_index
                        && last.phase == phase
                        && last.end == piece_start =>
                {
                    last.end = piece_end;
                }
                _ => out.push(Slice {
                    start: piece_start,
                    end: piece_end,
                    plan_index,
                    phase,
                }),
            }
        }
    }
    out
}

/// A recurring price for one interval, times the slice's share of that interval.
///
/// A UNIT price on a recurring item (refused by the catalog) is prorated like MONTH, so that
/// splitting a period never charges it twice.
fn recurring_amount(resolution: &Resolution, seconds: i64, period_seconds: i64) -> Decimal {
    match resolution.interval {
        Some(Interval::Hour) => prorate(resolution.amount, seconds, SECONDS_PER_HOUR),
        Some(Interval::Month | Interval::Unit) => {
            prorate(resolution.amount, seconds, period_seconds)
        }
        None => Decimal::ZERO,
    }
}

/// A metered product and the included pool it draws from.
struct Meter {
    product_id: Uuid,
    pool: Option<IncludedResource>,
}

/// Included amounts, one per [`IncludedResource`], shared by the products of a resource:
/// what is left at any time is the included amount of the items in force less all the usage
/// of that resource since the period's start, never below zero (so an items change mid-period
/// leaves the new items' amounts less what was used already).
struct Pools {
    included: [Decimal; 3],
    used: [Decimal; 3],
}

impl Pools {
    fn new(items: &[Item]) -> Self {
        let mut pools = Pools {
            included: [Decimal::ZERO; 3],
            used: [Decimal::ZERO; 3],
        };
        pools.set_items(items);
        pools
    }

    /// The items in force changed: their included amounts apply from now on.
    fn set_items(&mut self, items: &[Item]) {
        for resource in [
            IncludedResource::Storage,
            IncludedResource::Bandwidth,
            IncludedResource::BackupStorage,
        ] {
            self.included[resource.index()] = items.iter().fold(Decimal::ZERO, |sum, item| {
                sum.saturating_add(item.included.get(resource).max(Decimal::ZERO))
            });
        }
    }

    /// Takes what it can of `quantity` from the pool; answers the amount taken.
    fn consume(&mut self, pool: Option<IncludedResource>, quantity: Decimal) -> Decimal {
        let Some(resource) = pool else {
            return Decimal::ZERO;
        };
        let i = resource.index();
        let quantity = quantity.max(Decimal::ZERO);
        let left = self.included[i]
            .saturating_sub(self.used[i])
            .max(Decimal::ZERO);
        self.used[i] = self.used[i].saturating_add(quantity);
        quantity.min(left)
    }
}

fn line(
    kind: LineKind,
    product_id: Uuid,
    slice: &Slice,
    quantity: Decimal,
    resolution: Resolution,
    unrounded: Decimal,
    currency: &str,
) -> Line {
    let scale = |amount: Decimal| {
        if resolution.amount.is_zero() || unrounded == resolution.amount {
            amount
        } else {
            // The tiers of a prorated line, prorated alike (multiply first, divide last).
            amount.saturating_mul(unrounded) / resolution.amount
        }
    };
    let tiers = resolution
        .tiers
        .iter()
        .map(|t| TierCharge {
            amount: scale(t.amount),
            ..t.clone()
        })
        .collect();
    Line {
        kind,
        product_id,
        plan_index: slice.plan_index,
        phase: slice.phase,
        start: slice.start,
        end: slice.end,
        quantity,
        usage: Decimal::ZERO,
        included: Decimal::ZERO,
        unit_amount: resolution.unit_amount,
        rule_id: resolution.rule.map(|rule| rule.id),
        interval: resolution.interval,
        matched: resolution.matched,
        unrounded,
        amount: round_to_currency(unrounded, currency),
        advance: false,
        tiers,
    }
}

/// Computes the invoice lines of one billing period (see the module documentation for the
/// rules). Instants are truncated to the second.
pub fn compute_invoice(input: &InvoiceInput<'_>) -> InvoiceDraft {
    let currency = input.currency;
    let period_start = truncate_to_second(input.period_start);
    let period_end = truncate_to_second(input.period_end);
    let period_seconds = (period_end - period_start).num_seconds();
    let charge_start = input
        .charge_from
        .map_or(period_start, truncate_to_second)
        .max(period_start);
    let charge_end = input
        .charge_until
        .map_or(period_end, truncate_to_second)
        .min(period_end);
    let billing_start = input.billing_start.map(truncate_to_second);
    let cut = slices(charge_start, charge_end, billing_start, &input.plans);

    // One meter per metered product (the first listing wins).
    let mut meters: Vec<Meter> = Vec::new();
    for product in input.metered {
        if meters.iter().all(|m| m.product_id != product.product_id) {
            meters.push(Meter {
                product_id: product.product_id,
                pool: IncludedResource::parse(&product.resource),
            });
        }
    }
    // The period's usage in time order (equal instants: meter order, then input order).
    let mut usage: Vec<(DateTime<Utc>, usize, Decimal)> = input
        .usage
        .iter()
        .filter_map(|record| {
            let at = truncate_to_second(record.at);
            let meter = meters
                .iter()
                .position(|m| m.product_id == record.product_id)?;
            (period_start <= at && at < period_end).then_some((at, meter, record.quantity))
        })
        .collect();
    usage.sort_by_key(|&(at, meter, _)| (at, meter));

    let items_of = |plan_index: usize| {
        input
            .plans
            .get(plan_index)
            .and_then(|span| span.items)
            .unwrap_or(input.items)
    };
    // Before the charged window, the items in force at each usage record's instant.
    let in_force = |at: DateTime<Utc>| {
        let mut order: Vec<usize> = (0..input.plans.len()).collect();
        order.sort_by_key(|&i| truncate_to_second(input.plans[i].from));
        order
            .iter()
            .rev()
            .find(|&&i| truncate_to_second(input.plans[i].from) <= at)
            .or(order.first())
            .copied()
    };
    let mut pools = Pools::new(in_force(period_start).map_or(input.items, items_of));
    let mut next = 0;
    // Usage before the charged window is not charged here, but it used up included amounts.
    while let Some(&(at, meter, quantity)) = usage.get(next) {
        if at >= charge_start {
            break;
        }
        if let Some(i) = in_force(at) {
            pools.set_items(items_of(i));
        }
        pools.consume(meters[meter].pool, quantity);
        next += 1;
    }

    let mut lines = Vec::new();
    for slice in &cut {
        let span = input.plans[slice.plan_index];
        let terms = span.terms;
        let items = items_of(slice.plan_index);
        pools.set_items(items);
        let price = |product_id: Uuid, quantity: Decimal| {
            resolve_price(
                terms.rules,
                slice.phase,
                product_id,
                currency,
                input.region,
                quantity,
                terms.tier_mode,
            )
        };
        let seconds = (slice.end - slice.start).num_seconds();
        for item in items {
            let resolution = price(item.product_id, item.quantity);
            let unrounded = recurring_amount(&resolution, seconds, period_seconds);
            let mut recurring = line(
                LineKind::Recurring,
                item.product_id,
                slice,
                item.quantity,
                resolution,
                unrounded,
                currency,
            );
            recurring.advance = span.advance && recurring.interval == Some(Interval::Month);
            lines.push(recurring);
        }

        let mut recorded = vec![Decimal::ZERO; meters.len()];
        let mut covered = vec![Decimal::ZERO; meters.len()];
        while let Some(&(at, meter, quantity)) = usage.get(next) {
            if at >= slice.end {
                break;
            }
            recorded[meter] = recorded[meter].saturating_add(quantity);
            covered[meter] += pools.consume(meters[meter].pool, quantity);
            next += 1;
        }
        for (meter, product) in meters.iter().enumerate() {
            if recorded[meter] <= Decimal::ZERO {
                continue;
            }
            let billable = recorded[meter]
                .saturating_sub(covered[meter])
                .max(Decimal::ZERO);
            let resolution = price(product.product_id, billable);
            // Per unit of usage: no time fraction, whatever the interval says.
            let unrounded = resolution.amount;
            let mut metered = line(
                LineKind::Metered,
                product.product_id,
                slice,
                billable,
                resolution,
                unrounded,
                currency,
            );
            metered.usage = recorded[meter];
            metered.included = covered[meter];
            lines.push(metered);
        }
    }

    let total = total_of(&lines, currency);
    InvoiceDraft { lines, total }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::money::minor_units;
    use crate::billing::phase::{DurationUnit, PhaseDuration};
    use chrono::{TimeDelta, TimeZone};
    use rust_decimal::dec;

    const PACKAGE: Uuid = Uuid::from_u128(0xA1);
    const OTHER_PACKAGE: Uuid = Uuid::from_u128(0xA2);
    const BANDWIDTH: Uuid = Uuid::from_u128(0xB1);
    const STORAGE: Uuid = Uuid::from_u128(0xB2);
    const MORE_STORAGE: Uuid = Uuid::from_u128(0xB3);

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s)
            .single()
            .expect("valid test date")
    }

    fn days(n: i64) -> TimeDelta {
        TimeDelta::days(n)
    }

    fn phase(kind: PhaseKind, duration: Option<(u32, DurationUnit)>) -> PhaseSpec {
        PhaseSpec {
            kind,
            duration: duration.map(|(count, unit)| PhaseDuration { count, unit }),
        }
    }

    fn final_only() -> Vec<PhaseSpec> {
        vec![phase(PhaseKind::Final, None)]
    }

    fn trial_then_final(trial_days: u32) -> Vec<PhaseSpec> {
        vec![
            phase(PhaseKind::Trial, Some((trial_days, DurationUnit::Day))),
            phase(PhaseKind::Final, None),
        ]
    }

    /// An unbounded, region-less USD price.
    fn price(
        id: u128,
        phase: PhaseKind,
        product_id: Uuid,
        unit_amount: Decimal,
        interval: Interval,
    ) -> PriceRule {
        PriceRule {
            id: Uuid::from_u128(id),
            phase,
            product_id,
            currency: "USD".to_owned(),
            region: None,
            max_quantity: None,
            unit_amount,
            interval,
        }
    }

    fn tier(base: PriceRule, id: u128, max: Decimal, unit_amount: Decimal) -> PriceRule {
        PriceRule {
            id: Uuid::from_u128(id),
            max_quantity: Some(max),
            unit_amount,
            ..base
        }
    }

    /// ≤ 10 at 1.00, ≤ 100 at 0.80, above at 0.50 (all per `interval`).
    fn three_tiers(phase: PhaseKind, product_id: Uuid, interval: Interval) -> Vec<PriceRule> {
        let top = price(3, phase, product_id, dec!(0.50), interval);
        vec![
            tier(top.clone(), 1, dec!(10), dec!(1.00)),
            tier(top.clone(), 2, dec!(100), dec!(0.80)),
            top,
        ]
    }

    fn item(product_id: Uuid, quantity: Decimal) -> Item {
        Item {
            product_id,
            quantity,
            included: Included::default(),
        }
    }

    fn meter(product_id: Uuid, resource: &str) -> MeteredProduct {
        MeteredProduct {
            product_id,
            resource: resource.to_owned(),
        }
    }

    fn used(product_id: Uuid, at: DateTime<Utc>, quantity: Decimal) -> UsageRecord {
        UsageRecord {
            product_id,
            at,
            quantity,
        }
    }

    fn terms<'a>(phases: &'a [PhaseSpec], rules: &'a [PriceRule]) -> PlanTerms<'a> {
        PlanTerms {
            phases,
            rules,
            tier_mode: TierMode::Volume,
        }
    }

    /// One plan from the start of time, USD, no region, the whole period charged.
    fn input<'a>(
        period: (DateTime<Utc>, DateTime<Utc>),
        billing_start: Option<DateTime<Utc>>,
        terms: PlanTerms<'a>,
        items: &'a [Item],
    ) -> InvoiceInput<'a> {
        InvoiceInput {
            period_start: period.0,
            period_end: period.1,
            charge_from: None,
            charge_until: None,
            billing_start,
            plans: vec![PlanSpan {
                from: DateTime::<Utc>::MIN_UTC,
                terms,
                items: None,
                advance: false,
            }],
            items,
            metered: &[],
            usage: &[],
            currency: "USD",
            region: None,
        }
    }

    /// June 2024: 30 days, 720 hours.
    fn june() -> (DateTime<Utc>, DateTime<Utc>) {
        (utc(2024, 6, 1, 0, 0, 0), utc(2024, 7, 1, 0, 0, 0))
    }

    fn summary(draft: &InvoiceDraft) -> Vec<(LineKind, Uuid, PhaseKind, String)> {
        draft
            .lines
            .iter()
            .map(|l| (l.kind, l.product_id, l.phase, l.amount.to_string()))
            .collect()
    }

    #[test]
    fn seed_trial_started_seven_days_before_the_period() {
        // billingStart = S; the subscription goes live at S + 7d on a plan with a 14-day trial.
        let s = utc(2024, 5, 1, 8, 30, 0);
        let live = s + days(7);
        let (start, end) = (live, utc(2024, 6, 8, 8, 30, 0));
        let plan = vec![
            phase(PhaseKind::Trial, Some((14, DurationUnit::Day))),
            phase(PhaseKind::Discount, Some((1, DurationUnit::Month))),
            phase(PhaseKind::Final, None),
        ];
        let span = [PlanSpan {
            from: live,
            terms: terms(&plan, &[]),
            items: None,
            advance: false,
        }];
        assert_eq!(
            slices(start, end, Some(s), &span),
            [
                Slice {
                    start,
                    end: s + days(14),
                    plan_index: 0,
                    phase: PhaseKind::Trial,
                },
                Slice {
                    start: s + days(14),
                    end,
                    plan_index: 0,
                    phase: PhaseKind::Discount,
                },
            ]
        );
        // Without a discount the trial is followed by FINAL.
        let plan = trial_then_final(14);
        let span = [PlanSpan {
            from: live,
            terms: terms(&plan, &[]),
            items: None,
            advance: false,
        }];
        let cut = slices(start, end, Some(s), &span);
        assert_eq!(cut.len(), 2);
        assert_eq!(
            (cut[0].phase, cut[0].end - cut[0].start),
            (PhaseKind::Trial, days(7))
        );
        assert_eq!(
            (cut[1].phase, cut[1].start),
            (PhaseKind::Final, s + days(14))
        );
        // The second period is all FINAL.
        let second = slices(end, utc(2024, 7, 8, 8, 30, 0), Some(s), &span);
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].phase, PhaseKind::Final);
    }

    #[test]
    fn a_period_crossing_trial_to_final_shows_both_lines() {
        let s = utc(2024, 5, 1, 8, 30, 0);
        let period = (s + days(7), utc(2024, 6, 8, 8, 30, 0));
        let phases = trial_then_final(14);
        let rules = vec![
            price(1, PhaseKind::Trial, PACKAGE, dec!(0), Interval::Hour),
            price(2, PhaseKind::Final, PACKAGE, dec!(0.0125), Interval::Hour),
        ];
        let items = [item(PACKAGE, dec!(2))];
        let draft = compute_invoice(&input(period, Some(s), terms(&phases, &rules), &items));
        // 7 days of trial at zero, then 24 days = 576 h × 2 × 0.0125.
        assert_eq!(
            summary(&draft),
            [
                (
                    LineKind::Recurring,
                    PACKAGE,
                    PhaseKind::Trial,
                    "0.00".to_owned()
                ),
                (
                    LineKind::Recurring,
                    PACKAGE,
                    PhaseKind::Final,
                    "14.40".to_owned()
                ),
            ]
        );
        assert!(draft.lines.iter().all(|l| l.matched));
        assert_eq!(draft.lines[0].end, s + days(14));
        assert_eq!(draft.lines[1].start, s + days(14));
        assert_eq!(draft.lines[1].quantity, dec!(2));
        assert_eq!(draft.lines[1].unit_amount, dec!(0.0125));
        assert_eq!(draft.lines[1].rule_id, Some(Uuid::from_u128(2)));
        assert_eq!(draft.total.to_string(), "14.40");
    }

    #[test]
    fn hourly_price_over_a_thirty_day_month_is_exact() {
        let phases = final_only();
        let rules = [price(
            1,
            PhaseKind::Final,
            PACKAGE,
            dec!(0.0125),
            Interval::Hour,
        )];
        let items = [item(PACKAGE, dec!(1))];
        let draft = compute_invoice(&input(june(), None, terms(&phases, &rules), &items));
        assert_eq!(draft.lines.len(), 1);
        let line = &draft.lines[0];
        assert_eq!(line.unrounded, dec!(9));
        assert_eq!(line.amount.to_string(), "9.00");
        assert_eq!(line.interval, Some(Interval::Hour));
        assert_eq!((line.start, line.end), june());
        assert_eq!(draft.total.to_string(), "9.00");
    }

    #[test]
    fn a_month_price_over_half_the_period_is_half() {
        // A 15-day trial without prices, then FINAL at 10 a month: half of June.
        let phases = trial_then_final(15);
        let rules = [price(
            1,
            PhaseKind::Final,
            PACKAGE,
            dec!(10),
            Interval::Month,
        )];
        let items = [item(PACKAGE, dec!(1))];
        let draft = compute_invoice(&input(
            june(),
            Some(june().0),
            terms(&phases, &rules),
            &items,
        ));
        assert_eq!(
            summary(&draft),
            [
                (
                    LineKind::Recurring,
                    PACKAGE,
                    PhaseKind::Trial,
                    "0.00".to_owned()
                ),
                (
                    LineKind::Recurring,
                    PACKAGE,
                    PhaseKind::Final,
                    "5.00".to_owned()
                ),
            ]
        );
        // The trial has no price: zero, and flagged for the admin.
        assert!(!draft.lines[0].matched);
        assert_eq!(draft.lines[0].interval, None);
        assert_eq!(draft.lines[0].rule_id, None);
        assert!(draft.lines[1].matched);
        assert_eq!(draft.lines[1].unrounded, dec!(5));
    }

    #[test]
    fn lines_round_to_the_currency_minor_units() {
        let phases = final_only();
        let cases = [
            // JPY has no minor unit: 1000 × 10/30 = 333.33… → 333; 5 × 15/30 = 2.5 → 3.
            ("JPY", dec!(1000), 10, "333"),
            ("JPY", dec!(5), 15, "3"),
            // KWD has three: 10 × 10/30 → 3.333; 1.2345 is a tie → 1.235 (not banker's 1.234).
            ("KWD", dec!(10), 10, "3.333"),
            ("KWD", dec!(1.2345), 30, "1.235"),
            ("USD", dec!(10), 10, "3.33"),
        ];
        for (currency, amount, charged_days, expected) in cases {
            let rules = [PriceRule {
                currency: currency.to_owned(),
                ..price(1, PhaseKind::Final, PACKAGE, amount, Interval::Month)
            }];
            let items = [item(PACKAGE, dec!(1))];
            let mut inv = input(june(), None, terms(&phases, &rules), &items);
            inv.currency = currency;
            inv.charge_until = Some(june().0 + days(charged_days));
            let draft = compute_invoice(&inv);
            assert_eq!(
                draft.lines[0].amount.to_string(),
                expected,
                "{currency} {amount}"
            );
            assert_eq!(draft.total.to_string(), expected, "{currency} {amount}");
        }
    }

    #[test]
    fn an_exact_half_cent_rounds_away_from_zero() {
        // billingStart half an hour before the period; a 1-hour trial at 0.01/h leaves 30
        // minutes of trial in the period: 0.01 × 1800 / 3600 = 0.005 → 0.01.
        let (start, end) = june();
        let phases = vec![
            phase(PhaseKind::Trial, Some((1, DurationUnit::Hour))),
            phase(PhaseKind::Final, None),
        ];
        let rules = [price(
            1,
            PhaseKind::Trial,
            PACKAGE,
            dec!(0.01),
            Interval::Hour,
        )];
        let items = [item(PACKAGE, dec!(1))];
        let billing_start = start - TimeDelta::minutes(30);
        let draft = compute_invoice(&input(
            (start, end),
            Some(billing_start),
            terms(&phases, &rules),
            &items,
        ));
        assert_eq!(draft.lines[0].phase, PhaseKind::Trial);
        assert_eq!(draft.lines[0].end, start + TimeDelta::minutes(30));
        assert_eq!(draft.lines[0].unrounded, dec!(0.005));
        assert_eq!(draft.lines[0].amount.to_string(), "0.01");

        // A month price of 0.01 over half of June: 0.005 exactly, because it divides last.
        let phases = final_only();
        let rules = [price(
            1,
            PhaseKind::Final,
            PACKAGE,
            dec!(0.01),
            Interval::Month,
        )];
        let mut inv = input((start, end), None, terms(&phases, &rules), &items);
        inv.charge_from = Some(start + days(15));
        let draft = compute_invoice(&inv);
        assert_eq!(draft.lines[0].unrounded, dec!(0.005));
        assert_eq!(draft.lines[0].amount.to_string(), "0.01");
    }

    #[test]
    fn the_total_sums_rounded_lines() {
        // Three lines of 0.004 each round to 0.00; the total is 0.00, not round(0.012) = 0.01.
        let phases = final_only();
        let rules = [price(
            1,
            PhaseKind::Final,
            PACKAGE,
            dec!(0.004),
            Interval::Month,
        )];
        let items = [item(PACKAGE, dec!(1)); 3];
        let draft = compute_invoice(&input(june(), None, terms(&phases, &rules), &items));
        assert_eq!(draft.lines.len(), 3);
        assert!(draft.lines.iter().all(|l| l.amount.to_string() == "0.00"));
        assert_eq!(draft.total.to_string(), "0.00");
    }

    #[test]
    fn included_bandwidth_is_used_up_before_usage_is_billed() {
        // 100 GB included; 60 GB then 90 GB used: 50 GB billed at the tier price.
        let (start, end) = june();
        let phases = final_only();
        let rules = [
            price(1, PhaseKind::Final, PACKAGE, dec!(0), Interval::Month),
            price(2, PhaseKind::Final, BANDWIDTH, dec!(0.05), Interval::Unit),
        ];
        let items = [Item {
            included: Included {
                bandwidth_gb: dec!(100),
                ..Included::default()
            },
            ..item(PACKAGE, dec!(1))
        }];
        let metered = [meter(BANDWIDTH, "bandwidth")];
        let usage = [
            used(BANDWIDTH, start + days(3), dec!(60)),
            used(BANDWIDTH, start + days(10), dec!(90)),
        ];
        let mut inv = input((start, end), None, terms(&phases, &rules), &items);
        inv.metered = &metered;
        inv.usage = &usage;
        let draft = compute_invoice(&inv);
        assert_eq!(draft.lines.len(), 2);
        let line = &draft.lines[1];
        assert_eq!(line.kind, LineKind::Metered);
        assert_eq!(line.product_id, BANDWIDTH);
        assert_eq!(
            (line.usage, line.included, line.quantity),
            (dec!(150), dec!(100), dec!(50))
        );
        assert_eq!(line.unit_amount, dec!(0.05));
        assert_eq!(line.interval, Some(Interval::Unit));
        assert_eq!(line.amount.to_string(), "2.50");
        assert_eq!(draft.total.to_string(), "2.50");
    }

    #[test]
    fn included_amounts_carry_across_slices_in_time_order() {
        // 60 GB in the trial week are all included; the 90 GB after it get the 40 GB left.
        let (start, end) = june();
        let phases = trial_then_final(7);
        let rules = [
            price(1, PhaseKind::Trial, BANDWIDTH, dec!(0.01), Interval::Unit),
            price(2, PhaseKind::Final, BANDWIDTH, dec!(0.05), Interval::Unit),
        ];
        // Two items of 50 GB each: the included amounts add up.
        let fifty = Item {
            included: Included {
                bandwidth_gb: dec!(50),
                ..Included::default()
            },
            ..item(PACKAGE, dec!(1))
        };
        let items = [fifty, fifty];
        let metered = [meter(BANDWIDTH, "bandwidth")];
        // Listed out of order on purpose: consumption follows time, not input order.
        let usage = [
            used(BANDWIDTH, start + days(10), dec!(90)),
            used(BANDWIDTH, start + days(3), dec!(60)),
        ];
        let mut inv = input((start, end), Some(start), terms(&phases, &rules), &items);
        inv.metered = &metered;
        inv.usage = &usage;
        let draft = compute_invoice(&inv);
        let metered_lines: Vec<_> = draft
            .lines
            .iter()
            .filter(|l| l.kind == LineKind::Metered)
            .map(|l| {
                (
                    l.phase,
                    l.usage,
                    l.included,
                    l.quantity,
                    l.amount.to_string(),
                )
            })
            .collect();
        assert_eq!(
            metered_lines,
            [
                (
                    PhaseKind::Trial,
                    dec!(60),
                    dec!(60),
                    dec!(0),
                    "0.00".to_owned()
                ),
                (
                    PhaseKind::Final,
                    dec!(90),
                    dec!(40),
                    dec!(50),
                    "2.50".to_owned()
                ),
            ]
        );
        // Two recurring lines per slice (unpriced here), plus the two metered lines.
        assert_eq!(draft.lines.len(), 6);
    }

    #[test]
    fn products_of_one_resource_share_its_included_amount() {
        let (start, end) = june();
        let phases = final_only();
        let rules = [
            price(1, PhaseKind::Final, STORAGE, dec!(1), Interval::Unit),
            price(2, PhaseKind::Final, MORE_STORAGE, dec!(2), Interval::Unit),
        ];
        let items = [Item {
            included: Included {
                storage_gb: dec!(100),
                bandwidth_gb: dec!(1000),
                ..Included::default()
            },
            ..item(PACKAGE, dec!(1))
        }];
        let metered = [meter(STORAGE, "storage"), meter(MORE_STORAGE, "Storage")];
        let usage = [
            used(MORE_STORAGE, start + days(2), dec!(50)),
            used(STORAGE, start + days(1), dec!(70)),
        ];
        let mut inv = input((start, end), None, terms(&phases, &rules), &items);
        inv.metered = &metered;
        inv.usage = &usage;
        let draft = compute_invoice(&inv);
        let metered_lines: Vec<_> = draft
            .lines
            .iter()
            .filter(|l| l.kind == LineKind::Metered)
            .map(|l| (l.product_id, l.included, l.quantity, l.amount.to_string()))
            .collect();
        assert_eq!(
            metered_lines,
            [
                (STORAGE, dec!(70), dec!(0), "0.00".to_owned()),
                (MORE_STORAGE, dec!(30), dec!(20), "40.00".to_owned()),
            ]
        );
    }

    #[test]
    fn resources_without_an_included_amount_bill_all_usage() {
        assert_eq!(
            Included {
                backup_storage_gb: dec!(5),
                ..Included::default()
            }
            .for_resource("Backup Storage"),
            Some(dec!(5))
        );
        assert_eq!(
            Included::default().for_resource("backup_storage"),
            Some(dec!(0))
        );
        assert_eq!(Included::default().for_resource("cpu"), None);

        let (start, end) = june();
        let phases = final_only();
        let rules = [price(
            1,
            PhaseKind::Final,
            BANDWIDTH,
            dec!(0.5),
            Interval::Unit,
        )];
        let items = [Item {
            included: Included {
                storage_gb: dec!(100),
                bandwidth_gb: dec!(100),
                backup_storage_gb: dec!(100),
            },
            ..item(PACKAGE, dec!(1))
        }];
        let metered = [meter(BANDWIDTH, "ipv4_addresses")];
        let usage = [used(BANDWIDTH, start, dec!(3))];
        let mut inv = input((start, end), None, terms(&phases, &rules), &items);
        inv.metered = &metered;
        inv.usage = &usage;
        let line = compute_invoice(&inv).lines.pop().expect("a metered line");
        assert_eq!(
            (line.included, line.quantity, line.amount),
            (dec!(0), dec!(3), dec!(1.50))
        );
    }

    #[test]
    fn graduated_and_volume_tiers() {
        let (start, end) = june();
        let phases = final_only();
        let mut rules = three_tiers(PhaseKind::Final, BANDWIDTH, Interval::Unit);
        rules.extend(
            three_tiers(PhaseKind::Final, PACKAGE, Interval::Month)
                .into_iter()
                .map(|rule| PriceRule {
                    id: Uuid::from_u128(rule.id.as_u128() + 10),
                    ..rule
                }),
        );
        let items = [item(PACKAGE, dec!(150))];
        let metered = [meter(BANDWIDTH, "bandwidth")];
        let usage = [used(BANDWIDTH, start + days(1), dec!(150))];
        let mut inv = input((start, end), None, terms(&phases, &rules), &items);
        inv.metered = &metered;
        inv.usage = &usage;
        // Volume: all 150 at the tier 150 falls in (0.50).
        let volume = compute_invoice(&inv);
        assert_eq!(
            summary(&volume)
                .into_iter()
                .map(|(.., amount)| amount)
                .collect::<Vec<_>>(),
            ["75.00", "75.00"]
        );
        // Graduated: 10 × 1.00 + 90 × 0.80 + 50 × 0.50, for the item and for the usage.
        inv.plans[0].terms.tier_mode = TierMode::Graduated;
        let graduated = compute_invoice(&inv);
        assert_eq!(
            summary(&graduated)
                .into_iter()
                .map(|(.., amount)| amount)
                .collect::<Vec<_>>(),
            ["107.00", "107.00"]
        );
        assert!(graduated.lines.iter().all(|l| l.unit_amount == dec!(0.50)));
        assert_eq!(graduated.total, dec!(214));
        // Half the month: the recurring graduated amount is prorated as a whole.
        inv.charge_until = Some(start + days(15));
        assert_eq!(compute_invoice(&inv).lines[0].amount, dec!(53.50));
    }

    #[test]
    fn metered_tiers_apply_per_slice() {
        // 60 in the trial and 90 after it: each slice is below 100, so both pay 1.00 a unit,
        // where 150 in one slice would have paid 0.50.
        let (start, end) = june();
        let phases = trial_then_final(7);
        let mut rules = three_tiers(PhaseKind::Trial, BANDWIDTH, Interval::Unit);
        rules.extend(
            three_tiers(PhaseKind::Final, BANDWIDTH, Interval::Unit)
                .into_iter()
                .map(|rule| PriceRule {
                    id: Uuid::from_u128(rule.id.as_u128() + 10),
                    ..rule
                }),
        );
        rules.retain(|r| r.max_quantity != Some(dec!(10)));
        let metered = [meter(BANDWIDTH, "bandwidth")];
        let usage = [
            used(BANDWIDTH, start + days(3), dec!(60)),
            used(BANDWIDTH, start + days(10), dec!(90)),
        ];
        let mut inv = input((start, end), Some(start), terms(&phases, &rules), &[]);
        inv.metered = &metered;
        inv.usage = &usage;
        let draft = compute_invoice(&inv);
        assert_eq!(
            summary(&draft),
            [
                (
                    LineKind::Metered,
                    BANDWIDTH,
                    PhaseKind::Trial,
                    "48.00".to_owned()
                ),
                (
                    LineKind::Metered,
                    BANDWIDTH,
                    PhaseKind::Final,
                    "72.00".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn usage_outside_the_period_or_of_unknown_products_is_ignored() {
        let (start, end) = june();
        let phases = trial_then_final(7);
        let rules = [
            price(1, PhaseKind::Trial, BANDWIDTH, dec!(1), Interval::Unit),
            price(2, PhaseKind::Final, BANDWIDTH, dec!(2), Interval::Unit),
        ];
        let metered = [meter(BANDWIDTH, "bandwidth")];
        let boundary = start + days(7);
        let usage = [
            used(BANDWIDTH, start - TimeDelta::seconds(1), dec!(1000)),
            used(BANDWIDTH, start, dec!(1)),
            used(BANDWIDTH, boundary - TimeDelta::seconds(1), dec!(2)),
            // On the phase boundary: the later slice.
            used(BANDWIDTH, boundary, dec!(10)),
            // Sub-seconds are dropped: this is end - 1s, inside.
            used(BANDWIDTH, end - TimeDelta::milliseconds(500), dec!(20)),
            used(BANDWIDTH, end, dec!(1000)),
            used(STORAGE, start + days(1), dec!(1000)),
            used(BANDWIDTH, start + days(1), dec!(0)),
        ];
        let mut inv = input((start, end), Some(start), terms(&phases, &rules), &[]);
        inv.metered = &metered;
        inv.usage = &usage;
        let draft = compute_invoice(&inv);
        let metered_lines: Vec<_> = draft
            .lines
            .iter()
            .map(|l| (l.phase, l.usage, l.amount))
            .collect();
        assert_eq!(
            metered_lines,
            [
                (PhaseKind::Trial, dec!(3), dec!(3)),
                (PhaseKind::Final, dec!(30), dec!(60))
            ]
        );
    }

    #[test]
    fn slices_without_usage_have_no_metered_line() {
        let (start, end) = june();
        let phases = trial_then_final(7);
        let rules = [price(
            1,
            PhaseKind::Final,
            BANDWIDTH,
            dec!(1),
            Interval::Unit,
        )];
        let metered = [meter(BANDWIDTH, "bandwidth")];
        let usage = [
            used(BANDWIDTH, start + days(1), dec!(0)),
            used(BANDWIDTH, start + days(20), dec!(4)),
        ];
        let mut inv = input((start, end), Some(start), terms(&phases, &rules), &[]);
        inv.metered = &metered;
        inv.usage = &usage;
        let draft = compute_invoice(&inv);
        assert_eq!(draft.lines.len(), 1);
        assert_eq!(draft.lines[0].phase, PhaseKind::Final);
        assert_eq!(draft.total.to_string(), "4.00");
    }

    #[test]
    fn usage_before_the_charged_window_uses_included_amounts_but_is_not_charged() {
        let (start, end) = june();
        let phases = final_only();
        let rules = [price(
            1,
            PhaseKind::Final,
            BANDWIDTH,
            dec!(1),
            Interval::Unit,
        )];
        let items = [Item {
            included: Included {
                bandwidth_gb: dec!(100),
                ..Included::default()
            },
            ..item(PACKAGE, dec!(1))
        }];
        let metered = [meter(BANDWIDTH, "bandwidth")];
        let usage = [
            used(BANDWIDTH, start + days(1), dec!(80)),
            used(BANDWIDTH, start + days(20), dec!(50)),
            // After the charged window: left for later.
            used(BANDWIDTH, start + days(25), dec!(7)),
        ];
        let mut inv = input((start, end), None, terms(&phases, &rules), &items);
        inv.metered = &metered;
        inv.usage = &usage;
        inv.charge_from = Some(start + days(15));
        inv.charge_until = Some(start + days(25));
        let draft = compute_invoice(&inv);
        let line = draft.lines.last().expect("a metered line");
        assert_eq!(
            (line.usage, line.included, line.quantity),
            (dec!(50), dec!(20), dec!(30))
        );
        assert_eq!((line.start, line.end), (start + days(15), start + days(25)));
        // A window outside the period charges nothing.
        inv.charge_from = Some(end + days(1));
        inv.charge_until = None;
        assert!(compute_invoice(&inv).lines.is_empty());
    }

    #[test]
    fn a_plan_change_cuts_the_period() {
        let (start, end) = june();
        let phases = final_only();
        let cheap = [price(
            1,
            PhaseKind::Final,
            PACKAGE,
            dec!(10),
            Interval::Month,
        )];
        let dear = [price(
            2,
            PhaseKind::Final,
            PACKAGE,
            dec!(20),
            Interval::Month,
        )];
        let items = [item(PACKAGE, dec!(1))];
        let mut inv = input((start, end), None, terms(&phases, &cheap), &items);
        // Listed out of order: the span from the 16th is the later one.
        inv.plans = vec![
            PlanSpan {
                from: start + days(15),
                terms: terms(&phases, &dear),
                items: None,
                advance: false,
            },
            PlanSpan {
                from: start - days(40),
                terms: terms(&phases, &cheap),
                items: None,
                advance: false,
            },
        ];
        let draft = compute_invoice(&inv);
        let lines: Vec<_> = draft
            .lines
            .iter()
            .map(|l| (l.plan_index, l.start, l.end, l.amount.to_string()))
            .collect();
        assert_eq!(
            lines,
            [
                (1, start, start + days(15), "5.00".to_owned()),
                (0, start + days(15), end, "10.00".to_owned()),
            ]
        );
        assert_eq!(draft.total, dec!(15));
    }

    #[test]
    fn the_new_plan_has_its_own_phases_from_the_same_billing_start() {
        // billingStart = June 1. Plan A: FINAL only; plan B (from June 5): 14-day trial.
        // After the change B is in its trial until June 15, then FINAL.
        let (start, end) = june();
        let a_phases = final_only();
        let b_phases = trial_then_final(14);
        let spans = [
            PlanSpan {
                from: start,
                terms: terms(&a_phases, &[]),
                items: None,
                advance: false,
            },
            PlanSpan {
                from: start + days(4),
                terms: terms(&b_phases, &[]),
                items: None,
                advance: false,
            },
        ];
        let cut: Vec<_> = slices(start, end, Some(start), &spans)
            .into_iter()
            .map(|s| (s.plan_index, s.phase, s.start))
            .collect();
        assert_eq!(
            cut,
            [
                (0, PhaseKind::Final, start),
                (1, PhaseKind::Trial, start + days(4)),
                (1, PhaseKind::Final, start + days(14)),
            ]
        );
        // The first span covers the period even when its `from` is later.
        let late = [PlanSpan {
            from: start + days(3),
            terms: terms(&a_phases, &[]),
            items: None,
            advance: false,
        }];
        assert_eq!(slices(start, end, None, &late).len(), 1);
        assert_eq!(slices(start, end, None, &late)[0].start, start);
    }

    #[test]
    fn before_billing_start_a_time_is_in_the_first_phase() {
        let (start, end) = june();
        let phases = trial_then_final(14);
        let span = [PlanSpan {
            from: start,
            terms: terms(&phases, &[]),
            items: None,
            advance: false,
        }];
        // billingStart on the 6th: TRIAL until the 20th, with no cut on the 6th.
        let cut = slices(start, end, Some(start + days(5)), &span);
        assert_eq!(
            cut.iter()
                .map(|s| (s.phase, s.start, s.end))
                .collect::<Vec<_>>(),
            [
                (PhaseKind::Trial, start, start + days(19)),
                (PhaseKind::Final, start + days(19), end),
            ]
        );
        // billingStart after the period: all of it in the first phase.
        let cut = slices(start, end, Some(end + days(1)), &span);
        assert_eq!(cut.len(), 1);
        assert_eq!(cut[0].phase, PhaseKind::Trial);
        // No billingStart: likewise.
        assert_eq!(slices(start, end, None, &span), cut);
        // Long past: FINAL.
        let cut = slices(start, end, Some(start - days(400)), &span);
        assert_eq!(cut.len(), 1);
        assert_eq!(cut[0].phase, PhaseKind::Final);
    }

    #[test]
    fn no_slices_without_plans_or_time() {
        let (start, end) = june();
        let phases = final_only();
        let span = [PlanSpan {
            from: start,
            terms: terms(&phases, &[]),
            items: None,
            advance: false,
        }];
        assert!(slices(start, end, None, &[]).is_empty());
        assert!(slices(end, start, None, &span).is_empty());
        assert!(slices(start, start, None, &span).is_empty());
        // Within one second: nothing either, once truncated.
        assert!(slices(start, start + TimeDelta::milliseconds(900), None, &span).is_empty());
        let items = [item(PACKAGE, dec!(1))];
        let mut inv = input((start, end), None, terms(&phases, &[]), &items);
        inv.plans.clear();
        let draft = compute_invoice(&inv);
        assert!(draft.lines.is_empty());
        assert_eq!(draft.total.to_string(), "0.00");
    }

    #[test]
    fn every_item_gets_a_line_even_at_zero() {
        let phases = final_only();
        let rules = [
            price(1, PhaseKind::Final, PACKAGE, dec!(5), Interval::Month),
            PriceRule {
                region: Some("eu".to_owned()),
                ..tier(
                    price(2, PhaseKind::Final, OTHER_PACKAGE, dec!(7), Interval::Month),
                    2,
                    dec!(2),
                    dec!(7),
                )
            },
        ];
        let items = [
            item(PACKAGE, dec!(0)),
            item(OTHER_PACKAGE, dec!(1)),
            item(OTHER_PACKAGE, dec!(3)),
        ];
        let mut inv = input(june(), None, terms(&phases, &rules), &items);
        // Without a region: OTHER_PACKAGE has no price.
        let draft = compute_invoice(&inv);
        let seen: Vec<_> = draft
            .lines
            .iter()
            .map(|l| (l.product_id, l.quantity, l.matched, l.amount))
            .collect();
        assert_eq!(
            seen,
            [
                (PACKAGE, dec!(0), true, dec!(0)),
                (OTHER_PACKAGE, dec!(1), false, dec!(0)),
                (OTHER_PACKAGE, dec!(3), false, dec!(0)),
            ]
        );
        // In the EU: priced up to 2, a hole above.
        inv.region = Some("eu");
        let seen: Vec<_> = compute_invoice(&inv)
            .lines
            .iter()
            .map(|l| (l.matched, l.amount.to_string()))
            .collect();
        assert_eq!(
            seen,
            [
                (true, "0.00".to_owned()),
                (true, "7.00".to_owned()),
                (false, "0.00".to_owned()),
            ]
        );
    }

    #[test]
    fn instants_are_whole_seconds() {
        let (start, end) = june();
        let phases = final_only();
        let rules = [price(
            1,
            PhaseKind::Final,
            PACKAGE,
            dec!(3600),
            Interval::Hour,
        )];
        let items = [item(PACKAGE, dec!(1))];
        let mut inv = input(
            (start + TimeDelta::milliseconds(999), end),
            None,
            terms(&phases, &rules),
            &items,
        );
        inv.charge_until = Some(start + TimeDelta::seconds(10) + TimeDelta::milliseconds(999));
        let draft = compute_invoice(&inv);
        assert_eq!(draft.lines[0].start, start);
        assert_eq!(draft.lines[0].amount.to_string(), "10.00");
    }

    #[test]
    fn usage_from_counter_readings() {
        let t = |h: i64| utc(2024, 6, 1, 0, 0, 0) + TimeDelta::hours(h);
        let readings = [
            (t(1), dec!(10)),
            (t(2), dec!(25)),
            (t(3), dec!(25)),
            // A reset: the counter started again from zero and now reads 5.
            (t(4), dec!(5)),
            (t(5), dec!(8.5)),
        ];
        assert_eq!(
            usage_from_readings(&readings, None),
            [
                (t(1), dec!(10)),
                (t(2), dec!(15)),
                (t(3), dec!(0)),
                (t(4), dec!(5)),
                (t(5), dec!(3.5)),
            ]
        );
        // With the last reading of the previous period, the first counts from it.
        assert_eq!(
            usage_from_readings(&readings, Some(dec!(4)))[0],
            (t(1), dec!(6))
        );
        // A first reading below it is a reset.
        assert_eq!(
            usage_from_readings(&readings, Some(dec!(12)))[0],
            (t(1), dec!(10))
        );
        // Readings are taken in time order.
        let shuffled = [
            readings[3],
            readings[0],
            readings[4],
            readings[1],
            readings[2],
        ];
        assert_eq!(
            usage_from_readings(&shuffled, None),
            usage_from_readings(&readings, None)
        );
        assert!(usage_from_readings(&[], Some(dec!(3))).is_empty());
    }

    #[test]
    fn rounded_amounts_carry_the_currency_scale() {
        let phases = final_only();
        for currency in ["JPY", "USD", "KWD"] {
            let rules = [PriceRule {
                currency: currency.to_owned(),
                ..price(1, PhaseKind::Final, PACKAGE, dec!(1), Interval::Month)
            }];
            let items = [item(PACKAGE, dec!(1))];
            let mut inv = input(june(), None, terms(&phases, &rules), &items);
            inv.currency = currency;
            let draft = compute_invoice(&inv);
            assert_eq!(
                Some(draft.total.scale()),
                minor_units(currency),
                "{currency}"
            );
            assert_eq!(Some(draft.lines[0].amount.scale()), minor_units(currency));
        }
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use crate::billing::money::minor_units;
    use crate::billing::phase::{DurationUnit, PhaseDuration, add_months};
    use chrono::{TimeDelta, TimeZone};
    use proptest::prelude::*;

    const CURRENCIES: [&str; 3] = ["JPY", "USD", "KWD"];
    const RESOURCES: [&str; 4] = ["storage", "bandwidth", "backup_storage", "cpu"];
    const PHASES: [PhaseKind; 3] = [PhaseKind::Trial, PhaseKind::Discount, PhaseKind::Final];
    /// Products: packages 1..=3, metered 11..=12; 13 is never metered.
    const PACKAGES: u128 = 3;
    const METERS: u128 = 2;
    const PRODUCTS: usize = (PACKAGES + METERS) as usize;
    const PLANS: usize = 2;

    fn package(i: u128) -> Uuid {
        Uuid::from_u128(1 + i)
    }

    fn metered_product(i: u128) -> Uuid {
        Uuid::from_u128(11 + i)
    }

    fn decimal(max_mantissa: i64, max_scale: u32) -> impl Strategy<Value = Decimal> {
        (0..=max_mantissa, 0..=max_scale).prop_map(|(m, scale)| Decimal::new(m, scale))
    }

    /// Tiers of one phase × product × region: (width, unit price) each, maxima cumulative.
    #[derive(Clone, Debug)]
    struct Tiers {
        tiers: Vec<(Decimal, Decimal)>,
        top_bounded: bool,
    }

    fn tiers() -> impl Strategy<Value = Tiers> {
        (
            prop::collection::vec((decimal(500, 1), decimal(10_000_000, 12)), 1..=3),
            prop::bool::weighted(0.2),
        )
            .prop_map(|(tiers, top_bounded)| Tiers { tiers, top_bounded })
    }

    /// The prices of one phase × product of one plan.
    #[derive(Clone, Debug)]
    struct Prices {
        priced: bool,
        hourly: bool,
        tiers: Tiers,
        regional: Option<Tiers>,
    }

    fn prices() -> impl Strategy<Value = Prices> {
        (
            prop::bool::weighted(0.9),
            any::<bool>(),
            tiers(),
            prop::option::weighted(0.3, tiers()),
        )
            .prop_map(|(priced, hourly, tiers, regional)| Prices {
                priced,
                hourly,
                tiers,
                regional,
            })
    }

    /// Durations short enough that phase boundaries often fall inside a period.
    fn duration() -> impl Strategy<Value = PhaseDuration> {
        let of = |unit: DurationUnit, max: u32| {
            (1..=max).prop_map(move |count| PhaseDuration { count, unit })
        };
        prop_oneof![
            of(DurationUnit::Hour, 48),
            of(DurationUnit::Day, 30),
            of(DurationUnit::Week, 4),
            of(DurationUnit::Month, 2),
        ]
    }

    #[derive(Clone, Debug)]
    struct Case {
        currency: &'static str,
        region: Option<&'static str>,
        tier_mode: TierMode,
        trial: Option<PhaseDuration>,
        discount: Option<PhaseDuration>,
        period_start: DateTime<Utc>,
        billing_start: Option<DateTime<Utc>>,
        /// Seconds after the period's start when the second plan takes over.
        plan_change: Option<i64>,
        /// (package, quantity, included storage, bandwidth, backup storage).
        items: Vec<(u128, Decimal, [Decimal; 3])>,
        /// The resource of each metered product.
        metered: Vec<&'static str>,
        /// (product: metered index, or an unknown product; seconds from the period's start;
        /// quantity).
        usage: Vec<(u128, i64, Decimal)>,
        /// Indexed by plan, phase and product.
        prices: Vec<Prices>,
        /// Picks a slice boundary for the split property.
        pick: usize,
    }

    const DAY: i64 = 86_400;

    fn case() -> impl Strategy<Value = Case> {
        let when = (
            0..=4 * 365 * DAY,
            prop::option::weighted(0.85, -40 * DAY..=10 * DAY),
            prop::option::weighted(0.4, 1..=31 * DAY),
            prop::option::weighted(0.75, duration()),
            prop::option::weighted(0.4, duration()),
        );
        let what = (
            prop::sample::select(CURRENCIES.to_vec()),
            prop::option::of(Just("eu")),
            prop::sample::select(vec![TierMode::Volume, TierMode::Graduated]),
            prop::collection::vec(
                (
                    0..PACKAGES,
                    decimal(5_000, 2),
                    prop::array::uniform3(decimal(2_000, 1)),
                ),
                1..=3,
            ),
            prop::collection::vec(
                prop::sample::select(RESOURCES.to_vec()),
                0..=METERS as usize,
            ),
            prop::collection::vec((0..=METERS, -2 * DAY..=33 * DAY, decimal(20_000, 2)), 0..=8),
            prop::collection::vec(prices(), PLANS * PHASES.len() * PRODUCTS),
            any::<usize>(),
        );
        (when, what).prop_map(
            |(
                (start, billing, plan_change, trial, discount),
                (currency, region, tier_mode, items, metered, usage, prices, pick),
            )| {
                let base = Utc
                    .timestamp_opt(1_700_000_000 + start, 0)
                    .single()
                    .expect("a valid instant");
                Case {
                    currency,
                    region,
                    tier_mode,
                    trial,
                    discount,
                    period_start: base,
                    billing_start: billing.map(|offset| base + TimeDelta::seconds(offset)),
                    plan_change,
                    items,
                    metered,
                    usage,
                    prices,
                    pick,
                }
            },
        )
    }

    /// Variations of a case that some properties need.
    #[derive(Clone, Copy, Default)]
    struct Shape {
        /// Every phase × product × region gets one unbounded tier.
        single_unbounded: bool,
        /// FINAL is the only phase.
        final_only: bool,
        /// No plan change.
        one_plan: bool,
    }

    /// The owned data an [`InvoiceInput`] borrows.
    struct World {
        period: (DateTime<Utc>, DateTime<Utc>),
        phases: Vec<PhaseSpec>,
        rules: [Vec<PriceRule>; PLANS],
        plan_change: Option<DateTime<Utc>>,
        items: Vec<Item>,
        metered: Vec<MeteredProduct>,
        usage: Vec<UsageRecord>,
    }

    impl World {
        fn new(case: &Case, shape: Shape) -> Self {
            let period = (case.period_start, add_months(case.period_start, 1));
            let mut phases = Vec::new();
            if !shape.final_only {
                if let Some(d) = case.trial {
                    phases.push(PhaseSpec {
                        kind: PhaseKind::Trial,
                        duration: Some(d),
                    });
                }
                if let Some(d) = case.discount {
                    phases.push(PhaseSpec {
                        kind: PhaseKind::Discount,
                        duration: Some(d),
                    });
                }
            }
            phases.push(PhaseSpec {
                kind: PhaseKind::Final,
                duration: None,
            });
            let rules = std::array::from_fn(|plan| Self::rules(case, shape, plan));
            let items = case
                .items
                .iter()
                .map(|&(i, quantity, [storage, bandwidth, backup])| Item {
                    product_id: package(i),
                    quantity,
                    included: Included {
                        storage_gb: storage,
                        bandwidth_gb: bandwidth,
                        backup_storage_gb: backup,
                    },
                })
                .collect();
            let metered = (0..)
                .zip(&case.metered)
                .map(|(i, resource)| MeteredProduct {
                    product_id: metered_product(i),
                    resource: (*resource).to_owned(),
                })
                .collect();
            let usage = case
                .usage
                .iter()
                .map(|&(i, offset, quantity)| UsageRecord {
                    product_id: metered_product(i),
                    at: period.0 + TimeDelta::seconds(offset),
                    quantity,
                })
                .collect();
            World {
                period,
                phases,
                rules,
                plan_change: case
                    .plan_change
                    .filter(|_| !shape.one_plan)
                    .map(|offset| period.0 + TimeDelta::seconds(offset)),
                items,
                metered,
                usage,
            }
        }

        fn rules(case: &Case, shape: Shape, plan: usize) -> Vec<PriceRule> {
            let mut rules = Vec::new();
            let mut id = 1000 * plan as u128;
            for (p, &phase) in PHASES.iter().enumerate() {
                for product in 0..PRODUCTS {
                    let prices = &case.prices[(plan * PHASES.len() + p) * PRODUCTS + product];
                    if !prices.priced {
                        continue;
                    }
                    let (product_id, interval) = if product < PACKAGES as usize {
                        let interval = if prices.hourly {
                            Interval::Hour
                        } else {
                            Interval::Month
                        };
                        (package(product as u128), interval)
                    } else {
                        (metered_product(product as u128 - PACKAGES), Interval::Unit)
                    };
                    let regions = std::iter::once((None, &prices.tiers)).chain(
                        prices
                            .regional
                            .as_ref()
                            .map(|tiers| (Some("eu".to_owned()), tiers)),
                    );
                    for (region, tiers) in regions {
                        let mut max = Decimal::ZERO;
                        let count = if shape.single_unbounded {
                            1
                        } else {
                            tiers.tiers.len()
                        };
                        for (n, &(width, unit_amount)) in tiers.tiers[..count].iter().enumerate() {
                            max += width;
                            let last = n + 1 == count;
                            let bounded = !last || (tiers.top_bounded && !shape.single_unbounded);
                            id += 1;
                            rules.push(PriceRule {
                                id: Uuid::from_u128(id),
                                phase,
                                product_id,
                                currency: case.currency.to_owned(),
                                region: region.clone(),
                                max_quantity: bounded.then_some(max),
                                unit_amount,
                                interval,
                            });
                        }
                    }
                }
            }
            rules
        }

        fn input<'a>(&'a self, case: &'a Case, mode: TierMode) -> InvoiceInput<'a> {
            let terms = |plan: usize| PlanTerms {
                phases: &self.phases,
                rules: &self.rules[plan],
                tier_mode: mode,
            };
            let mut plans = vec![PlanSpan {
                from: self.period.0 - TimeDelta::days(400),
                terms: terms(0),
                items: None,
                advance: false,
            }];
            if let Some(from) = self.plan_change {
                plans.push(PlanSpan {
                    from,
                    terms: terms(1),
                    items: None,
                    advance: false,
                });
            }
            InvoiceInput {
                period_start: self.period.0,
                period_end: self.period.1,
                charge_from: None,
                charge_until: None,
                billing_start: case.billing_start,
                plans,
                items: &self.items,
                metered: &self.metered,
                usage: &self.usage,
                currency: case.currency,
                region: case.region,
            }
        }
    }

    fn unrounded_sum(draft: &InvoiceDraft) -> Decimal {
        draft.lines.iter().map(|l| l.unrounded).sum()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        /// (1) The total is the sum of the lines, each rounded half away from zero to the
        /// currency; every item has a line in every slice.
        #[test]
        fn lines_add_up_to_the_total(case in case()) {
            let world = World::new(&case, Shape::default());
            let input = world.input(&case, case.tier_mode);
            let draft = compute_invoice(&input);
            let sum: Decimal = draft.lines.iter().map(|l| l.amount).sum();
            prop_assert_eq!(draft.total, sum);
            prop_assert_eq!(Some(draft.total.scale()), minor_units(case.currency));
            for line in &draft.lines {
                prop_assert_eq!(line.amount, round_to_currency(line.unrounded, case.currency));
                prop_assert!(line.amount >= Decimal::ZERO);
            }
            let cut = slices(world.period.0, world.period.1, case.billing_start, &input.plans);
            let recurring = draft.lines.iter().filter(|l| l.kind == LineKind::Recurring).count();
            prop_assert_eq!(recurring, cut.len() * world.items.len());
        }

        /// (2) Splitting the period at a phase boundary (or, when the period has none, at a plan
        /// change) charges exactly the same: the two halves' lines are the whole period's.
        #[test]
        fn a_split_at_a_boundary_costs_the_same(case in case()) {
            let mut world = World::new(&case, Shape::default());
            let period_seconds = (world.period.1 - world.period.0).num_seconds();
            let phase_boundaries = |world: &World| {
                let input = world.input(&case, case.tier_mode);
                slices(world.period.0, world.period.1, case.billing_start, &input.plans)
                    .windows(2)
                    .filter(|pair| pair[0].phase != pair[1].phase)
                    .map(|pair| pair[1].start)
                    .collect::<Vec<_>>()
            };
            // Without a phase change in the period, a plan change makes the boundary.
            let mut boundaries = phase_boundaries(&world);
            if boundaries.is_empty() {
                let offset = 1 + i64::try_from(case.pick).unwrap_or(0).rem_euclid(period_seconds - 1);
                world.plan_change = Some(world.period.0 + TimeDelta::seconds(offset));
                boundaries = world.plan_change.into_iter().collect();
            }
            let boundary = boundaries[case.pick % boundaries.len()];
            let input = world.input(&case, case.tier_mode);
            let whole = compute_invoice(&input);
            let before = compute_invoice(&InvoiceInput {
                charge_until: Some(boundary),
                ..input.clone()
            });
            let after = compute_invoice(&InvoiceInput {
                charge_from: Some(boundary),
                ..input.clone()
            });
            // Sums of 28-digit decimals differ in the last digit when grouped differently,
            // far below any minor unit; the lines themselves are compared exactly below.
            let gap = unrounded_sum(&whole) - (unrounded_sum(&before) + unrounded_sum(&after));
            prop_assert!(gap.abs() <= Decimal::new(1, 12), "unrounded sums differ by {}", gap);
            prop_assert_eq!(whole.total, before.total + after.total);
            let halves: Vec<Line> = before.lines.into_iter().chain(after.lines).collect();
            prop_assert_eq!(whole.lines, halves);
        }

        /// (3) With one unbounded tier, graduated and volume pricing are the same.
        #[test]
        fn graduated_equals_volume_with_one_unbounded_tier(case in case()) {
            let shape = Shape { single_unbounded: true, ..Shape::default() };
            let world = World::new(&case, shape);
            let volume = compute_invoice(&world.input(&case, TierMode::Volume));
            let graduated = compute_invoice(&world.input(&case, TierMode::Graduated));
            prop_assert_eq!(volume, graduated);
        }

        /// (4) Every line is priced by the plan and phase in force during all of its slice,
        /// and the slices tile the period.
        #[test]
        fn lines_are_priced_in_the_phase_in_force(case in case()) {
            let world = World::new(&case, Shape::default());
            let input = world.input(&case, case.tier_mode);
            let cut = slices(world.period.0, world.period.1, case.billing_start, &input.plans);
            prop_assert_eq!(cut.first().map(|s| s.start), Some(world.period.0));
            prop_assert_eq!(cut.last().map(|s| s.end), Some(world.period.1));
            for pair in cut.windows(2) {
                prop_assert_eq!(pair[0].end, pair[1].start);
                prop_assert!((pair[0].plan_index, pair[0].phase) != (pair[1].plan_index, pair[1].phase));
            }
            let plan_at = |t: DateTime<Utc>| match world.plan_change {
                Some(change) if t >= change => 1,
                _ => 0,
            };
            let phase_at_instant = |plan: usize, t: DateTime<Utc>| {
                let phases = input.plans[plan].terms.phases;
                phases[phase_at(phases, case.billing_start, t)].kind
            };
            let draft = compute_invoice(&input);
            for line in &draft.lines {
                prop_assert!(line.start < line.end);
                prop_assert!(cut.iter().any(|s| (s.start, s.end) == (line.start, line.end)));
                let last_second = line.end - TimeDelta::seconds(1);
                prop_assert_eq!(line.plan_index, plan_at(line.start));
                prop_assert_eq!(line.plan_index, plan_at(last_second));
                prop_assert_eq!(line.phase, phase_at_instant(line.plan_index, line.start));
                prop_assert_eq!(line.phase, phase_at_instant(line.plan_index, last_second));
                if let Some(rule_id) = line.rule_id {
                    let rule = world.rules[line.plan_index].iter().find(|r| r.id == rule_id);
                    prop_assert!(rule.is_some());
                    let rule = rule.expect("checked");
                    prop_assert_eq!(rule.phase, line.phase);
                    prop_assert_eq!(rule.product_id, line.product_id);
                }
            }
        }

        /// (5) Included amounts and usage are each consumed once: per resource, the billable
        /// usage is what the period's usage exceeds the included amount by; in one phase with
        /// one unbounded tier, that is what is charged.
        #[test]
        fn nothing_is_charged_twice(case in case()) {
            let shape = Shape { single_unbounded: true, final_only: true, one_plan: true };
            let world = World::new(&case, shape);
            let input = world.input(&case, case.tier_mode);
            let draft = compute_invoice(&input);
            let in_period = |record: &&UsageRecord| {
                world.period.0 <= record.at && record.at < world.period.1
            };
            let metered_lines = || draft.lines.iter().filter(|l| l.kind == LineKind::Metered);
            // Group the metered products by the included amount they draw from.
            let mut groups: Vec<(Option<&str>, Vec<Uuid>)> = Vec::new();
            for product in &world.metered {
                let key = Included::default()
                    .for_resource(&product.resource)
                    .map(|_| product.resource.as_str());
                match groups.iter_mut().find(|(k, _)| key.is_some() && *k == key) {
                    Some((_, members)) => members.push(product.product_id),
                    None => groups.push((key, vec![product.product_id])),
                }
            }
            for (resource, members) in groups {
                let used: Decimal = world
                    .usage
                    .iter()
                    .filter(in_period)
                    .filter(|r| members.contains(&r.product_id))
                    .map(|r| r.quantity)
                    .sum();
                let included: Decimal = resource.map_or(Decimal::ZERO, |resource| {
                    world
                        .items
                        .iter()
                        .filter_map(|item| item.included.for_resource(resource))
                        .sum()
                });
                let lines: Vec<&Line> = metered_lines()
                    .filter(|l| members.contains(&l.product_id))
                    .collect();
                let billed: Decimal = lines.iter().map(|l| l.quantity).sum();
                let covered: Decimal = lines.iter().map(|l| l.included).sum();
                let recorded: Decimal = lines.iter().map(|l| l.usage).sum();
                prop_assert_eq!(recorded, used);
                prop_assert_eq!(billed, (used - included).max(Decimal::ZERO));
                prop_assert_eq!(covered, used.min(included));
            }
            for product in &world.metered {
                let unit = resolve_price(
                    &world.rules[0],
                    PhaseKind::Final,
                    product.product_id,
                    case.currency,
                    case.region,
                    Decimal::ONE,
                    TierMode::Volume,
                )
                .unit_amount;
                let lines: Vec<&Line> = metered_lines()
                    .filter(|l| l.product_id == product.product_id)
                    .collect();
                prop_assert!(lines.len() <= 1);
                let billed: Decimal = lines.iter().map(|l| l.quantity).sum();
                let charged: Decimal = lines.iter().map(|l| l.unrounded).sum();
                prop_assert_eq!(charged, billed * unit);
            }
        }
    }
}
