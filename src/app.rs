//! The agent's commands, as library functions: `run`, `backfill`, `check`,
//! `status` (the operator commands are in [`crate::ops`]).
//! Each takes a validated [`Config`]; `run` and `backfill` take a
//! [`Shutdown`] so that tests and embedders can stop them.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use crate::cloudwatch::CloudWatch;
use crate::config::{AgentConfig, Config, GroupSelector, StreamFilter};
use crate::pipeline::{Due, Pipeline, PipelineError, TraceSettings};
use crate::shutdown::Shutdown;
use crate::sink::SinkError;
use crate::source::pull::plan::{Overlap, Target};
use crate::source::pull::progress::Progress;
use crate::source::pull::{Context, GroupEnd, GroupSpec, Reading, run_group};
use crate::state::{StateError, StateStore};
use crate::time::{EpochMs, format_ms, now_ms};

/// Why a command failed. [`AppError::exit_code`] maps it for `main`.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error(transparent)]
    Admin(#[from] crate::cloudwatch::admin::AdminError),
    #[error(transparent)]
    Write(#[from] crate::cloudwatch::write::WriteError),
    #[error(transparent)]
    Insights(#[from] crate::cloudwatch::insights::InsightsError),
    #[error(transparent)]
    Replay(#[from] crate::replay::ReplayError),
    #[error("{0}")]
    Failed(String),
}

impl AppError {
    /// 2 for usage and configuration errors, 1 for everything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            AppError::Config(_) | AppError::Usage(_) => 2,
            AppError::Admin(e) if e.is_usage() => 2,
            AppError::Insights(e) if e.is_usage() => 2,
            AppError::Replay(e) if e.is_usage() => 2,
            AppError::Write(crate::cloudwatch::write::WriteError::EventLimit(_)) => 2,
            _ => 1,
        }
    }
}

/// What `backfill` asks for.
#[derive(Debug, Clone)]
pub struct BackfillRequest {
    pub since: EpochMs,
    pub until: EpochMs,
    /// Only these groups (exact names); empty means every configured group.
    pub groups: Vec<String>,
    /// Show progress bars (a terminal is attached).
    pub interactive: bool,
}

/// How a backfill ended.
#[derive(Debug, Default)]
pub struct BackfillReport {
    pub groups_done: Vec<String>,
    pub groups_failed: Vec<(String, String)>,
    pub interrupted: bool,
}

/// How the pipeline groups traces, from the agent settings: settled traces
/// leave memory two minutes after their last event, and the state file once
/// no late event can reach them any more (the idle time plus the longest
/// re-read behind a cursor).
pub fn trace_settings(agent: &AgentConfig) -> TraceSettings {
    let reread = Overlap::retention_ms(
        agent.max_late_arrival.as_millis() as i64,
        agent.poll_interval.as_millis() as i64,
    );
    TraceSettings {
        key_field: agent.trace_key_field,
        summaries: agent.trace_summaries,
        idle: agent.trace_idle,
        evict_after: Duration::from_secs(120),
        retention: agent.trace_idle + Duration::from_millis(reread.max(0) as u64),
    }
}

/// Opens the state file and the pipeline into the configured output (its
/// health checked first).
async fn open_pipeline(config: &Config, shutdown: &Shutdown) -> Result<Arc<Pipeline>, AppError> {
    let sink = config.output.build(&config.agent)?;
    sink.health(shutdown).await?;
    let path = config.agent.state_path.clone();
    let group_traces = config.agent.group_traces;
    let fsync = config.agent.state_fsync;
    let settings = trace_settings(&config.agent);
    let pipeline = tokio::task::spawn_blocking(move || {
        let state = StateStore::open(&path)?;
        state.set_fsync(fsync)?;
        Pipeline::new(sink, Some(state), group_traces, settings)
    })
    .await
    .map_err(|e| AppError::Failed(format!("state worker failed: {e}")))??;
    Ok(Arc::new(pipeline))
}

async fn context(
    config: &Config,
    reading: Reading,
    shutdown: &Shutdown,
) -> Result<Arc<Context>, AppError> {
    let pipeline = open_pipeline(config, shutdown).await?;
    let state = pipeline
        .state()
        .cloned()
        .ok_or_else(|| AppError::Failed("the pull source needs a state file".into()))?;
    Ok(Arc::new(Context {
        pipeline,
        state,
        agent: config.agent.clone(),
        reading: Arc::new(reading),
        pages: Default::default(),
    }))
}

/// One client per configured account, in the config's order.
#[derive(Default)]
pub struct Accounts {
    clients: Vec<(crate::config::AccountConfig, CloudWatch)>,
}

impl Accounts {
    pub async fn connect(config: &Config) -> Accounts {
        let mut clients = Vec::with_capacity(config.accounts.len());
        for account in &config.accounts {
            clients.push((account.clone(), CloudWatch::connect_account(account).await));
        }
        Accounts { clients }
    }

    /// A usage error when an account has no AWS Region anywhere (config,
    /// environment, profile, instance metadata): no call could be made, so
    /// `run` and `backfill` do not start rather than fail every poll.
    pub fn check_regions(&self) -> Result<(), AppError> {
        let missing: Vec<&str> = self
            .clients
            .iter()
            .filter(|(_, c)| !c.has_region())
            .map(|(a, _)| a.name.as_str())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(AppError::Usage(format!(
            "no AWS Region for account {}: set aws.region (or the account's region) in the config, AWS_REGION, or region in the AWS profile",
            missing.join(", ")
        )))
    }

    /// The client of the account named `name`.
    pub fn get(&self, name: &str) -> Option<&CloudWatch> {
        self.clients
            .iter()
            .find(|(a, _)| a.name == name)
            .map(|(_, c)| c)
    }

    pub fn iter(&self) -> impl Iterator<Item = &(crate::config::AccountConfig, CloudWatch)> {
        self.clients.iter()
    }

    /// The accounts whose role cannot be assumed, with why: their groups
    /// are left out, the others go on.
    pub async fn unusable(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (account, client) in &self.clients {
            if let Err(e) = client.check_credentials().await {
                out.push((account.name.clone(), e));
            }
        }
        out
    }
}

/// What an account's events carry as their origin: its name, account id
/// and Region when the config lists `accounts:`, nothing otherwise (one
/// account: the source fields stay as VectaDB's agent sends them).
fn origin_of(account: &crate::config::AccountConfig) -> crate::event::Origin {
    if !account.listed {
        return crate::event::Origin::default();
    }
    crate::event::Origin {
        account: Some(Arc::from(account.name.as_str())),
        account_id: account.account_id.as_deref().map(Arc::from),
        region: account.aws.region.as_deref().map(Arc::from),
    }
}

/// What [`resolve_groups`] found.
struct Resolved {
    /// The groups not known before.
    found: Vec<GroupSpec>,
    /// A selector that could not be resolved, and why.
    errors: Vec<String>,
    /// Every (account, name) the selectors resolved to, known before or not.
    listed: HashSet<(String, String)>,
}

/// Resolves the configured selectors into concrete groups; `known` are the
/// (account, name) pairs already running (the first selector naming a group
/// wins); groups of the accounts in `skip` are left out.
async fn resolve_groups(
    config: &Config,
    accounts: &Accounts,
    known: &mut HashSet<(String, String)>,
    skip: &[String],
    shutdown: &Shutdown,
) -> Resolved {
    let mut found = Vec::new();
    let mut errors = Vec::new();
    let mut listed = HashSet::new();
    for group in &config.groups {
        if skip.contains(&group.account) {
            continue;
        }
        let (Some(cloudwatch), Some(account)) = (
            accounts.get(&group.account),
            config.accounts.iter().find(|a| a.name == group.account),
        ) else {
            errors.push(format!("{}: no account {:?}", group.key, group.account));
            continue;
        };
        let names = match &group.selector {
            GroupSelector::Name(n) => vec![n.clone()],
            GroupSelector::Prefix(p) => match cloudwatch.discover_groups(p, shutdown).await {
                Ok(names) => names,
                Err(e) => {
                    errors.push(format!("{}: discovering prefix {p:?}: {e}", group.key));
                    continue;
                }
            },
        };
        for name in names {
            listed.insert((group.account.clone(), name.clone()));
            if known.insert((group.account.clone(), name.clone())) {
                found.push(GroupSpec {
                    name,
                    config: Arc::new(group.clone()),
                    cloudwatch: cloudwatch.clone(),
                    origin: origin_of(account),
                });
            }
        }
    }
    Resolved {
        found,
        errors,
        listed,
    }
}

/// Closes traces idle for `agent.trace_idle_secs` and emits the summaries
/// due, every poll interval, until shutdown.
async fn summary_loop(pipeline: Arc<Pipeline>, agent: AgentConfig, shutdown: Shutdown) {
    let idle_ms = agent.trace_idle.as_millis() as i64;
    while shutdown.sleep(agent.poll_interval).await {
        if let Err(e) = pipeline
            .emit_summaries(now_ms() - idle_ms, false, Due::All, &shutdown)
            .await
        {
            tracing::error!(error = %e, "emitting trace summaries failed; retrying next interval");
        }
    }
}

/// While the output is marked down (a delivery got no answer or a 5xx) and
/// no delivery is under way to find out otherwise (a Firehose request given
/// up at its timeout: the load balancer sends no more to an unready
/// replica), checks the output's health every `every`, so that readiness
/// comes back with the output. Until shutdown.
async fn output_watch(sink: Arc<dyn crate::sink::Sink>, every: Duration, shutdown: Shutdown) {
    let readiness = crate::obs::readiness();
    while shutdown.sleep(every).await {
        if !readiness.output_down_and_idle() {
            continue;
        }
        if sink.health(&shutdown).await.is_ok() {
            readiness.output_up();
            tracing::info!("the output answers its health check again: ready");
        }
    }
}

/// Counts SIGHUPs: each change asks `run` to reload its config.
pub type Reload = tokio::sync::watch::Receiver<u64>;

/// A running group poller: how to stop it, and what it runs with.
struct Poller {
    stop: crate::shutdown::ShutdownTrigger,
    /// The config entry it runs with, as text: a reload restarts the
    /// pollers whose entry changed.
    fingerprint: String,
    handle: tokio::task::JoinHandle<Option<String>>,
}

impl Poller {
    /// Stops the poller and waits for it: it finishes its batch and commits
    /// first, so that a poller started again for the group sends nothing
    /// twice. The failure it ended with, if any.
    async fn finish(self) -> Option<String> {
        self.stop.trigger();
        self.handle.await.ok().flatten()
    }
}

/// Starts a poller for `spec`: it stops when `shutdown` (everything) or its
/// own stop (a reload) comes; deliveries in flight always get the grace.
fn start_poller(ctx: &Arc<Context>, spec: GroupSpec, shutdown: &Shutdown) -> Poller {
    tracing::info!(account = %spec.account(), group = %spec.name, "polling log group");
    let (stop, stopped) = crate::shutdown::channel();
    let fingerprint = format!("{:?}", spec.config);
    let progress = crate::source::pull::progress::GroupProgress::quiet(&spec.name);
    let (ctx, shutdown) = (Arc::clone(ctx), shutdown.clone());
    let handle = tokio::spawn(async move {
        match run_group(ctx, spec, Target::Live, progress, shutdown, stopped).await {
            GroupEnd::Failed(e) => Some(e),
            GroupEnd::Done | GroupEnd::ShutDown => None,
        }
    });
    Poller {
        stop,
        fingerprint,
        handle,
    }
}

/// Logs the accounts whose role cannot be assumed; their groups are left
/// out, the others go on. Returns their names.
async fn unusable_accounts(accounts: &Accounts) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (account, error) in accounts.unusable().await {
        tracing::error!(account = %account, error = %error, "account not usable: its log groups are not polled (fix it, then send SIGHUP or restart)");
        out.push((account, error));
    }
    out
}

