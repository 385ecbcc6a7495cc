//! The check of a request's variables against a kept verdict's types: the
//! specification's coercion of variable values (see the parent module's
//! docs), by name ([`conforms`]) or against types compiled once ([`Shape`],
//! [`fits`]).

use async_graphql::registry::{MetaType, MetaTypeName, Registry};
use async_graphql::Value;

/// An input type compiled against the schema once, when a verdict is kept,
/// so that a value is checked against it ([`fits`]) without looking a type
/// or a field up by name: [`conforms`]'s lookups, for ten samples, took
/// 2.4 % of a node's CPU under pushes (issue 15; 0.6 % now).
pub(super) enum Shape {
    NonNull(Box<Shape>),
    List(Box<Shape>),
    Scalar(Option<async_graphql::registry::ScalarValidatorFn>),
    Enum(Vec<String>),
    /// An input object's fields, and how many of them are required.
    Object(Vec<FieldShape>, usize),
    /// A type left to the full validation: a `@oneOf` input object, an
    /// output type, an unknown name.
    Refused,
    /// An input object below [`MAX_SHAPE_DEPTH`] others (a recursive input
    /// type): checked by [`conforms`].
    Named(String),
}

pub(super) struct FieldShape {
    name: String,
    ty: Shape,
    /// Whether a value may leave it out: it has a default, or takes `null`.
    optional: bool,
}

/// Input objects compiled into a [`Shape`] at most, one inside another.
pub(super) const MAX_SHAPE_DEPTH: usize = 8;

impl Shape {
    /// `ty`, a type as the registry writes it (`[SampleInput!]!`), with
    /// `depth` input objects around it.
    pub(super) fn of(registry: &Registry, ty: &str, depth: usize) -> Self {
        match MetaTypeName::create(ty) {
            MetaTypeName::NonNull(inner) => {
                Shape::NonNull(Box::new(Shape::of(registry, inner, depth)))
            }
            MetaTypeName::List(item) => Shape::List(Box::new(Shape::of(registry, item, depth))),
            MetaTypeName::Named(name) => match registry.types.get(name) {
                Some(MetaType::Scalar { is_valid, .. }) => Shape::Scalar(is_valid.clone()),
                Some(MetaType::Enum { enum_values, .. }) => {
                    Shape::Enum(enum_values.keys().cloned().collect())
                }
                Some(MetaType::InputObject { .. }) if depth >= MAX_SHAPE_DEPTH => {
                    Shape::Named(name.to_owned())
                }
                Some(MetaType::InputObject {
                    input_fields,
                    oneof: false,
                    ..
                }) => {
                    let fields: Vec<FieldShape> = input_fields
                        .values()
                        .map(|f| FieldShape {
                            name: f.name.clone(),
                            ty: Shape::of(registry, &f.ty, depth + 1),
                            optional: f.default_value.is_some()
                                || !matches!(MetaTypeName::create(&f.ty), MetaTypeName::NonNull(_)),
                        })
                        .collect();
                    let required = fields.iter().filter(|f| !f.optional).count();
                    Shape::Object(fields, required)
                }
                _ => Shape::Refused,
            },
        }
    }
}

/// Whether `value` coerces to `shape`: what [`conforms`] finds for the type
/// `shape` was compiled from.
pub(super) fn fits(registry: &Registry, shape: &Shape, value: &Value) -> bool {
    match (shape, value) {
        (Shape::NonNull(inner), value) => {
            !matches!(value, Value::Null) && fits(registry, inner, value)
        }
        (_, Value::Null) => true,
        (Shape::List(item), Value::List(items)) => items.iter().all(|v| fits(registry, item, v)),
        // One value where a list is expected is a list of one.
        (Shape::List(item), one) => fits(registry, item, one),
        (Shape::Scalar(valid), value) => valid.as_ref().is_none_or(|valid| valid(value)),
        (Shape::Enum(names), Value::Enum(v)) => names.iter().any(|n| n == v.as_str()),
        (Shape::Enum(names), Value::String(v)) => names.iter().any(|n| n == v),
        (Shape::Object(fields, required), Value::Object(given)) => {
            // Every field given is one of the type's and fits, and every
            // required one is given (an object names a field once).
            let mut given_required = 0;
            for (name, v) in given {
                let Some(f) = fields.iter().find(|f| f.name == name.as_str()) else {
                    return false;
                };
                if !fits(registry, &f.ty, v) {
                    return false;
                }
                given_required += usize::from(!f.optional);
            }
            given_required == *required
        }
        (Shape::Named(name), value) => conforms(registry, name, value),
        _ => false,
    }
}

/// Whether `value` coerces to the input type `ty` (a type as the registry
/// writes it: `[SampleInput!]!`) without error.
pub(super) fn conforms(registry: &Registry, ty: &str, value: &Value) -> bool {
    match MetaTypeName::create(ty) {
        MetaTypeName::NonNull(inner) => {
            !matches!(value, Value::Null) && conforms(registry, inner, value)
        }
        MetaTypeName::List(item) => match value {
            Value::Null => true,
            Value::List(items) => items.iter().all(|v| conforms(registry, item, v)),
            // One value where a list is expected is a list of one.
            one => conforms(registry, item, one),
        },
        MetaTypeName::Named(name) => {
            if matches!(value, Value::Null) {
                return true;
            }
            match registry.types.get(name) {
                Some(MetaType::Scalar { is_valid, .. }) => {
                    is_valid.as_ref().is_none_or(|valid| valid(value))
                }
                Some(MetaType::Enum { enum_values, .. }) => match value {
                    Value::Enum(v) => enum_values.contains_key(v.as_str()),
                    Value::String(v) => enum_values.contains_key(v.as_str()),
                    _ => false,
                },
                Some(MetaType::InputObject {
                    input_fields,
                    oneof: false,
                    ..
                }) => match value {
                    Value::Object(fields) => {
                        fields.keys().all(|k| input_fields.contains_key(k.as_str()))
                            && input_fields
                                .values()
                                .all(|f| match fields.get(f.name.as_str()) {
                                    Some(v) => conforms(registry, &f.ty, v),
                                    None => {
                                        f.default_value.is_some()
                                            || !matches!(
                                                MetaTypeName::create(&f.ty),
                                                MetaTypeName::NonNull(_)
                                            )
                                    }
                                })
                    }
                    _ => false,
                },
                // A `@oneOf` input object, an output type, an unknown name:
                // left to the full validation.
                _ => false,
            }
        }
    }
}
