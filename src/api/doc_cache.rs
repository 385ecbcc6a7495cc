//! GraphQL documents kept by their text, parsed once and validated once per
//! node, so that the operations apps send again and again (`pushSamples`
//! once a second per device, `me`, `sendMessage`) pay for neither on every
//! request (issue 15).
//!
//! **Parse.** async-graphql parses every request's text (a pest parser:
//! about a fifth of a write request's time in the HTTP handler, BENCHMARKS.md)
//! before it validates it. This extension sits innermost on the parse step: a
//! text seen before gets a copy of its document, without the parse or its
//! depth and directive checks (a document is a function of its text alone,
//! so the checks' verdict is the same).
//!
//! **Validation.** Of async-graphql's validation rules, one alone reads the
//! variables (`ArgumentsOfCorrectType`, which substitutes them into each
//! argument, cloning them, and checks the result against the argument's
//! type); the others, and the depth, complexity and cache-control figures,
//! are functions of the document and the schema. The GraphQL specification
//! lets a service skip validating a request it knows it validated before
//! (section 5, "Validation"), and checks variable values apart from the
//! document, by coercion (section 6.1.2). So once a kept document has
//! passed validation with every one of its variables given, its verdict is
//! kept beside it, and later requests with that text skip the rules when
//! their variables pass [`coerce`]: the specification's coercion of variable values
//! (`CoerceVariableValues`), which refuses anything the substituted
//! check refuses (an unknown input field, a missing required one, a `null`
//! where none may be, a value a scalar or enum does not take) and a little
//! more (a non-object for an input object). A request whose variables do not
//! pass is validated in full as before, so it gets the same errors, word for
//! word, as a node without the cache.
//!
//! What the kept verdict relies on is checked where it could stop holding:
//! - it is kept for the operation it validated, and only from a request
//!   that gave every variable of it (the validation checks no argument that
//!   holds a variable it was not given, nor one of another operation);
//! - no field of the schema has a complexity computed from its arguments,
//!   which may be variables (checked once, on the first request);
//! - a variable given `null` whose type is nullable with a default is held
//!   to its non-null type, as `VariableInAllowedPosition` lets it stand
//!   where a non-null value is expected.
//!
//! Only a text that holds no value of its own is kept: none with a string
//! (`"`), a number or a comment (`#`), the places where a client could have
//! written patient data into the text instead of into variables. Such a text
//! is parsed and validated every time and never outlives its request. Texts
//! over [`MAX_TEXT`] bytes are not kept either, and the cache holds at most
//! [`CAPACITY`] documents, dropping the least recently used.

use std::sync::{Arc, Mutex, OnceLock};

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextPrepareRequest,
    NextValidation,
};
use async_graphql::parser::types::{DocumentOperations, ExecutableDocument, OperationDefinition};
use async_graphql::registry::{MetaType, Registry};

mod coerce;
use async_graphql::{Name, ServerError, ServerResult, ValidationResult, Variables};
use coerce::{Shape, Types};
use hashlink::LruCache;

/// Documents kept at most.
pub const CAPACITY: usize = 256;
/// The longest text kept, in bytes.
pub const MAX_TEXT: usize = 2_048;

/// Whether a document of `query` may be kept (see the module docs).
pub fn keepable(query: &str) -> bool {
    query.len() <= MAX_TEXT
        && !query
            .bytes()
            .any(|b| b == b'"' || b == b'#' || b.is_ascii_digit())
}

/// A kept document and, once it passed validation, its verdict.
struct Kept {
    doc: ExecutableDocument,
    valid: OnceLock<Valid>,
}

/// What a document's validation found, kept for its later requests.
struct Valid {
    /// The operation it validated (`None`: the anonymous one). Another
    /// operation of the document is validated in full: the validation of
    /// one checks no argument of another that holds a variable.
    operation: Option<Name>,
    result: ValidationResult,
    /// The operation's variables, each with the type its value must have.
    variables: Vec<Variable>,
    /// The input objects their types name, compiled.
    types: Types,
}

struct Variable {
    name: Name,
    /// The declared type, or its non-null form when it is nullable with a
    /// default (see the module docs), compiled against the schema into the
    /// verdict's [`Types`].
    ty: Shape,
    /// Whether a request must give it: non-null without a default.
    required: bool,
}