/// The names of the accounts in `unusable`.
fn names(unusable: &[(String, String)]) -> Vec<String> {
    unusable.iter().map(|(a, _)| a.clone()).collect()
}

/// What a reloaded config changes that only a restart applies.
fn needs_restart(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut out = Vec::new();
    if old.output.describe() != new.output.describe()
        || format!("{:?}", old.output) != format!("{:?}", new.output)
    {
        out.push("the output");
    }
    if old.agent.state_path != new.agent.state_path {
        out.push("agent.state_path");
    }
    if old.agent.listen != new.agent.listen {
        out.push("agent.listen");
    }
    let connection = |c: &Config| -> Vec<String> {
        c.accounts
            .iter()
            .map(|a| {
                format!(
                    "{} {:?} {:?} {:?} {:?} {:?} {:?}",
                    a.name,
                    a.aws.region,
                    a.aws.profile,
                    a.aws.endpoint_url,
                    a.role,
                    a.account_id,
                    a.aws.timeout
                )
            })
            .collect()
    };
    if connection(old) != connection(new) {
        out.push("accounts (names, Regions, credentials, endpoints)");
    }
    let agent = |c: &Config| {
        let a = &c.agent;
        format!(
            "{:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?}",
            a.poll_interval,
            a.max_idle_poll_interval,
            a.lookback,
            a.late_arrival,
            a.adaptive_late_arrival,
            a.max_late_arrival,
            a.max_window,
            a.shutdown_grace,
            a.group_traces,
            a.trace_idle,
            a.trace_key_field,
            a.trace_summaries,
            a.state_fsync
        )
    };
    if agent(old) != agent(new) {
        out.push("agent settings other than discovery_interval_secs");
    }
    out
}

