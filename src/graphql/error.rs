//! Domain errors become GraphQL errors with a stable `extensions.code`.

use async_graphql::{Error, ErrorExtensions, ID};
use uuid::Uuid;

use crate::billing::BillingError;

impl ErrorExtensions for BillingError {
    fn extend(&self) -> Error {
        let message = match self {
            // Internal details stay in the log.
            BillingError::Db(e) => {
                tracing::error!(error = %e, "database error");
                "internal error".to_owned()
            }
            other => other.to_string(),
        };
        Error::new(message).extend_with(|_, ext| ext.set("code", self.code()))
    }
}

pub trait GqlResult<T> {
    /// Converts a domain result, keeping the error's code.
    fn gql(self) -> async_graphql::Result<T>;
}

impl<T> GqlResult<T> for Result<T, BillingError> {
    fn gql(self) -> async_graphql::Result<T> {
        self.map_err(|e| e.extend())
    }
}

/// Parses an `ID` argument as a UUID.
pub fn uuid(field: &str, id: &ID) -> async_graphql::Result<Uuid> {
    Uuid::parse_str(id.as_str()).map_err(|_| {
        BillingError::invalid(format!("{field}: {:?} is not a valid id", id.as_str())).extend()
    })
}
