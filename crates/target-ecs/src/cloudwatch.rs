//! CloudWatch for analyses of ECS deployments: a metric's latest datapoint
//! (GetMetricStatistics) and which alarms are in ALARM (DescribeAlarms), read with the
//! environment's credentials.

use std::time::SystemTime;

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Datapoint, Dimension, StateValue, Statistic};
use launchway_manifest::CloudWatchAnalysis;
use launchway_target::TargetError;

use crate::error::sdk_error;

/// How many periods back the latest datapoint is looked for (CloudWatch publishes a
/// period's statistics a little after it ends).
const LOOKBACK_PERIODS: u32 = 3;

/// The statistic asked for in the latest datapoint of the last few periods, if any.
pub(crate) async fn latest(
    client: &aws_sdk_cloudwatch::Client,
    query: &CloudWatchAnalysis,
) -> Result<Option<f64>, TargetError> {
    let now = SystemTime::now();
    let start = now - query.period * LOOKBACK_PERIODS;
    let dimensions: Vec<Dimension> =
        query.dimensions.iter().map(|(name, value)| Dimension::builder().name(name).value(value).build()).collect();
    let statistic = Statistic::from(query.statistic.as_str());
    let answer = client
        .get_metric_statistics()
        .namespace(&query.namespace)
        .metric_name(&query.metric)
        .set_dimensions(Some(dimensions))
        .start_time(DateTime::from(start))
        .end_time(DateTime::from(now))
        .period(query.period.as_secs() as i32)
        .statistics(statistic.clone())
        .send()
        .await
        .map_err(|error| sdk_error(&format!("read CloudWatch metric {}/{}", query.namespace, query.metric), error))?;
    let latest = answer.datapoints().iter().max_by_key(|datapoint| datapoint.timestamp().map(|time| time.secs()));
    Ok(latest.and_then(|datapoint| value(datapoint, &statistic)))
}

fn value(datapoint: &Datapoint, statistic: &Statistic) -> Option<f64> {
    match statistic {
        Statistic::Average => datapoint.average(),
        Statistic::Sum => datapoint.sum(),
        Statistic::Minimum => datapoint.minimum(),
        Statistic::Maximum => datapoint.maximum(),
        Statistic::SampleCount => datapoint.sample_count(),
        _ => None,
    }
}

/// The named alarms (metric or composite) that are in ALARM; one that does not exist is
/// an error, since it would never say anything.
pub(crate) async fn firing(client: &aws_sdk_cloudwatch::Client, names: &[String]) -> Result<Vec<String>, TargetError> {
    let answer = client
        .describe_alarms()
        .set_alarm_names(Some(names.to_vec()))
        .send()
        .await
        .map_err(|error| sdk_error("describe CloudWatch alarms", error))?;
    let mut states: Vec<(String, Option<StateValue>)> = answer
        .metric_alarms()
        .iter()
        .map(|alarm| (alarm.alarm_name().unwrap_or_default().to_owned(), alarm.state_value().cloned()))
        .collect();
    states.extend(
        answer
            .composite_alarms()
            .iter()
            .map(|alarm| (alarm.alarm_name().unwrap_or_default().to_owned(), alarm.state_value().cloned())),
    );
    let missing: Vec<&str> =
        names.iter().filter(|name| !states.iter().any(|(found, _)| found == *name)).map(String::as_str).collect();
    if !missing.is_empty() {
        return Err(TargetError::Invalid(format!("no CloudWatch alarm named {}", missing.join(", "))));
    }
    Ok(states.into_iter().filter(|(_, state)| state == &Some(StateValue::Alarm)).map(|(name, _)| name).collect())
}