/// `cwtap run`: polls every group until `shutdown`, then commits and
/// returns. Each change of `reload` (SIGHUP) reloads the config file:
/// groups added or removed, parser rules and rate budgets apply at once;
/// what needs a restart is logged; a config that does not load is refused
/// and the running one stays.
pub async fn run(config: Config, shutdown: Shutdown, mut reload: Reload) -> Result<(), AppError> {
    check_pulls(&config, "run")?;
    let accounts = Accounts::connect(&config).await;
    accounts.check_regions()?;
    let listener = start_listener(&config, &shutdown).await;
    let ctx = match context(&config, Reading::unpaced(), &shutdown).await {
        Ok(ctx) => ctx,
        // Stopped while starting: nothing was polled, nothing to commit.
        Err(_) if shutdown.is_triggered() => return Ok(()),
        Err(e) => return Err(e),
    };
    crate::obs::readiness().output_up();
    let watch = tokio::spawn(output_watch(
        Arc::clone(ctx.pipeline.sink()),
        config.agent.poll_interval,
        shutdown.clone(),
    ));
    tracing::info!(groups = config.groups.len(), accounts = config.accounts.len(), output = %config.output.describe(), state = %config.agent.state_path.display(), "cwtap running");
    let mut config = config;
    let mut skip = unusable_accounts(&accounts).await;
    let summaries = config.agent.group_traces.then(|| {
        tokio::spawn(summary_loop(
            Arc::clone(&ctx.pipeline),
            config.agent.clone(),
            shutdown.clone(),
        ))
    });
    let mut pollers: std::collections::HashMap<(String, String), Poller> = Default::default();
    let mut failures = Vec::new();
    loop {
        let mut known: HashSet<(String, String)> = pollers.keys().cloned().collect();
        let Resolved {
            found,
            errors,
            listed,
        } = resolve_groups(&config, &accounts, &mut known, &names(&skip), &shutdown).await;
        for e in &errors {
            tracing::error!(error = %e, "log group discovery failed; retrying at the next discovery");
        }
        // Not ready while a configured group cannot be resolved.
        let discovery_failed = !errors.is_empty();
        let mut unresolved = errors;
        unresolved.extend(
            skip.iter()
                .map(|(a, e)| format!("account {a} not usable: {e}")),
        );
        crate::obs::readiness().discovered(unresolved);
        // A group a prefix found before and no longer lists was deleted:
        // its poller stops (after its batch is committed) rather than look
        // for it for as long as cwtap runs. Named groups are always listed;
        // a listing that failed stops nothing.
        if !discovery_failed {
            let gone: Vec<(String, String)> = pollers
                .keys()
                .filter(|k| !listed.contains(*k) && !skip.iter().any(|(a, _)| *a == k.0))
                .cloned()
                .collect();
            for key in gone {
                if let Some(p) = pollers.remove(&key) {
                    failures.extend(p.finish().await);
                    tracing::info!(account = %key.0, group = %key.1, "log group no longer listed under its prefix (deleted); stopped polling it");
                }
            }
        }
        for spec in found {
            let key = (spec.account().to_string(), spec.name.clone());
            pollers.insert(key, start_poller(&ctx, spec, &shutdown));
        }
        let has_prefix = config
            .groups
            .iter()
            .any(|g| matches!(g.selector, GroupSelector::Prefix(_)));
        // A failed discovery is tried again at the poll interval.
        let rediscover = if discovery_failed {
            config
                .agent
                .poll_interval
                .min(config.agent.discovery_interval)
        } else {
            config.agent.discovery_interval
        };
        tokio::select! {
            _ = shutdown.wait() => break,
            _ = tokio::time::sleep(rediscover), if has_prefix || discovery_failed => {}
            changed = reload.changed() => {
                if changed.is_err() {
                    // No signal thread any more: wait for shutdown only.
                    shutdown.wait().await;
                    break;
                }
                let new = match Config::load(&config.path) {
                    Ok(new) => new,
                    Err(e) => {
                        tracing::error!(error = %e, "SIGHUP: the new config does not load; the running config stays");
                        continue;
                    }
                };
                for what in needs_restart(&config, &new) {
                    tracing::warn!(changed = what, "SIGHUP: this change needs a restart; running with the old one");
                }
                for (account, client) in accounts.iter() {
                    if let Some(a) = new.accounts.iter().find(|a| a.name == account.name)
                        && a.aws.rate_limits != account.aws.rate_limits
                    {
                        client.budget().set_limits(&a.aws.rate_limits);
                        tracing::info!(account = %a.name, "SIGHUP: new rate budget applied");
                    }
                }
                // Stop the pollers of groups gone or changed; the loop starts
                // what the new config selects.
                let wanted: std::collections::HashMap<(String, String), String> = {
                    let mut none = HashSet::new();
                    resolve_groups(&new, &accounts, &mut none, &names(&skip), &shutdown)
                        .await
                        .found
                        .into_iter()
                        .map(|s| ((s.account().to_string(), s.name.clone()), format!("{:?}", s.config)))
                        .collect()
                };
                let stale: Vec<(String, String)> = pollers
                    .iter()
                    .filter(|(k, p)| wanted.get(*k) != Some(&p.fingerprint))
                    .map(|(k, _)| k.clone())
                    .collect();
                for key in stale {
                    if let Some(p) = pollers.remove(&key) {
                        failures.extend(p.finish().await);
                        if wanted.contains_key(&key) {
                            tracing::info!(account = %key.0, group = %key.1, "SIGHUP: restarting with the new config");
                        } else {
                            tracing::info!(account = %key.0, group = %key.1, "SIGHUP: no longer selected; stopped");
                        }
                    }
                }
                skip = unusable_accounts(&accounts).await;
                config = Config {
                    accounts: config.accounts.clone(),
                    output: Arc::clone(&config.output),
                    agent: crate::config::AgentConfig {
                        discovery_interval: new.agent.discovery_interval,
                        ..config.agent.clone()
                    },
                    ..new
                };
                tracing::info!(groups = config.groups.len(), "SIGHUP: config reloaded");
            }
        }
    }
    tracing::info!("shutting down: finishing in-flight deliveries and committing state");
    let deadline = tokio::time::sleep(Duration::from_secs(9));
    tokio::pin!(deadline);
    watch.abort();
    let mut handles: Vec<_> = pollers.into_values().map(|p| p.handle).collect();
    handles.extend(summaries.map(|h| {
        tokio::spawn(async move {
            let _ = h.await;
            None
        })
    }));
    for handle in handles {
        let abort = handle.abort_handle();
        tokio::select! {
            r = handle => if let Ok(Some(failure)) = r {
                failures.push(failure);
            },
            _ = &mut deadline => {
                tracing::warn!("pollers did not stop in time; abandoning them (their last batch was not checkpointed and will be read again)");
                abort.abort();
            }
        }
    }
    if let Some(listener) = listener {
        // It stops on the same shutdown signal; wait briefly for it.
        let _ = tokio::time::timeout(Duration::from_secs(1), listener).await;
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(AppError::Failed(failures.join("; ")))
    }
}

/// Starts the `/healthz`, `/readyz`, `/metrics` listener when `agent.listen`
/// is set. A busy port is logged, not fatal: pulling matters more than
/// showing it (and the container HEALTHCHECK then reports the problem).
async fn start_listener(
    config: &Config,
    shutdown: &Shutdown,
) -> Option<tokio::task::JoinHandle<()>> {
    let addr = config.agent.listen?;
    match crate::obs::bind(addr).await {
        Ok(listener) => Some(tokio::spawn(crate::obs::serve(listener, shutdown.clone()))),
        Err(e) => {
            tracing::error!(error = %e, "metrics and health listener not started; cwtap goes on without it");
            None
        }
    }
}

