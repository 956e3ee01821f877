//! Docker's `filters` query parameter, in both shapes clients send: the map form
//! `{"label":{"k=v":true}}` (the docker CLI, compose v2) and the list form
//! `{"label":["k=v"]}` (docker-py, compose v1).

use std::collections::{BTreeMap, HashMap};

use super::error::{DResult, DockerError};

/// Parsed filters: each key with its values.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Filters(pub BTreeMap<String, Vec<String>>);

impl Filters {
    /// Parses the `filters` parameter (absent or empty: no filters).
    pub fn parse(text: Option<&str>) -> DResult<Filters> {
        let Some(text) = text.filter(|t| !t.trim().is_empty()) else {
            return Ok(Filters::default());
        };
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| DockerError::bad_request(format!("invalid filters: {e}")))?;
        let obj = value
            .as_object()
            .ok_or_else(|| DockerError::bad_request("invalid filters: not a JSON object"))?;
        let mut out = BTreeMap::new();
        for (key, v) in obj {
            let values: Vec<String> = match v {
                serde_json::Value::Object(m) => m
                    .iter()
                    .filter(|(_, on)| on.as_bool().unwrap_or(true))
                    .map(|(k, _)| k.clone())
                    .collect(),
                serde_json::Value::Array(a) => a
                    .iter()
                    .map(|x| match x {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect(),
                serde_json::Value::String(s) => vec![s.clone()],
                other => {
                    return Err(DockerError::bad_request(format!(
                        "invalid filter {key:?}: {other} is neither a list nor a map"
                    )));
                }
            };
            out.insert(key.clone(), values);
        }
        Ok(Filters(out))
    }

    /// Refuses keys outside `known`, naming the first unknown one (Docker's 400).
    pub fn only(&self, known: &[&str]) -> DResult<()> {
        match self.0.keys().find(|k| !known.contains(&k.as_str())) {
            Some(k) => Err(DockerError::bad_request(format!("invalid filter '{k}'"))),
            None => Ok(()),
        }
    }

    /// The values of `key` (empty when the filter is absent).
    pub fn get(&self, key: &str) -> &[String] {
        self.0.get(key).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Whether `key` is absent, or any of its values satisfies `pred` (Docker ORs the values
    /// of one key and ANDs the keys).
    pub fn any(&self, key: &str, pred: impl Fn(&str) -> bool) -> bool {
        let v = self.get(key);
        v.is_empty() || v.iter().any(|x| pred(x))
    }

    /// The `label` filters against `labels`: every `k` must exist, every `k=v` match (all
    /// label filters must hold, as in Docker).
    pub fn labels_match(&self, labels: &HashMap<String, String>) -> bool {
        self.get("label").iter().all(|f| match f.split_once('=') {
            Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
            None => labels.contains_key(f.as_str()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_shapes_parse_to_the_same_filters() {
        let map =
            Filters::parse(Some(r#"{"label":{"a=b":true},"status":{"running":true}}"#)).unwrap();
        let list = Filters::parse(Some(r#"{"label":["a=b"],"status":["running"]}"#)).unwrap();
        assert_eq!(map, list);
        assert_eq!(map.get("label"), ["a=b"]);
    }

    #[test]
    fn labels_need_every_filter() {
        let f = Filters::parse(Some(r#"{"label":["a=b","c"]}"#)).unwrap();
        let mut labels = HashMap::new();
        labels.insert("a".to_owned(), "b".to_owned());
        assert!(!f.labels_match(&labels));
        labels.insert("c".to_owned(), String::new());
        assert!(f.labels_match(&labels));
        labels.insert("a".to_owned(), "x".to_owned());
        assert!(!f.labels_match(&labels));
    }

    #[test]
    fn malformed_filters_are_a_bad_request() {
        let e = Filters::parse(Some("{")).unwrap_err();
        assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
        assert!(Filters::parse(Some("")).unwrap().0.is_empty());
        let f = Filters::parse(Some(r#"{"nope":["x"]}"#)).unwrap();
        assert_eq!(
            f.only(&["label"]).unwrap_err().message,
            "invalid filter 'nope'"
        );
    }
}
