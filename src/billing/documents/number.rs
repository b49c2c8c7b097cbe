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

/// The next invoice number. Call it in the transaction that inserts the invoice: the number
/// is taken only if that transaction commits.
pub(crate) async fn next_number(txn: &impl ConnectionTrait) -> BillingResult<String> {
    let row = txn
        .query_one_raw(Statement::from_string(
            txn.get_database_backend(),
            "UPDATE document_number SET last = last + 1 WHERE series = 'invoice' RETURNING last",
        ))
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("the invoice number counter".into()))?;
    let n: i64 = row.try_get("", "last")?;
    Ok(format_number(n))
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