/// `cwtap serve`: receives Firehose requests on `firehose.listen` until
/// `shutdown`, then finishes the requests in flight and returns.
pub async fn serve(config: Config, shutdown: Shutdown) -> Result<(), AppError> {
    use crate::source::firehose;
    let Some(endpoint) = config.firehose.clone() else {
        return Err(AppError::Usage(format!(
            "{} has no `firehose:` section: `serve` needs firehose.listen and firehose.access_key",
            config.path.display()
        )));
    };
    let tls = firehose::tls_acceptor(&endpoint).map_err(|e| AppError::Usage(e.to_string()))?;
    // Bound first: a busy port is reported before anything else starts.
    let socket = firehose::bind(&endpoint)
        .await
        .map_err(|e| AppError::Failed(e.to_string()))?;
    let listener = start_listener(&config, &shutdown).await;
    let pipeline = match open_pipeline(&config, &shutdown).await {
        Ok(p) => p,
        Err(_) if shutdown.is_triggered() => return Ok(()),
        Err(e) => return Err(e),
    };
    let state = pipeline
        .state()
        .cloned()
        .ok_or_else(|| AppError::Failed("the Firehose source needs a state file".into()))?;
    crate::obs::readiness().output_up();
    crate::obs::readiness().discovered(Vec::new());
    let watch = tokio::spawn(output_watch(
        Arc::clone(pipeline.sink()),
        config.agent.poll_interval,
        shutdown.clone(),
    ));
    tracing::info!(listen = %endpoint.listen, output = %config.output.describe(), state = %config.agent.state_path.display(), "cwtap serving Firehose");
    let summaries = config.agent.group_traces.then(|| {
        tokio::spawn(summary_loop(
            Arc::clone(&pipeline),
            config.agent.clone(),
            shutdown.clone(),
        ))
    });
    let receiver = Arc::new(firehose::Receiver::new(
        endpoint,
        &config.groups,
        pipeline,
        state,
        shutdown.clone(),
        config.agent.shutdown_grace,
    ));
    firehose::serve(
        receiver,
        socket,
        tls,
        shutdown.clone(),
        config.agent.shutdown_grace,
    )
    .await;
    watch.abort();
    for task in [summaries, listener].into_iter().flatten() {
        let _ = tokio::time::timeout(Duration::from_secs(1), task).await;
    }
    Ok(())
}

/// What `cwtap subscribe` asks for.
#[derive(Debug, Clone)]
pub struct SubscribeRequest {
    pub destination_arn: String,
    pub role_arn: String,
    /// Groups by name, and by prefix; both empty: the config's log_groups.
    pub groups: Vec<String>,
    pub prefixes: Vec<String>,
    pub filter_name: String,
    pub filter_pattern: String,
    pub dry_run: bool,
}

/// `cwtap subscribe`: puts the subscription filter on every selected group;
/// returns per group what happened (`Err` with the reason when it failed).
/// With a config, in its first account, and on its `log_groups` (prefixes
/// resolved) when the request names no group; without one (a request that
/// names its groups), with the environment's AWS settings.
pub async fn subscribe(
    config: Option<&Config>,
    request: &SubscribeRequest,
    shutdown: &Shutdown,
) -> Result<Vec<(String, Result<(), String>)>, AppError> {
    let mut names: Vec<String> = Vec::new();
    let mut failed = Vec::new();
    let cloudwatch = match config {
        Some(config) => {
            let accounts = Accounts::connect(config).await;
            let Some((_, cloudwatch)) = accounts.iter().next() else {
                return Err(AppError::Usage("no account to subscribe in".into()));
            };
            if request.groups.is_empty() && request.prefixes.is_empty() {
                let mut known = HashSet::new();
                let Resolved { found, errors, .. } =
                    resolve_groups(config, &accounts, &mut known, &[], shutdown).await;
                names.extend(found.into_iter().map(|g| g.name));
                failed.extend(
                    errors
                        .into_iter()
                        .map(|e| ("(discovery)".to_string(), Err(e))),
                );
            }
            cloudwatch.clone()
        }
        None => CloudWatch::connect(&crate::config::AwsConfig::default()).await,
    };
    names.extend(request.groups.iter().cloned());
    for prefix in &request.prefixes {
        match cloudwatch.discover_groups(prefix, shutdown).await {
            Ok(found) => names.extend(found),
            Err(e) => failed.push((format!("prefix {prefix:?}"), Err(e.to_string()))),
        }
    }
    names.sort();
    names.dedup();
    let spec = crate::cloudwatch::admin::SubscriptionFilterSpec {
        name: request.filter_name.clone(),
        pattern: request.filter_pattern.clone(),
        destination_arn: request.destination_arn.clone(),
        role_arn: Some(request.role_arn.clone()),
        by_log_stream: None,
    };
    let mut out = failed;
    for name in names {
        let result = if request.dry_run {
            Ok(())
        } else {
            cloudwatch
                .put_subscription_filter(&name, &spec, shutdown)
                .await
                .map_err(|e| e.to_string())
        };
        out.push((name, result));
    }
    Ok(out)
}

/// Holds `<state_path>.lock` for as long as a command uses the state file:
/// one agent per state file (the lock goes when the process ends, however
/// it ends; the file stays, with the last holder's pid).
#[derive(Debug)]
pub struct StateLock {
    _file: std::fs::File,
}

/// Takes the state file's lock, before anything touches the state file or
/// AWS: a second `run`, `backfill` or `serve` on the same file stops here
/// with a usage error naming the file and the pid holding it.
pub fn lock_state(config: &Config) -> Result<StateLock, AppError> {
    lock_state_file(&config.agent.state_path)
}

