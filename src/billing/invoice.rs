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
use super::pricing::{Interval, PriceRule, Resolution, TierMode, resolve_price};

const SECONDS_PER_HOUR: i64 = 3600;

/// What a plan prices with: its phases, its price rules and how its tiers count.
#[derive(Clone, Copy, Debug)]
pub struct PlanTerms<'a> {
    pub phases: &'a [PhaseSpec],
    pub rules: &'a [PriceRule],
    pub tier_mode: TierMode,
}

/// A plan in force from `from` until the next span's `from` (a plan change cuts the period).
/// The earliest span also covers any time before its `from`.
#[derive(Clone, Copy, Debug)]
pub struct PlanSpan<'a> {
    pub from: DateTime<Utc>,
    pub terms: PlanTerms<'a>,
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

/// Included amounts left, one per [`IncludedResource`], shared by the products of a resource.
struct Pools([Decimal; 3]);

impl Pools {
    fn new(items: &[Item]) -> Self {
        let mut left = [Decimal::ZERO; 3];
        for resource in [
            IncludedResource::Storage,
            IncludedResource::Bandwidth,
            IncludedResource::BackupStorage,
        ] {
            left[resource.index()] = items.iter().fold(Decimal::ZERO, |sum, item| {
                sum.saturating_add(item.included.get(resource).max(Decimal::ZERO))
            });
        }
        Pools(left)
    }

    /// Takes what it can of `quantity` from the pool; answers the amount taken.
    fn consume(&mut self, pool: Option<IncludedResource>, quantity: Decimal) -> Decimal {
        let Some(resource) = pool else {
            return Decimal::ZERO;
        };
        let left = &mut self.0[resource.index()];
        let taken = quantity.max(Decimal::ZERO).min(*left);
        *left -= taken;
        taken
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

    let mut pools = Pools::new(input.items);
    let mut next = 0;
    // Usage before the charged window is not charged here, but it used up included amounts.
    while let Some(&(at, meter, quantity)) = usage.get(next) {
        if at >= charge_start {
            break;
        }
        pools.consume(meters[meter].pool, quantity);
        next += 1;
    }

    let mut lines = Vec::new();
    for slice in &cut {
        let terms = input.plans[slice.plan_index].terms;
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
        for item in input.items {
            let resolution = price(item.product_id, item.quantity);
            let unrounded = recurring_amount(&resolution, seconds, period_seconds);
            lines.push(line(
                LineKind::Recurring,
                item.product_id,
                slice,
                item.quantity,
                resolution,
                unrounded,
                currency,
            ));
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

    let total = lines
        .iter()
        .fold(round_to_currency(Decimal::ZERO, currency), |sum, line| {
            sum.saturating_add(line.amount)
        });
    InvoiceDraft { lines, total }
}