/// The operation a request selects: its name (`None` for the one anonymous
/// operation) and its definition.
type Selected<'a> = (Option<&'a Name>, &'a OperationDefinition);

impl Kept {
    /// The operation that a request naming `name` runs, as async-graphql
    /// selects it; `None` when the request is refused for its name.
    fn select(&self, name: Option<&str>) -> Option<Selected<'_>> {
        match (&self.doc.operations, name) {
            (DocumentOperations::Single(op), None) => Some((None, &op.node)),
            (DocumentOperations::Multiple(ops), Some(name)) => ops
                .get_key_value(name)
                .map(|(name, op)| (Some(name), &op.node)),
            (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => {
                ops.iter().next().map(|(name, op)| (Some(name), &op.node))
            }
            _ => None,
        }
    }

    /// The verdict of a validation that gave `result` for `operation`.
    fn valid(registry: &Registry, operation: Selected<'_>, result: ValidationResult) -> Valid {
        let (name, op) = operation;
        let mut types = Types::default();
        let variables = op
            .variable_definitions
            .iter()
            .map(|def| {
                let def = &def.node;
                let ty = &def.var_type.node;
                Variable {
                    name: def.name.node.clone(),
                    ty: types.compile(
                        registry,
                        &if ty.nullable && def.default_value.is_some() {
                            format!("{ty}!")
                        } else {
                            ty.to_string()
                        },
                    ),
                    required: !ty.nullable && def.default_value.is_none(),
                }
            })
            .collect();
        Valid {
            operation: name.cloned(),
            result,
            variables,
            types,
        }
    }
}

/// Whether `variables` give every variable of `valid` a value of its type,
/// by the specification's coercion (see the module docs); `false` sends the
/// request through the full validation.
fn variables_conform(valid: &Valid, variables: &Variables) -> bool {
    valid
        .variables
        .iter()
        .all(|var| match variables.get(&var.name) {
            Some(value) => valid.types.fits(&var.ty, value),
            None => !var.required,
        })
}

/// Whether the schema has a field whose complexity is computed from its
/// arguments (which may be variables): then no verdict is kept.
fn computes_complexity(registry: &Registry) -> bool {
    registry.types.values().any(|t| match t {
        MetaType::Object { fields, .. } | MetaType::Interface { fields, .. } => {
            fields.values().any(|f| f.compute_complexity.is_some())
        }
        _ => false,
    })
}

/// The schema's extension: one cache per schema (so per node).
#[derive(Clone)]
pub struct DocumentCache {
    docs: Arc<Mutex<LruCache<String, Arc<Kept>>>>,
    /// Whether verdicts may be kept for this schema ([`computes_complexity`]
    /// is false), found on the first request.
    keeps_verdicts: Arc<OnceLock<bool>>,
    /// Requests whose validation was skipped.
    #[cfg(test)]
    skipped: Arc<std::sync::atomic::AtomicUsize>,
}

impl Default for DocumentCache {
    fn default() -> Self {
        DocumentCache {
            docs: Arc::new(Mutex::new(LruCache::new(CAPACITY))),
            keeps_verdicts: Arc::default(),
            #[cfg(test)]
            skipped: Arc::default(),
        }
    }
}

impl DocumentCache {
    /// Documents kept now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<String, Arc<Kept>>> {
        lock(&self.docs)
    }

    fn get(&self, query: &str) -> Option<Arc<Kept>> {
        self.lock().get(query).cloned()
    }
}

impl ExtensionFactory for DocumentCache {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Request {
            cache: self.clone(),
            text: Mutex::default(),
            step: Mutex::default(),
        })
    }
}

/// One request's use of the cache.
struct Request {
    cache: DocumentCache,
    /// What the cache holds for the request's text, looked up once (before
    /// the parse, which uses it): `None` until then.
    text: Mutex<Option<Text>>,
    step: Mutex<Step>,
}

/// A request's text as the cache sees it.
enum Text {
    /// Not to be kept (see [`keepable`]).
    NotKept,
    /// Keepable, and not kept (yet).
    Missing,
    Kept(Arc<Kept>),
}

impl DocumentCache {
    /// The cache's entry for `query`.
    fn look_up(&self, query: &str) -> Text {
        if !keepable(query) {
            return Text::NotKept;
        }
        match self.get(query) {
            Some(kept) => Text::Kept(kept),
            None => Text::Missing,
        }
    }
}

