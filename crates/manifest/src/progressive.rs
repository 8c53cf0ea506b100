//! Progressive strategies as a manifest writes them: `blue_green:`, `canary:` and
//! `linear:` under `strategy:`, with the `analysis:` that checks each traffic step and,
//! on ECS, the `gates:` where ECS's own deployment pauses for launchway to decide.
//!
//! ```yaml
//! strategy:
//!   canary:
//!     steps:
//!       - {weight: 20, pause: 30s}
//!       - {weight: 60, pause: 30s}
//!     analysis:
//!       interval: 10s
//!       http: {path: /healthz, max_latency: 250ms}
//!       prometheus: {address: "http://127.0.0.1:9090", query: "…", max: 0.01}
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use crate::model::{
    Analysis, CanaryStep, CloudWatchAnalysis, Gate, GateStage, HttpAnalysis, PrometheusAnalysis, Strategy,
};
use crate::node::{Node, Value};
use crate::reader::Reader;

const BLUE_GREEN_FIELDS: &[&str] = &["bake", "timeout", "analysis", "gates"];
const CANARY_FIELDS: &[&str] = &["steps", "timeout", "analysis", "gates"];
const LINEAR_FIELDS: &[&str] = &["step", "pause", "bake", "timeout", "analysis", "gates"];
const GATE_FIELDS: &[&str] = &["at", "hold", "approval", "timeout"];
const STEP_FIELDS: &[&str] = &["weight", "pause", "approval"];
const ANALYSIS_FIELDS: &[&str] = &["interval", "count", "failure_limit", "http", "prometheus", "cloudwatch", "alarms"];
const CLOUDWATCH_FIELDS: &[&str] = &["namespace", "metric", "dimensions", "statistic", "period", "max", "min"];
const STATISTICS: &[&str] = &["Average", "Sum", "Minimum", "Maximum", "SampleCount"];
const HTTP_FIELDS: &[&str] = &["path", "url", "port", "status", "max_latency"];
const PROMETHEUS_FIELDS: &[&str] = &["address", "query", "max", "min"];

/// How long the new set may take to start, as for a rolling update.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
/// How long the old set of a blue/green deployment is kept once traffic has moved.
const DEFAULT_BAKE: Duration = Duration::from_secs(30);
const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// How long ECS waits at a gate before it rolls back by itself (ECS's own default).
const DEFAULT_GATE_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// More canary steps than this is a mistake, not a plan.
const MAX_STEPS: usize = 20;

pub(crate) fn read_blue_green(reader: &mut Reader<'_>, node: &Node, path: &str) -> Option<Strategy> {
    let fields = reader.fields(node, path, BLUE_GREEN_FIELDS)?;
    let bake = match fields.get("bake") {
        Some(node) => reader.duration(node, &format!("{path}.bake")),
        None => Some(DEFAULT_BAKE),
    };
    let timeout = read_timeout(reader, fields.get("timeout"), path);
    let analysis = read_optional_analysis(reader, fields.get("analysis"), path);
    let gates = read_optional_gates(reader, fields.get("gates"), path);
    Some(Strategy::BlueGreen { bake: bake?, timeout: timeout?, analysis: analysis?, gates: gates? })
}

pub(crate) fn read_linear(reader: &mut Reader<'_>, node: &Node, path: &str) -> Option<Strategy> {
    let fields = reader.fields(node, path, LINEAR_FIELDS)?;
    let step = match fields.get("step") {
        Some(node) => reader.integer(node, &format!("{path}.step"), 1, 99).map(|step| step as u8),
        None => {
            reader.error(fields.pos(), path, "`step` is required: the percent of traffic each step adds, like 25");
            None
        }
    };
    let mut duration = |name: &str| match fields.get(name) {
        Some(node) => reader.duration(node, &format!("{path}.{name}")),
        None => Some(Duration::ZERO),
    };
    let (pause, bake) = (duration("pause"), duration("bake"));
    let timeout = read_timeout(reader, fields.get("timeout"), path);
    let analysis = read_optional_analysis(reader, fields.get("analysis"), path);
    let gates = read_optional_gates(reader, fields.get("gates"), path);
    Some(Strategy::Linear {
        step: step?,
        pause: pause?,
        bake: bake?,
        timeout: timeout?,
        analysis: analysis?,
        gates: gates?,
    })
}

