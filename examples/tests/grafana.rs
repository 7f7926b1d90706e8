//! The Grafana dashboard (`examples/grafana/bulwark.json`) against the code and the README:
//! every metric it queries is one a crate records, every metric a crate records or the
//! README lists has a panel, and each is queried the way its type needs (counters through
//! `rate`, gauges as they are), so the three cannot drift apart.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the examples package is inside the workspace")
        .to_path_buf()
}

fn dashboard() -> Value {
    let path = workspace().join("examples/grafana/bulwark.json");
    let text = std::fs::read_to_string(&path).expect("the Grafana dashboard");
    serde_json::from_str(&text).expect("valid JSON")
}

/// Every panel, rows' nested panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut all = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        all.push(panel);
        if let Some(nested) = panel["panels"].as_array() {
            all.extend(nested);
        }
    }
    all
}

/// Every query of every panel.
fn expressions(dashboard: &Value) -> Vec<String> {
    panels(dashboard)
        .into_iter()
        .filter_map(|panel| panel["targets"].as_array())
        .flatten()
        .map(|target| {
            target["expr"]
                .as_str()
                .expect("each target has an expr")
                .to_string()
        })
        .collect()
}

/// The `bulwark_*` names in `text`, each with the text that follows it.
fn metric_uses(text: &str) -> Vec<(String, &str)> {
    let mut uses = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("bulwark_") {
        let preceded_by_word = rest[..at]
            .chars()
            .last()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        if !preceded_by_word {
            uses.push((tail[..end].to_string(), &tail[end..]));
        }
        rest = &tail[end..];
    }
    uses
}

/// The metrics the crates record: `metric_name!("x")` is `bulwark_x`. The core crate only
/// defines the macro (its own uses are examples and tests), so it is left out.
fn recorded_metrics() -> BTreeSet<String> {
    fn walk(dir: &Path, found: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).expect("a readable source folder") {
            let path = entry.expect("a folder entry").path();
            if path.is_dir() {
                walk(&path, found);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("a source file");
                for part in text.split("metric_name!(\"").skip(1) {
                    let name = part.split('"').next().expect("a closing quote");
                    found.insert(format!("bulwark_{name}"));
                }
            }
        }
    }
    let mut found = BTreeSet::new();
    for entry in std::fs::read_dir(workspace().join("crates")).expect("crates/") {
        let crate_dir = entry.expect("a crate folder").path();
        if crate_dir.file_name().is_some_and(|n| n == "core") {
            continue;
        }
        let src = crate_dir.join("src");
        if src.is_dir() {
            walk(&src, &mut found);
        }
    }
    found
}

/// The metrics named in the first column of the README's metrics table.
fn readme_metrics() -> BTreeSet<String> {
    let readme = std::fs::read_to_string(workspace().join("README.md")).expect("README.md");
    let section = readme
        .split("\n## Metrics")
        .nth(1)
        .expect("a Metrics section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let mut names = BTreeSet::new();
    for line in section.lines().filter(|l| l.starts_with('|')) {
        let first_cell = line.split('|').nth(1).unwrap_or("");
        names.extend(metric_uses(first_cell).into_iter().map(|(name, _)| name));
    }
    names
}

/// The name a series belongs to: a histogram's (or summary's) `_sum`, `_count` and
/// `_bucket` series are its own.
fn family<'a>(series: &'a str, known: &BTreeSet<String>) -> &'a str {
    if known.contains(series) {
        return series;
    }
    ["_sum", "_count", "_bucket"]
        .iter()
        .find_map(|suffix| {
            series
                .strip_suffix(suffix)
                .filter(|base| known.contains(*base))
        })
        .unwrap_or(series)
}

/// What follows a metric name in a query, past its label matchers.
fn after_matchers(rest: &str) -> &str {
    match rest.strip_prefix('{') {
        Some(inside) => inside.split_once('}').map_or("", |(_, after)| after),
        None => rest,
    }
}

#[test]
fn the_dashboard_is_a_grafana_dashboard_on_a_prometheus_variable() {
    let dashboard = dashboard();
    let schema = dashboard["schemaVersion"].as_u64().expect("schemaVersion");
    assert!((36..=41).contains(&schema), "schemaVersion {schema}");
    assert!(dashboard["uid"].as_str().is_some_and(|u| !u.is_empty()));
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("template variables");
    let source = variables
        .iter()
        .find(|v| v["name"] == "DS_PROMETHEUS")
        .expect("a DS_PROMETHEUS variable");
    assert_eq!(source["type"], "datasource");
    assert_eq!(source["query"], "prometheus");

    let mut ids = BTreeSet::new();
    for panel in panels(&dashboard) {
        let id = panel["id"].as_u64().expect("every panel has an id");
        assert!(ids.insert(id), "panel id {id} used twice");
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(
            panel["datasource"]["uid"], "${DS_PROMETHEUS}",
            "panel {}",
            panel["title"]
        );
        let targets = panel["targets"].as_array().expect("a panel has targets");
        assert!(
            !targets.is_empty(),
            "panel {} queries nothing",
            panel["title"]
        );
        for target in targets {
            assert_eq!(target["datasource"]["uid"], "${DS_PROMETHEUS}");
        }
    }

    // Each label variable is used by some query, and names a label the metrics have.
    let queries = expressions(&dashboard).join("\n");
    for variable in variables.iter().filter(|v| v["type"] == "query") {
        let name = variable["name"].as_str().expect("a variable name");
        assert!(
            queries.contains(&format!("=~\"${name}\"")),
            "variable ${name} is used by no query"
        );
        let definition = variable["definition"].as_str().expect("a definition");
        assert!(definition.starts_with("label_values("), "{definition}");
    }
}

