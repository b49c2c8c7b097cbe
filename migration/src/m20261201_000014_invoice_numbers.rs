use sea_orm_migration::sea_orm::{ConnectionTrait, DatabaseBackend};
use sea_orm_migration::{prelude::*, schema::*};

/// Gapless invoice numbers (`INV-000042`): a column on the invoice, unique, and one counter
/// row per series that the issuing transaction increments (its row lock orders concurrent
/// issuers; a rolled-back transaction gives its number back). Invoices issued before this
/// step are numbered in (created_at, id) order.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Invoice::Table)
                    .add_column(string_null(Invoice::Number))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_invoice_number")
                    .table(Invoice::Table)
                    .col(Invoice::Number)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(DocumentNumber::Table)
                    .col(string(DocumentNumber::Series).primary_key())
                    .col(big_integer(DocumentNumber::Last))
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        let padded = match manager.get_database_backend() {
            DatabaseBackend::Postgres => {
                "CASE WHEN r.n < 1000000 THEN lpad(r.n::text, 6, '0') ELSE r.n::text END"
            }
            _ => "printf('%06d', r.n)",
        };
        db.execute_unprepared(&format!(
            "UPDATE invoice SET number = 'INV-' || {padded} \
             FROM (SELECT id, row_number() OVER (ORDER BY created_at, id) AS n FROM invoice) AS r \
             WHERE invoice.id = r.id"
        ))
        .await?;
        db.execute_unprepared(
            "INSERT INTO document_number (series, last) SELECT 'invoice', COUNT(*) FROM invoice",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(DocumentNumber::Table).to_owned())
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("ux_invoice_number")
                    .table(Invoice::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Invoice::Table)
                    .drop_column(Invoice::Number)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Invoice {
    Table,
    Number,
}

#[derive(DeriveIden)]
enum DocumentNumber {
    Table,
    Series,
    Last,
}
