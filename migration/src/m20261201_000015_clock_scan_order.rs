use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The billing clock reads what is due in batches, each after the last one read. Ordered
/// by id, each batch sorted every due row (the index was on status and due time): a run
/// over N due rows did N²/500 row reads. These indexes end with the id, so the clock walks
/// them in (due time, id) order, one range read per batch. They replace the two indexes
/// they extend.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name("subscription_clock_scan_idx")
                    .table(Subscription::Table)
                    .col(Subscription::Status)
                    .col(Subscription::NextBillingAt)
                    .col(Subscription::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("invoice_collection_scan_idx")
                    .table(Invoice::Table)
                    .col(Invoice::Status)
                    .col(Invoice::NextAttemptAt)
                    .col(Invoice::Id)
                    .to_owned(),
            )
            .await?;
        for (name, table) in [
            (
                "subscription_billing_due_idx",
                Subscription::Table.into_iden(),
            ),
            ("invoice_collection_idx", Invoice::Table.into_iden()),
        ] {
            manager
                .drop_index(Index::drop().name(name).table(table).to_owned())
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name("subscription_billing_due_idx")
                    .table(Subscription::Table)
                    .col(Subscription::Status)
                    .col(Subscription::NextBillingAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("invoice_collection_idx")
                    .table(Invoice::Table)
                    .col(Invoice::Status)
                    .col(Invoice::NextAttemptAt)
                    .to_owned(),
            )
            .await?;
        for (name, table) in [
            (
                "subscription_clock_scan_idx",
                Subscription::Table.into_iden(),
            ),
            ("invoice_collection_scan_idx", Invoice::Table.into_iden()),
        ] {
            manager
                .drop_index(Index::drop().name(name).table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Subscription {
    Table,
    Id,
    Status,
    NextBillingAt,
}

#[derive(DeriveIden)]
enum Invoice {
    Table,
    Id,
    Status,
    NextAttemptAt,
}
