//! The subscription lifecycle, in one room: a pure state machine ([`next`]: status ×
//! trigger → status + event) and the one writer ([`apply`], [`insert`]) that changes a
//! subscription's status, conditionally on the status it read, and records the event in
//! the same transaction. Nothing else writes a subscription's status.
//!
//! DESIGN's status line: `INCOMPLETE → ACTIVE/TRIALING`, `INCOMPLETE → INCOMPLETE_EXPIRED`,
//! `TRIALING → ACTIVE` (the trial ends), `ACTIVE → PAST_DUE → ACTIVE` or `CANCELED`,
//! cancel now or at period end.

use chrono::{DateTime, Utc};
use entity::subscription;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};
use uuid::Uuid;

use super::codes::{CloseReason, Code, EventKind, SubscriptionStatus};
use super::error::{BillingError, BillingResult};
use super::events::{NewEvent, record, record_many};
use super::phase::PhaseKind;
use super::schedule::{DUE_NOW, NEVER};

/// What happens when the last retry fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinalFailure {
    /// The subscription is canceled and the invoice marked uncollectible.
    Cancel,
    /// The invoice is marked uncollectible; the subscription stays past due.
    Unpaid,
}

/// What happened to a subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// Its first checkout was paid, or nothing was due and no card was needed.
    CheckoutPaid,
    /// Its checkout closed unpaid.
    CheckoutClosed(CloseReason),
    /// The phase in force changed (the trial ended).
    PhaseEntered,
    /// A renewal payment failed; retries are scheduled.
    RenewalFailed,
    /// An overdue invoice was paid.
    RenewalPaid,
    /// The last retry failed.
    DunningExhausted,
    /// Canceled by the customer or an admin, effective at once.
    CancelNow,
    /// A cancellation scheduled for the end of a period came due.
    CancellationDue,
}

/// What the lifecycle's choices depend on besides status and trigger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub final_failure: FinalFailure,
}

/// An arrow of the status line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Move {
    pub from: SubscriptionStatus,
    pub to: SubscriptionStatus,
    pub event: EventKind,
}

/// A trigger that has no arrow from the status it met.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidState {
    pub from: SubscriptionStatus,
    pub trigger: Trigger,
}

impl From<InvalidState> for BillingError {
    fn from(e: InvalidState) -> Self {
        BillingError::InvalidState(format!(
            "a {} subscription cannot take {:?}",
            e.from.code(),
            e.trigger
        ))
    }
}

/// The live status for the phase in force.
pub fn live_status(phase_now: PhaseKind) -> SubscriptionStatus {
    if phase_now == PhaseKind::Trial {
        SubscriptionStatus::Trialing
    } else {
        SubscriptionStatus::Active
    }
}

/// The state machine: pure, exhaustive, one line per arrow.
pub fn next(
    from: SubscriptionStatus,
    trigger: Trigger,
    phase_now: PhaseKind,
    policy: &Policy,
) -> Result<Move, InvalidState> {
    use EventKind as E;
    use SubscriptionStatus::*;
    use Trigger::*;
    let to = |to, event| Ok(Move { from, to, event });
    match (from, trigger) {
        (Incomplete, CheckoutPaid) => to(live_status(phase_now), E::SubscriptionActivated),
        (Incomplete, CheckoutClosed(_)) => to(IncompleteExpired, E::SubscriptionExpired),
        (Trialing, PhaseEntered) if phase_now != PhaseKind::Trial => {
            to(Active, E::SubscriptionActivated)
        }
        (Active | Trialing, RenewalFailed) => to(PastDue, E::SubscriptionPastDue),
        (PastDue, RenewalPaid) => to(Active, E::SubscriptionActivated),
        (Active | Trialing | PastDue, DunningExhausted)
            if policy.final_failure == FinalFailure::Cancel =>
        {
            to(Canceled, E::SubscriptionCanceled)
        }
        (Active | Trialing, DunningExhausted) => to(PastDue, E::SubscriptionPastDue),
        (Incomplete | Active | Trialing | PastDue, CancelNow) => {
            to(Canceled, E::SubscriptionCanceled)
        }
        (Active | Trialing | PastDue, CancellationDue) => to(Canceled, E::SubscriptionCanceled),
        _ => Err(InvalidState { from, trigger }),
    }
}

