//! On which invoice each line of a subscription appears (DESIGN "When lines are billed,
//! changes mid-period, credits").
//!
//! Pure functions over [`compute_invoice`]: what a line is worth is the invoice arithmetic's
//! business; this module only chooses the window and the configuration to compute, and which
//! of the resulting lines to keep.
//!
//! - The invoice at period boundary `k` holds period `k-1`'s arrears lines (sliced at every
//!   change) and period `k`'s advance lines (the configuration in force at the boundary, over
//!   the whole period, sliced at the phase windows). Boundary 0 is the checkout's invoice.
//! - A change at an instant inside period `j` credits the advance lines of the configuration
//!   in force before it over `[at, end)` and charges the new configuration's over the same
//!   window, all as `PRORATION` lines.
//! - A cancel now bills the arrears up to the instant and credits the unused advance part.
//! - A period billed before advance billing existed (`legacy`) had nothing billed in advance:
//!   all its lines are billed at its end, and a change in it credits nothing.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::invoice::{
    InvoiceInput, Item, Line, MeteredProduct, PlanSpan, UsageRecord, compute_invoice, total_of,
};
use super::phase::{billing_period, period_containing, truncate_to_second};

/// A subscription as billing sees it.
#[derive(Clone, Debug)]
pub struct Subject<'a> {
    /// S: the instant it went live; periods are anchored on it.
    pub started: DateTime<Utc>,
    /// Its configurations, oldest first (see [`PlanSpan`]).
    pub configs: Vec<PlanSpan<'a>>,
    pub billing_start: Option<DateTime<Utc>>,
    pub metered: &'a [MeteredProduct],
    pub usage: &'a [UsageRecord],
    pub currency: &'a str,
    pub region: Option<&'a str>,
}

/// A period whose lines are all billed at its end (billed before advance billing existed).
pub type Legacy = Option<u32>;

const NO_ITEMS: &[Item] = &[];

impl<'a> Subject<'a> {
    pub fn period(&self, k: u32) -> (DateTime<Utc>, DateTime<Utc>) {
        billing_period(self.started, k)
    }

