use sea_orm_migration::{prelude::*, schema::*};

use crate::m20261122_000005_create_subscription_tables::Subscription;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(UsageRecord::Table)
                    .col(uuid(UsageRecord::Id).primary_key())
                    .col(uuid(UsageRecord::SubscriptionId))
                    .col(uuid(UsageRecord::CustomerId))
                    .col(uuid(UsageRecord::ProductId))
                    .col(text(UsageRecord::Quantity))
                    .col(text_null(UsageRecord::Reading))
                    .col(timestamp_with_time_zone(UsageRecord::At))
                    .col(string_null(UsageRecord::IdempotencyKey))
                    .col(timestamp_with_time_zone(UsageRecord::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(UsageRecord::Table, UsageRecord::SubscriptionId)
                            .to(Subscription::Table, Subscription::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("usage_record_key_uniq")
                    .table(UsageRecord::Table)
                    .col(UsageRecord::SubscriptionId)
                    .col(UsageRecord::IdempotencyKey)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("usage_record_time_idx")
                    .table(UsageRecord::Table)
                    .col(UsageRecord::SubscriptionId)
                    .col(UsageRecord::ProductId)
                    .col(UsageRecord::At)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(LimitUsage::Table)
                    .col(uuid(LimitUsage::CustomerId))
                    .col(string(LimitUsage::Metric))
                    .col(big_integer(LimitUsage::Used))
                    .col(timestamp_with_time_zone_null(LimitUsage::PeriodStart))
                    .primary_key(
                        Index::create()
                            .col(LimitUsage::CustomerId)
                            .col(LimitUsage::Metric),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Invoice::Table)
                    .col(uuid(Invoice::Id).primary_key())
                    .col(uuid(Invoice::SubscriptionId))
                    .col(uuid(Invoice::CustomerId))
                    .col(integer(Invoice::PeriodIndex))
                    .col(timestamp_with_time_zone(Invoice::PeriodStart))
                    .col(timestamp_with_time_zone(Invoice::PeriodEnd))
                    .col(string(Invoice::Currency))
                    .col(text(Invoice::Total))
                    .col(string(Invoice::Status))
                    .col(integer(Invoice::Attempts))
                    .col(timestamp_with_time_zone_null(Invoice::NextAttemptAt))
                    .col(string_null(Invoice::PaymentRef))
                    .col(timestamp_with_time_zone(Invoice::CreatedAt))
                    .col(timestamp_with_time_zone(Invoice::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Invoice::Table, Invoice::SubscriptionId)
                            .to(Subscription::Table, Subscription::Id),
                    )
                    .to_owned(),
            )
            .await?;
        // One invoice per subscription and period, whichever process's clock gets there first.
        manager
            .create_index(
                Index::create()
                    .name("invoice_period_uniq")
                    .table(Invoice::Table)
                    .col(Invoice::SubscriptionId)
                    .col(Invoice::PeriodIndex)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("invoice_customer_idx")
                    .table(Invoice::Table)
                    .col(Invoice::CustomerId)
                    .col(Invoice::PeriodStart)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(InvoiceLine::Table)
                    .col(uuid(InvoiceLine::Id).primary_key())
                    .col(uuid(InvoiceLine::InvoiceId))
                    .col(integer(InvoiceLine::Position))
                    .col(string(InvoiceLine::Kind))
                    .col(uuid(InvoiceLine::ProductId))
                    .col(string(InvoiceLine::Phase))
                    .col(timestamp_with_time_zone(InvoiceLine::Start))
                    .col(timestamp_with_time_zone(InvoiceLine::End))
                    .col(text(InvoiceLine::Quantity))
                    .col(text(InvoiceLine::UnitAmount))
                    .col(text(InvoiceLine::Amount))
                    .col(boolean(InvoiceLine::Matched))
                    .foreign_key(
                        ForeignKey::create()
                            .from(InvoiceLine::Table, InvoiceLine::InvoiceId)
                            .to(Invoice::Table, Invoice::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("invoice_line_invoice_idx")
                    .table(InvoiceLine::Table)
                    .col(InvoiceLine::InvoiceId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            InvoiceLine::Table.into_iden(),
            Invoice::Table.into_iden(),
            LimitUsage::Table.into_iden(),
            UsageRecord::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum UsageRecord {
    Table,
    Id,
    SubscriptionId,
    CustomerId,
    ProductId,
    Quantity,
    Reading,
    At,
    IdempotencyKey,
    CreatedAt,
}

#[derive(DeriveIden)]
enum LimitUsage {
    Table,
    CustomerId,
    Metric,
    Used,
    PeriodStart,
}

#[derive(DeriveIden)]
enum Invoice {
    Table,
    Id,
    SubscriptionId,
    CustomerId,
    PeriodIndex,
    PeriodStart,
    PeriodEnd,
    Currency,
    Total,
    Status,
    Attempts,
    NextAttemptAt,
    PaymentRef,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum InvoiceLine {
    Table,
    Id,
    InvoiceId,
    Position,
    Kind,
    ProductId,
    Phase,
    Start,
    End,
    Quantity,
    UnitAmount,
    Amount,
    Matched,
}