fn lock_state_file(state: &std::path::Path) -> Result<StateLock, AppError> {
    use std::io::{Read, Seek, Write};
    let mut name = state.as_os_str().to_owned();
    name.push(".lock");
    let path = std::path::PathBuf::from(name);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| {
            AppError::Failed(format!(
                "cannot create the state folder {}: {e}",
                dir.display()
            ))
        })?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&path)
        .map_err(|e| AppError::Failed(format!("cannot open {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => {
            let _ = file.set_len(0);
            let _ = file.rewind();
            let _ = write!(file, "{}", std::process::id());
            let _ = file.flush();
            Ok(StateLock { _file: file })
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            // The holder writes its pid just after taking the lock: a
            // process that comes in between reads an empty file, so it
            // reads again for a moment (bounded) before saying "unknown".
            let mut holder = String::new();
            for _ in 0..100 {
                holder.clear();
                let _ = file.rewind();
                let _ = file.read_to_string(&mut holder);
                if !holder.trim().is_empty() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            let holder = holder.trim();
            Err(AppError::Usage(format!(
                "state file {} is in use by another cwtap (pid {}): one agent per state file; stop it first or give this one another agent.state_path",
                state.display(),
                if holder.is_empty() { "unknown" } else { holder }
            )))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(AppError::Failed(format!(
            "cannot lock {}: {e}",
            path.display()
        ))),
    }
}

/// `cwtap health`: exit 0 when `url` answers 200.
pub async fn health(url: &str) -> Result<String, AppError> {
    let usable = reqwest::Url::parse(url)
        .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
    if !usable {
        return Err(AppError::Usage(format!(
            "--url {url}: not an http:// or https:// URL (e.g. http://127.0.0.1:9464/readyz)"
        )));
    }
    crate::obs::probe(url)
        .await
        .map_err(|e| AppError::Failed(e.to_string()))
}

/// A config with no `log_groups` (one with only `firehose:`) has nothing
/// for `run` or `backfill` to pull: a usage error pointing at `serve`.
fn check_pulls(config: &Config, command: &str) -> Result<(), AppError> {
    if !config.groups.is_empty() {
        return Ok(());
    }
    Err(AppError::Usage(format!(
        "{} has no log_groups: `cwtap {command}` pulls log groups; to receive its firehose: section, run `cwtap serve`",
        config.path.display()
    )))
}

/// The usage errors of a backfill request (a `--group` no entry selects,
/// an empty window), found before the state file is locked or touched.
pub fn check_backfill(config: &Config, request: &BackfillRequest) -> Result<(), AppError> {
    check_pulls(config, "backfill")?;
    for g in &request.groups {
        let selected = config.groups.iter().any(|c| match &c.selector {
            GroupSelector::Name(n) => n == g,
            GroupSelector::Prefix(p) => g.starts_with(p.as_str()),
        });
        if !selected {
            return Err(AppError::Usage(format!(
                "--group {g}: not selected by any log_groups entry in {}",
                config.path.display()
            )));
        }
    }
    if request.since >= request.until {
        return Err(AppError::Usage(format!(
            "--since {} is not before --until {}",
            format_ms(request.since),
            format_ms(request.until)
        )));
    }
    Ok(())
}

/// `cwtap backfill`: delivers `[since, until)` of every (selected) group.
pub async fn backfill(
    config: Config,
    request: BackfillRequest,
    shutdown: Shutdown,
) -> Result<BackfillReport, AppError> {
    check_backfill(&config, &request)?;
    // Traces close as every group reads past them; a group reads at most
    // the idle time ahead of the slowest one, so what is open at once stays
    // about twice the idle time of history (and a page) across the groups.
    let idle_ms = config.agent.trace_idle.as_millis() as i64;
    let reading = Reading::paced(config.agent.group_traces.then_some(idle_ms));
    let accounts = Accounts::connect(&config).await;
    accounts.check_regions()?;
    let ctx = context(&config, reading, &shutdown).await?;
    let mut report = BackfillReport::default();
    let skip = unusable_accounts(&accounts).await;
    for (account, error) in &skip {
        report
            .groups_failed
            .push((format!("(account {account})"), error.clone()));
    }
    let mut known = HashSet::new();
    let Resolved {
        found: mut specs,
        errors,
        ..
    } = resolve_groups(&config, &accounts, &mut known, &names(&skip), &shutdown).await;
    if !request.groups.is_empty() {
        specs.retain(|s| request.groups.contains(&s.name));
        // A --group a prefix selects but that does not exist would
        // otherwise be a backfill of nothing that says it completed (a
        // failed discovery already says why its groups are missing).
        if errors.is_empty() {
            for g in &request.groups {
                if !specs.iter().any(|s| &s.name == g) {
                    report.groups_failed.push((
                        g.clone(),
                        "no log group of this name exists under the configured prefixes: check the name with `cwtap groups list`".into(),
                    ));
                }
            }
        }
    }
    for e in errors {
        report.groups_failed.push(("(discovery)".into(), e));
    }
    tracing::info!(groups = specs.len(), since = %format_ms(request.since), until = %format_ms(request.until), "backfill starting");
    let target = Target::Backfill {
        since: request.since,
        until: request.until,
    };
    let progress = Progress::new(request.interactive, Some((request.since, request.until)));
    // Traces close by event time as the groups read past them (each time a
    // cursor moves), so memory holds only the traces still open, however
    // long the range (the groups read in step: see `reading`).
    let (closer_done, closer_stop) = crate::shutdown::channel();
    let closer = config.agent.group_traces.then(|| {
        let (ctx, shutdown) = (Arc::clone(&ctx), shutdown.clone());
        // A round lists the traces in memory; reading moves after every
        // delivered batch, so a round waits for a tenth of the idle time
        // of history to be read past (a trace stays that much longer).
        let step_ms = (idle_ms / 10).max(1_000);
        let mut moved = ctx.reading.subscribe();
        tokio::spawn(async move {
            let mut closed_before = EpochMs::MIN;
            loop {
                tokio::select! {
                    changed = moved.changed() => {
                        if changed.is_err() {
                            break;
                        }
                    }
                    _ = closer_stop.wait() => break,
                }
                if shutdown.is_triggered() {
                    break;
                }
                let Some(read) = ctx.reading.watermark() else {
                    continue;
                };
                if read - idle_ms < closed_before.saturating_add(step_ms) {
                    continue;
                }
                match ctx
                    .pipeline
                    .emit_summaries(read - idle_ms, true, Due::Before(read - idle_ms), &shutdown)
                    .await
                {
                    Ok(_) => closed_before = read - idle_ms,
                    Err(e) => {
                        tracing::error!(error = %e, "emitting trace summaries failed; retrying");
                    }
                }
            }
        })
    });
    // Every group counts from the start: until a group has read past a
    // time, no trace is closed by it (a group whose task has not run yet
    // may hold a trace's other events).
    for spec in &specs {
        ctx.reading_from(spec, request.since);
    }
    let mut tasks = JoinSet::new();
    for spec in specs {
        let name = crate::obs::group_label(spec.account(), &spec.name);
        let p = progress.group(&name);
        let ctx = Arc::clone(&ctx);
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            let stop = shutdown.clone();
            (name, run_group(ctx, spec, target, p, shutdown, stop).await)
        });
    }
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((name, GroupEnd::Done)) => report.groups_done.push(name),
            Ok((_, GroupEnd::ShutDown)) => report.interrupted = true,
            Ok((name, GroupEnd::Failed(e))) => {
                tracing::error!(group = %name, error = %e, "backfill of group failed");
                report.groups_failed.push((name, e));
            }
            Err(e) => report.groups_failed.push(("(task)".into(), e.to_string())),
        }
    }
    closer_done.trigger();
    if let Some(closer) = closer {
        let _ = closer.await;
    }
    if config.agent.group_traces && !report.interrupted && report.groups_failed.is_empty() {
        let sent = ctx
            .pipeline
            .emit_summaries(request.until - idle_ms, true, Due::All, &shutdown)
            .await?;
        tracing::info!(
            summaries = sent,
            "traces still open at the end closed and their summaries delivered (the others went out during the backfill)"
        );
    }
    Ok(report)
}

