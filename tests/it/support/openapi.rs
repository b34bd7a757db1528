//! Holding a fake to an OpenAPI 3 description: which operation a request is (method and path
//! template, a trailing `x-multi-segment` parameter taking the rest of the path), whether its
//! query names only declared parameters, and whether its JSON body fits the operation's request
//! schema (`$ref`, `oneOf`/`anyOf`/`allOf`, `nullable`, `enum`, `required`, and no field the
//! schema does not declare). The fake GitHub uses it on every request
//! (`fixtures/github-openapi/github-rest-subset.json`, OpenAPI 3), the fake Argo CD for its
//! requests (`fixtures/argocd/openapi/`, Swagger 2: the same paths and query parameters); it
//! checks shapes, not the servers' semantics.

use serde_json::Value;

/// One OpenAPI 3 document.
pub struct Description {
    doc: Value,
}

impl Description {
    pub fn new(doc: Value) -> Description {
        Description { doc }
    }

    /// The document itself, for checks of its own (the fake Argo CD's responses).
    pub fn doc(&self) -> &Value {
        &self.doc
    }

    fn resolve<'a>(&'a self, v: &'a Value) -> &'a Value {
        match v["$ref"].as_str() {
            Some(r) => {
                let mut at = &self.doc;
                for part in r.trim_start_matches("#/").split('/') {
                    at = &at[part];
                }
                self.resolve(at)
            }
            None => v,
        }
    }

    /// The operation `method path` names, with its path parameters' values, or why there is none.
    fn operation(&self, method: &str, path: &str) -> Result<&Value, String> {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let method = method.to_ascii_lowercase();
        for (template, item) in self.doc["paths"].as_object().into_iter().flatten() {
            let Some(op) = item.get(&method) else {
                continue;
            };
            let t: Vec<&str> = template.trim_start_matches('/').split('/').collect();
            let multi = t.last().is_some_and(|last| {
                let name = last.trim_start_matches('{').trim_end_matches('}');
                last.starts_with('{')
                    && self
                        .parameters(op, item)
                        .any(|p| p["name"] == name && p["x-multi-segment"] == true)
            });
            let fits = |n: usize| {
                t.iter()
                    .take(n)
                    .zip(&segments)
                    .all(|(t, s)| t == s || (t.starts_with('{') && !s.is_empty()))
            };
            let matched = if multi {
                segments.len() >= t.len() && fits(t.len())
            } else {
                segments.len() == t.len() && fits(t.len())
            };
            if matched {
                return Ok(op);
            }
        }
        Err(format!(
            "{} {path}: no such operation in the API description",
            method.to_ascii_uppercase()
        ))
    }

