//! Gapless invoice numbers: one counter row per series, incremented inside the issuing
//! transaction. The row lock it takes orders concurrent issuers (on PostgreSQL across
//! processes too; on SQLite the database has one writer anyway), and a transaction that
//! rolls back gives its number back, so the numbers stay 1, 2, 3, … without holes.

use sea_orm::{ConnectionTrait, DbErr, Statement};

use crate::billing::error::BillingResult;

/// `INV-000042`; past 999,999 the number simply grows wider.
pub fn format_number(n: i64) -> String {
    format!("INV-{n:06}")
}

/// The next `n` invoice numbers, in order, in one move of the counter (nothing for none).
/// Call it in the transaction that inserts the invoices: the numbers are taken only if
/// that transaction commits.
pub(crate) async fn next_numbers(
    txn: &impl ConnectionTrait,
    n: usize,
) -> BillingResult<Vec<String>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let n = i64::try_from(n).unwrap_or(i64::MAX);
    let row = txn
        .query_one_raw(Statement::from_sql_and_values(
            txn.get_database_backend(),
            match txn.get_database_backend() {
                sea_orm::DatabaseBackend::Postgres => {
                    "UPDATE document_number SET last = last + $1 WHERE series = 'invoice' RETURNING last"
                }
                _ => "UPDATE document_number SET last = last + ? WHERE series = 'invoice' RETURNING last",
            },
            [n.into()],
        ))
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("the invoice number counter".into()))?;
    let last: i64 = row.try_get("", "last")?;
    Ok((last - n + 1..=last).map(format_number).collect())
}

#[cfg(test)]
mod tests {
    use super::format_number;

    #[test]
    fn numbers_are_padded_to_six_digits() {
        assert_eq!(format_number(42), "INV-000042");
        assert_eq!(format_number(999_999), "INV-999999");
        assert_eq!(format_number(1_000_000), "INV-1000000");
    }
}
