//! Managing what cwtap reads: log groups, streams, retention, subscription
//! and metric filters, and tags.
//!
//! Every call goes through the module's retry policy. Creating something
//! that exists is success ([`Created::Existed`]); names and retention values
//! are checked before any call, so a typo costs no request.

use std::collections::BTreeMap;

use aws_sdk_cloudwatchlogs::types::{Distribution, MetricTransformation, OrderBy};
use serde::Serialize;

use super::{CloudWatch, CloudWatchError};
use crate::shutdown::Shutdown;
use crate::time::EpochMs;

/// The retention periods CloudWatch accepts, in days.
pub const RETENTION_DAYS: [i32; 22] = [
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

/// Why an admin operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The log group does not exist.
    #[error(
        "log group {group} not found in region {region}: check the name with `cwtap groups list`, or create it with `cwtap groups create`"
    )]
    GroupNotFound { group: String, region: String },
    /// A stream or filter of an existing group does not exist.
    #[error("{what} not found in log group {group} (region {region})")]
    NotFound {
        what: String,
        group: String,
        region: String,
    },
    /// A retention CloudWatch does not accept (checked before any call).
    #[error(
        "a retention of {days} days is not allowed: CloudWatch accepts 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288 or 3653"
    )]
    Retention { days: i64 },
    /// A group or stream name CloudWatch would refuse.
    #[error("{0}")]
    InvalidName(String),
    /// Options that cannot go together.
    #[error("{0}")]
    Usage(String),
    /// CloudWatch refused the values (InvalidParameter, LimitExceeded).
    #[error("{operation} on {resource} was refused: {message}")]
    Refused {
        operation: &'static str,
        resource: String,
        message: String,
    },
    /// Any other failed call.
    #[error(transparent)]
    CloudWatch(#[from] CloudWatchError),
}

impl AdminError {
    /// Errors in what the user typed (exit code 2), found before any call.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            AdminError::Retention { .. } | AdminError::InvalidName(_) | AdminError::Usage(_)
        )
    }
}

/// Checks a retention period against the values CloudWatch accepts.
pub fn check_retention(days: i64) -> Result<i32, AdminError> {
    RETENTION_DAYS
        .iter()
        .copied()
        .find(|&d| i64::from(d) == days)
        .ok_or(AdminError::Retention { days })
}

/// CloudWatch's rule for log group names (1-512 of `[.\-_/#A-Za-z0-9]`);
/// `None` when `name` is valid. An empty name passes when `allow_empty`
/// (a prefix).
pub fn group_name_problem(name: &str, allow_empty: bool) -> Option<String> {
    if (name.is_empty() && !allow_empty) || name.len() > 512 {
        return Some("a log group name is 1 to 512 characters".into());
    }
    name.chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/' | '#')))
        .map(|c| {
            format!("{name:?} has {c:?}; log group names use only letters, digits and . - _ / #")
        })
}

fn check_group(name: &str) -> Result<(), AdminError> {
    match group_name_problem(name, false) {
        Some(problem) => Err(AdminError::InvalidName(format!(
            "invalid log group name: {problem}"
        ))),
        None => Ok(()),
    }
}

/// What is wrong with `arn` as a subscription destination (a Firehose
/// delivery stream, a Kinesis stream, a Lambda function or a logs
/// destination), or `None`.
pub fn destination_arn_problem(arn: &str) -> Option<String> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let shape = "arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE, e.g. arn:aws:firehose:us-east-1:123456789012:deliverystream/cwtap";
    let [arn_word, partition, service, region, account, resource] = parts[..] else {
        return Some(format!("{arn:?} is not an ARN ({shape})"));
    };
    if arn_word != "arn" || partition.is_empty() || region.is_empty() || resource.is_empty() {
        return Some(format!("{arn:?} is not an ARN ({shape})"));
    }
    if !["firehose", "kinesis", "lambda", "logs"].contains(&service) {
        return Some(format!(
            "{arn:?}: a subscription delivers to firehose, kinesis, lambda or logs, not {service:?}"
        ));
    }
    account_problem(arn, account)
}

