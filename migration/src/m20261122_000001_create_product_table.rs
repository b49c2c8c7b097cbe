use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Product::Table)
                    .col(uuid(Product::Id).primary_key())
                    .col(string(Product::Name))
                    .col(string_null(Product::ExternalId).unique_key())
                    .col(string(Product::Kind))
                    .col(string_null(Product::Resource))
                    .col(text(Product::Unit))
                    .col(string(Product::UnitType))
                    .col(boolean(Product::AggregatedUsage))
                    .col(timestamp_with_time_zone_null(Product::ArchivedAt))
                    .col(timestamp_with_time_zone(Product::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Package::Table)
                    .col(uuid(Package::Id).primary_key())
                    .col(uuid(Package::ProductId))
                    .col(string(Package::Name))
                    .col(text(Package::Cpu))
                    .col(big_integer(Package::MemoryMb))
                    .col(text(Package::IncludedStorageGb))
                    .col(text(Package::IncludedBandwidthGb))
                    .col(text(Package::IncludedBackupStorageGb))
                    .col(timestamp_with_time_zone_null(Package::ArchivedAt))
                    .col(timestamp_with_time_zone(Package::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Package::Table, Package::ProductId)
                            .to(Product::Table, Product::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("package_product_idx")
                    .table(Package::Table)
                    .col(Package::ProductId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Package::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Product::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
pub enum Product {
    Table,
    Id,
    Name,
    ExternalId,
    Kind,
    Resource,
    Unit,
    UnitType,
    AggregatedUsage,
    ArchivedAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Package {
    Table,
    Id,
    ProductId,
    Name,
    Cpu,
    MemoryMb,
    IncludedStorageGb,
    IncludedBandwidthGb,
    IncludedBackupStorageGb,
    ArchivedAt,
    CreatedAt,
}