/// `Some(vec![])`: no gates written; `None`: some written wrong (reported).
fn read_optional_gates(reader: &mut Reader<'_>, node: Option<&Node>, path: &str) -> Option<Vec<Gate>> {
    let Some(node) = node else { return Some(Vec::new()) };
    let path = format!("{path}.gates");
    let Value::Seq(items) = &node.value else {
        reader.error(node.pos, &path, "expected a list of gates, like [{at: post_test_traffic_shift, hold: 1m}]");
        return None;
    };
    let mut gates: Vec<Gate> = Vec::with_capacity(items.len());
    let mut ok = true;
    for (index, item) in items.iter().enumerate() {
        let gate_path = format!("{path}[{index}]");
        match read_gate(reader, item, &gate_path) {
            Some(gate) if gates.iter().any(|other| other.at == gate.at) => {
                reader.error(item.pos, &gate_path, format!("a second gate at {}: one per stage", gate.at.as_str()));
                ok = false;
            }
            Some(gate) => gates.push(gate),
            None => ok = false,
        }
    }
    gates.sort_by_key(|gate| gate.at);
    ok.then_some(gates)
}

fn read_gate(reader: &mut Reader<'_>, node: &Node, path: &str) -> Option<Gate> {
    let fields = reader.fields(node, path, GATE_FIELDS)?;
    let stages = || GateStage::ALL.map(GateStage::as_str).join(", ");
    let at = match fields.get("at") {
        Some(node) => match reader.string(node, &format!("{path}.at")) {
            Some(text) => match GateStage::parse(&text) {
                Some(stage) => Some(stage),
                None => {
                    let mut message = format!("{text:?} is not a stage an ECS deployment pauses at ({})", stages());
                    if let Some(suggestion) = crate::reader::closest(&text, &GateStage::ALL.map(GateStage::as_str)) {
                        message.push_str(&format!("; did you mean {suggestion:?}?"));
                    }
                    reader.error(node.pos, &format!("{path}.at"), message);
                    None
                }
            },
            None => None,
        },
        None => {
            reader.error(fields.pos(), path, format!("`at` is required: the stage to pause at ({})", stages()));
            None
        }
    };
    let hold = match fields.get("hold") {
        Some(node) => reader.duration(node, &format!("{path}.hold")),
        None => Some(Duration::ZERO),
    };
    let approval = match fields.get("approval") {
        Some(node) => reader.boolean(node, &format!("{path}.approval")),
        None => Some(false),
    };
    let timeout = match fields.get("timeout") {
        Some(node) => reader.duration(node, &format!("{path}.timeout")),
        None => Some(DEFAULT_GATE_TIMEOUT),
    };
    Some(Gate { at: at?, hold: hold?, approval: approval?, timeout: timeout? })
}

pub(crate) fn read_canary(reader: &mut Reader<'_>, node: &Node, path: &str) -> Option<Strategy> {
    let fields = reader.fields(node, path, CANARY_FIELDS)?;
    let steps = match fields.get("steps") {
        Some(node) => read_steps(reader, node, &format!("{path}.steps")),
        None => {
            reader.error(
                fields.pos(),
                path,
                "`steps` is required: the traffic weights, like [{weight: 20, pause: 30s}]",
            );
            None
        }
    };
    let timeout = read_timeout(reader, fields.get("timeout"), path);
    let analysis = read_optional_analysis(reader, fields.get("analysis"), path);
    let gates = read_optional_gates(reader, fields.get("gates"), path);
    Some(Strategy::Canary { steps: steps?, timeout: timeout?, analysis: analysis?, gates: gates? })
}

fn read_timeout(reader: &mut Reader<'_>, node: Option<&Node>, path: &str) -> Option<Duration> {
    match node {
        Some(node) => reader.duration(node, &format!("{path}.timeout")),
        None => Some(DEFAULT_TIMEOUT),
    }
}

fn read_steps(reader: &mut Reader<'_>, node: &Node, path: &str) -> Option<Vec<CanaryStep>> {
    let Value::Seq(items) = &node.value else {
        reader.error(node.pos, path, "expected a list of steps, like [{weight: 20, pause: 30s}, {weight: 60}]");
        return None;
    };
    if items.is_empty() || items.len() > MAX_STEPS {
        reader.error(node.pos, path, format!("expected 1 to {MAX_STEPS} steps, found {}", items.len()));
        return None;
    }
    let mut steps = Vec::with_capacity(items.len());
    let mut ok = true;
    for (index, item) in items.iter().enumerate() {
        let step_path = format!("{path}[{index}]");
        let Some(fields) = reader.fields(item, &step_path, STEP_FIELDS) else {
            ok = false;
            continue;
        };
        let weight = match fields.get("weight") {
            Some(node) => reader.integer(node, &format!("{step_path}.weight"), 1, 100).map(|weight| weight as u8),
            None => {
                reader.error(fields.pos(), &step_path, "`weight` is required: the percent of requests, 1 to 100");
                None
            }
        };
        let pause = match fields.get("pause") {
            Some(node) => reader.duration(node, &format!("{step_path}.pause")),
            None => Some(Duration::ZERO),
        };
        let approval = match fields.get("approval") {
            Some(node) => reader.boolean(node, &format!("{step_path}.approval")),
            None => Some(false),
        };
        match (weight, pause, approval) {
            (Some(weight), Some(pause), Some(approval)) => steps.push(CanaryStep { weight, pause, approval }),
            _ => ok = false,
        }
    }
    ok.then_some(steps)
}

