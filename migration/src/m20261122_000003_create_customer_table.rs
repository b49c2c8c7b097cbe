use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Customer::Table)
                    .col(uuid(Customer::Id).primary_key())
                    .col(string_uniq(Customer::ExternalId))
                    .col(string(Customer::Name))
                    .col(string(Customer::Email))
                    .col(string_null(Customer::Phone))
                    .col(string_null(Customer::AddressLine1))
                    .col(string_null(Customer::AddressLine2))
                    .col(string_null(Customer::City))
                    .col(string_null(Customer::PostalCode))
                    .col(string_null(Customer::State))
                    .col(string_null(Customer::Country))
                    .col(string(Customer::Currency))
                    .col(string_null(Customer::Region))
                    .col(timestamp_with_time_zone_null(Customer::BillingStart))
                    .col(text(Customer::SearchText))
                    .col(timestamp_with_time_zone(Customer::CreatedAt))
                    .col(timestamp_with_time_zone(Customer::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        // Connection pages walk customers in (created_at, id) order.
        manager
            .create_index(
                Index::create()
                    .name("customer_page_idx")
                    .table(Customer::Table)
                    .col(Customer::CreatedAt)
                    .col(Customer::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Customer::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
pub enum Customer {
    Table,
    Id,
    ExternalId,
    Name,
    Email,
    Phone,
    AddressLine1,
    AddressLine2,
    City,
    PostalCode,
    State,
    Country,
    Currency,
    Region,
    BillingStart,
    SearchText,
    CreatedAt,
    UpdatedAt,
}
