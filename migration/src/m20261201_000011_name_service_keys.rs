use sea_orm_migration::{prelude::*, schema::*};

/// Service keys carry a name (the project backend they were issued to).
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(ApiKey::Table)
                    .add_column(string_null(ApiKey::Name))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(ApiKey::Table)
                    .drop_column(ApiKey::Name)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum ApiKey {
    Table,
    Name,
}
