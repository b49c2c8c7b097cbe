//! Phases in time and billing periods: pure calendar arithmetic on UTC instants.
//!
//! No clock reads: "now" is always a parameter. Every window and period is `[start, end)`,
//! so an instant on a boundary belongs to the later one (DESIGN "Pinned details").

use std::fmt;

use chrono::{DateTime, Datelike, Months, SubsecRound, TimeDelta, Utc};

/// A plan phase. The derived order is the order phases run in: Trial < Discount < Final.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PhaseKind {
    Trial,
    Discount,
    Final,
}

impl PhaseKind {
    /// The API spelling (`TRIAL`, `DISCOUNT`, `FINAL`), also used in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            PhaseKind::Trial => "TRIAL",
            PhaseKind::Discount => "DISCOUNT",
            PhaseKind::Final => "FINAL",
        }
    }
}

impl fmt::Display for PhaseKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Unit of a phase duration: `Hour`, `Day` and `Week` are fixed lengths; `Month` and `Year`
/// are calendar steps (day of month clamped to the month's end).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DurationUnit {
    Hour,
    Day,
    Week,
    Month,
    Year,
}

impl DurationUnit {
    /// The API spelling (`HOUR`, `DAY`, `WEEK`, `MONTH`, `YEAR`).
    pub fn as_str(self) -> &'static str {
        match self {
            DurationUnit::Hour => "HOUR",
            DurationUnit::Day => "DAY",
            DurationUnit::Week => "WEEK",
            DurationUnit::Month => "MONTH",
            DurationUnit::Year => "YEAR",
        }
    }
}

impl fmt::Display for DurationUnit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A whole number of duration units (`count >= 1` for a valid phase).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PhaseDuration {
    pub count: u32,
    pub unit: DurationUnit,
}

/// A phase of a plan as configured: its kind and, except for FINAL, its duration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PhaseSpec {
    pub kind: PhaseKind,
    pub duration: Option<PhaseDuration>,
}

/// A phase placed in time: `[start, end)`, with `end: None` meaning "forever".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PhaseWindow {
    pub kind: PhaseKind,
    pub start: DateTime<Utc>,
    pub end: Option<DateTime<Utc>>,
}

impl PhaseWindow {
    /// Whether `at` falls in `[start, end)`.
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        self.start <= at && self.end.is_none_or(|end| at < end)
    }
}

/// Why a plan's list of phases is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PhaseError {
    /// A plan needs at least its FINAL phase.
    Empty,
    /// The last phase is not FINAL.
    MissingFinal,
    /// The same kind appears twice.
    DuplicateKind(PhaseKind),
    /// Phases are not in TRIAL, DISCOUNT, FINAL order.
    OutOfOrder,
    /// FINAL runs forever, so it cannot have a duration.
    FinalHasDuration,
    /// TRIAL and DISCOUNT need a duration.
    MissingDuration(PhaseKind),
    /// A duration must be at least one unit.
    ZeroDuration(PhaseKind),
}

impl fmt::Display for PhaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PhaseError::Empty => f.write_str("a plan needs at least a FINAL phase"),
            PhaseError::MissingFinal => f.write_str("the last phase must be FINAL"),
            PhaseError::DuplicateKind(kind) => write!(f, "phase {kind} appears more than once"),
            PhaseError::OutOfOrder => {
                f.write_str("phases must be in the order TRIAL, DISCOUNT, FINAL")
            }
            PhaseError::FinalHasDuration => {
                f.write_str("the FINAL phase is unlimited and takes no duration")
            }
            PhaseError::MissingDuration(kind) => write!(f, "phase {kind} needs a duration"),
            PhaseError::ZeroDuration(kind) => {
                write!(f, "phase {kind} needs a duration of at least 1")
            }
        }
    }
}

impl std::error::Error for PhaseError {}