#[test]
fn every_metric_queried_is_recorded_by_a_crate() {
    let recorded = recorded_metrics();
    assert!(
        recorded.len() >= 20,
        "the source scan found too few metrics: {recorded:?}"
    );
    let dashboard = dashboard();
    let mut unknown = BTreeSet::new();
    for expr in expressions(&dashboard) {
        for (series, _) in metric_uses(&expr) {
            if !recorded.contains(family(&series, &recorded)) {
                unknown.insert(series);
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "queried but recorded by no crate: {unknown:?}"
    );
    // Descriptions and variables name metrics too (variables by a prefix, `bulwark_x_`).
    let text = dashboard.to_string();
    for (name, _) in metric_uses(&text) {
        let known = if name.ends_with('_') {
            recorded.iter().any(|r| r.starts_with(&name))
        } else {
            recorded.contains(family(&name, &recorded))
        };
        assert!(known, "the dashboard names {name}, which no crate records");
    }
}

#[test]
fn every_metric_recorded_or_documented_has_a_panel() {
    let recorded = recorded_metrics();
    let readme = readme_metrics();
    assert!(
        readme.len() >= 20,
        "the README table parse found {readme:?}"
    );
    let dashboard = dashboard();
    let queried: BTreeSet<String> = expressions(&dashboard)
        .iter()
        .flat_map(|expr| metric_uses(expr))
        .map(|(series, _)| family(&series, &recorded).to_string())
        .collect();
    let missing_readme: Vec<_> = readme.difference(&queried).collect();
    assert!(
        missing_readme.is_empty(),
        "in the README's table, not in the Grafana dashboard: {missing_readme:?}"
    );
    let missing_recorded: Vec<_> = recorded.difference(&queried).collect();
    assert!(
        missing_recorded.is_empty(),
        "recorded by a crate, not in the Grafana dashboard: {missing_recorded:?}"
    );
    // And the README lists what the crates record, so the two checks above are one.
    let undocumented: Vec<_> = recorded.difference(&readme).collect();
    assert!(
        undocumented.is_empty(),
        "recorded by a crate, not in the README's table: {undocumented:?}"
    );
}

/// metrics-exporter-prometheus keeps a counter's name as recorded (it appends no
/// `_total`: see the `prometheus_names` test), so counters are queried by the name the
/// crate records, through `rate`, and gauges and summaries as they are.
#[test]
fn counters_are_rates_and_gauges_are_read_as_they_are() {
    let recorded = recorded_metrics();
    let dashboard = dashboard();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for expr in expressions(&dashboard) {
        for (series, rest) in metric_uses(&expr) {
            *seen.entry(series.clone()).or_default() += 1;
            let ranged = after_matchers(rest).starts_with('[');
            let family = family(&series, &recorded);
            let counter_like = series.ends_with("_total") || family != series;
            if counter_like {
                assert!(ranged, "{series} without a range in `{expr}`");
                let before = &expr[..expr.len() - rest.len() - series.len()];
                assert!(
                    before.trim_end().ends_with("rate("),
                    "{series} not under rate() in `{expr}`"
                );
            } else {
                assert!(!ranged, "gauge {series} read as a range in `{expr}`");
            }
            assert!(
                !series.ends_with("_total_total"),
                "{series}: the exporter adds no second _total"
            );
        }
    }
    assert!(seen.keys().any(|s| s.ends_with("_total")));
    assert!(seen.contains_key("bulwark_breaker_state"));
}

#[test]
fn the_helpers_find_what_they_should() {
    let uses =
        metric_uses(r#"sum(rate(bulwark_a_total{x="y"}[1m])) / my_bulwark_b + bulwark_c_sum[5m]"#);
    let names: Vec<&str> = uses.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["bulwark_a_total", "bulwark_c_sum"]);
    assert_eq!(
        after_matchers(uses[0].1),
        "[1m])) / my_bulwark_b + bulwark_c_sum[5m]"
    );
    let known: BTreeSet<String> = ["bulwark_c".to_string()].into();
    assert_eq!(family("bulwark_c_sum", &known), "bulwark_c");
    assert_eq!(family("bulwark_c_bucket", &known), "bulwark_c");
    assert_eq!(family("bulwark_d_sum", &known), "bulwark_d_sum");
    assert_eq!(after_matchers("{a=\"b\"}"), "");
}
