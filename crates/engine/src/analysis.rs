//! Measurements of a progressive delivery's analysis: an HTTP request to each replica of
//! the new release, and a PromQL query through Prometheus' HTTP API. Each one gives a
//! [`Measurement`] (passed or not, the number seen, a line for people); the engine
//! records it as an event and counts the failures.

use std::time::{Duration, Instant};

use launchway_manifest::{CloudWatchAnalysis, HttpAnalysis, PrometheusAnalysis, format_duration};
use launchway_store::Measurement;
use serde_json::Value;

/// How long one measurement may take when the analysis sets no latency bound.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Asks every address (`http://127.0.0.1:49153/healthz`, or the analysis' one `url`);
/// passes when each answers the expected status (any 2xx by default) within
/// `max_latency`. The value is the slowest answer's latency in milliseconds.
pub(crate) async fn http(client: &reqwest::Client, step: u32, check: &HttpAnalysis, urls: &[String]) -> Measurement {
    let measurement = |passed: bool, value: Option<f64>, detail: String| Measurement {
        step,
        metric: "http".to_owned(),
        passed,
        value,
        detail,
    };
    if urls.is_empty() {
        return measurement(false, None, "no replica of the new release runs to ask".to_owned());
    }
    let timeout = check.max_latency.map_or(DEFAULT_TIMEOUT, |max| (max * 2).max(Duration::from_millis(100)));
    let requests = urls.iter().map(|url| async move {
        let started = Instant::now();
        let answer = client.get(url).timeout(timeout).send().await;
        (url, answer.map(|answer| answer.status().as_u16()), started.elapsed())
    });
    let mut failures = Vec::new();
    let mut slowest = Duration::ZERO;
    for (url, status, took) in futures_util::future::join_all(requests).await {
        slowest = slowest.max(took);
        let ms = took.as_millis();
        match status {
            Err(error) => failures.push(format!("GET {url}: {}", describe_request_error(&error))),
            Ok(status) if !check.status.map_or((200..300).contains(&status), |expected| expected == status) => {
                let expected = check.status.map_or_else(|| "2xx".to_owned(), |status| status.to_string());
                failures.push(format!("GET {url}: {status} in {ms} ms, expected {expected}"));
            }
            Ok(status) if check.max_latency.is_some_and(|max| took > max) => {
                let max = check.max_latency.map(|max| max.as_millis()).unwrap_or_default();
                failures.push(format!("GET {url}: {status} in {ms} ms, slower than {max} ms"));
            }
            Ok(_) => {}
        }
    }
    let value = Some(slowest.as_secs_f64() * 1000.0);
    let asked = match &check.url {
        Some(url) => format!("GET {url}"),
        None => format!("GET {} on {} replica{}", check.path, urls.len(), plural(urls.len())),
    };
    match failures.is_empty() {
        true => {
            measurement(true, value, format!("{asked} answered (slowest {:.0} ms)", slowest.as_secs_f64() * 1000.0))
        }
        false => measurement(false, value, failures.join("; ")),
    }
}

/// Evaluates `check.query` now; passes when it returns at least one value and every
/// value lies within the bounds. The value is the worst one seen.
pub(crate) async fn prometheus(client: &reqwest::Client, step: u32, check: &PrometheusAnalysis) -> Measurement {
    let (passed, value, detail) = match query(client, check).await {
        Err(error) => (false, None, format!("{}: {error}", check.query)),
        Ok(values) if values.is_empty() => {
            (false, None, format!("{} returned nothing: there is nothing to judge the release by", check.query))
        }
        Ok(values) => judge(&check.query, check.max, check.min, &values),
    };
    Measurement { step, metric: "prometheus".to_owned(), passed, value, detail }
}

/// Whether every value of `what` is within bounds, the worst value, and a line saying so.
fn judge(what: &str, max: Option<f64>, min: Option<f64>, values: &[f64]) -> (bool, Option<f64>, String) {
    let over = max.and_then(|max| values.iter().copied().filter(|value| *value > max).reduce(f64::max));
    let under = min.and_then(|min| values.iter().copied().filter(|value| *value < min).reduce(f64::min));
    match (over, under) {
        (Some(value), _) => {
            (false, Some(value), format!("{what} = {value}, above the maximum {}", max.unwrap_or_default()))
        }
        (None, Some(value)) => {
            (false, Some(value), format!("{what} = {value}, below the minimum {}", min.unwrap_or_default()))
        }
        (None, None) => {
            let worst = match max {
                Some(_) => values.iter().copied().reduce(f64::max),
                None => values.iter().copied().reduce(f64::min),
            };
            let worst = worst.unwrap_or_default();
            (true, Some(worst), format!("{what} = {worst}, within bounds"))
        }
    }
}

/// The latest datapoint of a CloudWatch metric (as the target read it) against its
/// bounds; no datapoint in the period fails: nothing was seen.
pub(crate) fn cloudwatch(
    step: u32,
    check: &CloudWatchAnalysis,
    value: Result<Option<f64>, launchway_target::TargetError>,
) -> Measurement {
    let what = format!("{}({}/{})", check.statistic, check.namespace, check.metric);
    let (passed, value, detail) = match value {
        Err(error) => (false, None, format!("{what}: {error}")),
        Ok(None) => (
            false,
            None,
            format!(
                "{what} had no datapoint in the last {}: nothing to judge the release by",
                format_duration(check.period)
            ),
        ),
        Ok(Some(value)) => judge(&what, check.max, check.min, &[value]),
    };
    Measurement { step, metric: "cloudwatch".to_owned(), passed, value, detail }
}

