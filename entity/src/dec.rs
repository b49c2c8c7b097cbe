//! An exact decimal column stored as TEXT.
//!
//! SeaORM reads SQLite's DECIMAL through `f64`, which loses digits; a canonical string
//! round-trips exactly through SQLite and PostgreSQL alike.

use std::str::FromStr;

use rust_decimal::Decimal;
use sea_orm::sea_query::{ArrayType, ColumnType, Nullable, Value, ValueType, ValueTypeErr};
use sea_orm::{ColIdx, DbErr, QueryResult, TryGetError, TryGetable};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dec(pub Decimal);

impl From<Decimal> for Dec {
    fn from(d: Decimal) -> Self {
        Dec(d)
    }
}

impl From<Dec> for Decimal {
    fn from(d: Dec) -> Self {
        d.0
    }
}

impl From<Dec> for Value {
    fn from(d: Dec) -> Self {
        Value::String(Some(d.0.to_string()))
    }
}

impl TryGetable for Dec {
    fn try_get_by<I: ColIdx>(res: &QueryResult, index: I) -> Result<Self, TryGetError> {
        let text = String::try_get_by(res, index)?;
        Decimal::from_str(&text)
            .map(Dec)
            .map_err(|e| TryGetError::DbErr(DbErr::Type(format!("bad decimal {text:?}: {e}"))))
    }
}

impl ValueType for Dec {
    fn try_from(v: Value) -> Result<Self, ValueTypeErr> {
        match v {
            Value::String(Some(s)) => Decimal::from_str(&s).map(Dec).map_err(|_| ValueTypeErr),
            _ => Err(ValueTypeErr),
        }
    }

    fn type_name() -> String {
        "Dec".to_owned()
    }

    fn array_type() -> ArrayType {
        ArrayType::String
    }

    fn column_type() -> ColumnType {
        ColumnType::Text
    }
}

impl Nullable for Dec {
    fn null() -> Value {
        Value::String(None)
    }
}