/// What is wrong with `arn` as an IAM role ARN, or `None`.
pub fn role_arn_problem(arn: &str) -> Option<String> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let shape = "arn:aws:iam::ACCOUNT:role/NAME";
    match parts[..] {
        ["arn", partition, "iam", "", account, resource]
            if !partition.is_empty()
                && resource.len() > "role/".len()
                && resource.starts_with("role/") =>
        {
            account_problem(arn, account)
        }
        _ => Some(format!("{arn:?} is not an IAM role ARN ({shape})")),
    }
}

fn account_problem(arn: &str, account: &str) -> Option<String> {
    (account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()))
        .then(|| format!("{arn:?}: the account {account:?} is not 12 digits"))
}

/// CloudWatch's rule for stream names: 1-512 characters, no `:` or `*`.
pub fn check_stream_name(name: &str) -> Result<(), AdminError> {
    if name.is_empty() || name.len() > 512 {
        return Err(AdminError::InvalidName(format!(
            "invalid log stream name {name:?}: a log stream name is 1 to 512 characters"
        )));
    }
    if name.contains([':', '*']) {
        return Err(AdminError::InvalidName(format!(
            "invalid log stream name {name:?}: it must not contain ':' or '*'"
        )));
    }
    Ok(())
}

/// Whether a create made something new.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Created {
    /// It was created.
    New,
    /// It existed already.
    Existed,
}

impl Created {
    /// True when it did not exist before.
    pub fn is_new(self) -> bool {
        self == Created::New
    }
}

/// A log group as DescribeLogGroups shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GroupInfo {
    pub name: String,
    /// The ARN without the trailing `:*` (what tagging takes).
    pub arn: Option<String>,
    pub created_ms: Option<EpochMs>,
    /// `None` is "never expire".
    pub retention_days: Option<i32>,
    pub stored_bytes: Option<i64>,
}

/// A log stream as DescribeLogStreams shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StreamInfo {
    pub name: String,
    pub created_ms: Option<EpochMs>,
    pub first_event_ms: Option<EpochMs>,
    /// Eventually consistent: may lag by up to an hour.
    pub last_event_ms: Option<EpochMs>,
    pub last_ingestion_ms: Option<EpochMs>,
}

/// How `streams list` is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamOrder {
    /// By name, ascending.
    Name,
    /// Most recent event first.
    LastEvent,
}

/// A subscription filter.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SubscriptionFilterInfo {
    pub name: String,
    pub group: String,
    pub pattern: String,
    pub destination_arn: String,
    pub role_arn: Option<String>,
    pub distribution: Option<String>,
}

/// What `subscription-filters put` asks for.
#[derive(Debug, Clone)]
pub struct SubscriptionFilterSpec {
    pub name: String,
    /// Empty matches every event.
    pub pattern: String,
    pub destination_arn: String,
    pub role_arn: Option<String>,
    /// By log stream (`true`, AWS's default when `None`) or at random
    /// (`false`; Kinesis Data Streams destinations only).
    pub by_log_stream: Option<bool>,
}

/// A metric filter (one transformation).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MetricFilterInfo {
    pub name: String,
    pub group: String,
    pub pattern: String,
    pub metric_name: String,
    pub metric_namespace: String,
    pub metric_value: String,
    pub default_value: Option<f64>,
}

/// What `metric-filters put` asks for.
#[derive(Debug, Clone)]
pub struct MetricFilterSpec {
    pub name: String,
    pub pattern: String,
    pub metric_name: String,
    pub metric_namespace: String,
    /// Published per matching event: a number or `$.field`.
    pub metric_value: String,
    pub default_value: Option<f64>,
}

impl CloudWatch {
    fn group_missing(&self, group: &str) -> AdminError {
        AdminError::GroupNotFound {
            group: group.to_string(),
            region: self.region.clone(),
        }
    }