/// `Some(None)`: no analysis written; `None`: one written wrong (reported).
fn read_optional_analysis(reader: &mut Reader<'_>, node: Option<&Node>, path: &str) -> Option<Option<Box<Analysis>>> {
    match node {
        Some(node) => read_analysis(reader, node, &format!("{path}.analysis")).map(|analysis| Some(Box::new(analysis))),
        None => Some(None),
    }
}

fn read_analysis(reader: &mut Reader<'_>, node: &Node, path: &str) -> Option<Analysis> {
    let fields = reader.fields(node, path, ANALYSIS_FIELDS)?;
    let interval = match fields.get("interval") {
        Some(node) => match reader.duration(node, &format!("{path}.interval")) {
            Some(interval) if interval.is_zero() => {
                reader.error(node.pos, &format!("{path}.interval"), "must be greater than zero");
                None
            }
            other => other,
        },
        None => Some(DEFAULT_INTERVAL),
    };
    let failure_limit = match fields.get("failure_limit") {
        Some(node) => reader.integer(node, &format!("{path}.failure_limit"), 0, 1000).map(|limit| limit as u32),
        None => Some(0),
    };
    let count = match fields.get("count") {
        Some(node) => reader.integer(node, &format!("{path}.count"), 1, 1000).map(|count| Some(count as u32)),
        None => Some(None),
    };
    let http = match fields.get("http") {
        Some(node) => read_http(reader, node, &format!("{path}.http")).map(Some),
        None => Some(None),
    };
    let prometheus = match fields.get("prometheus") {
        Some(node) => read_prometheus(reader, node, &format!("{path}.prometheus")).map(Some),
        None => Some(None),
    };
    let cloudwatch = match fields.get("cloudwatch") {
        Some(node) => read_cloudwatch(reader, node, &format!("{path}.cloudwatch")).map(Some),
        None => Some(None),
    };
    let alarms = match fields.get("alarms") {
        Some(node) => reader.string_list(node, &format!("{path}.alarms")),
        None => Some(Vec::new()),
    };
    if !["http", "prometheus", "cloudwatch", "alarms"].iter().any(|name| fields.has(name)) {
        reader.error(
            fields.pos(),
            path,
            "an analysis measures something: add `http`, `prometheus`, `cloudwatch` or `alarms`",
        );
        return None;
    }
    Some(Analysis {
        interval: interval?,
        failure_limit: failure_limit?,
        count: count?,
        http: http?,
        prometheus: prometheus?,
        cloudwatch: cloudwatch?,
        alarms: alarms?,
    })
}

fn read_http(reader: &mut Reader<'_>, node: &Node, path: &str) -> Option<HttpAnalysis> {
    let fields = reader.fields(node, path, HTTP_FIELDS)?;
    let url = match fields.get("url") {
        Some(node) => match reader.string(node, &format!("{path}.url")) {
            Some(value) if url::Url::parse(&value).is_ok_and(|url| matches!(url.scheme(), "http" | "https")) => {
                Some(Some(value))
            }
            Some(value) => {
                reader.error(
                    node.pos,
                    &format!("{path}.url"),
                    format!("{value:?} is not an address like \"https://test.example.com:8443/healthz\""),
                );
                None
            }
            None => None,
        },
        None => Some(None),
    };
    let request_path = match (fields.get("path"), fields.get("url")) {
        (Some(node), None) => reader.url_path(node, &format!("{path}.path")),
        (None, Some(_)) => Some(String::new()),
        (Some(node), Some(_)) => {
            reader.error(
                node.pos,
                &format!("{path}.path"),
                "give `path` (each replica) or `url` (one address), not both",
            );
            None
        }
        (None, None) => {
            reader.error(
                fields.pos(),
                path,
                "`path` is required: the HTTP path to ask each replica for, like \"/healthz\" (or `url`, one address)",
            );
            None
        }
    };
    let port = match fields.get("port") {
        Some(node) => reader.integer(node, &format!("{path}.port"), 1, 65535).map(|port| Some(port as u16)),
        None => Some(None),
    };
    let status = match fields.get("status") {
        Some(node) => reader.integer(node, &format!("{path}.status"), 100, 599).map(|status| Some(status as u16)),
        None => Some(None),
    };
    let max_latency = match fields.get("max_latency") {
        Some(node) => reader.duration(node, &format!("{path}.max_latency")).map(Some),
        None => Some(None),
    };
    Some(HttpAnalysis { path: request_path?, url: url?, port: port?, status: status?, max_latency: max_latency? })
}

