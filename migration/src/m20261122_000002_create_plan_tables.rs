use sea_orm_migration::{prelude::*, schema::*};

use crate::m20261122_000001_create_product_table::Product;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Setting::Table)
                    .col(string(Setting::Key).primary_key())
                    .col(text(Setting::Value))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Plan::Table)
                    .col(uuid(Plan::Id).primary_key())
                    .col(string(Plan::Name))
                    .col(text(Plan::Description))
                    .col(boolean(Plan::Public))
                    .col(string(Plan::TierMode))
                    .col(timestamp_with_time_zone_null(Plan::ArchivedAt))
                    .col(timestamp_with_time_zone(Plan::CreatedAt))
                    .col(timestamp_with_time_zone(Plan::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(PlanLimit::Table)
                    .col(uuid(PlanLimit::Id).primary_key())
                    .col(uuid(PlanLimit::PlanId))
                    .col(string(PlanLimit::Metric))
                    .col(big_integer(PlanLimit::MaxValue))
                    .col(string(PlanLimit::Kind))
                    .foreign_key(
                        ForeignKey::create()
                            .from(PlanLimit::Table, PlanLimit::PlanId)
                            .to(Plan::Table, Plan::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("plan_limit_metric_uniq")
                    .table(PlanLimit::Table)
                    .col(PlanLimit::PlanId)
                    .col(PlanLimit::Metric)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Phase::Table)
                    .col(uuid(Phase::Id).primary_key())
                    .col(uuid(Phase::PlanId))
                    .col(string(Phase::Kind))
                    .col(integer_null(Phase::DurationCount))
                    .col(string_null(Phase::DurationUnit))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Phase::Table, Phase::PlanId)
                            .to(Plan::Table, Plan::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("phase_kind_uniq")
                    .table(Phase::Table)
                    .col(Phase::PlanId)
                    .col(Phase::Kind)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Price::Table)
                    .col(uuid(Price::Id).primary_key())
                    .col(uuid(Price::PhaseId))
                    .col(uuid(Price::ProductId))
                    .col(string(Price::Currency))
                    .col(string_null(Price::Region))
                    .col(text_null(Price::MaxQuantity))
                    .col(text(Price::UnitAmount))
                    .col(string(Price::Interval))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Price::Table, Price::PhaseId)
                            .to(Phase::Table, Phase::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(Price::Table, Price::ProductId)
                            .to(Product::Table, Product::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("price_phase_idx")
                    .table(Price::Table)
                    .col(Price::PhaseId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(PlanOffer::Table)
                    .col(uuid(PlanOffer::PlanId))
                    .col(uuid(PlanOffer::CustomerId))
                    .primary_key(
                        Index::create()
                            .col(PlanOffer::PlanId)
                            .col(PlanOffer::CustomerId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(PlanOffer::Table, PlanOffer::PlanId)
                            .to(Plan::Table, Plan::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            PlanOffer::Table.into_iden(),
            Price::Table.into_iden(),
            Phase::Table.into_iden(),
            PlanLimit::Table.into_iden(),
            Plan::Table.into_iden(),
            Setting::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Setting {
    Table,
    Key,
    Value,
}

#[derive(DeriveIden)]
pub enum Plan {
    Table,
    Id,
    Name,
    Description,
    Public,
    TierMode,
    ArchivedAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum PlanLimit {
    Table,
    Id,
    PlanId,
    Metric,
    MaxValue,
    Kind,
}

#[derive(DeriveIden)]
enum Phase {
    Table,
    Id,
    PlanId,
    Kind,
    DurationCount,
    DurationUnit,
}

#[derive(DeriveIden)]
enum Price {
    Table,
    Id,
    PhaseId,
    ProductId,
    Currency,
    Region,
    MaxQuantity,
    UnitAmount,
    Interval,
}

#[derive(DeriveIden)]
enum PlanOffer {
    Table,
    PlanId,
    CustomerId,
}