    /// Turns the reader's "group not found" into the admin wording.
    fn on_group(&self, group: &str, e: CloudWatchError) -> AdminError {
        match e {
            CloudWatchError::GroupNotFound { .. } => self.group_missing(group),
            other => other.into(),
        }
    }

    /// Creates a log group, then sets its retention and tags; an existing
    /// group gets the retention and tags too, so the result is the same.
    pub async fn create_group(
        &self,
        name: &str,
        retention_days: Option<i32>,
        tags: &BTreeMap<String, String>,
        shutdown: &Shutdown,
    ) -> Result<Created, AdminError> {
        check_group(name)?;
        if let Some(days) = retention_days {
            check_retention(i64::from(days))?;
        }
        let tag_map = (!tags.is_empty()).then(|| tags.clone().into_iter().collect());
        let result = self
            .retrying_typed("CreateLogGroup", name, shutdown, || {
                self.client
                    .create_log_group()
                    .log_group_name(name)
                    .set_tags(tag_map.clone())
                    .send()
            })
            .await;
        let created = match result {
            Ok(_) => Created::New,
            Err(f) if f.code() == Some("ResourceAlreadyExistsException") => {
                if !tags.is_empty() {
                    self.tag_group(name, tags, shutdown).await?;
                }
                Created::Existed
            }
            Err(f) => return Err(self.refused("CreateLogGroup", name, f)),
        };
        if let Some(days) = retention_days {
            self.set_retention(name, i64::from(days), shutdown).await?;
        }
        Ok(created)
    }

    fn refused<E, R>(
        &self,
        operation: &'static str,
        resource: &str,
        f: super::Failure<E, R>,
    ) -> AdminError
    where
        E: aws_sdk_cloudwatchlogs::error::ProvideErrorMetadata,
    {
        match f.code() {
            Some("InvalidParameterException")
            | Some("LimitExceededException")
            | Some("ValidationException") => AdminError::Refused {
                operation,
                resource: resource.to_string(),
                message: f.message().unwrap_or_default().to_string(),
            },
            _ => self.on_group(resource, f.error),
        }
    }

