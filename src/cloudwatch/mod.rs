//! The only place that talks to CloudWatch Logs (aws-sdk-cloudwatchlogs).
//!
//! Calls are retried here with capped, jittered backoff when CloudWatch
//! throttles, fails with a 5xx or times out; the SDK's own retries are off so
//! that one classifier decides. Errors that retrying cannot fix come back
//! typed: a missing group names the group and the region, a denied call names
//! the IAM action.
//!
//! - [`budget`]: the shared per-API rate budget every attempt goes through.
//! - [`write`]: PutLogEvents batching and the stream writer.
//! - [`admin`]: groups, streams, retention, subscription and metric filters, tags.
//! - [`insights`]: Logs Insights queries (StartQuery / GetQueryResults / StopQuery).
//! - [`streams`]: reading a group stream by stream (DescribeLogStreams, GetLogEvents).
//! - `page`: event pages read in one pass (`event::read`) in front of the
//!   SDK's reader.

pub mod admin;
pub mod budget;
pub mod insights;
mod page;
pub mod streams;
pub mod write;

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_cloudwatchlogs::Client;
use aws_sdk_cloudwatchlogs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::config::{AwsConfig, StreamFilter};
use crate::event::RawEvent;
use crate::retry::Backoff;
use crate::shutdown::Shutdown;
use crate::time::EpochMs;

/// An error and its causes, `: `-separated, as the SDK's
/// `DisplayErrorContext` writes them but without the debug dump it ends
/// with (a page of connector and response internals).
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(e) = next {
        let part = e.to_string();
        if !out.ends_with(&part) {
            out.push_str(": ");
            out.push_str(&part);
        }
        next = e.source();
    }
    out
}

/// What went wrong getting credentials, when that is why `err` failed: the
/// credentials error and its causes, without the SDK's debug dump.
fn credentials_failure(err: &dyn std::error::Error) -> Option<String> {
    use aws_credential_types::provider::error::CredentialsError;
    let mut next = err.source();
    while let Some(e) = next {
        if e.downcast_ref::<CredentialsError>().is_some() {
            let mut parts = vec![e.to_string()];
            let mut cause = e.source();
            while let Some(c) = cause {
                parts.push(c.to_string());
                cause = c.source();
            }
            parts.dedup();
            return Some(parts.join(": "));
        }
        next = e.source();
    }
    None
}

/// Whether the AWS config or credentials file (where the SDK looks, as it
/// looks) holds profile `name`. A file that cannot be read counts as not
/// holding it only when it is not there: a parse error is left to the SDK.
async fn profile_exists(name: &str) -> bool {
    // The default files: ~/.aws/config and ~/.aws/credentials, or where
    // AWS_CONFIG_FILE / AWS_SHARED_CREDENTIALS_FILE point.
    match aws_config::profile::load(
        &aws_types::os_shim_internal::Fs::real(),
        &aws_types::os_shim_internal::Env::real(),
        &Default::default(),
        None,
    )
    .await
    {
        Ok(set) => set.get_profile(name).is_some(),
        Err(_) => true,
    }
}

/// ` on <resource>`, or nothing for a call on no one resource (a listing).
fn on(resource: &str) -> String {
    if resource.is_empty() {
        String::new()
    } else {
        format!(" on {resource}")
    }
}