fn read_prometheus(reader: &mut Reader<'_>, node: &Node, path: &str) -> Option<PrometheusAnalysis> {
    let fields = reader.fields(node, path, PROMETHEUS_FIELDS)?;
    let address = match fields.get("address") {
        Some(node) => match reader.string(node, &format!("{path}.address")) {
            Some(value) if !(value.starts_with("http://") || value.starts_with("https://")) => {
                reader.error(
                    node.pos,
                    &format!("{path}.address"),
                    format!("{value:?} is not an address like \"http://127.0.0.1:9090\""),
                );
                None
            }
            other => other,
        },
        None => {
            reader.error(fields.pos(), path, "`address` is required: Prometheus' URL, like \"http://127.0.0.1:9090\"");
            None
        }
    };
    let query = match fields.get("query") {
        Some(node) => reader.string(node, &format!("{path}.query")),
        None => {
            reader.error(fields.pos(), path, "`query` is required: the PromQL expression to evaluate");
            None
        }
    };
    let (max, min) = read_bounds(reader, &fields, path, "a query")?;
    Some(PrometheusAnalysis { address: address?, query: query?, max, min })
}

fn read_cloudwatch(reader: &mut Reader<'_>, node: &Node, path: &str) -> Option<CloudWatchAnalysis> {
    let fields = reader.fields(node, path, CLOUDWATCH_FIELDS)?;
    let mut required = |name: &str, what: &str| match fields.get(name) {
        Some(node) => reader.string(node, &format!("{path}.{name}")),
        None => {
            reader.error(fields.pos(), path, format!("`{name}` is required: {what}"));
            None
        }
    };
    let namespace = required("namespace", "the metric's namespace, like \"AWS/ApplicationELB\"");
    let metric = required("metric", "the metric's name, like \"HTTPCode_Target_5XX_Count\"");
    let dimensions = match fields.get("dimensions") {
        Some(node) => reader.string_map(node, &format!("{path}.dimensions")),
        None => Some(BTreeMap::new()),
    };
    let statistic = match fields.get("statistic") {
        Some(node) => match reader.string(node, &format!("{path}.statistic")) {
            Some(statistic) if STATISTICS.contains(&statistic.as_str()) => Some(statistic),
            Some(statistic) => {
                reader.error(
                    node.pos,
                    &format!("{path}.statistic"),
                    format!("{statistic:?} is not a CloudWatch statistic ({})", STATISTICS.join(", ")),
                );
                None
            }
            None => None,
        },
        None => Some("Average".to_owned()),
    };
    let period = match fields.get("period") {
        Some(node) => match reader.duration(node, &format!("{path}.period")) {
            Some(period) if cloudwatch_period(period) => Some(period),
            Some(_) => {
                reader.error(
                    node.pos,
                    &format!("{path}.period"),
                    "CloudWatch periods are 1s, 5s, 10s, 30s or whole minutes",
                );
                None
            }
            None => None,
        },
        None => Some(Duration::from_secs(60)),
    };
    let (max, min) = read_bounds(reader, &fields, path, "a metric")?;
    Some(CloudWatchAnalysis {
        namespace: namespace?,
        metric: metric?,
        dimensions: dimensions?,
        statistic: statistic?,
        period: period?,
        max,
        min,
    })
}

/// `max` and `min`, at least one of them: what `what` is judged by.
fn read_bounds(
    reader: &mut Reader<'_>,
    fields: &crate::reader::Fields<'_>,
    path: &str,
    what: &str,
) -> Option<(Option<f64>, Option<f64>)> {
    let mut bound = |name: &str| match fields.get(name) {
        Some(node) => reader.number(node, &format!("{path}.{name}")).map(Some),
        None => Some(None),
    };
    let (max, min) = (bound("max"), bound("min"));
    if !fields.has("max") && !fields.has("min") {
        reader.error(fields.pos(), path, format!("{what} needs a threshold: `max`, `min` or both"));
        return None;
    }
    Some((max?, min?))
}

/// Whether CloudWatch keeps statistics at this period: 1, 5, 10 or 30 seconds (high
/// resolution metrics) or whole minutes.
fn cloudwatch_period(period: Duration) -> bool {
    let seconds = period.as_secs();
    period.subsec_nanos() == 0 && ([1, 5, 10, 30].contains(&seconds) || (seconds >= 60 && seconds.is_multiple_of(60)))
}