    /// The configuration in force at `at`: the latest whose `from` is at or before it (the
    /// earliest before any; on equal `from`s the later one).
    pub fn in_force(&self, at: DateTime<Utc>) -> Option<PlanSpan<'a>> {
        let at = truncate_to_second(at);
        let mut order: Vec<&PlanSpan<'a>> = self.configs.iter().collect();
        order.sort_by_key(|span| truncate_to_second(span.from));
        order
            .iter()
            .rev()
            .find(|span| truncate_to_second(span.from) <= at)
            .or(order.first())
            .map(|span| **span)
    }

    fn compute(
        &self,
        k: u32,
        from: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
        configs: Vec<PlanSpan<'a>>,
    ) -> Vec<Line> {
        let (period_start, period_end) = self.period(k);
        compute_invoice(&InvoiceInput {
            period_start,
            period_end,
            charge_from: from,
            charge_until: until,
            billing_start: self.billing_start,
            plans: configs,
            items: NO_ITEMS,
            metered: self.metered,
            usage: self.usage,
            currency: self.currency,
            region: self.region,
        })
        .lines
    }

    /// The advance lines of period `k` under one configuration, over `[from, period end)`.
    fn advance_lines(
        &self,
        k: u32,
        from: Option<DateTime<Utc>>,
        config: PlanSpan<'a>,
    ) -> Vec<Line> {
        let alone = PlanSpan {
            from: DateTime::<Utc>::MIN_UTC,
            ..config
        };
        self.compute(k, from, None, vec![alone])
            .into_iter()
            .filter(|l| l.advance)
            .collect()
    }

    /// The invoice at boundary `k`: period `k-1`'s arrears (all its lines if it is the
    /// legacy period) and, when the subscription goes on into period `k` (`opens`), period
    /// `k`'s advance lines.
    pub fn boundary(&self, k: u32, legacy: Legacy, opens: bool) -> Vec<Line> {
        let mut lines = Vec::new();
        if k >= 1 {
            let all = legacy == Some(k - 1);
            lines.extend(
                self.compute(k - 1, None, None, self.configs.clone())
                    .into_iter()
                    .filter(|l| all || !l.advance),
            );
        }
        if opens {
            lines.extend(self.advance_of(k));
        }
        lines
    }

    /// Period `k`'s advance lines under the configuration in force at its start.
    pub fn advance_of(&self, k: u32) -> Vec<Line> {
        self.in_force(self.period(k).0)
            .map(|config| self.advance_lines(k, None, config))
            .unwrap_or_default()
    }

    /// Period `k`'s arrears lines up to `until` (all its lines if it is the legacy period).
    pub fn arrears_so_far(&self, k: u32, until: DateTime<Utc>, legacy: Legacy) -> Vec<Line> {
        let all = legacy == Some(k);
        self.compute(k, None, Some(until), self.configs.clone())
            .into_iter()
            .filter(|l| all || !l.advance)
            .collect()
    }

    /// The invoice of a change to `new` at `at` (inside a period; at its start, the whole
    /// period is credited and charged again).
    pub fn change(&self, at: DateTime<Utc>, new: PlanSpan<'a>, legacy: Legacy) -> Vec<Line> {
        let (j, _, _) = period_containing(self.started, at);
        let mut lines = Vec::new();
        if legacy != Some(j)
            && let Some(old) = self.in_force(at)
        {
            lines.extend(
                self.advance_lines(j, Some(at), old)
                    .iter()
                    .map(|l| l.proration(true)),
            );
        }
        lines.extend(
            self.advance_lines(j, Some(at), new)
                .iter()
                .map(|l| l.proration(false)),
        );
        lines
    }

    /// The final invoice of a cancel now at `at` (inside a period): the period's arrears up
    /// to the instant and a credit for the unused advance part.
    pub fn cancel_now(&self, at: DateTime<Utc>, legacy: Legacy) -> Vec<Line> {
        let (j, _, _) = period_containing(self.started, at);
        let all = legacy == Some(j);
        let mut lines: Vec<Line> = self
            .compute(j, None, Some(at), self.configs.clone())
            .into_iter()
            .filter(|l| all || !l.advance)
            .collect();
        if !all && let Some(old) = self.in_force(at) {
            lines.extend(
                self.advance_lines(j, Some(at), old)
                    .iter()
                    .map(|l| l.proration(true)),
            );
        }
        lines
    }

    pub fn total(&self, lines: &[Line]) -> Decimal {
        total_of(lines, self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::invoice::{Included, LineKind, PlanTerms};
    use crate::billing::phase::{DurationUnit, PhaseDuration, PhaseKind, PhaseSpec};
    use crate::billing::pricing::{Interval, PriceRule, TierMode};
    use chrono::TimeZone;
    use proptest::prelude::*;
    use rust_decimal::dec;
    use uuid::Uuid;

    const CONTAINER: Uuid = Uuid::from_u128(1);
    const SIDECAR: Uuid = Uuid::from_u128(2);
    const BANDWIDTH: Uuid = Uuid::from_u128(11);
    const FINAL: &[PhaseSpec] = &[PhaseSpec {
        kind: PhaseKind::Final,
        duration: None,
    }];

    fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap()
    }

    fn rule(id: u128, product: Uuid, amount: Decimal, interval: Interval) -> PriceRule {
        PriceRule {
            id: Uuid::from_u128(id),
            phase: PhaseKind::Final,
            product_id: product,
            currency: "USD".into(),
            region: None,
            max_quantity: None,
            unit_amount: amount,
            interval,
        }
    }

    fn item(product: Uuid, quantity: Decimal) -> Item {
        Item {
            product_id: product,
            quantity,
            included: Included::default(),
        }
    }

    fn span<'a>(
        from: DateTime<Utc>,
        phases: &'a [PhaseSpec],
        rules: &'a [PriceRule],
        items: &'a [Item],
        advance: bool,
    ) -> PlanSpan<'a> {
        PlanSpan {
            from,
            terms: PlanTerms {
                phases,
                rules,
                tier_mode: TierMode::Volume,
            },
            items: Some(items),
            advance,
        }
    }

    fn subject<'a>(
        started: DateTime<Utc>,
        configs: Vec<PlanSpan<'a>>,
        metered: &'a [MeteredProduct],
        usage: &'a [UsageRecord],
    ) -> Subject<'a> {
        Subject {
            started,
            configs,
            billing_start: Some(started),
            metered,
            usage,
            currency: "USD",
            region: None,
        }
    }

    fn amounts(lines: &[Line]) -> Vec<(LineKind, Decimal)> {
        lines.iter().map(|l| (l.kind, l.amount)).collect()
    }

    #[test]
    fn ten_days_into_a_month_a_cancel_now_credits_the_rest() {
        // 12.50 a month, January (31 days); canceled on the 11th: 21 days unused.
        let rules = [rule(1, CONTAINER, dec!(12.50), Interval::Month)];
        let items = [item(CONTAINER, Decimal::ONE)];
        let s = subject(
            at(2027, 1, 1),
            vec![span(at(2027, 1, 1), FINAL, &rules, &items, true)],
            &[],
            &[],
        );
        assert_eq!(s.total(&s.boundary(0, None, true)), dec!(12.50));
        let last = s.cancel_now(at(2027, 1, 11), None);
        assert_eq!(amounts(&last), [(LineKind::Proration, dec!(-8.47))]);
        // Billed in arrears, the same cancel bills the 10 days used instead.
        let s = subject(
            at(2027, 1, 1),
            vec![span(at(2027, 1, 1), FINAL, &rules, &items, false)],
            &[],
            &[],
        );
        assert_eq!(s.total(&s.boundary(0, None, true)), dec!(0.00));
        assert_eq!(
            amounts(&s.cancel_now(at(2027, 1, 11), None)),
            [(LineKind::Recurring, dec!(4.03))]
        );
    }

    #[test]
    fn an_upgrade_after_a_third_of_the_month_credits_and_charges_the_rest() {
        // April has 30 days; 10/month to 30/month on the 11th.
        let cheap = [rule(1, CONTAINER, dec!(10), Interval::Month)];
        let dear = [rule(2, CONTAINER, dec!(30), Interval::Month)];
        let items = [item(CONTAINER, Decimal::ONE)];
        let s = subject(
            at(2027, 4, 1),
            vec![span(at(2027, 4, 1), FINAL, &cheap, &items, true)],
            &[],
            &[],
        );
        let change = s.change(
            at(2027, 4, 11),
            span(at(2027, 4, 11), FINAL, &dear, &items, true),
            None,
        );
        assert_eq!(
            amounts(&change),
            [
                (LineKind::Proration, dec!(-6.67)),
                (LineKind::Proration, dec!(20.00))
            ]
        );
        assert_eq!(s.total(&change), dec!(13.33));
    }

    #[test]
    fn two_small_packages_include_twice_their_bandwidth() {
        // Small includes 100 GB of bandwidth; two of them, 250 GB used: 50 GB billed.
        let rules = [
            rule(1, CONTAINER, dec!(5), Interval::Month),
            PriceRule {
                interval: Interval::Unit,
                ..rule(2, BANDWIDTH, dec!(0.10), Interval::Unit)
            },
        ];
        let items = [Item {
            product_id: CONTAINER,
            quantity: dec!(2),
            included: Included {
                bandwidth_gb: dec!(100) * dec!(2),
                ..Included::default()
            },
        }];
        let metered = [MeteredProduct {
            product_id: BANDWIDTH,
            resource: "bandwidth".into(),
        }];
        let usage = [UsageRecord {
            product_id: BANDWIDTH,
            at: at(2027, 1, 5),
            quantity: dec!(250),
        }];
        let s = subject(
            at(2027, 1, 1),
            vec![span(at(2027, 1, 1), FINAL, &rules, &items, true)],
            &metered,
            &usage,
        );
        let next = s.boundary(1, None, true);
        let metered_line = next.iter().find(|l| l.kind == LineKind::Metered).unwrap();
        assert_eq!(
            (
                metered_line.usage,
                metered_line.included,
                metered_line.quantity,
                metered_line.amount
            ),
            (dec!(250), dec!(200), dec!(50), dec!(5.00))
        );
        // Boundary 1: January's usage in arrears, February's two containers in advance.
        assert_eq!(s.total(&next), dec!(15.00));
    }

    #[test]
    fn a_boundary_bills_arrears_of_the_last_period_and_advance_of_the_next() {
        let rules = [
            rule(1, CONTAINER, dec!(30), Interval::Month),
            rule(2, SIDECAR, dec!(0.01), Interval::Hour),
        ];
        let items = [item(CONTAINER, Decimal::ONE), item(SIDECAR, Decimal::ONE)];
        let s = subject(
            at(2027, 4, 1),
            vec![span(at(2027, 4, 1), FINAL, &rules, &items, true)],
            &[],
            &[],
        );
        let opening = s.boundary(0, None, true);
        assert_eq!(amounts(&opening), [(LineKind::Recurring, dec!(30.00))]);
        // April's 720 hours of the sidecar, May's container.
        let next = s.boundary(1, None, true);
        assert_eq!(s.total(&next), dec!(37.20));
        // A legacy period bills all of its lines at its end.
        assert_eq!(s.total(&s.boundary(1, Some(0), true)), dec!(67.20));
        // The last boundary of a subscription ending there: arrears only.
        assert_eq!(s.total(&s.boundary(1, None, false)), dec!(7.20));
    }

    #[test]
    fn a_trial_at_zero_takes_nothing_at_checkout() {
        let trial = [
            PhaseSpec {
                kind: PhaseKind::Trial,
                duration: Some(PhaseDuration {
                    count: 3,
                    unit: DurationUnit::Month,
                }),
            },
            FINAL[0],
        ];
        let rules = [
            PriceRule {
                phase: PhaseKind::Trial,
                ..rule(1, CONTAINER, dec!(0), Interval::Month)
            },
            rule(2, CONTAINER, dec!(20), Interval::Month),
        ];
        let items = [item(CONTAINER, Decimal::ONE)];
        let s = subject(
            at(2027, 1, 1),
            vec![span(at(2027, 1, 1), &trial, &rules, &items, true)],
            &[],
            &[],
        );
        assert_eq!(s.total(&s.boundary(0, None, true)), dec!(0.00));
        assert_eq!(s.total(&s.boundary(3, None, true)), dec!(20.00));
    }

    // ---- properties over random configurations and changes -------------------------------

    #[derive(Clone, Debug)]
    struct Plan {
        rules: Vec<PriceRule>,
        advance: bool,
    }

    #[derive(Clone, Debug)]
    struct Case {
        plans: Vec<Plan>,
        /// (plan index, container quantity, sidecar quantity, included bandwidth)
        first: (usize, Decimal, Decimal, Decimal),
        /// Changes: seconds after the start, then the new configuration.
        changes: Vec<(i64, (usize, Decimal, Decimal, Decimal))>,
        usage: Vec<(i64, Decimal)>,
        trial_days: Option<u32>,
        periods: u32,
    }

    fn money() -> impl Strategy<Value = Decimal> {
        (0i64..5_000_000, 0u32..=6).prop_map(|(m, s)| Decimal::new(m, s))
    }

    fn quantity() -> impl Strategy<Value = Decimal> {
        (1i64..5_000, 0u32..=3).prop_map(|(m, s)| Decimal::new(m, s))
    }

    fn plan() -> impl Strategy<Value = Plan> {
        (
            prop::collection::vec((money(), any::<bool>(), any::<bool>()), 2),
            money(),
            money(),
            any::<bool>(),
        )
            .prop_map(|(packages, trial_price, metered, advance)| {
                let mut rules = Vec::new();
                for (i, (amount, hourly, in_trial)) in packages.into_iter().enumerate() {
                    let product = if i == 0 { CONTAINER } else { SIDECAR };
                    let interval = if hourly {
                        Interval::Hour
                    } else {
                        Interval::Month
                    };
                    rules.push(rule(i as u128 + 1, product, amount / dec!(100), interval));
                    if in_trial {
                        rules.push(PriceRule {
                            phase: PhaseKind::Trial,
                            ..rule(i as u128 + 10, product, trial_price / dec!(100), interval)
                        });
                    }
                }
                rules.push(rule(20, BANDWIDTH, metered / dec!(1000), Interval::Unit));
                Plan { rules, advance }
            })
    }

    fn config() -> impl Strategy<Value = (usize, Decimal, Decimal, Decimal)> {
        (
            0usize..2,
            quantity(),
            quantity(),
            (0i64..500).prop_map(Decimal::from),
        )
    }

    fn case() -> impl Strategy<Value = Case> {
        let month = 31 * 86_400i64;
        (
            prop::collection::vec(plan(), 2),
            config(),
            prop::collection::vec((0..4 * month, config()), 0..4),
            prop::collection::vec((0..4 * month, (0i64..300).prop_map(Decimal::from)), 0..8),
            prop::option::of(1u32..60),
            1u32..4,
        )
            .prop_map(|(plans, first, mut changes, usage, trial_days, periods)| {
                changes.sort_by_key(|c| c.0);
                changes.dedup_by_key(|c| c.0);
                Case {
                    plans,
                    first,
                    changes,
                    usage,
                    trial_days,
                    periods,
                }
            })
    }

    struct Built {
        phases: Vec<PhaseSpec>,
        items: Vec<Vec<Item>>,
        froms: Vec<DateTime<Utc>>,
        plan_of: Vec<usize>,
        usage: Vec<UsageRecord>,
        metered: Vec<MeteredProduct>,
    }

    fn build(case: &Case, start: DateTime<Utc>) -> Built {
        let phases = match case.trial_days {
            Some(d) => vec![
                PhaseSpec {
                    kind: PhaseKind::Trial,
                    duration: Some(PhaseDuration {
                        count: d,
                        unit: DurationUnit::Day,
                    }),
                },
                FINAL[0],
            ],
            None => FINAL.to_vec(),
        };
        let items_of = |(_, a, b, incl): (usize, Decimal, Decimal, Decimal)| {
            vec![
                Item {
                    product_id: CONTAINER,
                    quantity: a,
                    included: Included {
                        bandwidth_gb: incl,
                        ..Included::default()
                    },
                },
                item(SIDECAR, b),
            ]
        };
        let mut items = vec![items_of(case.first)];
        let mut froms = vec![start];
        let mut plan_of = vec![case.first.0];
        for (secs, c) in &case.changes {
            items.push(items_of(*c));
            froms.push(start + chrono::TimeDelta::seconds(*secs + 1));
            plan_of.push(c.0);
        }
        Built {
            phases,
            items,
            froms,
            plan_of,
            usage: case
                .usage
                .iter()
                .map(|(secs, q)| UsageRecord {
                    product_id: BANDWIDTH,
                    at: start + chrono::TimeDelta::seconds(*secs),
                    quantity: *q,
                })
                .collect(),
            metered: vec![MeteredProduct {
                product_id: BANDWIDTH,
                resource: "bandwidth".into(),
            }],
        }
    }

    fn unrounded(lines: &[Line]) -> Decimal {
        lines.iter().map(|l| l.unrounded).sum()
    }

    /// Exact up to what 28 significant digits carry: a prorated amount such as 2.08 × 20 /
    /// 2,678,400 does not terminate, so sums of them agree to about 1e-20, not to the last
    /// digit.
    fn same(a: Decimal, b: Decimal) -> bool {
        (a - b).abs() <= Decimal::new(1, 16)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        /// Over a subscription's life, what its invoices bill (before rounding) is what each
        /// period's lines are worth under the configuration in force: nothing twice, no gap,
        /// in either timing; after rounding, within half a minor unit per advance or
        /// PRORATION line.
        #[test]
        fn invoices_over_a_life_bill_each_period_once(case in case()) {
            let start = at(2027, 1, 31);
            let b = build(&case, start);
            let spans: Vec<PlanSpan<'_>> = (0..b.froms.len())
                .map(|i| {
                    let p = &case.plans[b.plan_of[i]];
                    span(b.froms[i], &b.phases, &p.rules, &b.items[i], p.advance)
                })
                .collect();
            let at_time = |known: usize| subject(start, spans[..known].to_vec(), &b.metered, &b.usage);
            let end = at_time(1).period(case.periods).0;
            let mut billed: Vec<Line> = Vec::new();
            let mut known = 1;
            // Events in time order: boundaries and changes (a change on a boundary comes after it).
            for k in 0..=case.periods {
                let boundary = at_time(1).period(k).0;
                while known < spans.len() && spans[known].from < boundary {
                    billed.extend(at_time(known).change(spans[known].from, spans[known], None));
                    known += 1;
                }
                billed.extend(at_time(known).boundary(k, None, k < case.periods));
            }
            let all = subject(start, spans.iter().copied().filter(|s| s.from < end).collect(), &b.metered, &b.usage);
            let worth: Vec<Line> = (0..case.periods).flat_map(|k| all.compute(k, None, None, all.configs.clone())).collect();
            prop_assert!(same(unrounded(&billed), unrounded(&worth)), "{} vs {}", unrounded(&billed), unrounded(&worth));
            let rounded: Decimal = billed.iter().map(|l| l.amount).sum::<Decimal>() - worth.iter().map(|l| l.amount).sum::<Decimal>();
            let slack = Decimal::new(5, 3) * Decimal::from(billed.iter().filter(|l| l.advance || l.kind == LineKind::Proration).count());
            prop_assert!(rounded.abs() <= slack, "rounded apart by {}", rounded);
        }

        /// A change to the same configuration mid-period credits exactly what it charges.
        #[test]
        fn a_change_to_the_same_configuration_costs_nothing(case in case(), secs in 1i64..2_600_000) {
            let start = at(2027, 3, 1);
            let b = build(&case, start);
            let p = &case.plans[b.plan_of[0]];
            let s = subject(start, vec![span(start, &b.phases, &p.rules, &b.items[0], p.advance)], &b.metered, &b.usage);
            let t = start + chrono::TimeDelta::seconds(secs);
            let lines = s.change(t, span(t, &b.phases, &p.rules, &b.items[0], p.advance), None);
            prop_assert_eq!(s.total(&lines), dec!(0.00));
            prop_assert!(same(unrounded(&lines), Decimal::ZERO));
        }

        /// Without changes, billing in advance or in arrears bills the same over whole periods.
        #[test]
        fn advance_and_arrears_bill_the_same_over_whole_periods(case in case()) {
            let start = at(2027, 5, 31);
            let b = build(&case, start);
            let p = &case.plans[b.plan_of[0]];
            let total = |advance: bool| {
                let s = subject(start, vec![span(start, &b.phases, &p.rules, &b.items[0], advance)], &b.metered, &b.usage);
                (0..=case.periods)
                    .flat_map(|k| s.boundary(k, None, k < case.periods))
                    .map(|l| l.unrounded)
                    .sum::<Decimal>()
            };
            prop_assert!(same(total(true), total(false)), "{} vs {}", total(true), total(false));
        }
    }
}