/// A CloudWatch call that failed for good; callers match on it.
#[derive(Debug, thiserror::Error)]
pub enum CloudWatchError {
    /// `ResourceNotFoundException` (for reads, the log group).
    #[error(
        "log group {group} not found in region {region}: create it, or check its name and the Region"
    )]
    GroupNotFound { group: String, region: String },
    /// `AccessDeniedException`, with the IAM action that is missing.
    #[error(
        "access denied calling {operation}: the credentials lack the IAM permission logs:{operation} (on {resource}): {message}"
    )]
    AccessDenied {
        operation: &'static str,
        resource: String,
        message: String,
    },
    /// No credentials could be had: none configured, or their provider
    /// (an instance or container role, SSO, STS) failed. Not retried here:
    /// a poll reports it and tries again at its next interval, a one-shot
    /// command says it at once.
    #[error(
        "cannot get AWS credentials for {operation}: {message} (cwtap takes them from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE and the shared config files, web identity, or the container or instance role)"
    )]
    NoCredentials {
        operation: &'static str,
        message: String,
    },
    /// The configured profile is in no AWS config or credentials file. Not
    /// retried.
    #[error(
        "AWS profile {profile:?} (for {operation}) is not in the AWS config or credentials file (~/.aws/config, ~/.aws/credentials, or AWS_CONFIG_FILE / AWS_SHARED_CREDENTIALS_FILE): fix aws.profile (or the account's profile) or add it"
    )]
    NoProfile {
        operation: &'static str,
        profile: String,
    },
    /// No Region in the config, the environment, the profile or the
    /// instance metadata: no call can be made. Not retried.
    #[error(
        "no AWS Region for {operation} (account {account}): set aws.region (or the account's region) in the config, AWS_REGION, or region in the AWS profile"
    )]
    NoRegion {
        operation: &'static str,
        account: String,
    },
    /// Still throttled or failing after every retry.
    #[error("{operation}{} failed after {attempts} attempts: {message}", on(.resource))]
    Exhausted {
        operation: &'static str,
        resource: String,
        attempts: u32,
        message: String,
    },
    /// An error retrying cannot fix (invalid parameter, limit exceeded, ...).
    #[error("{operation}{} failed: {message}", on(.resource))]
    Failed {
        operation: &'static str,
        resource: String,
        message: String,
    },
    /// Shutdown was requested before the call finished.
    #[error("stopped by shutdown")]
    ShutDown,
}

/// A failed call: the error cwtap reports, and the SDK's own error when the
/// service answered, for callers that must look at a typed field
/// (`expectedSequenceToken`) or an error code.
#[derive(Debug)]
pub(crate) struct Failure<E, R> {
    pub error: CloudWatchError,
    pub source: Option<SdkError<E, R>>,
}

impl<E, R> Failure<E, R>
where
    E: ProvideErrorMetadata,
{
    /// The service's error code (`ResourceAlreadyExistsException`, ...).
    pub fn code(&self) -> Option<&str> {
        self.source.as_ref().and_then(|e| e.code())
    }

    /// The service's error message.
    pub fn message(&self) -> Option<&str> {
        self.source.as_ref().and_then(|e| e.message())
    }
}

/// What one FilterLogEvents scan asks for.
#[derive(Debug, Clone)]
pub struct ScanRequest {
    pub log_group: String,
    /// Inclusive bounds on the event timestamp, in ms.
    pub start_ms: EpochMs,
    pub end_ms: EpochMs,
    pub filter_pattern: Option<String>,
    pub streams: StreamFilter,
}

/// One page of events. From FilterLogEvents, `next_token` set means more
/// may follow even when `events` is empty; a GetLogEvents page has none (its
/// read keeps the token).
#[derive(Debug, Default)]
pub struct Page {
    pub events: Vec<RawEvent>,
    pub next_token: Option<String>,
}

/// A CloudWatch Logs client with cwtap's retry policy, for one account and
/// Region (with that account-Region's call budget).
#[derive(Clone)]
pub struct CloudWatch {
    client: Client,
    /// The account's name (`accounts[].name`, or `default`): metrics label.
    account: std::sync::Arc<str>,
    region: String,
    /// Whether the chain found a Region: without one no call can be made.
    has_region: bool,
    /// The configured profile, when no AWS config or credentials file holds it.
    missing_profile: Option<String>,
    max_retries: u32,
    budget: budget::Budget,
    /// The role assumed, for messages.
    role_arn: Option<String>,
    credentials: Option<aws_credential_types::provider::SharedCredentialsProvider>,
}

impl std::fmt::Debug for CloudWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudWatch")
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

enum Verdict {
    Retry(String),
    Fail(CloudWatchError),
}

impl CloudWatch {
    /// Builds the client from the standard AWS chain (environment, profile,
    /// SSO, IMDS) plus the config's overrides. `AWS_ENDPOINT_URL` is honoured
    /// by the chain itself.
    pub async fn connect(cfg: &AwsConfig) -> CloudWatch {
        Self::connect_as(crate::config::DEFAULT_ACCOUNT, cfg, None).await
    }