/// `t` plus `months` calendar months, same time of day, the day clamped to the month's end
/// (Jan 31 + 1 month = Feb 28, or Feb 29 in a leap year).
///
/// Saturates at `DateTime::<Utc>::MAX_UTC` (year 262142), so that no input can panic.
pub fn add_months(t: DateTime<Utc>, months: u32) -> DateTime<Utc> {
    t.checked_add_months(Months::new(months))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// `t` plus a phase duration: hours, days and weeks as fixed lengths (UTC has no DST), months
/// and years on the calendar via [`add_months`]. Saturates like [`add_months`].
pub fn add_duration(t: DateTime<Utc>, d: PhaseDuration) -> DateTime<Utc> {
    let count = i64::from(d.count);
    let fixed = |delta: Option<TimeDelta>| {
        delta
            .and_then(|delta| t.checked_add_signed(delta))
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    };
    match d.unit {
        DurationUnit::Hour => fixed(TimeDelta::try_hours(count)),
        DurationUnit::Day => fixed(TimeDelta::try_days(count)),
        DurationUnit::Week => fixed(TimeDelta::try_weeks(count)),
        DurationUnit::Month => add_months(t, d.count),
        // A year is 12 calendar months, so Feb 29 + 1 year = Feb 28.
        DurationUnit::Year => add_months(t, d.count.saturating_mul(12)),
    }
}

/// Checks a plan's phases: TRIAL, DISCOUNT, FINAL in that order, each at most once; FINAL
/// required, last and without a duration; the others with a duration of at least 1.
pub fn validate_phases(phases: &[PhaseSpec]) -> Result<(), PhaseError> {
    // One flag per kind, indexed by discriminant.
    let mut seen = [false; 3];
    let mut previous: Option<PhaseKind> = None;
    for spec in phases {
        // Checked before order so that [TRIAL, DISCOUNT, TRIAL] names the repeat.
        let slot = &mut seen[spec.kind as usize];
        if *slot {
            return Err(PhaseError::DuplicateKind(spec.kind));
        }
        *slot = true;
        if previous.is_some_and(|prev| spec.kind < prev) {
            return Err(PhaseError::OutOfOrder);
        }
        match (spec.kind, spec.duration) {
            (PhaseKind::Final, Some(_)) => return Err(PhaseError::FinalHasDuration),
            (PhaseKind::Final, None) => {}
            (kind, None) => return Err(PhaseError::MissingDuration(kind)),
            (kind, Some(d)) if d.count == 0 => return Err(PhaseError::ZeroDuration(kind)),
            (_, Some(_)) => {}
        }
        previous = Some(spec.kind);
    }
    match previous {
        None => Err(PhaseError::Empty),
        Some(PhaseKind::Final) => Ok(()),
        Some(_) => Err(PhaseError::MissingFinal),
    }
}

/// The phases laid back to back from `billing_start`: each window starts where the previous
/// one ended; the first phase without a duration (FINAL) runs forever and ends the list.
///
/// Phases are assumed valid ([`validate_phases`]); the result has one window per phase.
pub fn phase_timeline(phases: &[PhaseSpec], billing_start: DateTime<Utc>) -> Vec<PhaseWindow> {
    let mut windows = Vec::with_capacity(phases.len());
    let mut start = billing_start;
    for spec in phases {
        let end = spec.duration.map(|d| add_duration(start, d));
        windows.push(PhaseWindow {
            kind: spec.kind,
            start,
            end,
        });
        match end {
            Some(end) => start = end,
            // Nothing can follow an open-ended window.
            None => break,
        }
    }
    windows
}

/// Index (into `phases`) of the phase in force at `at`.
///
/// Before `billing_start`, or without one, that is the plan's first phase (index 0). An
/// instant on a boundary belongs to the later window. Past the last window of an invalid
/// list without an open-ended phase, the last phase stays in force. Empty `phases` give 0.
pub fn phase_at(
    phases: &[PhaseSpec],
    billing_start: Option<DateTime<Utc>>,
    at: DateTime<Utc>,
) -> usize {
    let Some(start) = billing_start else {
        return 0;
    };
    if at < start {
        return 0;
    }
    let timeline = phase_timeline(phases, start);
    timeline
        .iter()
        .position(|window| window.contains(at))
        .unwrap_or_else(|| timeline.len().saturating_sub(1))
}

/// The first instant after `at` at which the phase in force changes: the end of the window
/// in force, when another window follows it. `None` when no change is ahead (the FINAL
/// phase, or no billing start to lay the windows from).
pub fn next_phase_change(
    phases: &[PhaseSpec],
    billing_start: Option<DateTime<Utc>>,
    at: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let timeline = phase_timeline(phases, billing_start?);
    timeline
        .iter()
        .zip(timeline.iter().skip(1))
        .filter_map(|(window, _next)| window.end)
        .find(|end| *end > at)
}

/// The window of the phase in force at `at` (see [`phase_at`]), e.g. to tell how much of a
/// trial is left. Before `billing_start` this is the first window, which starts later.
/// `None` only when `phases` is empty.
pub fn window_at(
    phases: &[PhaseSpec],
    billing_start: DateTime<Utc>,
    at: DateTime<Utc>,
) -> Option<PhaseWindow> {
    let index = phase_at(phases, Some(billing_start), at);
    phase_timeline(phases, billing_start).get(index).copied()
}

/// Drops the sub-second part: instants are whole seconds everywhere in billing.
pub fn truncate_to_second(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(0)
}

/// Billing period `k` of a subscription that went live at `start`:
/// `[start + k months, start + (k+1) months)`, each bound computed from `start` itself so that
/// clamping never accumulates (start Jan 31: periods end Feb 28, Mar 31, Apr 30, …).
pub fn billing_period(start: DateTime<Utc>, k: u32) -> (DateTime<Utc>, DateTime<Utc>) {
    (add_months(start, k), add_months(start, k.saturating_add(1)))
}

/// The billing period that contains `at`: its index `k` and bounds `[period_start, period_end)`.
///
/// Expects `at >= start`; an earlier `at` answers period 0.
pub fn period_containing(
    start: DateTime<Utc>,
    at: DateTime<Utc>,
) -> (u32, DateTime<Utc>, DateTime<Utc>) {
    if at < start {
        let (period_start, period_end) = billing_period(start, 0);
        return (0, period_start, period_end);
    }
    // start + m months lands in at's calendar month, so the answer is m, or m - 1 when at's
    // day or time of day comes before start's.
    let months = (i64::from(at.year()) - i64::from(start.year())) * 12 + i64::from(at.month())
        - i64::from(start.month());
    let mut k = u32::try_from(months).unwrap_or(u32::MAX);
    if k > 0 && add_months(start, k) > at {
        k -= 1;
    }
    let (period_start, period_end) = billing_period(start, k);
    (k, period_start, period_end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s)
            .single()
            .expect("valid test date")
    }

    fn days(n: u32) -> PhaseDuration {
        PhaseDuration {
            count: n,
            unit: DurationUnit::Day,
        }
    }

    fn spec(kind: PhaseKind, duration: Option<PhaseDuration>) -> PhaseSpec {
        PhaseSpec { kind, duration }
    }

    fn final_phase() -> PhaseSpec {
        spec(PhaseKind::Final, None)
    }

    #[test]
    fn phase_kind_order_and_names() {
        assert!(PhaseKind::Trial < PhaseKind::Discount);
        assert!(PhaseKind::Discount < PhaseKind::Final);
        assert_eq!(
            [PhaseKind::Trial, PhaseKind::Discount, PhaseKind::Final].map(PhaseKind::as_str),
            ["TRIAL", "DISCOUNT", "FINAL"]
        );
        assert_eq!(DurationUnit::Week.to_string(), "WEEK");
    }

    #[test]
    fn add_months_clamps_to_month_end_and_keeps_time() {
        let jan31 = utc(2023, 1, 31, 10, 20, 30);
        assert_eq!(add_months(jan31, 1), utc(2023, 2, 28, 10, 20, 30));
        assert_eq!(add_months(jan31, 2), utc(2023, 3, 31, 10, 20, 30));
        assert_eq!(add_months(jan31, 3), utc(2023, 4, 30, 10, 20, 30));
        let leap_jan31 = utc(2024, 1, 31, 0, 0, 0);
        assert_eq!(add_months(leap_jan31, 1), utc(2024, 2, 29, 0, 0, 0));
        assert_eq!(
            add_months(utc(2024, 2, 29, 5, 0, 0), 12),
            utc(2025, 2, 28, 5, 0, 0)
        );
        assert_eq!(
            add_months(utc(2023, 12, 15, 0, 0, 0), 1),
            utc(2024, 1, 15, 0, 0, 0)
        );
        assert_eq!(add_months(jan31, 0), jan31);
    }

    #[test]
    fn add_months_saturates_instead_of_panicking() {
        assert_eq!(
            add_months(utc(2023, 1, 1, 0, 0, 0), u32::MAX),
            DateTime::<Utc>::MAX_UTC
        );
    }

    #[test]
    fn add_duration_units() {
        let t = utc(2024, 1, 31, 12, 0, 0);
        let d = |count, unit| PhaseDuration { count, unit };
        assert_eq!(
            add_duration(t, d(5, DurationUnit::Hour)),
            utc(2024, 1, 31, 17, 0, 0)
        );
        assert_eq!(
            add_duration(t, d(14, DurationUnit::Day)),
            utc(2024, 2, 14, 12, 0, 0)
        );
        assert_eq!(
            add_duration(t, d(2, DurationUnit::Week)),
            utc(2024, 2, 14, 12, 0, 0)
        );
        assert_eq!(
            add_duration(t, d(1, DurationUnit::Month)),
            utc(2024, 2, 29, 12, 0, 0)
        );
        assert_eq!(
            add_duration(t, d(1, DurationUnit::Year)),
            utc(2025, 1, 31, 12, 0, 0)
        );
        assert_eq!(
            add_duration(utc(2024, 2, 29, 0, 0, 0), d(1, DurationUnit::Year)),
            utc(2025, 2, 28, 0, 0, 0)
        );
        // Huge counts saturate.
        assert_eq!(
            add_duration(t, d(u32::MAX, DurationUnit::Year)),
            DateTime::<Utc>::MAX_UTC
        );
        assert!(add_duration(t, d(u32::MAX, DurationUnit::Week)) > t);
    }

    #[test]
    fn next_phase_change_is_the_end_of_the_window_in_force() {
        let phases = [
            spec(PhaseKind::Trial, Some(days(14))),
            spec(PhaseKind::Discount, Some(days(30))),
            final_phase(),
        ];
        let start = utc(2027, 1, 1, 0, 0, 0);
        let trial_end = utc(2027, 1, 15, 0, 0, 0);
        let discount_end = utc(2027, 2, 14, 0, 0, 0);
        // Before billing start the first phase is in force; it ends with its window.
        assert_eq!(
            next_phase_change(&phases, Some(start), utc(2026, 12, 1, 0, 0, 0)),
            Some(trial_end)
        );
        assert_eq!(
            next_phase_change(&phases, Some(start), start),
            Some(trial_end)
        );
        // On a boundary the later window is in force, so the change after it is next.
        assert_eq!(
            next_phase_change(&phases, Some(start), trial_end),
            Some(discount_end)
        );
        assert_eq!(next_phase_change(&phases, Some(start), discount_end), None);
        assert_eq!(
            next_phase_change(&[final_phase()], Some(start), start),
            None
        );
        assert_eq!(next_phase_change(&phases, None, start), None);
    }

    #[test]
    fn valid_phase_lists() {
        let trial = spec(PhaseKind::Trial, Some(days(14)));
        let discount = spec(
            PhaseKind::Discount,
            Some(PhaseDuration {
                count: 3,
                unit: DurationUnit::Month,
            }),
        );
        assert_eq!(validate_phases(&[final_phase()]), Ok(()));
        assert_eq!(validate_phases(&[trial, final_phase()]), Ok(()));
        assert_eq!(validate_phases(&[discount, final_phase()]), Ok(()));
        assert_eq!(validate_phases(&[trial, discount, final_phase()]), Ok(()));
    }

    #[test]
    fn invalid_phase_lists() {
        let trial = spec(PhaseKind::Trial, Some(days(14)));
        let discount = spec(PhaseKind::Discount, Some(days(30)));
        assert_eq!(validate_phases(&[]), Err(PhaseError::Empty));
        assert_eq!(validate_phases(&[trial]), Err(PhaseError::MissingFinal));
        assert_eq!(
            validate_phases(&[trial, discount]),
            Err(PhaseError::MissingFinal)
        );
        assert_eq!(
            validate_phases(&[trial, trial, final_phase()]),
            Err(PhaseError::DuplicateKind(PhaseKind::Trial))
        );
        assert_eq!(
            validate_phases(&[trial, discount, trial, final_phase()]),
            Err(PhaseError::DuplicateKind(PhaseKind::Trial))
        );
        assert_eq!(
            validate_phases(&[final_phase(), final_phase()]),
            Err(PhaseError::DuplicateKind(PhaseKind::Final))
        );
        assert_eq!(
            validate_phases(&[discount, trial, final_phase()]),
            Err(PhaseError::OutOfOrder)
        );
        assert_eq!(
            validate_phases(&[final_phase(), trial]),
            Err(PhaseError::OutOfOrder)
        );
        assert_eq!(
            validate_phases(&[spec(PhaseKind::Final, Some(days(1)))]),
            Err(PhaseError::FinalHasDuration)
        );
        assert_eq!(
            validate_phases(&[spec(PhaseKind::Trial, None), final_phase()]),
            Err(PhaseError::MissingDuration(PhaseKind::Trial))
        );
        assert_eq!(
            validate_phases(&[spec(PhaseKind::Discount, Some(days(0))), final_phase()]),
            Err(PhaseError::ZeroDuration(PhaseKind::Discount))
        );
    }

    #[test]
    fn phase_errors_read_well() {
        assert_eq!(
            PhaseError::DuplicateKind(PhaseKind::Trial).to_string(),
            "phase TRIAL appears more than once"
        );
        assert_eq!(
            PhaseError::ZeroDuration(PhaseKind::Discount).to_string(),
            "phase DISCOUNT needs a duration of at least 1"
        );
    }

    #[test]
    fn timeline_is_back_to_back() {
        let t = utc(2024, 1, 31, 9, 0, 0);
        let phases = [
            spec(PhaseKind::Trial, Some(days(14))),
            spec(
                PhaseKind::Discount,
                Some(PhaseDuration {
                    count: 1,
                    unit: DurationUnit::Month,
                }),
            ),
            final_phase(),
        ];
        let windows = phase_timeline(&phases, t);
        assert_eq!(
            windows,
            vec![
                PhaseWindow {
                    kind: PhaseKind::Trial,
                    start: t,
                    end: Some(utc(2024, 2, 14, 9, 0, 0)),
                },
                PhaseWindow {
                    kind: PhaseKind::Discount,
                    start: utc(2024, 2, 14, 9, 0, 0),
                    end: Some(utc(2024, 3, 14, 9, 0, 0)),
                },
                PhaseWindow {
                    kind: PhaseKind::Final,
                    start: utc(2024, 3, 14, 9, 0, 0),
                    end: None,
                },
            ]
        );
        assert_eq!(phase_timeline(&[final_phase()], t).len(), 1);
        assert!(phase_timeline(&[], t).is_empty());
    }

    #[test]
    fn seed_example_seven_days_of_trial_left() {
        // Plan: TRIAL 14 days then FINAL; billingStart = T; subscription placed at T + 7d.
        let t = utc(2024, 5, 1, 8, 30, 0);
        let phases = [spec(PhaseKind::Trial, Some(days(14))), final_phase()];
        let placed = t + TimeDelta::days(7);
        assert_eq!(phase_at(&phases, Some(t), placed), 0);
        let window = window_at(&phases, t, placed).expect("a window");
        assert_eq!(window.kind, PhaseKind::Trial);
        assert_eq!(window.end, Some(t + TimeDelta::days(14)));
        let left = window.end.map(|end| end - placed);
        assert_eq!(left, Some(TimeDelta::days(7)));
        // The boundary instant belongs to FINAL.
        assert_eq!(phase_at(&phases, Some(t), t + TimeDelta::days(14)), 1);
        assert_eq!(
            phase_at(
                &phases,
                Some(t),
                t + TimeDelta::days(14) - TimeDelta::seconds(1)
            ),
            0
        );
    }

    #[test]
    fn phase_at_before_or_without_billing_start_is_first_phase() {
        let t = utc(2024, 5, 1, 0, 0, 0);
        let phases = [spec(PhaseKind::Discount, Some(days(10))), final_phase()];
        assert_eq!(phase_at(&phases, None, t), 0);
        assert_eq!(phase_at(&phases, Some(t), t - TimeDelta::seconds(1)), 0);
        assert_eq!(phase_at(&phases, Some(t), t), 0);
        assert_eq!(phase_at(&phases, Some(t), t + TimeDelta::days(3650)), 1);
        let early = window_at(&phases, t, t - TimeDelta::days(1)).expect("a window");
        assert_eq!(early.start, t);
    }

    #[test]
    fn phase_at_walks_every_window() {
        let t = utc(2024, 1, 1, 0, 0, 0);
        let phases = [
            spec(
                PhaseKind::Trial,
                Some(PhaseDuration {
                    count: 36,
                    unit: DurationUnit::Hour,
                }),
            ),
            spec(
                PhaseKind::Discount,
                Some(PhaseDuration {
                    count: 2,
                    unit: DurationUnit::Week,
                }),
            ),
            final_phase(),
        ];
        assert_eq!(phase_at(&phases, Some(t), t + TimeDelta::hours(35)), 0);
        assert_eq!(phase_at(&phases, Some(t), t + TimeDelta::hours(36)), 1);
        let discount_end = t + TimeDelta::hours(36) + TimeDelta::weeks(2);
        assert_eq!(
            phase_at(&phases, Some(t), discount_end - TimeDelta::seconds(1)),
            1
        );
        assert_eq!(phase_at(&phases, Some(t), discount_end), 2);
        assert_eq!(phase_at(&[final_phase()], Some(t), discount_end), 0);
    }

    #[test]
    fn phase_at_tolerates_invalid_lists() {
        let t = utc(2024, 1, 1, 0, 0, 0);
        // No open-ended phase: the last one stays in force.
        let phases = [spec(PhaseKind::Trial, Some(days(1)))];
        assert_eq!(phase_at(&phases, Some(t), t + TimeDelta::days(5)), 0);
        assert_eq!(phase_at(&[], Some(t), t), 0);
        assert_eq!(window_at(&[], t, t), None);
    }

    #[test]
    fn truncates_sub_seconds() {
        let t = utc(2024, 1, 1, 0, 0, 5) + TimeDelta::milliseconds(999);
        assert_eq!(truncate_to_second(t), utc(2024, 1, 1, 0, 0, 5));
        let whole = utc(2024, 1, 1, 0, 0, 5);
        assert_eq!(truncate_to_second(whole), whole);
    }

    #[test]
    fn billing_periods_are_anchored_on_start() {
        let s = utc(2023, 1, 31, 14, 0, 0);
        assert_eq!(billing_period(s, 0), (s, utc(2023, 2, 28, 14, 0, 0)));
        assert_eq!(
            billing_period(s, 1),
            (utc(2023, 2, 28, 14, 0, 0), utc(2023, 3, 31, 14, 0, 0))
        );
        assert_eq!(
            billing_period(s, 2),
            (utc(2023, 3, 31, 14, 0, 0), utc(2023, 4, 30, 14, 0, 0))
        );
        assert_eq!(
            billing_period(s, 12),
            (utc(2024, 1, 31, 14, 0, 0), utc(2024, 2, 29, 14, 0, 0))
        );
    }

    #[test]
    fn period_containing_boundaries() {
        let s = utc(2023, 1, 31, 14, 0, 0);
        assert_eq!(period_containing(s, s), (0, s, utc(2023, 2, 28, 14, 0, 0)));
        // One second before the boundary is still period 0; the boundary starts period 1.
        let feb28 = utc(2023, 2, 28, 14, 0, 0);
        assert_eq!(period_containing(s, feb28 - TimeDelta::seconds(1)).0, 0);
        assert_eq!(
            period_containing(s, feb28),
            (1, feb28, utc(2023, 3, 31, 14, 0, 0))
        );
        // Same calendar day as a period start but earlier in the day: previous period.
        assert_eq!(period_containing(s, utc(2023, 3, 31, 13, 59, 59)).0, 1);
        assert_eq!(period_containing(s, utc(2023, 3, 31, 14, 0, 0)).0, 2);
        // Before start: period 0.
        assert_eq!(period_containing(s, s - TimeDelta::days(1)).0, 0);
    }

    #[test]
    fn period_containing_agrees_with_a_linear_scan() {
        let starts = [
            utc(2023, 1, 31, 23, 59, 59),
            utc(2024, 2, 29, 0, 0, 0),
            utc(2023, 8, 30, 12, 0, 0),
            utc(2022, 12, 1, 0, 0, 0),
        ];
        for s in starts {
            // Step through ~4 years in uneven strides to hit many day/time combinations.
            let mut at = s;
            let mut naive_k = 0u32;
            while at < s + TimeDelta::days(1500) {
                while billing_period(s, naive_k).1 <= at {
                    naive_k += 1;
                }
                let (k, from, to) = period_containing(s, at);
                assert_eq!(k, naive_k, "start {s} at {at}");
                assert!(from <= at && at < to, "start {s} at {at}");
                assert_eq!((from, to), billing_period(s, k));
                at += TimeDelta::hours(7) + TimeDelta::seconds(13);
            }
        }
    }
}