/// `cwtap check`: what would be polled and where it goes.
pub fn describe(config: &Config) -> String {
    let mut out = format!("config {} is valid\n", config.path.display());
    let a = &config.aws;
    out.push_str(&format!(
        "aws: region {}, profile {}, endpoint {}\n",
        a.region.as_deref().unwrap_or("(from the AWS chain)"),
        a.profile.as_deref().unwrap_or("(default)"),
        match (&a.endpoint_url, std::env::var("AWS_ENDPOINT_URL")) {
            (Some(url), _) => url.clone(),
            (None, Ok(url)) if !url.trim().is_empty() => format!("{url} (AWS_ENDPOINT_URL)"),
            _ => "(AWS)".into(),
        },
    ));
    // With `accounts:`, each entry as it will connect.
    for acc in config.accounts.iter().filter(|a| a.listed) {
        out.push_str(&format!(
            "account {}: region {}, profile {}, endpoint {}{}{}\n",
            acc.name,
            acc.aws.region.as_deref().unwrap_or("(from the AWS chain)"),
            acc.aws.profile.as_deref().unwrap_or("(default)"),
            acc.aws.endpoint_url.as_deref().unwrap_or("(as aws:)"),
            acc.role
                .as_ref()
                .map(|r| format!(", role {}", r.role_arn))
                .unwrap_or_default(),
            acc.account_id
                .as_deref()
                .map(|id| format!(", account id {id}"))
                .unwrap_or_default(),
        ));
    }
    let r = &a.rate_limits;
    out.push_str(&format!(
        "call budget per second: FilterLogEvents {}, GetLogEvents {}, DescribeLogGroups {}, DescribeLogStreams {}\n",
        r.filter_log_events, r.get_log_events, r.describe_log_groups, r.describe_log_streams
    ));
    out.push_str(&format!("output: {}\n", config.output.describe()));
    let ag = &config.agent;
    out.push_str(&format!(
        "state: {}\npoll every {:?} (idle groups up to every {:?}), first poll reaches back {:?}, late arrivals up to {:?} re-read{}, windows of at most {:?}\n",
        ag.state_path.display(),
        ag.poll_interval,
        ag.max_idle_poll_interval,
        ag.lookback,
        ag.late_arrival,
        if ag.adaptive_late_arrival {
            format!(" (adaptive up to {:?})", ag.max_late_arrival)
        } else {
            String::new()
        },
        ag.max_window,
    ));
    if let Some(f) = &config.firehose {
        out.push_str(&format!(
            "firehose (cwtap serve): listen on {} ({}), access key set, requests up to {} bytes, {} at once ({} bytes in all), answered within {:?}, delivered event ids remembered {:?}; groups without a log_groups entry get {} default rule(s)\n",
            f.listen,
            if f.tls.is_some() { "HTTPS" } else { "HTTP" },
            f.max_body_bytes,
            f.max_in_flight_requests,
            f.max_in_flight_bytes,
            f.request_timeout,
            f.dedup_window,
            f.default_group.rules.len(),
        ));
    }
    out.push_str(if config.groups.is_empty() {
        "log groups: none (nothing to pull)\n"
    } else {
        "log groups:\n"
    });
    for g in &config.groups {
        let what = match &g.selector {
            GroupSelector::Name(n) => n.clone(),
            GroupSelector::Prefix(p) => format!(
                "every group starting with {p:?} (re-discovered every {:?})",
                ag.discovery_interval
            ),
        };
        let streams = match &g.streams {
            StreamFilter::All => "all streams".to_string(),
            StreamFilter::Names(n) => format!("streams {}", n.join(", ")),
            StreamFilter::Prefix(p) => format!("streams starting with {p:?}"),
        };
        let what = if g.account == crate::config::DEFAULT_ACCOUNT {
            what
        } else {
            format!("{what} (account {})", g.account)
        };
        out.push_str(&format!(
            "  - {what}: {streams}; mode {}; filter {}; {} parser rule(s){}\n",
            g.mode.as_str(),
            g.filter_pattern
                .as_deref()
                .map(|f| format!("{f:?}"))
                .unwrap_or_else(|| "none".into()),
            g.rules.len(),
            g.agent_id
                .as_deref()
                .map(|a| format!("; agent_id {a}"))
                .unwrap_or_default(),
        ));
    }
    out
}

/// `cwtap status`: every group's checkpoint, from the state file.
pub fn status(state_path: &std::path::Path, json: bool) -> Result<String, AppError> {
    let path = state_path;
    let Some(store) = StateStore::open_existing(path)? else {
        return Err(AppError::Failed(format!(
            "no state file at {}: nothing has been polled yet",
            path.display()
        )));
    };
    let groups = store.all_groups_blocking()?;
    let pushed = store.pushed_groups_blocking()?;
    let now = now_ms();
    if json {
        let mut rows: Vec<_> = groups
            .iter()
            .map(|g| {
                serde_json::json!({
                    "source": "pull",
                    "account": g.account,
                    "log_group": g.log_group,
                    "cursor": format_ms(g.coverage.cursor_ms),
                    "covered_from": format_ms(g.coverage.covered_from_ms),
                    "lag_secs": (now - g.coverage.cursor_ms) as f64 / 1000.0,
                    "events_delivered": g.events_delivered,
                    "events_rejected": g.events_rejected,
                    "late_events": g.late_events,
                    "observed_delay_ms": g.observed_delay_ms,
                    "last_poll": g.last_poll_ms.map(format_ms),
                    "poll_interval_secs": g.poll_interval_ms.map(|ms| ms as f64 / 1000.0),
                    "api_calls": g.api_calls,
                    "events_read": g.events_read,
                    "events_per_call": events_per_call(g),
                    "last_error": g.last_error,
                })
            })
            .collect();
        rows.extend(pushed.iter().map(|p| {
            serde_json::json!({
                "source": "firehose",
                "log_group": p.log_group,
                "event_ids_remembered": p.remembered,
                "last_received": format_ms(p.last_received_ms),
            })
        }));
        return Ok(serde_json::to_string_pretty(&rows).unwrap_or_default());
    }
    Ok(status_table(&groups, &pushed, now))
}

