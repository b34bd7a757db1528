//! Holds the fakes to the official API descriptions they stand in for: GitHub's REST API
//! (OpenAPI 3.0, `fixtures/github/openapi/`) and Argo CD's (Swagger 2.0,
//! `fixtures/argocd/openapi/`). A request is checked for its operation (method and path
//! template), its query parameters and its JSON body; a response body for the fields its schema
//! declares. Each problem is one line, which the fakes record as a violation.
//!
//! Strict where the descriptions are loose, on purpose: a field the schema does not declare is a
//! problem even without `additionalProperties: false`, so that deploybot sending (or a fake
//! answering) a field GitHub does not have fails a test instead of passing unnoticed.

use serde_json::Value;

/// One API description.
pub struct Description {
    doc: Value,
    /// Argo CD's JSON (grpc-gateway) writes int64 fields as strings.
    int64_as_string: bool,
}

impl Description {
    /// The description at `fixtures/<path>`.
    pub fn load(path: &str, int64_as_string: bool) -> Description {
        let file = super::fixtures_dir().join(path);
        let doc = serde_json::from_slice(&std::fs::read(&file).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        Description {
            doc,
            int64_as_string,
        }
    }

    /// The object a local `$ref` (`#/components/...`, `#/definitions/...`) points at.
    fn resolve<'a>(&'a self, v: &'a Value) -> &'a Value {
        match v["$ref"].as_str() {
            Some(r) => {
                let pointer = r.trim_start_matches('#');
                self.doc
                    .pointer(pointer)
                    .unwrap_or_else(|| panic!("dangling $ref {r}"))
            }
            None => v,
        }
    }

    /// The operation `method path` is, and the values of its path parameters; path templates
    /// match segment by segment, except a parameter marked `x-multi-segment` (a git ref), which
    /// takes the rest of the path.
    fn operation(&self, method: &str, path: &str) -> Option<&Value> {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let method = method.to_ascii_lowercase();
        self.doc["paths"]
            .as_object()?
            .iter()
            .filter_map(|(template, item)| Some((template, item.get(&method)?)))
            .find(|(template, op)| {
                let t: Vec<&str> = template.trim_start_matches('/').split('/').collect();
                let multi = |name: &str| {
                    self.parameters(op).into_iter().any(|p| {
                        p["in"] == "path" && p["name"] == name && p["x-multi-segment"] == true
                    })
                };
                match t.last() {
                    Some(last)
                        if last.starts_with('{')
                            && multi(last.trim_matches(|c| c == '{' || c == '}'))
                            && segments.len() >= t.len() =>
                    {
                        same_segments(&t[..t.len() - 1], &segments[..t.len() - 1])
                    }
                    _ => t.len() == segments.len() && same_segments(&t, &segments),
                }
            })
            .map(|(_, op)| op)
    }

    /// An operation's parameters, `$ref`s resolved.
    fn parameters<'a>(&'a self, op: &'a Value) -> Vec<&'a Value> {
        op["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| self.resolve(p))
            .collect()
    }

    /// What is wrong with the request `method path?query` carrying `body` (empty: none), as the
    /// description has it; empty when nothing is.
    pub fn check_request(&self, method: &str, path: &str, query: &str, body: &[u8]) -> Vec<String> {
        let what = format!("{method} {path}");
        let Some(op) = self.operation(method, path) else {
            return vec![format!("{what}: no such operation in the API description")];
        };
        let mut problems = Vec::new();
        let params = self.parameters(op);
        for pair in query.split('&').filter(|kv| !kv.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode(value);
            match params
                .iter()
                .find(|p| p["in"] == "query" && p["name"] == name)
            {
                None => problems.push(format!("{what}: query parameter {name:?} is not declared")),
                Some(p) => {
                    let schema = if p.get("schema").is_some() {
                        self.resolve(&p["schema"])
                    } else {
                        p // Swagger 2.0 puts the type on the parameter itself
                    };
                    if let Some(allowed) = schema["enum"].as_array()
                        && !allowed.iter().any(|a| a.as_str() == Some(value.as_str()))
                    {
                        problems.push(format!(
                            "{what}: query parameter {name}={value:?} is not one of {allowed:?}"
                        ));
                    }
                    if schema["type"] == "integer" && value.parse::<i64>().is_err() {
                        problems.push(format!(
                            "{what}: query parameter {name}={value:?} is not an integer"
                        ));
                    }
                }
            }
        }
        let request_body = self.resolve(&op["requestBody"]);
        let schema = &request_body["content"]["application/json"]["schema"];
        match (body.is_empty(), schema.is_null()) {
            (true, _) => {
                if request_body["required"] == true {
                    problems.push(format!("{what}: the request body is required"));
                }
            }
            (false, true) => problems.push(format!("{what}: the operation takes no body")),
            (false, false) => match serde_json::from_slice::<Value>(body) {
                Ok(v) => self.check_schema(schema, &v, &format!("{what} body"), &mut problems),
                Err(e) => problems.push(format!("{what}: the body is not JSON: {e}")),
            },
        }
        problems
    }

    /// What is wrong with `value` as an instance of `schema` (pushed to `problems`, `at` naming
    /// the place).
    pub fn check_schema(
        &self,
        schema: &Value,
        value: &Value,
        at: &str,
        problems: &mut Vec<String>,
    ) {
        let schema = self.resolve(schema);
        if value.is_null() && (schema["nullable"] == true || schema["x-nullable"] == true) {
            return;
        }
        if let Some(alternatives) = schema["oneOf"].as_array().or(schema["anyOf"].as_array()) {
            let fits = alternatives.iter().any(|alt| {
                let mut p = Vec::new();
                self.check_schema(alt, value, at, &mut p);
                p.is_empty()
            });
            if !fits {
                problems.push(format!(
                    "{at}: matches none of the schema's alternatives: {value}"
                ));
            }
            return;
        }
        if let Some(all) = schema["allOf"].as_array() {
            // Each part declares some of the fields: the object is checked against their union.
            let mut merged =
                serde_json::json!({"type": "object", "properties": {}, "required": []});
            for part in all {
                let part = self.resolve(part);
                if let Some(props) = part["properties"].as_object() {
                    for (k, v) in props {
                        merged["properties"][k] = v.clone();
                    }
                }
                if let Some(req) = part["required"].as_array() {
                    merged["required"]
                        .as_array_mut()
                        .unwrap()
                        .extend(req.iter().cloned());
                }
            }
            return self.check_schema(&merged, value, at, problems);
        }
        if let Some(allowed) = schema["enum"].as_array()
            && !allowed.contains(value)
        {
            problems.push(format!("{at}: {value} is not one of {allowed:?}"));
        }
        match (schema["type"].as_str(), value) {
            (Some("object") | None, Value::Object(fields)) => {
                for name in schema["required"].as_array().into_iter().flatten() {
                    if let Some(name) = name.as_str()
                        && !fields.contains_key(name)
                    {
                        problems.push(format!("{at}.{name}: required, missing"));
                    }
                }
                for (k, v) in fields {
                    if let Some(p) = schema["properties"].get(k) {
                        self.check_schema(p, v, &format!("{at}.{k}"), problems);
                    } else if let Some(extra) = schema.get("additionalProperties")
                        && extra != false
                    {
                        if extra.is_object() {
                            self.check_schema(extra, v, &format!("{at}.{k}"), problems);
                        }
                    } else {
                        problems.push(format!("{at}.{k}: not a field of the schema"));
                    }
                }
            }
            (None, _) => {}
            (Some("array"), Value::Array(items)) => {
                if let Some(min) = schema["minItems"].as_u64()
                    && (items.len() as u64) < min
                {
                    problems.push(format!("{at}: fewer than {min} items"));
                }
                for (i, v) in items.iter().enumerate() {
                    self.check_schema(&schema["items"], v, &format!("{at}[{i}]"), problems);
                }
            }
            (Some("string"), Value::String(_))
            | (Some("boolean"), Value::Bool(_))
            | (Some("number"), Value::Number(_)) => {}
            (Some("integer"), Value::Number(n)) if n.is_i64() || n.is_u64() => {}
            (Some("integer"), Value::String(_)) if self.int64_as_string => {}
            (want, got) => {
                problems.push(format!("{at}: expected {}, got {got}", want.unwrap_or("?")))
            }
        }
    }

    /// `value` cut to what `schema` declares: the fields GitHub's webhook objects carry beyond
    /// the REST object (a webhook's `repository` has `custom_properties`, a full pull request
    /// is more than the list's `pull-request-simple`) are dropped, as the REST API would not
    /// send them. Types and required fields are left to [`Description::check_schema`].
    pub fn conform(&self, schema: &Value, value: &Value) -> Value {
        let schema = self.resolve(schema);
        if let Some(alternatives) = schema["oneOf"].as_array().or(schema["anyOf"].as_array()) {
            return alternatives
                .iter()
                .map(|alt| self.conform(alt, value))
                .find(|v| {
                    let mut p = Vec::new();
                    self.check_schema(schema, v, "", &mut p);
                    p.is_empty()
                })
                .unwrap_or_else(|| value.clone());
        }
        match value {
            Value::Object(fields)
                if schema["properties"].is_object()
                    && schema.get("additionalProperties").is_none() =>
            {
                Value::Object(
                    fields
                        .iter()
                        .filter_map(|(k, v)| {
                            Some((k.clone(), self.conform(schema["properties"].get(k)?, v)))
                        })
                        .collect(),
                )
            }
            Value::Array(items) if schema["type"] == "array" => Value::Array(
                items
                    .iter()
                    .map(|v| self.conform(&schema["items"], v))
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    /// A schema of `components/schemas` by name.
    pub fn schema(&self, name: &str) -> &Value {
        let s = &self.doc["components"]["schemas"][name];
        assert!(!s.is_null(), "no schema {name} in the description");
        s
    }

    /// The schema of the JSON response `status` of `method path`, if the description gives one.
    pub fn response_schema(&self, method: &str, path: &str, status: u16) -> Option<&Value> {
        let op = self.operation(method, path)?;
        let response = self.resolve(op["responses"].get(status.to_string())?);
        let schema = response["content"]["application/json"]
            .get("schema")
            .or(response.get("schema"))?;
        Some(schema)
    }
}

fn same_segments(template: &[&str], path: &[&str]) -> bool {
    template
        .iter()
        .zip(path)
        .all(|(t, s)| t == s || (t.starts_with('{') && !s.is_empty()))
}

/// Query values as sent (`+` and `%XX` escapes decoded).
fn percent_decode(s: &str) -> String {
    reqwest::Url::parse(&format!("http://x/?v={s}"))
        .ok()
        .and_then(|u| u.query_pairs().next().map(|(_, v)| v.into_owned()))
        .unwrap_or_else(|| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::Description;

    fn github() -> Description {
        Description::load("github/openapi/github-rest-subset.json", false)
    }

    #[test]
    fn requests_are_held_to_github_s_description() {
        let d = github();
        let merge = "/repos/o/r/pulls/7/merge";
        assert_eq!(
            d.check_request(
                "PUT",
                merge,
                "",
                br#"{"sha":"abc","merge_method":"squash"}"#
            ),
            Vec::<String>::new()
        );
        assert_eq!(
            d.check_request("PUT", merge, "", br#"{"merge_method":"fast-forward"}"#),
            [
                r#"PUT /repos/o/r/pulls/7/merge body.merge_method: "fast-forward" is not one of [String("merge"), String("squash"), String("rebase")]"#
            ]
        );
        assert_eq!(
            d.check_request("PUT", merge, "", br#"{"sha":"abc","force":true}"#),
            ["PUT /repos/o/r/pulls/7/merge body.force: not a field of the schema"]
        );
        assert!(d.check_request("POST", merge, "", b"")[0].contains("no such operation"));
        assert_eq!(
            d.check_request(
                "GET",
                "/repos/o/r/pulls",
                "state=open&head=o:b&per_page=100",
                b""
            ),
            Vec::<String>::new()
        );
        assert!(
            d.check_request("GET", "/repos/o/r/pulls", "state=merged", b"")[0]
                .contains("is not one of")
        );
        assert!(
            d.check_request("GET", "/repos/o/r/pulls", "fresh=1", b"")[0]
                .contains("\"fresh\" is not declared")
        );
        // A git ref spans segments.
        assert_eq!(
            d.check_request("DELETE", "/repos/o/r/git/refs/heads/deploybot/a/b", "", b""),
            Vec::<String>::new()
        );
        // Labels: an object with a list, or the list itself; never an empty one.
        let labels = "/repos/o/r/issues/3/labels";
        assert!(
            d.check_request("POST", labels, "", br#"{"labels":["a"]}"#)
                .is_empty()
        );
        // The list alone is in GitHub's prose but not in this description: refused.
        assert!(
            d.check_request("POST", labels, "", br#"["a","b"]"#)[0]
                .contains("matches none of the schema's alternatives")
        );
        assert!(
            !d.check_request("POST", labels, "", br#"{"labels":[]}"#)
                .is_empty()
        );
        // A required body field.
        let pulls = "/repos/o/r/pulls";
        assert!(
            d.check_request("POST", pulls, "", br#"{"title":"t","head":"h"}"#)[0]
                .contains("body.base: required, missing")
        );
    }

    #[test]
    fn responses_have_schemas_to_hold_the_fake_to() {
        let d = github();
        let schema = d.response_schema("GET", "/repos/o/r/pulls/7", 200).unwrap();
        let mut problems = Vec::new();
        d.check_schema(
            schema,
            &serde_json::json!({"number": "seven"}),
            "pull",
            &mut problems,
        );
        assert!(
            problems
                .iter()
                .any(|p| p == "pull.number: expected integer, got \"seven\""),
            "{problems:?}"
        );
    }
}
