use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The sandbox provider keeps its sessions, saved cards, charges and refunds in the server's
/// database (they lived in process memory: a restart or another replica answered 404).
/// One table of JSON documents by kind and id; `version` makes every change a
/// compare-and-set.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(SandboxRecord::Table)
                    .col(string(SandboxRecord::Kind))
                    .col(string(SandboxRecord::Id))
                    .col(text(SandboxRecord::Body))
                    .col(big_integer(SandboxRecord::Version))
                    .primary_key(
                        Index::create()
                            .col(SandboxRecord::Kind)
                            .col(SandboxRecord::Id),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(SandboxRecord::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum SandboxRecord {
    Table,
    Kind,
    Id,
    Body,
    Version,
}