/// `cwtap status`'s table: the pulled groups, then the received ones.
fn status_table(
    groups: &[crate::state::GroupState],
    pushed: &[crate::state::PushedGroup],
    now: EpochMs,
) -> String {
    // With several accounts a group shows as ACCOUNT/GROUP.
    let several = groups
        .iter()
        .any(|g| g.account != crate::config::DEFAULT_ACCOUNT);
    let names: Vec<String> = groups
        .iter()
        .map(|g| {
            if several {
                format!("{}/{}", g.account, g.log_group)
            } else {
                g.log_group.clone()
            }
        })
        .collect();
    // The first column as wide as the longest name, so that the others line up.
    let w = names
        .iter()
        .map(|n| n.chars().count())
        .max()
        .unwrap_or(0)
        .max(20);
    let mut out = format!(
        "{:<w$} {:<25} {:>10} {:>9} {:>10} {:>8} {:>6} {:>7} {:>8}  LAST ERROR\n",
        "LOG GROUP",
        "CURSOR",
        "LAG",
        "INTERVAL",
        "DELIVERED",
        "REJECTED",
        "LATE",
        "CALLS",
        "EV/CALL"
    );
    let secs = |ms: i64| {
        humantime::format_duration(Duration::from_secs((ms.max(0) as u64) / 1000)).to_string()
    };
    for (g, name) in groups.iter().zip(&names) {
        out.push_str(&format!(
            "{:<w$} {:<25} {:>10} {:>9} {:>10} {:>8} {:>6} {:>7} {:>8.0}  {}\n",
            name,
            format_ms(g.coverage.cursor_ms),
            secs(now - g.coverage.cursor_ms),
            g.poll_interval_ms.map(secs).unwrap_or_else(|| "-".into()),
            g.events_delivered,
            g.events_rejected,
            g.late_events,
            g.api_calls,
            events_per_call(g),
            g.last_error.as_deref().unwrap_or("-"),
        ));
    }
    if groups.is_empty() && pushed.is_empty() {
        out.push_str("(no log group has been polled yet)\n");
    }
    if groups.is_empty() && !pushed.is_empty() {
        // Receive only: no pull table.
        out.clear();
    }
    if !pushed.is_empty() {
        if !out.is_empty() {
            out.push('\n');
        }
        let w = pushed
            .iter()
            .map(|p| p.log_group.chars().count())
            .max()
            .unwrap_or(0)
            .max(20);
        out.push_str(&format!(
            "received through Firehose (cwtap serve):\n{:<w$} {:<25} {:>12}\n",
            "LOG GROUP", "LAST RECEIVED", "IDS KEPT"
        ));
        for p in pushed {
            out.push_str(&format!(
                "{:<w$} {:<25} {:>12}\n",
                p.log_group,
                format_ms(p.last_received_ms),
                p.remembered
            ));
        }
    }
    out
}

/// `cwtap status --watch`: the table, redrawn every `every` until shutdown.
pub async fn watch_status(
    state_path: &std::path::Path,
    every: Duration,
    shutdown: &Shutdown,
) -> Result<(), AppError> {
    use std::io::{IsTerminal, Write};
    let clear = std::io::stdout().is_terminal();
    loop {
        let table = match status(state_path, false) {
            Ok(t) => t,
            // No state file yet: say so and keep watching.
            Err(AppError::Failed(why)) => format!("{why}\n"),
            Err(e) => return Err(e),
        };
        let mut out = std::io::stdout().lock();
        let written = if clear {
            write!(out, "\x1b[2J\x1b[H")
        } else {
            Ok(())
        }
        .and_then(|()| {
            write!(
                out,
                "{}  (every {}; Ctrl-C to stop)\n{table}",
                format_ms(now_ms()),
                humantime::format_duration(every)
            )
        })
        .and_then(|()| out.flush());
        drop(out);
        match written {
            Ok(()) => {}
            // The reader is gone (`| head`): nothing more to show.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => {
                return Err(AppError::Failed(format!(
                    "cannot write to standard output: {e}"
                )));
            }
        }
        if !shutdown.sleep(every).await {
            return Ok(());
        }
    }
}

/// What `cwtap check --online` found: a report, and each failure.
#[derive(Debug, Default)]
pub struct OnlineReport {
    pub text: String,
    pub failures: Vec<String>,
}

/// `cwtap check --online`: per account-Region its credentials and one cheap
/// call of each API the config needs; every prefix resolved and every named
/// group looked up; the output's health; the state path writable; the poll
/// interval each group can expect from the budget.
pub async fn check_online(config: &Config, shutdown: &Shutdown) -> OnlineReport {
    use std::fmt::Write;
    let mut r = OnlineReport::default();
    // A config that only receives (`serve`) calls no AWS API.
    let accounts = if config.groups.is_empty() {
        let _ = writeln!(r.text, "aws: not called (no log groups to pull)");
        Accounts::default()
    } else {
        Accounts::connect(config).await
    };
    for (account, client) in accounts.iter() {
        let name = &account.name;
        // (Said inside parentheses below: "(no region configured)" bare.)
        let region = client.region().trim_matches(['(', ')']).to_string();
        if let Err(e) = client.check_credentials().await {
            r.failures.push(e);
            continue;
        }
        let groups: Vec<&crate::config::GroupConfig> = config
            .groups
            .iter()
            .filter(|g| g.account == *name)
            .collect();
        // DescribeLogGroups: credentials and the permission discovery needs.
        if let Err(e) = client.list_one_group(shutdown).await {
            r.failures.push(format!("account {name} ({region}): {e}"));
            continue;
        }
        let mut resolved: Vec<(String, &crate::config::GroupConfig)> = Vec::new();
        for g in &groups {
            match &g.selector {
                GroupSelector::Name(n) => match client.discover_groups(n, shutdown).await {
                    Ok(found) if found.iter().any(|f| f == n) => resolved.push((n.clone(), g)),
                    Ok(_) => r.failures.push(format!(
                        "{}: log group {n} not found in {region} (account {name})",
                        g.key
                    )),
                    Err(e) => r.failures.push(format!("{}: {e}", g.key)),
                },
                GroupSelector::Prefix(p) => match client.discover_groups(p, shutdown).await {
                    Ok(found) => {
                        let _ = writeln!(
                            r.text,
                            "account {name} ({region}): prefix {p:?} selects {} group(s)",
                            found.len()
                        );
                        resolved.extend(found.into_iter().map(|f| (f, *g)));
                    }
                    Err(e) => r.failures.push(format!("{}: prefix {p:?}: {e}", g.key)),
                },
            }
        }
        resolved.sort_by(|a, b| a.0.cmp(&b.0));
        resolved.dedup_by(|a, b| a.0 == b.0);
        // One read call per read mode, on the first group of that mode.
        for mode in [
            crate::config::ReadMode::Filter,
            crate::config::ReadMode::Streams,
        ] {
            if let Some((group, g)) = resolved.iter().find(|(_, g)| g.mode == mode)
                && let Err(e) = client.probe_read(group, g, shutdown).await
            {
                r.failures.push(format!("account {name} ({region}): {e}"));
            }
        }
        let rates = &account.aws.rate_limits;
        let n = resolved.len() as f64;
        let rate = rates.filter_log_events;
        let every = (n / rate).max(config.agent.poll_interval.as_secs_f64());
        let _ = writeln!(
            r.text,
            "account {name} ({region}): credentials ok; {} group(s) found, at {rate} calls/s: each group every ~{:.0} s",
            resolved.len(),
            every
        );
    }
    match config.output.check_online(&config.agent, shutdown).await {
        Ok(()) => {
            let _ = writeln!(r.text, "output: {} is reachable", config.output.describe());
        }
        Err(e) => r.failures.push(format!("output: {e}")),
    }
    match crate::config::writable(&config.agent.state_path, "agent.state_path") {
        Ok(()) => {
            let _ = writeln!(
                r.text,
                "state: {} is writable",
                config.agent.state_path.display()
            );
        }
        Err(e) => r.failures.push(e),
    }
    r
}

/// Events a group's read calls returned per call (re-reads included).
fn events_per_call(g: &crate::state::GroupState) -> f64 {
    g.events_read as f64 / g.api_calls.max(1) as f64
}