/// Passes when none of the alarms is in ALARM. The value is how many are.
pub(crate) fn alarms(
    step: u32,
    names: &[String],
    firing: Result<Vec<String>, launchway_target::TargetError>,
) -> Measurement {
    let (passed, value, detail) = match firing {
        Err(error) => (false, None, format!("alarms {}: {error}", names.join(", "))),
        Ok(firing) if firing.is_empty() => (true, Some(0.0), format!("no alarm in ALARM ({})", names.join(", "))),
        Ok(firing) => (false, Some(firing.len() as f64), format!("in ALARM: {}", firing.join(", "))),
    };
    Measurement { step, metric: "alarms".to_owned(), passed, value, detail }
}

/// The values an instant query returns: one per series of a vector, or a scalar's.
async fn query(client: &reqwest::Client, check: &PrometheusAnalysis) -> Result<Vec<f64>, String> {
    let endpoint = format!("{}/api/v1/query", check.address.trim_end_matches('/'));
    let url = url::Url::parse_with_params(&endpoint, [("query", check.query.as_str())])
        .map_err(|error| format!("{endpoint} is not a URL: {error}"))?;
    let answer = client
        .get(url.clone())
        .timeout(DEFAULT_TIMEOUT)
        .send()
        .await
        .map_err(|error| format!("asking {endpoint}: {}", describe_request_error(&error)))?;
    let status = answer.status();
    let body: Value =
        answer.json().await.map_err(|error| format!("{endpoint} answered {status} with no JSON: {error}"))?;
    if body["status"] != "success" {
        let error = body["error"].as_str().unwrap_or("no reason given");
        return Err(format!("Prometheus refused the query ({status}): {error}"));
    }
    let sample = |pair: &Value| -> Result<f64, String> {
        pair.get(1)
            .and_then(Value::as_str)
            .and_then(|text| text.parse::<f64>().ok())
            .ok_or_else(|| format!("unexpected sample {pair}"))
    };
    let data = &body["data"];
    match data["resultType"].as_str() {
        Some("vector") => data["result"]
            .as_array()
            .map(|series| series.iter().map(|one| sample(&one["value"])).collect())
            .unwrap_or_else(|| Ok(Vec::new())),
        Some("scalar") => Ok(vec![sample(&data["result"])?]),
        other => Err(format!("the query gives a {}, not a number per series", other.unwrap_or("nothing"))),
    }
}

fn describe_request_error(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "no answer in time".to_owned()
    } else if error.is_connect() {
        "connection refused".to_owned()
    } else {
        launchway_target::describe(error)
    }
}

fn plural(count: usize) -> &'static str {
    if count == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(max: Option<f64>, min: Option<f64>) -> PrometheusAnalysis {
        PrometheusAnalysis { address: "http://127.0.0.1:9".into(), query: "errors".into(), max, min }
    }

    #[test]
    fn a_query_passes_only_when_every_series_is_within_bounds() {
        assert!(judge("errors", Some(0.5), None, &[0.1, 0.5]).0);
        let (passed, value, detail) = judge("errors", Some(0.5), None, &[0.1, 0.9, 0.7]);
        assert_eq!((passed, value), (false, Some(0.9)));
        assert_eq!(detail, "errors = 0.9, above the maximum 0.5");
        let (passed, value, _) = judge("errors", None, Some(10.0), &[12.0, 3.0]);
        assert_eq!((passed, value), (false, Some(3.0)));
    }

    #[test]
    fn a_cloudwatch_metric_without_a_datapoint_fails_and_alarms_in_alarm_fail() {
        let metric = CloudWatchAnalysis {
            namespace: "AWS/ApplicationELB".into(),
            metric: "HTTPCode_Target_5XX_Count".into(),
            dimensions: Default::default(),
            statistic: "Sum".into(),
            period: std::time::Duration::from_secs(60),
            max: Some(0.0),
            min: None,
        };
        let nothing = cloudwatch(1, &metric, Ok(None));
        assert!(!nothing.passed);
        assert_eq!(
            nothing.detail,
            "Sum(AWS/ApplicationELB/HTTPCode_Target_5XX_Count) had no datapoint in the last 1m: nothing to judge the release by"
        );
        assert!(cloudwatch(1, &metric, Ok(Some(0.0))).passed);
        let names = vec!["web-5xx".to_owned(), "web-latency".to_owned()];
        assert!(alarms(1, &names, Ok(Vec::new())).passed);
        let firing = alarms(1, &names, Ok(vec!["web-5xx".to_owned()]));
        assert_eq!((firing.passed, firing.detail.as_str()), (false, "in ALARM: web-5xx"));
    }

    #[tokio::test]
    async fn an_unreachable_prometheus_fails_the_measurement() {
        let measurement = prometheus(&reqwest::Client::new(), 1, &query(Some(1.0), None)).await;
        assert!(!measurement.passed);
        assert!(measurement.detail.contains("connection refused"), "{}", measurement.detail);
    }
}