    /// Every log group whose name starts with `prefix`, all pages, by name.
    pub async fn list_groups(
        &self,
        prefix: &str,
        shutdown: &Shutdown,
    ) -> Result<Vec<GroupInfo>, AdminError> {
        if let Some(problem) = group_name_problem(prefix, true) {
            return Err(AdminError::InvalidName(format!(
                "invalid prefix: {problem}"
            )));
        }
        let mut groups = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .retrying("DescribeLogGroups", prefix, shutdown, || {
                    self.client
                        .describe_log_groups()
                        .set_log_group_name_prefix((!prefix.is_empty()).then(|| prefix.to_string()))
                        .set_next_token(token.clone())
                        .send()
                })
                .await?;
            groups.extend(page.log_groups().iter().map(|g| {
                GroupInfo {
                    name: g.log_group_name().unwrap_or_default().to_string(),
                    arn: g
                        .log_group_arn()
                        .map(str::to_string)
                        .or_else(|| g.arn().map(|a| a.trim_end_matches(":*").to_string())),
                    created_ms: g.creation_time(),
                    retention_days: g.retention_in_days(),
                    stored_bytes: g.stored_bytes(),
                }
            }));
            match page.next_token() {
                Some(t) if !t.is_empty() && token.as_deref() != Some(t) => {
                    token = Some(t.to_string())
                }
                _ => break,
            }
        }
        Ok(groups)
    }

    /// One group by exact name.
    pub async fn describe_group(
        &self,
        name: &str,
        shutdown: &Shutdown,
    ) -> Result<GroupInfo, AdminError> {
        check_group(name)?;
        self.list_groups(name, shutdown)
            .await?
            .into_iter()
            .find(|g| g.name == name)
            .ok_or_else(|| self.group_missing(name))
    }

    /// Deletes a log group and every event in it.
    pub async fn delete_group(&self, name: &str, shutdown: &Shutdown) -> Result<(), AdminError> {
        check_group(name)?;
        self.retrying("DeleteLogGroup", name, shutdown, || {
            self.client.delete_log_group().log_group_name(name).send()
        })
        .await
        .map(|_| ())
        .map_err(|e| self.on_group(name, e))
    }

    /// Creates a log stream; an existing one is success.
    pub async fn create_stream(
        &self,
        group: &str,
        stream: &str,
        shutdown: &Shutdown,
    ) -> Result<Created, AdminError> {
        check_group(group)?;
        check_stream_name(stream)?;
        let result = self
            .retrying_typed("CreateLogStream", group, shutdown, || {
                self.client
                    .create_log_stream()
                    .log_group_name(group)
                    .log_stream_name(stream)
                    .send()
            })
            .await;
        match result {
            Ok(_) => Ok(Created::New),
            Err(f) if f.code() == Some("ResourceAlreadyExistsException") => Ok(Created::Existed),
            Err(f) => Err(self.refused("CreateLogStream", group, f)),
        }
    }

    /// The streams of a group, all pages. CloudWatch cannot order by last
    /// event and filter by prefix at once.
    pub async fn list_streams(
        &self,
        group: &str,
        prefix: Option<&str>,
        order: StreamOrder,
        shutdown: &Shutdown,
    ) -> Result<Vec<StreamInfo>, AdminError> {
        check_group(group)?;
        if order == StreamOrder::LastEvent && prefix.is_some_and(|p| !p.is_empty()) {
            return Err(AdminError::Usage(
                "--order last-event cannot be combined with --prefix (CloudWatch refuses it): drop one"
                    .into(),
            ));
        }
        let (order_by, descending) = match order {
            StreamOrder::Name => (OrderBy::LogStreamName, false),
            StreamOrder::LastEvent => (OrderBy::LastEventTime, true),
        };
        let mut streams = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .retrying("DescribeLogStreams", group, shutdown, || {
                    self.client
                        .describe_log_streams()
                        .log_group_name(group)
                        .set_log_stream_name_prefix(
                            prefix.filter(|p| !p.is_empty()).map(str::to_string),
                        )
                        .order_by(order_by.clone())
                        .descending(descending)
                        .set_next_token(token.clone())
                        .send()
                })
                .await
                .map_err(|e| self.on_group(group, e))?;
            streams.extend(page.log_streams().iter().map(|s| StreamInfo {
                name: s.log_stream_name().unwrap_or_default().to_string(),
                created_ms: s.creation_time(),
                first_event_ms: s.first_event_timestamp(),
                last_event_ms: s.last_event_timestamp(),
                last_ingestion_ms: s.last_ingestion_time(),
            }));
            match page.next_token() {
                Some(t) if !t.is_empty() && token.as_deref() != Some(t) => {
                    token = Some(t.to_string())
                }
                _ => break,
            }
        }
        Ok(streams)
    }

    /// Deletes a log stream and its events.
    pub async fn delete_stream(
        &self,
        group: &str,
        stream: &str,
        shutdown: &Shutdown,
    ) -> Result<(), AdminError> {
        check_group(group)?;
        check_stream_name(stream)?;
        let result = self
            .retrying("DeleteLogStream", group, shutdown, || {
                self.client
                    .delete_log_stream()
                    .log_group_name(group)
                    .log_stream_name(stream)
                    .send()
            })
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(CloudWatchError::GroupNotFound { .. }) => {
                // The same error for a missing group and a missing stream:
                // one more call tells which.
                self.describe_group(group, shutdown).await?;
                Err(AdminError::NotFound {
                    what: format!("log stream {stream}"),
                    group: group.to_string(),
                    region: self.region.clone(),
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Sets how long a group keeps events; only CloudWatch's values pass.
    pub async fn set_retention(
        &self,
        group: &str,
        days: i64,
        shutdown: &Shutdown,
    ) -> Result<(), AdminError> {
        let days = check_retention(days)?;
        check_group(group)?;
        let result = self
            .retrying_typed("PutRetentionPolicy", group, shutdown, || {
                self.client
                    .put_retention_policy()
                    .log_group_name(group)
                    .retention_in_days(days)
                    .send()
            })
            .await;
        result
            .map(|_| ())
            .map_err(|f| self.refused("PutRetentionPolicy", group, f))
    }

    /// Makes a group keep its events forever.
    pub async fn delete_retention(
        &self,
        group: &str,
        shutdown: &Shutdown,
    ) -> Result<(), AdminError> {
        check_group(group)?;
        self.retrying("DeleteRetentionPolicy", group, shutdown, || {
            self.client
                .delete_retention_policy()
                .log_group_name(group)
                .send()
        })
        .await
        .map(|_| ())
        .map_err(|e| self.on_group(group, e))
    }

    /// Creates or replaces a subscription filter.
    pub async fn put_subscription_filter(
        &self,
        group: &str,
        spec: &SubscriptionFilterSpec,
        shutdown: &Shutdown,
    ) -> Result<(), AdminError> {
        check_group(group)?;
        let distribution = spec.by_log_stream.map(|by_stream| {
            if by_stream {
                Distribution::ByLogStream
            } else {
                Distribution::Random
            }
        });
        let result = self
            .retrying_typed("PutSubscriptionFilter", group, shutdown, || {
                self.client
                    .put_subscription_filter()
                    .log_group_name(group)
                    .filter_name(&spec.name)
                    .filter_pattern(&spec.pattern)
                    .destination_arn(&spec.destination_arn)
                    .set_role_arn(spec.role_arn.clone())
                    .set_distribution(distribution.clone())
                    .send()
            })
            .await;
        result
            .map(|_| ())
            .map_err(|f| self.refused("PutSubscriptionFilter", group, f))
    }

    /// The subscription filters of a group (optionally by name prefix).
    pub async fn list_subscription_filters(
        &self,
        group: &str,
        prefix: Option<&str>,
        shutdown: &Shutdown,
    ) -> Result<Vec<SubscriptionFilterInfo>, AdminError> {
        check_group(group)?;
        let mut filters = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .retrying("DescribeSubscriptionFilters", group, shutdown, || {
                    self.client
                        .describe_subscription_filters()
                        .log_group_name(group)
                        .set_filter_name_prefix(prefix.map(str::to_string))
                        .set_next_token(token.clone())
                        .send()
                })
                .await
                .map_err(|e| self.on_group(group, e))?;
            filters.extend(
                page.subscription_filters()
                    .iter()
                    .map(|f| SubscriptionFilterInfo {
                        name: f.filter_name().unwrap_or_default().to_string(),
                        group: f.log_group_name().unwrap_or(group).to_string(),
                        pattern: f.filter_pattern().unwrap_or_default().to_string(),
                        destination_arn: f.destination_arn().unwrap_or_default().to_string(),
                        role_arn: f.role_arn().filter(|r| !r.is_empty()).map(str::to_string),
                        distribution: f.distribution().map(|d| d.as_str().to_string()),
                    }),
            );
            match page.next_token() {
                Some(t) if !t.is_empty() && token.as_deref() != Some(t) => {
                    token = Some(t.to_string())
                }
                _ => break,
            }
        }
        Ok(filters)
    }

    /// Deletes a subscription filter.
    pub async fn delete_subscription_filter(
        &self,
        group: &str,
        name: &str,
        shutdown: &Shutdown,
    ) -> Result<(), AdminError> {
        check_group(group)?;
        let result = self
            .retrying("DeleteSubscriptionFilter", group, shutdown, || {
                self.client
                    .delete_subscription_filter()
                    .log_group_name(group)
                    .filter_name(name)
                    .send()
            })
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(CloudWatchError::GroupNotFound { .. }) => {
                self.describe_group(group, shutdown).await?;
                Err(AdminError::NotFound {
                    what: format!("subscription filter {name}"),
                    group: group.to_string(),
                    region: self.region.clone(),
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Creates or replaces a metric filter.
    pub async fn put_metric_filter(
        &self,
        group: &str,
        spec: &MetricFilterSpec,
        shutdown: &Shutdown,
    ) -> Result<(), AdminError> {
        check_group(group)?;
        let transformation = MetricTransformation::builder()
            .metric_name(&spec.metric_name)
            .metric_namespace(&spec.metric_namespace)
            .metric_value(&spec.metric_value)
            .set_default_value(spec.default_value)
            .build()
            .map_err(|e| AdminError::Usage(format!("metric filter {}: {e}", spec.name)))?;
        let result = self
            .retrying_typed("PutMetricFilter", group, shutdown, || {
                self.client
                    .put_metric_filter()
                    .log_group_name(group)
                    .filter_name(&spec.name)
                    .filter_pattern(&spec.pattern)
                    .metric_transformations(transformation.clone())
                    .send()
            })
            .await;
        result
            .map(|_| ())
            .map_err(|f| self.refused("PutMetricFilter", group, f))
    }

    /// Metric filters, of one group or of all (optionally by name prefix).
    pub async fn list_metric_filters(
        &self,
        group: Option<&str>,
        prefix: Option<&str>,
        shutdown: &Shutdown,
    ) -> Result<Vec<MetricFilterInfo>, AdminError> {
        if let Some(g) = group {
            check_group(g)?;
        }
        let resource = group.unwrap_or("(all groups)");
        let mut filters = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .retrying("DescribeMetricFilters", resource, shutdown, || {
                    self.client
                        .describe_metric_filters()
                        .set_log_group_name(group.map(str::to_string))
                        .set_filter_name_prefix(prefix.map(str::to_string))
                        .set_next_token(token.clone())
                        .send()
                })
                .await
                .map_err(|e| self.on_group(resource, e))?;
            for f in page.metric_filters() {
                let t = f.metric_transformations().first();
                filters.push(MetricFilterInfo {
                    name: f.filter_name().unwrap_or_default().to_string(),
                    group: f.log_group_name().unwrap_or_default().to_string(),
                    pattern: f.filter_pattern().unwrap_or_default().to_string(),
                    metric_name: t.map(|t| t.metric_name().to_string()).unwrap_or_default(),
                    metric_namespace: t
                        .map(|t| t.metric_namespace().to_string())
                        .unwrap_or_default(),
                    metric_value: t.map(|t| t.metric_value().to_string()).unwrap_or_default(),
                    default_value: t.and_then(|t| t.default_value()),
                });
            }
            match page.next_token() {
                Some(t) if !t.is_empty() && token.as_deref() != Some(t) => {
                    token = Some(t.to_string())
                }
                _ => break,
            }
        }
        Ok(filters)
    }

    /// Deletes a metric filter.
    pub async fn delete_metric_filter(
        &self,
        group: &str,
        name: &str,
        shutdown: &Shutdown,
    ) -> Result<(), AdminError> {
        check_group(group)?;
        let result = self
            .retrying("DeleteMetricFilter", group, shutdown, || {
                self.client
                    .delete_metric_filter()
                    .log_group_name(group)
                    .filter_name(name)
                    .send()
            })
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(CloudWatchError::GroupNotFound { .. }) => {
                self.describe_group(group, shutdown).await?;
                Err(AdminError::NotFound {
                    what: format!("metric filter {name}"),
                    group: group.to_string(),
                    region: self.region.clone(),
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The ARN tagging calls take (no trailing `:*`); also proves the group
    /// exists, which ListTagsForResource alone does not on every endpoint.
    async fn group_arn(&self, group: &str, shutdown: &Shutdown) -> Result<String, AdminError> {
        let info = self.describe_group(group, shutdown).await?;
        info.arn.ok_or_else(|| AdminError::Refused {
            operation: "DescribeLogGroups",
            resource: group.to_string(),
            message: "the answer has no ARN for the group".into(),
        })
    }

    /// The tags of a log group.
    pub async fn list_tags(
        &self,
        group: &str,
        shutdown: &Shutdown,
    ) -> Result<BTreeMap<String, String>, AdminError> {
        let arn = self.group_arn(group, shutdown).await?;
        let out = self
            .retrying("ListTagsForResource", group, shutdown, || {
                self.client
                    .list_tags_for_resource()
                    .resource_arn(&arn)
                    .send()
            })
            .await
            .map_err(|e| self.on_group(group, e))?;
        Ok(out
            .tags()
            .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default())
    }

    /// Adds (or overwrites) tags on a log group.
    pub async fn tag_group(
        &self,
        group: &str,
        tags: &BTreeMap<String, String>,
        shutdown: &Shutdown,
    ) -> Result<(), AdminError> {
        let arn = self.group_arn(group, shutdown).await?;
        let map: std::collections::HashMap<String, String> = tags.clone().into_iter().collect();
        let result = self
            .retrying_typed("TagResource", group, shutdown, || {
                self.client
                    .tag_resource()
                    .resource_arn(&arn)
                    .set_tags(Some(map.clone()))
                    .send()
            })
            .await;
        result
            .map(|_| ())
            .map_err(|f| self.refused("TagResource", group, f))
    }

    /// Removes tags (by key) from a log group; absent keys are no error.
    pub async fn untag_group(
        &self,
        group: &str,
        keys: &[String],
        shutdown: &Shutdown,
    ) -> Result<(), AdminError> {
        let arn = self.group_arn(group, shutdown).await?;
        self.retrying("UntagResource", group, shutdown, || {
            self.client
                .untag_resource()
                .resource_arn(&arn)
                .set_tag_keys(Some(keys.to_vec()))
                .send()
        })
        .await
        .map(|_| ())
        .map_err(|e| self.on_group(group, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_cloudwatch_retention_values_pass() {
        for d in RETENTION_DAYS {
            assert_eq!(check_retention(i64::from(d)).unwrap(), d);
        }
        for bad in [0, 2, 4, 31, 366, 3654, -1] {
            let e = check_retention(bad).unwrap_err();
            assert!(e.is_usage());
            assert!(e.to_string().contains(&format!("{bad} days")), "{e}");
        }
    }

    #[test]
    fn names_follow_cloudwatch_rules() {
        assert!(group_name_problem("/aws/lambda/x-1_#.y", false).is_none());
        assert!(group_name_problem("", false).is_some());
        assert!(group_name_problem("", true).is_none());
        assert!(group_name_problem("has space", false).is_some());
        assert!(group_name_problem(&"a".repeat(513), false).is_some());
        assert!(check_stream_name("2026/11/20/[$LATEST]abc").is_ok());
        assert!(
            destination_arn_problem("arn:aws:firehose:us-east-1:123456789012:deliverystream/x")
                .is_none()
        );
        assert!(
            destination_arn_problem("arn:aws:logs:us-east-1:123456789012:log-group:/a:*").is_none()
        );
        for bad in [
            "not-an-arn",
            "arn:aws:s3:::bucket",
            "arn:aws:firehose:us-east-1:1234:deliverystream/x",
            "arn:aws:firehose::123456789012:deliverystream/x",
        ] {
            assert!(destination_arn_problem(bad).is_some(), "{bad}");
        }
        assert!(role_arn_problem("arn:aws:iam::123456789012:role/cwl-to-firehose").is_none());
        for bad in [
            "bogus",
            "arn:aws:s3:::bucket",
            "arn:aws:iam::123456789012:user/x",
            "arn:aws:iam::12:role/x",
            "arn:aws:iam::123456789012:role/",
        ] {
            assert!(role_arn_problem(bad).is_some(), "{bad}");
        }
        assert!(check_stream_name("a:b").is_err());
        assert!(check_stream_name("a*").is_err());
        assert!(check_stream_name("").is_err());
    }
}