/// `cwtap parse-test`: runs `text` (raw lines, or fixture JSON lines with a
/// `message`) through the rules of `group` and through trace grouping, and
/// reports per line the rule and canonical fields, then the traces.
pub async fn parse_test(
    config: &Config,
    group: &str,
    text: &str,
    json: bool,
) -> Result<String, AppError> {
    let entry = config.groups.iter().find(|c| match &c.selector {
        GroupSelector::Name(n) => n == group,
        GroupSelector::Prefix(p) => group.starts_with(p.as_str()),
    });
    // A group no entry selects gets what `serve` gives it, the
    // `firehose.default_parsers`, when the config receives.
    let selected: &crate::config::GroupConfig = match (entry, &config.firehose) {
        (Some(entry), _) => entry,
        (None, Some(firehose)) => &firehose.default_group,
        (None, None) => {
            return Err(AppError::Usage(format!(
                "--group {group}: not selected by any log_groups entry in {}",
                config.path.display()
            )));
        }
    };
    let pipeline = Pipeline::grouping_only(trace_settings(&config.agent));
    let mut out = String::new();
    let mut matched = 0usize;
    let mut lines = 0usize;
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        lines += 1;
        // A captured fixture line carries the message and where it came from.
        let fixture: Option<serde_json::Value> =
            serde_json::from_str(line)
                .ok()
                .filter(|v: &serde_json::Value| {
                    v.get("message").is_some_and(|m| m.is_string()) && v.get("timestamp").is_some()
                });
        let (message, stream, ts) = match &fixture {
            Some(v) => (
                v["message"].as_str().unwrap_or_default().to_string(),
                v["log_stream"].as_str().unwrap_or("parse-test").to_string(),
                v["timestamp"].as_i64().unwrap_or(n as i64),
            ),
            None => (line.to_string(), "parse-test".to_string(), n as i64),
        };
        let raw = crate::event::RawEvent {
            log_group: group.to_string(),
            log_stream: stream,
            event_id: (n + 1).to_string(),
            timestamp_ms: ts,
            ingestion_time_ms: None,
            message,
            origin: Default::default(),
        };
        let mut prepared = [crate::pipeline::Pending {
            event: crate::pipeline::prepare(raw, selected),
            late: false,
        }];
        pipeline.group(&mut prepared).await?;
        let event = &prepared[0].event;
        if event.rule.is_some() {
            matched += 1;
        }
        let f = &event.fields;
        let mut fields = serde_json::Map::new();
        for (k, v) in [
            ("trace_id", &f.trace_id),
            ("request_id", &f.request_id),
            ("span_id", &f.span_id),
            ("parent_span_id", &f.parent_span_id),
            ("session_id", &f.session_id),
            ("agent_id", &f.agent_id),
            ("service", &f.service),
            ("level", &f.level),
            ("event_type", &f.event_type),
            ("error", &f.error),
            ("message", &f.message),
        ] {
            if let Some(v) = v {
                fields.insert(k.into(), serde_json::Value::String(v.clone()));
            }
        }
        if let Some(d) = f.duration_ms {
            fields.insert("duration_ms".into(), serde_json::json!(d));
        }
        let key = event.trace_key.clone();
        let rule = event.rule.as_deref();
        if json {
            out.push_str(
                &serde_json::json!({"line": n + 1, "rule": rule, "fields": fields, "trace_key": key}).to_string(),
            );
            out.push('\n');
        } else {
            let shown: Vec<String> = fields
                .iter()
                .filter(|(k, _)| *k != "message")
                .map(|(k, v)| {
                    format!(
                        "{k}={}",
                        v.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| v.to_string())
                    )
                })
                .collect();
            out.push_str(&format!(
                "{:>4}  {:<24} {:<28} {}\n",
                n + 1,
                rule.unwrap_or("(fallback)"),
                key.as_deref().unwrap_or("-"),
                shown.join(" ")
            ));
        }
    }
    let summaries = pipeline
        .with_traces(|t| {
            t.keys_by_first_event()
                .iter()
                .filter_map(|key| t.summary(key))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    if json {
        for s in &summaries {
            out.push_str(&serde_json::json!({"trace": s}).to_string());
            out.push('\n');
        }
    } else {
        out.push_str(&format!(
            "\n{matched} of {lines} lines matched a rule; {} trace(s):\n",
            summaries.len()
        ));
        for s in &summaries {
            out.push_str(&format!(
                "  {}  {} events, {} errors, {} ms, services [{}], spans {}, {}\n",
                s.trace_key,
                s.event_count,
                s.error_count,
                s.duration_ms,
                s.services.join(", "),
                s.spans.len(),
                if s.closed { "closed" } else { "open" }
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A second agent that comes in after the holder took the lock but
    /// before it wrote its pid still names the holder.
    #[test]
    fn a_second_agent_names_the_holder_that_has_not_written_its_pid_yet() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state.db");
        let lock_path = dir.path().join("state.db.lock");
        let holder = std::fs::File::create(&lock_path).unwrap();
        holder.try_lock().unwrap();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(10));
            let mut f = &holder;
            write!(f, "4242").unwrap();
            f.flush().unwrap();
            holder
        });
        let err = lock_state_file(&state).unwrap_err();
        let _holder = writer.join().unwrap();
        assert_eq!(err.exit_code(), 2);
        let message = err.to_string();
        assert!(message.contains("pid 4242"), "{message}");
        assert!(message.contains(&state.display().to_string()), "{message}");
    }
}

#[cfg(test)]
mod status_tests {
    use super::*;
    use crate::state::{Coverage, GroupState, PushedGroup};

    fn group(name: &str, delivered: u64) -> GroupState {
        GroupState {
            account: crate::config::DEFAULT_ACCOUNT.to_string(),
            log_group: name.to_string(),
            coverage: Coverage {
                covered_from_ms: 0,
                cursor_ms: 1_000_000,
            },
            events_delivered: delivered,
            events_rejected: 0,
            late_events: 0,
            observed_delay_ms: 0,
            last_poll_ms: None,
            last_error: None,
            last_error_ms: None,
            poll_interval_ms: Some(10_000),
            api_calls: 3,
            events_read: delivered,
        }
    }

    /// Long group names widen the first column: every row's columns start
    /// where the header's do.
    #[test]
    fn the_columns_line_up_whatever_the_length_of_the_names() {
        let long = "/aws/lambda/a-function-with-a-rather-long-name-in-production";
        let groups = [group("/a", 5), group(long, 123_456)];
        let pushed = [PushedGroup {
            log_group: format!("{long}-pushed"),
            remembered: 7,
            last_received_ms: 1_000,
        }];
        let table = status_table(&groups, &pushed, 2_000_000);
        let lines: Vec<&str> = table.lines().collect();
        let at = |line: &str, word: &str| line.find(word).unwrap();
        let cursor = at(lines[0], "CURSOR");
        assert!(cursor > long.len(), "{table}");
        for row in &lines[1..3] {
            assert_eq!(at(row, "1970-01-01T00:16:40.000Z"), cursor, "{table}");
        }
        let header = lines
            .iter()
            .position(|l| l.contains("LAST RECEIVED"))
            .unwrap();
        let received = at(lines[header], "LAST RECEIVED");
        assert_eq!(
            at(lines[header + 1], "1970-01-01T00:00:01.000Z"),
            received,
            "{table}"
        );
    }
}
