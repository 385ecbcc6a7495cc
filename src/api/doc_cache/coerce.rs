//! The check of a request's variables against a kept verdict's types: the
//! specification's coercion of variable values (see the parent module's
//! docs), against types compiled once when the verdict is kept ([`Types`],
//! [`Shape`]), so that a value is checked without looking a type or a field
//! up by name: those lookups, for ten samples, took 2.4 % of a node's CPU
//! under pushes (issue 15; 0.6 % compiled).

use std::collections::HashMap;

use async_graphql::registry::{MetaType, MetaTypeName, Registry};
use async_graphql::Value;

/// A type as a value must coerce to it.
pub(super) enum Shape {
    NonNull(Box<Shape>),
    List(Box<Shape>),
    Scalar(Option<async_graphql::registry::ScalarValidatorFn>),
    Enum(Vec<String>),
    /// An input object: its place in its [`Types`]. An input object is
    /// compiled once however often it is named, so a recursive one refers
    /// to itself.
    Object(usize),
    /// A type left to the full validation: a `@oneOf` input object, an
    /// output type, an unknown name.
    Refused,
}

/// An input object's fields, and how many of them are required.
struct ObjectShape {
    fields: Vec<FieldShape>,
    required: usize,
}

struct FieldShape {
    name: String,
    ty: Shape,
    /// Whether a value may leave it out: it has a default, or takes `null`.
    optional: bool,
}

/// The input objects that a verdict's variables' types name, each compiled
/// once, with the shapes that refer to them.
#[derive(Default)]
pub(super) struct Types {
    objects: Vec<ObjectShape>,
    /// Where each input object compiled so far is, by name.
    at: HashMap<String, usize>,
}

impl Types {
    /// `ty`, a type as the registry writes it (`[SampleInput!]!`), compiled
    /// against `registry`; the input objects it names are added to `self`.
    pub(super) fn compile(&mut self, registry: &Registry, ty: &str) -> Shape {
        match MetaTypeName::create(ty) {
            MetaTypeName::NonNull(inner) => Shape::NonNull(Box::new(self.compile(registry, inner))),
            MetaTypeName::List(item) => Shape::List(Box::new(self.compile(registry, item))),
            MetaTypeName::Named(name) => match registry.types.get(name) {
                Some(MetaType::Scalar { is_valid, .. }) => Shape::Scalar(is_valid.clone()),
                Some(MetaType::Enum { enum_values, .. }) => {
                    Shape::Enum(enum_values.keys().cloned().collect())
                }
                Some(MetaType::InputObject {
                    input_fields,
                    oneof: false,
                    ..
                }) => {
                    if let Some(at) = self.at.get(name) {
                        return Shape::Object(*at);
                    }
                    // Its place is taken before its fields are compiled, so
                    // that a field of its own type refers to it.
                    let at = self.objects.len();
                    self.at.insert(name.to_owned(), at);
                    self.objects.push(ObjectShape {
                        fields: Vec::new(),
                        required: 0,
                    });
                    let fields: Vec<FieldShape> = input_fields
                        .values()
                        .map(|f| FieldShape {
                            name: f.name.clone(),
                            ty: self.compile(registry, &f.ty),
                            optional: f.default_value.is_some()
                                || !matches!(MetaTypeName::create(&f.ty), MetaTypeName::NonNull(_)),
                        })
                        .collect();
                    let required = fields.iter().filter(|f| !f.optional).count();
                    self.objects[at] = ObjectShape { fields, required };
                    Shape::Object(at)
                }
                _ => Shape::Refused,
            },
        }
    }

    /// Whether `value` coerces to `shape` (compiled by [`Types::compile`]
    /// of `self`) without error.
    pub(super) fn fits(&self, shape: &Shape, value: &Value) -> bool {
        match (shape, value) {
            (Shape::NonNull(inner), value) => {
                !matches!(value, Value::Null) && self.fits(inner, value)
            }
            (_, Value::Null) => true,
            (Shape::List(item), Value::List(items)) => items.iter().all(|v| self.fits(item, v)),
            // One value where a list is expected is a list of one.
            (Shape::List(item), one) => self.fits(item, one),
            (Shape::Scalar(valid), value) => valid.as_ref().is_none_or(|valid| valid(value)),
            (Shape::Enum(names), Value::Enum(v)) => names.iter().any(|n| n == v.as_str()),
            (Shape::Enum(names), Value::String(v)) => names.iter().any(|n| n == v),
            (Shape::Object(at), Value::Object(given)) => {
                let ObjectShape { fields, required } = &self.objects[*at];
                // Every field given is one of the type's and fits, and every
                // required one is given (an object names a field once).
                let mut given_required = 0;
                for (name, v) in given {
                    let Some(f) = fields.iter().find(|f| f.name == name.as_str()) else {
                        return false;
                    };
                    if !self.fits(&f.ty, v) {
                        return false;
                    }
                    given_required += usize::from(!f.optional);
                }
                given_required == *required
            }
            _ => false,
        }
    }
}