/// The subscription as the writer needs it: which row, whose, and the status it was read in.
#[derive(Clone, Copy, Debug)]
pub struct Current {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub status: SubscriptionStatus,
}

impl TryFrom<&subscription::Model> for Current {
    type Error = sea_orm::DbErr;
    fn try_from(m: &subscription::Model) -> Result<Self, Self::Error> {
        Ok(Current {
            id: m.id,
            customer_id: m.customer_id,
            status: super::codes::parse(&m.status)?,
        })
    }
}

/// Writes a new subscription, `INCOMPLETE` until its first payment (or [`Trigger::CheckoutPaid`]
/// at once when nothing is due), and records `SUBSCRIPTION_CREATED`.
pub async fn insert(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    mut row: subscription::ActiveModel,
    data: Value,
) -> BillingResult<Current> {
    use sea_orm::{ActiveModelTrait, ActiveValue::Set};
    row.status = Set(SubscriptionStatus::Incomplete.code().to_owned());
    row.started_at = Set(None);
    row.created_at = Set(now);
    row.updated_at = Set(now);
    let m = row.insert(db).await.map_err(|e| match e.sql_err() {
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => BillingError::AlreadySubscribed,
        _ => BillingError::Db(e),
    })?;
    record(
        db,
        now,
        m.customer_id,
        Some(m.id),
        EventKind::SubscriptionCreated,
        data,
    )
    .await?;
    Ok(Current::try_from(&m)?)
}

/// The one writer: moves one subscription along its arrow for `trigger`, conditionally on the status it
/// was read with, and records the arrow's event in the caller's transaction. `None` when
/// its status changed meanwhile (someone else moved it); an error when the status has no
/// arrow for the trigger.
pub async fn apply(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    sub: Current,
    trigger: Trigger,
    phase_now: PhaseKind,
    policy: &Policy,
    data: Value,
) -> BillingResult<Option<Move>> {
    let moved = apply_many(db, now, trigger, policy, vec![(sub, phase_now, data)]).await?;
    Ok(moved.into_iter().next().map(|(_, m)| m))
}

/// [`apply`] for many subscriptions met by the same trigger (the billing clock's batch):
/// one conditional update per arrow and their events in one insert. Returns the
/// subscriptions moved, with their arrows; those whose status changed meanwhile are left
/// out.
pub async fn apply_many(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    trigger: Trigger,
    policy: &Policy,
    subs: Vec<(Current, PhaseKind, Value)>,
) -> BillingResult<Vec<(Uuid, Move)>> {
    // Arrows first: a status without one refuses the whole call, before anything is written.
    let mut arrows: Vec<(Move, Vec<(Current, Value)>)> = Vec::new();
    for (sub, phase_now, data) in subs {
        let m = next(sub.status, trigger, phase_now, policy)?;
        match arrows.iter_mut().find(|(a, _)| *a == m) {
            Some((_, group)) => group.push((sub, data)),
            None => arrows.push((m, vec![(sub, data)])),
        }
    }
    let mut moved = Vec::new();
    let mut events = Vec::new();
    for (m, group) in arrows {
        let ids: Vec<Uuid> = group.iter().map(|(s, _)| s.id).collect();
        let done: std::collections::HashSet<Uuid> = arrow_update(trigger, m.to, now)
            .filter(subscription::Column::Id.is_in(ids))
            .filter(subscription::Column::Status.eq(m.from.code()))
            .exec_with_returning(db)
            .await?
            .into_iter()
            .map(|s| s.id)
            .collect();
        for (sub, data) in group.into_iter().filter(|(s, _)| done.contains(&s.id)) {
            let mut payload = json!({ "from": m.from.code(), "status": m.to.code() });
            if let (Value::Object(p), Value::Object(extra)) = (&mut payload, data) {
                p.extend(extra);
            }
            events.push(NewEvent {
                customer_id: sub.customer_id,
                subscription_id: Some(sub.id),
                kind: m.event,
                data: payload,
            });
            tracing::info!(subscription = %sub.id, customer = %sub.customer_id, from = m.from.code(),
                to = m.to.code(), trigger = ?trigger, "subscription status changed");
            moved.push((sub.id, m));
        }
    }
    record_many(db, now, events).await?;
    Ok(moved)
}

