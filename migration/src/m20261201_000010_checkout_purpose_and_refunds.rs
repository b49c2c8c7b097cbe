use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The money path: a checkout may buy a plan change (the plan it buys), and money that
/// arrived for a closed checkout is given back through a refund that is tracked until the
/// provider confirms it.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Checkout::Table)
                    .add_column(uuid_null(Checkout::PlanId))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Refund::Table)
                    .col(uuid(Refund::Id).primary_key())
                    .col(uuid(Refund::CustomerId))
                    .col(uuid_null(Refund::SubscriptionId))
                    .col(uuid_null(Refund::CheckoutId))
                    .col(string(Refund::Provider))
                    .col(string(Refund::PaymentRef))
                    .col(text(Refund::Amount))
                    .col(string(Refund::Currency))
                    .col(text(Refund::Reason))
                    .col(string(Refund::Status))
                    .col(string_null(Refund::ProviderRef))
                    .col(text_null(Refund::FailureReason))
                    .col(integer(Refund::Attempts))
                    .col(timestamp_with_time_zone_null(Refund::NextAttemptAt))
                    .col(timestamp_with_time_zone(Refund::CreatedAt))
                    .col(timestamp_with_time_zone(Refund::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        // One refund per payment that must be given back, whoever notices it first.
        manager
            .create_index(
                Index::create()
                    .name("refund_payment_uniq")
                    .table(Refund::Table)
                    .col(Refund::Provider)
                    .col(Refund::PaymentRef)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("refund_due_idx")
                    .table(Refund::Table)
                    .col(Refund::Status)
                    .col(Refund::NextAttemptAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Refund::Table).to_owned())
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Checkout::Table)
                    .drop_column(Checkout::PlanId)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Checkout {
    Table,
    PlanId,
}

#[derive(DeriveIden)]
enum Refund {
    Table,
    Id,
    CustomerId,
    SubscriptionId,
    CheckoutId,
    Provider,
    PaymentRef,
    Amount,
    Currency,
    Reason,
    Status,
    ProviderRef,
    FailureReason,
    Attempts,
    NextAttemptAt,
    CreatedAt,
    UpdatedAt,
}