    /// The client of one configured account: its Region, profile and
    /// endpoint, and the role it assumes (through STS, credentials
    /// refreshed before they expire).
    pub async fn connect_account(account: &crate::config::AccountConfig) -> CloudWatch {
        Self::connect_as(&account.name, &account.aws, account.role.as_ref()).await
    }

    async fn connect_as(
        name: &str,
        cfg: &AwsConfig,
        role: Option<&crate::config::AssumeRole>,
    ) -> CloudWatch {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_attempt_timeout(cfg.timeout)
                    .connect_timeout(Duration::from_secs(10))
                    .build(),
            );
        if let Some(region) = &cfg.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        if let Some(profile) = &cfg.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(url) = &cfg.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        let mut sdk = loader.load().await;
        let missing_profile = match &cfg.profile {
            Some(p) if !profile_exists(p).await => Some(p.clone()),
            _ => None,
        };
        let mut credentials = None;
        if let Some(role) = role {
            let mut assume = aws_config::sts::AssumeRoleProvider::builder(&role.role_arn)
                .session_name(&role.session_name)
                .configure(&sdk);
            if let Some(id) = &role.external_id {
                assume = assume.external_id(id.expose());
            }
            let provider = aws_credential_types::provider::SharedCredentialsProvider::new(
                assume.build().await,
            );
            credentials = Some(provider.clone());
            sdk = sdk.into_builder().credentials_provider(provider).build();
        }
        let has_region = sdk.region().is_some();
        let region = sdk
            .region()
            .map(|r| r.to_string())
            .unwrap_or_else(|| "(no region configured)".to_string());
        CloudWatch {
            client: Client::new(&sdk),
            account: std::sync::Arc::from(name),
            region,
            has_region,
            missing_profile,
            max_retries: cfg.max_retries,
            budget: budget::Budget::new(name, &cfg.rate_limits),
            role_arn: role.map(|r| r.role_arn.clone()),
            credentials,
        }
    }

    /// Whether a Region was found (config, environment, profile or
    /// instance metadata): without one no call can be made.
    pub fn has_region(&self) -> bool {
        self.has_region
    }

    /// The account's name (metrics label, checkpoint key).
    pub fn account(&self) -> &str {
        &self.account
    }

    /// Gets credentials now (assuming the role, when the account has one):
    /// a role that cannot be assumed is reported before any call.
    pub async fn check_credentials(&self) -> Result<(), String> {
        use aws_credential_types::provider::ProvideCredentials;
        let Some(provider) = &self.credentials else {
            return Ok(());
        };
        provider
            .provide_credentials()
            .await
            .map(|_| ())
            .map_err(|e| {
                format!(
                    "account {}: cannot assume role {}: {}",
                    self.account,
                    self.role_arn.as_deref().unwrap_or("?"),
                    crate::errors::chain(&e)
                )
            })
    }

    /// The shared rate budget.
    pub fn budget(&self) -> &budget::Budget {
        &self.budget
    }

    /// The region calls go to, for messages.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The SDK client, for the admin paths built on this module.
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn classify<E, R>(
        &self,
        err: &SdkError<E, R>,
        operation: &'static str,
        resource: &str,
    ) -> Verdict
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        if let SdkError::DispatchFailure(_) = err {
            if let Some(profile) = &self.missing_profile {
                return Verdict::Fail(CloudWatchError::NoProfile {
                    operation,
                    profile: profile.clone(),
                });
            }
            if !self.has_region {
                return Verdict::Fail(CloudWatchError::NoRegion {
                    operation,
                    account: self.account.to_string(),
                });
            }
            if let Some(message) = credentials_failure(err) {
                return Verdict::Fail(CloudWatchError::NoCredentials { operation, message });
            }
        }
        // What people read: the error and its causes. The SDK's full
        // context (with its debug dump of the response) is only searched.
        let message = error_chain(err);
        let context = DisplayErrorContext(err).to_string();
        match err {
            SdkError::TimeoutError(_)
            | SdkError::DispatchFailure(_)
            | SdkError::ResponseError(_) => {
                return Verdict::Retry(message);
            }
            SdkError::ServiceError(_) => {}
            _ => {
                return Verdict::Fail(CloudWatchError::Failed {
                    operation,
                    resource: resource.to_string(),
                    message,
                });
            }
        }
        let code = err.code().unwrap_or_default();
        match code {
            "ResourceNotFoundException" => Verdict::Fail(CloudWatchError::GroupNotFound {
                group: resource.to_string(),
                region: self.region.clone(),
            }),
            "AccessDeniedException" | "AccessDenied" | "UnauthorizedOperation" => {
                Verdict::Fail(CloudWatchError::AccessDenied {
                    operation,
                    resource: resource.to_string(),
                    message: err.message().unwrap_or_default().to_string(),
                })
            }
            "ThrottlingException"
            | "Throttling"
            | "RequestLimitExceeded"
            | "TooManyRequestsException"
            | "ServiceUnavailableException"
            | "ServiceUnavailable"
            | "InternalFailure"
            | "InternalServerError"
            | "RequestTimeout" => Verdict::Retry(message),
            _ if context.contains("status code: 5") || code.is_empty() => Verdict::Retry(message),
            _ => Verdict::Fail(CloudWatchError::Failed {
                operation,
                resource: resource.to_string(),
                message,
            }),
        }
    }

    /// Runs `call` until it succeeds, fails for good, exhausts the retries or
    /// shutdown is requested.
    pub(crate) async fn retrying<T, E, R, F, Fut>(
        &self,
        operation: &'static str,
        resource: &str,
        shutdown: &Shutdown,
        call: F,
    ) -> Result<T, CloudWatchError>
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, SdkError<E, R>>>,
    {
        self.retrying_typed(operation, resource, shutdown, call)
            .await
            .map_err(|f| f.error)
    }

    /// [`Self::retrying`], keeping the SDK error of the last attempt.
    pub(crate) async fn retrying_typed<T, E, R, F, Fut>(
        &self,
        operation: &'static str,
        resource: &str,
        shutdown: &Shutdown,
        mut call: F,
    ) -> Result<T, Failure<E, R>>
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, SdkError<E, R>>>,
    {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(20));
        let mut attempt = 0;
        loop {
            attempt += 1;
            let shut_down = || Failure {
                error: CloudWatchError::ShutDown,
                source: None,
            };
            // Every attempt, retries included, spends from the shared budget.
            if !self.budget.acquire(operation, shutdown).await {
                return Err(shut_down());
            }
            // A write in flight is let finish (within its attempt timeout):
            // cut off, whether its events were stored would be unknown, and
            // the count a resumed replay starts from would be wrong.
            let result = if operation == "PutLogEvents" {
                call().await
            } else {
                tokio::select! {
                    r = call() => r,
                    _ = shutdown.wait() => return Err(shut_down()),
                }
            };
            let code = result.as_ref().err().and_then(|e| e.code());
            crate::obs::metrics().api_call(&self.account, operation, code);
            self.budget.record(
                operation,
                code.is_some_and(|c| crate::obs::metrics::THROTTLE_CODES.contains(&c)),
            );
            let err = match result {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            match self.classify(&err, operation, resource) {
                Verdict::Fail(error) => {
                    return Err(Failure {
                        error,
                        source: Some(err),
                    });
                }
                Verdict::Retry(message) if attempt > self.max_retries => {
                    return Err(Failure {
                        error: CloudWatchError::Exhausted {
                            operation,
                            resource: resource.to_string(),
                            attempts: attempt,
                            message,
                        },
                        source: Some(err),
                    });
                }
                Verdict::Retry(message) => {
                    tracing::warn!(operation, resource, attempt, error = %message, "CloudWatch call failed, retrying");
                    if !backoff.sleep(shutdown).await {
                        return Err(shut_down());
                    }
                }
            }
        }
    }

    /// One page of FilterLogEvents.
    pub async fn filter_page(
        &self,
        req: &ScanRequest,
        next_token: Option<&str>,
        shutdown: &Shutdown,
    ) -> Result<Page, CloudWatchError> {
        let out = self
            .retrying("FilterLogEvents", &req.log_group, shutdown, || {
                // CloudWatch ignores `interleaved` and always returns events
                // in timestamp order across streams (the pull path relies on
                // it, and checks it); emulators such as moto go stream by
                // stream unless it is set.
                #[allow(deprecated)]
                let mut call = self
                    .client
                    .filter_log_events()
                    .interleaved(true)
                    .log_group_name(&req.log_group)
                    .start_time(req.start_ms)
                    .end_time(req.end_ms)
                    .set_filter_pattern(req.filter_pattern.clone())
                    .set_next_token(next_token.map(str::to_string));
                match &req.streams {
                    StreamFilter::All => {}
                    StreamFilter::Names(names) => {
                        call = call.set_log_stream_names(Some(names.clone()))
                    }
                    StreamFilter::Prefix(p) => call = call.log_stream_name_prefix(p),
                }
                call.customize()
                    .interceptor(page::Events(page::Call::Filter))
                    .send()
            })
            .await?;
        // The page's strings are moved into the events, not copied.
        let events = out
            .events
            .unwrap_or_default()
            .into_iter()
            .map(|e| {
                let stream = e.log_stream_name.unwrap_or_default();
                let timestamp_ms = e.timestamp.unwrap_or_default();
                let message = e.message.unwrap_or_default();
                let event_id = match e.event_id {
                    Some(id) => id,
                    // CloudWatch always sends one; a stand-in keeps the event.
                    None => format!("{stream}:{timestamp_ms}:{:x}", fxhash(&message)),
                };
                RawEvent {
                    log_group: req.log_group.clone(),
                    log_stream: stream,
                    event_id,
                    timestamp_ms,
                    ingestion_time_ms: e.ingestion_time,
                    message,
                    origin: Default::default(),
                }
            })
            .collect();
        Ok(Page {
            events,
            next_token: out.next_token.filter(|t| !t.is_empty()),
        })
    }

    /// One DescribeLogGroups call of one group: the credentials work and
    /// may list groups (`cwtap check --online`).
    pub async fn list_one_group(&self, shutdown: &Shutdown) -> Result<(), CloudWatchError> {
        self.retrying("DescribeLogGroups", "(any)", shutdown, || {
            self.client.describe_log_groups().limit(1).send()
        })
        .await
        .map(|_| ())
    }

    /// One read call of the API that reads `group` (FilterLogEvents, or
    /// DescribeLogStreams and GetLogEvents stream by stream), over the last
    /// minute: the permission is there (`cwtap check --online`).
    pub async fn probe_read(
        &self,
        group: &str,
        config: &crate::config::GroupConfig,
        shutdown: &Shutdown,
    ) -> Result<(), CloudWatchError> {
        let end = crate::time::now_ms();
        match config.mode {
            crate::config::ReadMode::Filter => {
                let req = ScanRequest {
                    log_group: group.to_string(),
                    start_ms: end - 60_000,
                    end_ms: end,
                    filter_pattern: config.filter_pattern.clone(),
                    streams: config.streams.clone(),
                };
                self.filter_page(&req, None, shutdown).await.map(|_| ())
            }
            crate::config::ReadMode::Streams => {
                let (streams, _) = self
                    .window_streams(group, &config.streams, end - 60_000, end, shutdown)
                    .await?;
                if let Some(stream) = streams.first() {
                    let mut read = streams::StreamRead::new(group, stream, end - 60_000, end);
                    self.stream_page(&mut read, shutdown).await?;
                }
                Ok(())
            }
        }
    }

    /// Every log group whose name starts with `prefix` (all pages).
    pub async fn discover_groups(
        &self,
        prefix: &str,
        shutdown: &Shutdown,
    ) -> Result<Vec<String>, CloudWatchError> {
        let mut names = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .retrying("DescribeLogGroups", prefix, shutdown, || {
                    let mut call = self
                        .client
                        .describe_log_groups()
                        .set_next_token(token.clone());
                    if !prefix.is_empty() {
                        call = call.log_group_name_prefix(prefix);
                    }
                    call.send()
                })
                .await?;
            names.extend(
                page.log_groups()
                    .iter()
                    .filter_map(|g| g.log_group_name().map(str::to_string)),
            );
            match page.next_token() {
                Some(t) if !t.is_empty() && token.as_deref() != Some(t) => {
                    token = Some(t.to_string())
                }
                _ => break,
            }
        }
        Ok(names)
    }
}

/// A small stable hash (FNV-1a) for stand-in ids.
fn fxhash(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}