/// The update an arrow makes: the status, and the columns that go with it.
fn arrow_update(
    trigger: Trigger,
    to: SubscriptionStatus,
    now: DateTime<Utc>,
) -> sea_orm::UpdateMany<subscription::Entity> {
    let update = subscription::Entity::update_many()
        .col_expr(subscription::Column::Status, Expr::value(to.code()))
        .col_expr(subscription::Column::UpdatedAt, Expr::value(now));
    match (trigger, to) {
        // Periods are anchored on the instant it went live.
        (Trigger::CheckoutPaid, _) => update
            .col_expr(subscription::Column::StartedAt, Expr::value(now))
            .col_expr(subscription::Column::NextBillingAt, Expr::value(DUE_NOW)),
        // Never live: nothing to bill.
        (Trigger::CheckoutClosed(_), _) => {
            update.col_expr(subscription::Column::NextBillingAt, Expr::value(NEVER))
        }
        // Its final invoice, up to now, is issued at the billing clock's next tick.
        (Trigger::CancelNow, _) => update
            .col_expr(subscription::Column::CanceledAt, Expr::value(now))
            .col_expr(subscription::Column::CancelAtPeriodEnd, Expr::value(false))
            .col_expr(subscription::Column::NextBillingAt, Expr::value(DUE_NOW)),
        (Trigger::CancellationDue, _) => {
            update.col_expr(subscription::Column::NextBillingAt, Expr::value(DUE_NOW))
        }
        // Ended for non-payment: no final invoice beyond the unpaid one.
        (Trigger::DunningExhausted, SubscriptionStatus::Canceled) => update
            .col_expr(subscription::Column::CanceledAt, Expr::value(now))
            .col_expr(subscription::Column::NextBillingAt, Expr::value(NEVER)),
        _ => update,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use EventKind as E;
    use SubscriptionStatus::*;
    use Trigger::*;

    const CANCEL: Policy = Policy {
        final_failure: FinalFailure::Cancel,
    };
    const UNPAID: Policy = Policy {
        final_failure: FinalFailure::Unpaid,
    };

    fn arrow(
        from: SubscriptionStatus,
        t: Trigger,
        phase: PhaseKind,
        p: &Policy,
    ) -> Option<(SubscriptionStatus, EventKind)> {
        next(from, t, phase, p).ok().map(|m| (m.to, m.event))
    }

    #[test]
    fn a_paid_checkout_goes_live_in_the_phase_in_force() {
        assert_eq!(
            arrow(Incomplete, CheckoutPaid, PhaseKind::Final, &CANCEL),
            Some((Active, E::SubscriptionActivated))
        );
        assert_eq!(
            arrow(Incomplete, CheckoutPaid, PhaseKind::Discount, &CANCEL),
            Some((Active, E::SubscriptionActivated))
        );
        assert_eq!(
            arrow(Incomplete, CheckoutPaid, PhaseKind::Trial, &CANCEL),
            Some((Trialing, E::SubscriptionActivated))
        );
    }

    #[test]
    fn a_closed_checkout_expires_the_unpaid_subscription_whatever_the_reason() {
        for r in [
            CloseReason::Expired,
            CloseReason::Abandoned,
            CloseReason::Replaced,
            CloseReason::Canceled,
        ] {
            assert_eq!(
                arrow(Incomplete, CheckoutClosed(r), PhaseKind::Final, &CANCEL),
                Some((IncompleteExpired, E::SubscriptionExpired))
            );
        }
    }

    #[test]
    fn the_end_of_the_trial_makes_it_active() {
        assert_eq!(
            arrow(Trialing, PhaseEntered, PhaseKind::Discount, &CANCEL),
            Some((Active, E::SubscriptionActivated))
        );
        assert_eq!(
            arrow(Trialing, PhaseEntered, PhaseKind::Trial, &CANCEL),
            None
        );
    }

    #[test]
    fn a_failed_renewal_is_past_due_and_a_paid_one_active_again() {
        for from in [Active, Trialing] {
            assert_eq!(
                arrow(from, RenewalFailed, PhaseKind::Final, &CANCEL),
                Some((PastDue, E::SubscriptionPastDue))
            );
        }
        assert_eq!(
            arrow(PastDue, RenewalPaid, PhaseKind::Final, &CANCEL),
            Some((Active, E::SubscriptionActivated))
        );
    }

    #[test]
    fn exhausted_dunning_cancels_or_stays_past_due_by_policy() {
        for from in [Active, Trialing, PastDue] {
            assert_eq!(
                arrow(from, DunningExhausted, PhaseKind::Final, &CANCEL),
                Some((Canceled, E::SubscriptionCanceled))
            );
        }
        assert_eq!(
            arrow(Active, DunningExhausted, PhaseKind::Final, &UNPAID),
            Some((PastDue, E::SubscriptionPastDue))
        );
        assert_eq!(
            arrow(PastDue, DunningExhausted, PhaseKind::Final, &UNPAID),
            None
        );
    }

    #[test]
    fn cancel_now_and_at_period_end() {
        for from in [Incomplete, Active, Trialing, PastDue] {
            assert_eq!(
                arrow(from, CancelNow, PhaseKind::Final, &CANCEL),
                Some((Canceled, E::SubscriptionCanceled))
            );
        }
        for from in [Active, Trialing, PastDue] {
            assert_eq!(
                arrow(from, CancellationDue, PhaseKind::Final, &CANCEL),
                Some((Canceled, E::SubscriptionCanceled))
            );
        }
        assert_eq!(
            arrow(Incomplete, CancellationDue, PhaseKind::Final, &CANCEL),
            None
        );
    }

    #[test]
    fn ended_subscriptions_take_no_trigger_and_nothing_skips_the_payment() {
        let all = [
            CheckoutPaid,
            CheckoutClosed(CloseReason::Expired),
            PhaseEntered,
            RenewalFailed,
            RenewalPaid,
            DunningExhausted,
            CancelNow,
            CancellationDue,
        ];
        for from in [IncompleteExpired, Canceled] {
            for t in all {
                assert_eq!(
                    arrow(from, t, PhaseKind::Final, &CANCEL),
                    None,
                    "{from:?} {t:?}"
                );
            }
        }
        // Only a paid checkout leaves INCOMPLETE for a live status.
        for t in all {
            let to = arrow(Incomplete, t, PhaseKind::Final, &CANCEL).map(|(s, _)| s);
            if matches!(to, Some(Active | Trialing | PastDue)) {
                assert_eq!(t, CheckoutPaid);
            }
        }
        // A live subscription is never paid for again by a checkout, nor closed like one.
        for from in [Active, Trialing, PastDue] {
            assert_eq!(arrow(from, CheckoutPaid, PhaseKind::Final, &CANCEL), None);
            assert_eq!(
                arrow(
                    from,
                    CheckoutClosed(CloseReason::Expired),
                    PhaseKind::Final,
                    &CANCEL
                ),
                None
            );
        }
    }
}