/// What the request's validation is to do, decided before it is parsed.
#[derive(Default)]
enum Step {
    /// Validate in full; nothing to keep.
    #[default]
    Validate,
    /// Validate in full, and keep the verdict for this kept document.
    ValidateAndKeep(Arc<Kept>, Option<Name>),
    /// The kept verdict holds for this request's variables.
    Skip(ValidationResult),
}

impl Request {
    fn step(&self) -> std::sync::MutexGuard<'_, Step> {
        lock(&self.step)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[async_trait::async_trait]
impl Extension for Request {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: async_graphql::Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<async_graphql::Request> {
        let registry = &ctx.schema_env.registry;
        let keeps = *self
            .cache
            .keeps_verdicts
            .get_or_init(|| !computes_complexity(registry));
        let text = self.cache.look_up(&request.query);
        if let (true, Text::Kept(kept)) = (keeps, &text) {
            let selected = kept.select(request.operation_name.as_deref());
            let step = match (kept.valid.get(), selected) {
                (Some(valid), Some((name, _)))
                    if valid.operation.as_ref() == name
                        && variables_conform(valid, &request.variables) =>
                {
                    Step::Skip(valid.result)
                }
                // Kept from a request that gave every variable, so that
                // the validation checked each of its arguments whole.
                (None, Some((name, op)))
                    if op
                        .variable_definitions
                        .iter()
                        .all(|d| request.variables.contains_key(&d.node.name.node)) =>
                {
                    Step::ValidateAndKeep(kept.clone(), name.cloned())
                }
                _ => Step::Validate,
            };
            *self.step() = step;
        }
        *lock(&self.text) = Some(text);
        next.run(ctx, request).await
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        // Looked up before the parse, for this same text.
        let text = lock(&self.text).take();
        match text.unwrap_or_else(|| self.cache.look_up(query)) {
            Text::NotKept => return next.run(ctx, query, variables).await,
            Text::Kept(kept) => return Ok(kept.doc.clone()),
            Text::Missing => {}
        }
        // Kept only once parsed and checked: an error is not kept.
        let doc = next.run(ctx, query, variables).await?;
        let kept = Kept {
            doc: doc.clone(),
            valid: OnceLock::new(),
        };
        let mut docs = self.cache.lock();
        // Kept meanwhile by a request of the same text: that entry stays,
        // with the verdict it may hold already.
        if !docs.contains_key(query) {
            docs.insert(query.to_owned(), Arc::new(kept));
        }
        drop(docs);
        Ok(doc)
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let step = std::mem::take(&mut *self.step());
        match step {
            Step::Skip(result) => {
                #[cfg(test)]
                self.cache
                    .skipped
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(result)
            }
            Step::Validate => next.run(ctx).await,
            Step::ValidateAndKeep(kept, name) => {
                let result = next.run(ctx).await?;
                if let Some(op) = kept.select(name.as_deref()) {
                    let registry = &ctx.schema_env.registry;
                    let _ = kept.valid.set(Kept::valid(registry, op, result));
                }
                Ok(result)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_graphql::{EmptyMutation, EmptySubscription, Enum, InputObject, Object, Schema};
    use serde_json::{json, Value as Json};

    struct Q;

    #[derive(Enum, Copy, Clone, PartialEq, Eq)]
    enum Metric {
        HeartRate,
        Oxygen,
    }

    #[derive(InputObject)]
    struct Inner {
        a: i32,
    }

    #[derive(InputObject)]
    struct Reading {
        metric: Metric,
        value: Option<f64>,
        #[graphql(default = 3)]
        n: i32,
        inner: Option<Inner>,
    }

    #[derive(InputObject)]
    struct Pair {
        m: Option<Metric>,
        k: Metric,
    }

    #[Object]
    impl Q {
        async fn me(&self) -> &str {
            "me"
        }
        async fn echo(&self, text: String) -> String {
            text
        }
        async fn count(&self, items: Vec<Reading>) -> usize {
            items.len() + items.iter().map(|r| r.n as usize).sum::<usize>()
        }
        async fn metric(&self, m: Metric) -> bool {
            m == Metric::Oxygen
        }
        async fn pair(&self, p: Pair) -> bool {
            p.m == Some(p.k)
        }
        async fn trees(&self, t: Vec<Tree>) -> usize {
            t.iter().map(Tree::size).sum()
        }
    }

    fn schema(cache: &DocumentCache) -> Schema<Q, EmptyMutation, EmptySubscription> {
        Schema::build(Q, EmptyMutation, EmptySubscription)
            .limit_recursive_depth(8)
            .extension(cache.clone())
            .finish()
    }

    #[test]
    fn only_texts_without_values_of_their_own_are_kept() {
        assert!(keepable("query($t: String!) { echo(text: $t) }"));
        assert!(keepable("mutation($d: ID!, $s: [SampleInput!]!) { pushSamples(deviceId: $d, samples: $s) { accepted } }"));
        assert!(!keepable("{ echo(text: \"Jane Doe\") }"));
        assert!(!keepable("{ vitals(bpm: 72) { at } }"));
        assert!(!keepable("{ me } # Jane Doe, chest pain"));
        assert!(!keepable(&format!("{{ me {} }}", " ".repeat(MAX_TEXT))));
    }

    #[actix_rt::test]
    async fn a_text_seen_before_is_answered_from_its_kept_document() {
        let cache = DocumentCache::default();
        let schema = schema(&cache);
        let q = "query($t: String!) { echo(text: $t) }";
        for text in ["a", "b"] {
            let req = async_graphql::Request::new(q)
                .variables(Variables::from_json(serde_json::json!({ "t": text })));
            let res = schema.execute(req).await;
            assert!(res.errors.is_empty(), "{:?}", res.errors);
            assert_eq!(res.data.into_json().unwrap()["echo"], text);
        }
        assert_eq!(cache.len(), 1);
        // Validation still runs per request, on its variables.
        let res = schema
            .execute(
                async_graphql::Request::new(q)
                    .variables(Variables::from_json(serde_json::json!({ "t": 7 }))),
            )
            .await;
        assert_eq!(res.errors.len(), 1, "{res:?}");
    }

    #[actix_rt::test]
    async fn literals_errors_and_too_deep_texts_are_not_kept() {
        let cache = DocumentCache::default();
        let schema = schema(&cache);
        let res = schema.execute("{ echo(text: \"Jane Doe\") }").await;
        assert!(res.errors.is_empty());
        let res = schema.execute("{ me ").await;
        assert_eq!(res.errors.len(), 1);
        // Deeper than the schema's recursive depth: refused, and again.
        let deep = format!("{{ me {}{} }}", "{ a ".repeat(9), "} ".repeat(9));
        for _ in 0..2 {
            let res = schema.execute(deep.as_str()).await;
            assert_eq!(res.errors.len(), 1, "{res:?}");
        }
        assert_eq!(cache.len(), 0);
        let res = schema.execute("{ me }").await;
        assert!(res.errors.is_empty());
        assert_eq!(cache.len(), 1);
    }

    #[actix_rt::test]
    async fn it_holds_at_most_its_capacity() {
        let cache = DocumentCache::default();
        let schema = schema(&cache);
        // Distinct texts without digits: aliases of letters.
        let names: Vec<String> = (0..CAPACITY + 10)
            .map(|i| {
                let mut n = String::new();
                let mut i = i;
                loop {
                    n.push((b'a' + (i % 26) as u8) as char);
                    i /= 26;
                    if i == 0 {
                        break;
                    }
                }
                n
            })
            .collect();
        for n in &names {
            let res = schema.execute(format!("{{ {n}: me }}")).await;
            assert!(res.errors.is_empty(), "{:?}", res.errors);
        }
        assert_eq!(cache.len(), CAPACITY);
    }

    /// Runs `requests` (text, operation name, variables) in order on a
    /// schema with the cache and on one without, and asserts that every
    /// answer is the same, errors word for word; returns how many requests
    /// skipped validation.
    async fn same_answers(requests: &[(&str, Option<&str>, Json)]) -> usize {
        let cache = DocumentCache::default();
        let cached = schema(&cache);
        let plain = Schema::build(Q, EmptyMutation, EmptySubscription)
            .limit_recursive_depth(8)
            .finish();
        for (query, name, vars) in requests {
            let req = || {
                let r = async_graphql::Request::new(*query)
                    .variables(Variables::from_json(vars.clone()));
                match name {
                    Some(n) => r.operation_name(*n),
                    None => r,
                }
            };
            let want = serde_json::to_value(plain.execute(req()).await).unwrap();
            let got = serde_json::to_value(cached.execute(req()).await).unwrap();
            assert_eq!(got, want, "{query} {name:?} {vars}");
        }
        cache.skipped.load(std::sync::atomic::Ordering::Relaxed)
    }

    #[actix_rt::test]
    async fn a_kept_verdict_refuses_what_validation_refuses_with_the_same_errors() {
        let q = "query($s: [Reading!]!) { count(items: $s) }";
        let good =
            json!({"s": [{"metric": "HEART_RATE", "value": 72.5}, {"metric": "OXYGEN", "n": 1}]});
        let bad = [
            json!({"s": [{"metric": "HEART_RATE", "bogus": 1}]}),
            json!({"s": [{"value": 1.0}]}),
            json!({"s": [{"metric": "NOPE"}]}),
            json!({"s": [{"metric": "HEART_RATE", "value": "high"}]}),
            json!({"s": [{"metric": "HEART_RATE", "n": 2.5}]}),
            json!({"s": [{"metric": "HEART_RATE", "inner": {"a": 1, "z": 2}}]}),
            json!({"s": [{"metric": "HEART_RATE", "inner": {}}]}),
            json!({"s": [null]}),
            json!({"s": null}),
            json!({"s": [5]}),
            json!({}),
        ];
        let mut requests = vec![(q, None, good.clone()), (q, None, good.clone())];
        for b in &bad {
            requests.push((q, None, b.clone()));
            requests.push((q, None, good.clone()));
        }
        // One object where a list is expected is a list of one.
        requests.push((q, None, json!({"s": {"metric": "OXYGEN"}})));
        let skipped = same_answers(&requests).await;
        // The first request keeps the document, the second its verdict; the
        // good ones after skip validation, no bad one does.
        assert_eq!(skipped, bad.len() + 1, "requests that skipped validation");
    }

    #[actix_rt::test]
    async fn null_for_a_nullable_variable_with_a_default_in_a_non_null_place_is_refused() {
        let q = "query($m: Metric = HEART_RATE) { metric(m: $m) }";
        let skipped = same_answers(&[
            (q, None, json!({"m": "OXYGEN"})),
            (q, None, json!({"m": "OXYGEN"})),
            (q, None, json!({"m": null})),
            (q, None, json!({})),
            (q, None, json!({"m": "HEART_RATE"})),
        ])
        .await;
        assert_eq!(skipped, 2);
    }

    #[actix_rt::test]
    async fn a_directive_argument_is_checked_too() {
        let q = "query($b: Boolean!, $t: String!) { echo(text: $t) @include(if: $b) }";
        let skipped = same_answers(&[
            (q, None, json!({"b": true, "t": "a"})),
            (q, None, json!({"b": false, "t": "a"})),
            (q, None, json!({"b": "yes", "t": "a"})),
            (q, None, json!({"b": true, "t": ["a"]})),
            (q, None, json!({"b": true, "t": "b"})),
            (q, None, json!({"b": false, "t": "c"})),
        ])
        .await;
        // The first keeps the document, the second its verdict, the last two
        // skip.
        assert_eq!(skipped, 2);
    }

    #[actix_rt::test]
    async fn a_verdict_holds_for_its_own_operation_only() {
        // B's argument holds a bad literal beside a variable: validating A
        // does not check it (it holds a variable of another operation).
        let q = "query A($s: [Reading!]!) { count(items: $s) } query B($m: Metric) { pair(p: {m: $m, k: BAD}) }";
        let a = json!({"s": [{"metric": "OXYGEN"}]});
        let skipped = same_answers(&[
            (q, Some("A"), a.clone()),
            (q, Some("A"), a.clone()),
            (q, Some("A"), a.clone()),
            // (With A's variables too, which A's verdict would take.)
            (
                q,
                Some("B"),
                json!({"m": "OXYGEN", "s": [{"metric": "OXYGEN"}]}),
            ),
            (q, None, a.clone()),
            (q, Some("C"), a.clone()),
        ])
        .await;
        assert_eq!(skipped, 1);
    }

    #[actix_rt::test]
    async fn a_verdict_is_kept_only_from_a_request_that_gave_every_variable() {
        // Without `$m` the validation cannot check `p` (it holds `$m`), so
        // its bad literal passes validation and fails in execution instead.
        let q = "query($m: Metric) { pair(p: {m: $m, k: BAD}) }";
        let skipped = same_answers(&[
            (q, None, json!({})),
            (q, None, json!({})),
            (q, None, json!({"m": "OXYGEN"})),
            (q, None, json!({"m": "OXYGEN"})),
        ])
        .await;
        assert_eq!(skipped, 0);
        // The same shape with a good literal is kept, and absent nullable
        // variables may skip as they pass validation.
        let q = "query($m: Metric) { pair(p: {m: $m, k: HEART_RATE}) }";
        let skipped = same_answers(&[
            (q, None, json!({"m": "OXYGEN"})),
            (q, None, json!({"m": "OXYGEN"})),
            (q, None, json!({})),
            (q, None, json!({"m": null})),
            (q, None, json!({"m": "PULSE"})),
            (q, None, json!({"m": "HEART_RATE"})),
        ])
        .await;
        // All but the first two and the unknown value.
        assert_eq!(skipped, 3);
    }

    #[actix_rt::test]
    async fn no_verdict_is_kept_when_a_field_computes_its_complexity() {
        struct C;
        #[derive(async_graphql::SimpleObject)]
        struct Item {
            a: i32,
        }
        #[Object]
        impl C {
            #[graphql(complexity = "count * child_complexity")]
            async fn items(&self, count: usize) -> Vec<Item> {
                (0..count.min(3) as i32).map(|a| Item { a }).collect()
            }
        }
        let cache = DocumentCache::default();
        let schema = Schema::build(C, EmptyMutation, EmptySubscription)
            .limit_complexity(50)
            .extension(cache.clone())
            .finish();
        let q = "query($n: Int!) { items(count: $n) { a } }";
        let run = |n: usize| {
            schema.execute(
                async_graphql::Request::new(q).variables(Variables::from_json(json!({ "n": n }))),
            )
        };
        for _ in 0..3 {
            assert!(run(2).await.errors.is_empty());
        }
        let res = run(1_000).await;
        assert_eq!(res.errors.len(), 1, "{res:?}");
        assert_eq!(res.errors[0].message, "Query is too complex.");
        assert_eq!(cache.skipped.load(std::sync::atomic::Ordering::Relaxed), 0);
    }

    /// A recursive input type: compiled once, its shape refers to itself.
    #[derive(InputObject)]
    struct Tree {
        metric: Metric,
        children: Option<Vec<Tree>>,
    }

    impl Tree {
        fn size(&self) -> usize {
            1 + self
                .children
                .iter()
                .flatten()
                .map(Tree::size)
                .sum::<usize>()
        }
    }

    #[actix_rt::test]
    async fn a_recursive_input_type_is_checked_at_any_depth() {
        let q = "query($t: [Tree!]!) { trees(t: $t) }";
        let nest = |depth: usize, leaf: Json| {
            (0..depth).fold(
                leaf,
                |inner, _| json!({"metric": "OXYGEN", "children": [inner]}),
            )
        };
        let good = json!({"t": [nest(3, json!({"metric": "HEART_RATE"}))]});
        let mut requests = vec![(q, None, good.clone()), (q, None, good.clone())];
        let mut fitting = 0;
        for depth in [0, 1, 7, 8, 11, 40] {
            for (leaf, fits) in [
                (json!({"metric": "HEART_RATE"}), true),
                (json!({"metric": "HEART_RATE", "children": null}), true),
                (json!({"metric": "HEART_RATE", "children": []}), true),
                (json!({"metric": "NOPE"}), false),
                (json!({"metric": "HEART_RATE", "bogus": 1}), false),
                (json!({"children": []}), false),
                (json!({"metric": "HEART_RATE", "children": [null]}), false),
                (json!(5), false),
            ] {
                requests.push((q, None, json!({"t": [nest(depth, leaf)]})));
                requests.push((q, None, good.clone()));
                fitting += usize::from(fits);
            }
        }
        let values = (requests.len() - 2) / 2;
        let skipped = same_answers(&requests).await;
        // Every fitting value skipped validation, at every depth, and so
        // did each good request between them; no other did.
        assert_eq!(
            skipped,
            values + fitting,
            "requests that skipped validation"
        );
    }
}
