use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The phases each subscription has entered: the primary key makes "one PHASE_CHANGED per
/// crossing" hold even with several server processes running the clock.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(SubscriptionPhase::Table)
                    .col(uuid(SubscriptionPhase::SubscriptionId))
                    .col(string(SubscriptionPhase::Phase))
                    .col(timestamp_with_time_zone(SubscriptionPhase::EnteredAt))
                    .primary_key(
                        Index::create()
                            .col(SubscriptionPhase::SubscriptionId)
                            .col(SubscriptionPhase::Phase),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(SubscriptionPhase::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum SubscriptionPhase {
    Table,
    SubscriptionId,
    Phase,
    EnteredAt,
}
