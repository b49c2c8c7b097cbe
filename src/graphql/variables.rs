//! The one rule of a document's validation that depends on the request: whether each
//! variable's value fits the type the operation declares for it. A document kept by
//! [`super::cost::CheckedDocuments`] is validated in full once; each later request with the
//! same text has only its variables checked here, before anything runs.
//!
//! The library's own check (`ArgumentsOfCorrectType`, on the values a variable takes where
//! it is used) is not public; this one follows it (the library's `is_valid_input_value`)
//! on the variable's declared type, which the document's validation already found to fit
//! every place the variable is used.

use std::collections::HashSet;

use async_graphql::parser::types::{OperationDefinition, VariableDefinition};
use async_graphql::registry::{MetaType, MetaTypeName, Registry};
use async_graphql::{Positioned, ServerError, Value, Variables};

/// The operation's variables that the request gives a value, each against its declared type.
pub fn check(
    registry: &Registry,
    operation: &OperationDefinition,
    variables: &Variables,
) -> Result<(), ServerError> {
    operation
        .variable_definitions
        .iter()
        .try_for_each(|def| check_one(registry, def, variables))
}

fn check_one(
    registry: &Registry,
    def: &Positioned<VariableDefinition>,
    variables: &Variables,
) -> Result<(), ServerError> {
    let Some(value) = variables.get(&def.node.name.node) else {
        // Absent: its default, or the executor's own error for a required one.
        return Ok(());
    };
    let ty = def.node.var_type.node.to_string();
    let mut path = format!("${}", def.node.name.node);
    match misfit(registry, &ty, value, &mut path) {
        None => Ok(()),
        Some(reason) => Err(ServerError::new(
            format!("Invalid value for variable \"{path}\": {reason}"),
            Some(def.pos),
        )),
    }
}

/// Why `value` does not fit the type named `ty` (`path` ends at the misfit), or `None`.
fn misfit(registry: &Registry, ty: &str, value: &Value, path: &mut String) -> Option<String> {
    let expected = || Some(format!("expected type \"{ty}\""));
    match MetaTypeName::create(ty) {
        MetaTypeName::NonNull(inner) => match value {
            Value::Null => Some(format!("expected type \"{inner}\"")),
            _ => misfit(registry, inner, value, path),
        },
        MetaTypeName::List(inner) => match value {
            Value::List(items) => items.iter().enumerate().find_map(|(i, item)| {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                let found = misfit(registry, inner, item, path);
                if found.is_none() {
                    path.truncate(len);
                }
                found
            }),
            Value::Null => None,
            // A single value where a list is expected stands for a list of one.
            _ => misfit(registry, inner, value, path),
        },
        MetaTypeName::Named(name) => {
            if let Value::Null = value {
                return None;
            }
            match registry.types.get(name)? {
                MetaType::Scalar {
                    is_valid: Some(is_valid),
                    ..
                } => {
                    if is_valid(value) {
                        None
                    } else {
                        expected()
                    }
                }
                MetaType::Scalar { is_valid: None, .. } => None,
                MetaType::Enum {
                    enum_values,
                    name: enum_name,
                    ..
                } => {
                    let given = match value {
                        Value::Enum(v) => v.as_str(),
                        Value::String(v) => v.as_str(),
                        _ => return expected(),
                    };
                    (!enum_values.contains_key(given)).then(|| {
                        format!(
                            "enumeration type \"{enum_name}\" does not contain the value \"{given}\""
                        )
                    })
                }
                MetaType::InputObject {
                    input_fields,
                    name: object_name,
                    oneof,
                    ..
                } => {
                    let Value::Object(fields) = value else {
                        return expected();
                    };
                    if *oneof && (fields.len() != 1 || fields.values().any(|v| *v == Value::Null)) {
                        return Some(format!(
                            "exactly one field of \"{object_name}\" must be given, and not null"
                        ));
                    }
                    let mut unknown: HashSet<&str> = fields.keys().map(|k| k.as_str()).collect();
                    for field in input_fields.values() {
                        unknown.remove(field.name.as_str());
                        match fields.get(field.name.as_str()) {
                            Some(v) => {
                                let len = path.len();
                                path.push('.');
                                path.push_str(&field.name);
                                if let Some(reason) = misfit(registry, &field.ty, v, path) {
                                    return Some(reason);
                                }
                                path.truncate(len);
                            }
                            None if MetaTypeName::create(&field.ty).is_non_null()
                                && field.default_value.is_none() =>
                            {
                                return Some(format!(
                                    "field \"{}\" of type \"{}\" is required but not provided",
                                    field.name, field.ty
                                ));
                            }
                            None => {}
                        }
                    }
                    unknown
                        .into_iter()
                        .next()
                        .map(|name| format!("unknown field \"{name}\" of type \"{object_name}\""))
                }
                _ => None,
            }
        }
    }
}