    fn parameters<'a>(&'a self, op: &'a Value, item: &'a Value) -> impl Iterator<Item = &'a Value> {
        op["parameters"]
            .as_array()
            .into_iter()
            .chain(item["parameters"].as_array())
            .flatten()
            .map(|p| self.resolve(p))
    }

    /// Every way `method path?query` with `body` (JSON, when any) departs from the description.
    pub fn check(&self, method: &str, path: &str, query: &str, body: &[u8]) -> Vec<String> {
        let op = match self.operation(method, path) {
            Ok(op) => op,
            Err(why) => return vec![why],
        };
        let what = format!("{method} {path}");
        let mut problems = Vec::new();
        let declared: Vec<&str> = self
            .parameters(op, &Value::Null)
            .filter(|p| p["in"] == "query")
            .filter_map(|p| p["name"].as_str())
            .collect();
        for name in query
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| kv.split('=').next().unwrap_or(kv))
        {
            if !declared.contains(&name) {
                problems.push(format!("{what}: query parameter {name:?} is not declared"));
            }
        }
        let schema = &self.resolve(&op["requestBody"])["content"]["application/json"]["schema"];
        match (body.is_empty(), schema.is_null()) {
            (true, _) => {}
            (false, true) => problems.push(format!("{what}: a body, and the operation takes none")),
            (false, false) => match serde_json::from_slice::<Value>(body) {
                Ok(v) => self.check_schema(schema, &v, &format!("{what} body"), &mut problems),
                Err(e) => problems.push(format!("{what}: the body is not JSON: {e}")),
            },
        }
        problems
    }

    /// Where `value` departs from `schema`, each problem with its JSON path `at`.
    pub fn check_schema(
        &self,
        schema: &Value,
        value: &Value,
        at: &str,
        problems: &mut Vec<String>,
    ) {
        let schema = self.resolve(schema);
        if value.is_null() && schema["nullable"] == true {
            return;
        }
        for key in ["oneOf", "anyOf"] {
            if let Some(alternatives) = schema[key].as_array() {
                let fits = alternatives.iter().any(|alt| {
                    let mut p = Vec::new();
                    self.check_schema(alt, value, at, &mut p);
                    p.is_empty()
                });
                if !fits {
                    problems.push(format!(
                        "{at}: fits none of the {key} alternatives: {value}"
                    ));
                }
                return;
            }
        }
        if let Some(all) = schema["allOf"].as_array() {
            for part in all {
                self.check_schema(part, value, at, problems);
            }
            return;
        }
        if let Some(allowed) = schema["enum"].as_array()
            && !allowed.contains(value)
        {
            problems.push(format!("{at}: {value} is not one of {allowed:?}"));
        }
        match (schema["type"].as_str(), value) {
            (Some("object") | None, Value::Object(fields)) => {
                for (k, v) in fields {
                    if let Some(p) = schema["properties"].get(k) {
                        self.check_schema(p, v, &format!("{at}.{k}"), problems);
                    } else if let Some(extra) = schema.get("additionalProperties")
                        && extra != false
                    {
                        self.check_schema(extra, v, &format!("{at}.{k}"), problems);
                    } else {
                        problems.push(format!("{at}.{k}: not a field of the schema"));
                    }
                }
                for required in schema["required"].as_array().into_iter().flatten() {
                    if let Some(name) = required.as_str()
                        && !fields.contains_key(name)
                    {
                        problems.push(format!("{at}.{name}: required and missing"));
                    }
                }
            }
            (None, _) => {}
            (Some("array"), Value::Array(items)) => {
                for (i, v) in items.iter().enumerate() {
                    self.check_schema(&schema["items"], v, &format!("{at}[{i}]"), problems);
                }
            }
            (Some("string"), Value::String(_))
            | (Some("boolean"), Value::Bool(_))
            | (Some("number"), Value::Number(_)) => {}
            (Some("integer"), Value::Number(n)) if n.is_i64() || n.is_u64() => {}
            (want, got) => problems.push(format!("{at}: expected {want:?}, got {got}")),
        }
    }
}

#[test]
fn requests_are_held_to_their_operation() {
    let d = Description::new(
        serde_json::from_slice(
            &std::fs::read(super::fixtures_dir().join("github-openapi/github-rest-subset.json"))
                .unwrap(),
        )
        .unwrap(),
    );
    let merge = "/repos/o/r/pulls/3/merge";
    assert!(
        d.check(
            "PUT",
            merge,
            "",
            br#"{"sha":"abc","merge_method":"squash"}"#
        )
        .is_empty()
    );
    let p = d.check(
        "PUT",
        merge,
        "",
        br#"{"sha":"abc","merge_method":"fast_forward"}"#,
    );
    assert!(
        p[0].contains("merge_method: \"fast_forward\" is not one of"),
        "{p:?}"
    );
    let p = d.check("PUT", merge, "", br#"{"sha":"abc","method":"squash"}"#);
    assert!(
        p[0].contains("body.method: not a field of the schema"),
        "{p:?}"
    );
    assert!(
        d.check("DELETE", "/repos/o/r/git/refs/heads/deploybot/a/b", "", b"")
            .is_empty(),
        "a multi-segment ref"
    );
    let p = d.check(
        "GET",
        "/repos/o/r/pulls",
        "state=all&sort=created&colour=red",
        b"",
    );
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].contains("\"colour\" is not declared"), "{p:?}");
    let p = d.check("POST", "/repos/o/r/merges", "", b"{}");
    assert!(p[0].contains("no such operation"), "{p:?}");
    let p = d.check(
        "POST",
        "/repos/o/r/pulls",
        "",
        br#"{"title":"t","base":"main"}"#,
    );
    assert!(
        p.iter()
            .any(|p| p.contains("body.head: required and missing")),
        "{p:?}"
    );
}
