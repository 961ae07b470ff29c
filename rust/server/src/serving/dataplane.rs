//! The data plane: what happens to an inference request once the transport has its bytes,
//! with no HTTP in it. It finds the deployment and the version (or picks the route), admits
//! the request under the payload log's policy, checks the inputs against the signature,
//! queues them for the batcher and waits within the deadline, then taps the answer: metrics,
//! statistics, the payload log and the shadow copy.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pilothouse_runtime::{Matching, OwnedTensor};

use crate::error::RequestError;
use crate::metrics::{DeploymentLabels, Metrics, RequestLabels};
use crate::paylog::{LogSender, Record};
use crate::protocol::{self, InferRequest};
use crate::serving::batcher::JobError;
use crate::serving::deployments::{Deployment, Loaded, State};
use crate::spec::Validation;

/// What serving needs besides the transport: the deployments, the metrics and the log.
pub struct DataPlane {
    pub state: Arc<State>,
    pub metrics: Arc<Metrics>,
    pub log: LogSender,
    /// Shadow runs not finished yet: a stop waits for them before the log is flushed.
    pub shadows: Arc<Running>,
}

/// A count of tasks running, and a way to wait until none is.
#[derive(Default)]
pub struct Running {
    count: std::sync::atomic::AtomicUsize,
    idle: tokio::sync::Notify,
}

/// One running task of a [`Running`] count; it ends when dropped (finished or cancelled).
pub struct RunningTask(Arc<Running>);

impl Running {
    pub fn start(self: &Arc<Self>) -> RunningTask {
        self.count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        RunningTask(self.clone())
    }

    /// Returns once no task is running.
    pub async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.count.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for RunningTask {
    fn drop(&mut self) {
        if self
            .0
            .count
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst)
            == 1
        {
            self.0.idle.notify_waiters();
        }
    }
}

/// A request admitted to a deployment: the version it runs on and the route that chose it.
/// It counts as in flight until dropped.
pub struct Admitted {
    pub deployment: Arc<Deployment>,
    pub loaded: Arc<Loaded>,
    pub route: Arc<str>,
    _in_flight: InFlight,
}

struct InFlight(prometheus_client::metrics::gauge::Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Where a request's time went, for the response, metrics and the log.
struct Outcome {
    queue: Duration,
    inference: Duration,
    batch_rows: usize,
    result: Result<Arc<Vec<OwnedTensor>>, RequestError>,
    /// The data-quality checks the inputs failed, under `validation = "flag"`.
    quality: Option<String>,
}

/// What an answered request returns: its outputs, and the checks its inputs failed when the
/// deployment flags them.
pub struct Answer {
    pub outputs: Arc<Vec<OwnedTensor>>,
    pub quality: Option<String>,
}

impl Outcome {
    fn failed(error: RequestError) -> Outcome {
        Outcome {
            queue: Duration::ZERO,
            inference: Duration::ZERO,
            batch_rows: 0,
            result: Err(error),
            quality: None,
        }
    }

    fn status(&self) -> u16 {
        self.result
            .as_ref()
            .map_or_else(RequestError::status, |_| 200)
    }

    /// The payload-log record of this outcome: `loaded` ran `inputs` for `deployment`, as
    /// `role` on `route`, `latency` after the request arrived.
    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        deployment: &Deployment,
        loaded: &Loaded,
        role: &'static str,
        route: Arc<str>,
        arrival: &Arrival,
        latency: Duration,
        inputs: Option<Arc<Vec<OwnedTensor>>>,
    ) -> Record {
        let (outputs, error) = match &self.result {
            Ok(o) => (Some(o.clone()), None),
            Err(e) => (None, Some(e.message().to_string())),
        };
        Record {
            deployment: deployment.name.clone(),
            request_id: arrival.id.clone(),
            keys: arrival.keys.clone(),
            time_us: arrival.time_us,
            model: loaded.model_name.clone(),
            version: loaded.version,
            role,
            route,
            status: self.status(),
            latency,
            queue: self.queue,
            inference: self.inference,
            batch_rows: self.batch_rows,
            input_names: loaded.input_names.clone(),
            inputs,
            output_names: loaded.output_names.clone(),
            outputs,
            error,
            watch: loaded.watch.clone(),
            monitoring: deployment.monitoring.clone(),
        }
    }
}

/// When and as what a request arrived, for the log.
pub struct Arrival {
    pub id: String,
    /// The correlation keys of the request's rows (`parameters.correlation_id`).
    pub keys: Arc<Vec<String>>,
    pub at: Instant,
    pub time_us: i64,
}

impl DataPlane {
    /// The deployment named `name`.
    pub fn find(&self, name: &str) -> Result<Arc<Deployment>, RequestError> {
        let deployments = self.state.deployments.load();
        // The names of other deployments are not the caller's business: GET /v2/models/{m}
        // answers for a name they know, and `pilothouse deployments` lists them for operators.
        deployments.get(name).cloned().ok_or_else(|| {
            RequestError::NotFound(format!("no deployment named '{name}' on this server"))
        })
    }

    /// The version `version` of deployment `name`, as the `/versions/{v}` endpoints address it.
    pub fn find_deployed(&self, name: &str, version: &str) -> Result<Arc<Loaded>, RequestError> {
        let deployment = self.find(name)?;
        find_version(&deployment, version)
    }

    /// Why a deployment that is not serving failed to load, if it did.
    pub fn load_failure(&self, name: &str) -> Option<String> {
        self.state.failed.load().get(name).cloned()
    }

    /// Counts an answer that is not a success, by deployment, version and status.
    pub fn count(&self, deployment: &str, version: &str, status: u16) {
        self.metrics
            .requests
            .get_or_create(&RequestLabels {
                deployment: deployment.into(),
                version: version.into(),
                status: status.to_string(),
            })
            .inc();
    }

    /// Admits a request for deployment `name` (version `version`, or the route the deployment
    /// picks, sticky by `sticky` when its spec names a header): refused when the deployment or
    /// version does not exist, or while the payload log cannot keep what would be answered.
    pub fn admit(
        &self,
        name: &str,
        version: Option<&str>,
        sticky: impl FnOnce(&str) -> Option<Vec<u8>>,
    ) -> Result<Admitted, RequestError> {
        let deployment = self
            .find(name)
            .inspect_err(|e| self.count("", "", e.status()))?;
        // Under log_overflow = "block", nothing is answered that the log could not keep.
        if let Err(message) = self.log.admit() {
            self.count(name, "", 503);
            return Err(RequestError::Unavailable(message));
        }
        deployment.in_flight.inc();
        let in_flight = InFlight(deployment.in_flight.clone());
        let (loaded, route) = match version {
            Some(v) => match find_version(&deployment, v) {
                Ok(l) => (l, Arc::<str>::from(format!("v{v}"))),
                Err(e) => {
                    self.count(name, "", e.status());
                    return Err(e);
                }
            },
            None => {
                let key = deployment.spec.sticky_header.as_deref().and_then(sticky);
                let r = deployment.pick(key.as_deref());
                (r.loaded.clone(), r.label.clone())
            }
        };
        Ok(Admitted {
            deployment,
            loaded,
            route,
            _in_flight: in_flight,
        })
    }

    /// Runs an admitted request and taps its answer (metrics, statistics, the log, the
    /// shadow copy). Its inputs are taken; the rest stays for encoding the answer.
    pub async fn infer(
        self: &Arc<Self>,
        admitted: &Admitted,
        request: &mut InferRequest,
        mut arrival: Arrival,
    ) -> Result<Answer, RequestError> {
        if !request.keys.is_empty() {
            arrival.keys = Arc::new(std::mem::take(&mut request.keys));
        }
        let Admitted {
            deployment,
            loaded,
            route,
            ..
        } = admitted;
        let shadow_inputs = deployment.shadow.as_ref().map(|_| request.inputs.clone());
        let (outcome, inputs) = run(loaded, deployment, request).await;
        let latency = arrival.at.elapsed();
        let status = outcome.status();
        if status == 200 {
            loaded.metrics.ok.inc();
        } else {
            self.count(&deployment.name, &loaded.version.to_string(), status);
        }
        deployment.request_seconds.observe(latency.as_secs_f64());
        loaded.metrics.stats.answered(status == 200, latency);
        self.log.send(outcome.record(
            deployment,
            loaded,
            "primary",
            route.clone(),
            &arrival,
            latency,
            inputs,
        ));
        if let (Some((shadow, label)), Some(inputs), true, true) = (
            &deployment.shadow,
            shadow_inputs,
            status == 200,
            self.log.admit().is_ok(),
        ) {
            self.shadow_run(
                deployment.clone(),
                shadow.clone(),
                label.clone(),
                arrival,
                inputs,
            );
        }
        let quality = outcome.quality;
        outcome.result.map(|outputs| Answer { outputs, quality })
    }

    /// Runs a copy of the request on the shadow version, off the response path, and logs it.
    fn shadow_run(
        self: &Arc<Self>,
        deployment: Arc<Deployment>,
        shadow: Arc<Loaded>,
        label: Arc<str>,
        arrival: Arrival,
        inputs: Vec<(String, OwnedTensor)>,
    ) {
        let plane = self.clone();
        let running = self.shadows.start();
        tokio::spawn(async move {
            let _running = running;
            let started = Instant::now();
            let mut request = InferRequest {
                id: None,
                inputs,
                outputs: None,
                binary_outputs: false,
                timeout_us: None,
                keys: Vec::new(),
            };
            let (outcome, inputs) = run(&shadow, &deployment, &mut request).await;
            let status = outcome.status();
            if status != 200 {
                plane
                    .metrics
                    .shadow_dropped
                    .get_or_create(&DeploymentLabels {
                        deployment: deployment.name.to_string(),
                    })
                    .inc();
            }
            plane.log.send(outcome.record(
                &deployment,
                &shadow,
                "shadow",
                label,
                &arrival,
                started.elapsed(),
                inputs,
            ));
        });
    }
}

fn find_version(d: &Deployment, version: &str) -> Result<Arc<Loaded>, RequestError> {
    let v: i64 = version
        .parse()
        .map_err(|_| RequestError::BadRequest(format!("version '{version}' is not a number")))?;
    d.version(v).cloned().ok_or_else(|| {
        RequestError::NotFound(format!(
            "version {v} of '{}' is not deployed; deployed versions: {:?}",
            d.name,
            d.versions()
        ))
    })
}

/// Validates `request` against `loaded`, queues its inputs and waits for the answer. The
/// inputs (in the model's order) come back for the log once they were accepted.
async fn run(
    loaded: &Arc<Loaded>,
    deployment: &Deployment,
    request: &mut InferRequest,
) -> (Outcome, Option<Arc<Vec<OwnedTensor>>>) {
    let signature = loaded.model.signature();
    let given = std::mem::take(&mut request.inputs);
    let inputs = match signature.check_inputs(given, Matching::Exact) {
        Ok(inputs) => inputs,
        Err(e) => {
            return (
                Outcome::failed(RequestError::BadRequest(e.to_string())),
                None,
            )
        }
    };
    if let Err(e) = protocol::check_outputs(&request.outputs, signature) {
        return (Outcome::failed(e), None);
    }
    let quality = match deployment.spec.monitoring.validation {
        Validation::Observe => None,
        policy => {
            let failures = loaded.watch.check(&inputs).failures();
            if failures.is_empty() {
                None
            } else if policy == Validation::Reject {
                let e = RequestError::BadRequest(format!(
                    "the inputs fail the data-quality checks against the reference of version {} (column: check): {}",
                    loaded.version,
                    failures.join("; ")
                ));
                return (Outcome::failed(e), None);
            } else {
                Some(failures.join("; "))
            }
        }
    };
    let rows = inputs[0].shape.first().copied().unwrap_or(1);
    let timeout = request.timeout_us.map_or(deployment.timeout, |us| {
        Duration::from_micros(us).min(deployment.timeout)
    });
    // The timeout is bounded by the deployment spec's validation; checked all the same.
    let now = Instant::now();
    let deadline = now.checked_add(timeout).unwrap_or(now);
    let inputs: Arc<Vec<OwnedTensor>> = Arc::new(inputs);
    let Ok(receiver) = loaded.batcher.submit(inputs.clone(), rows, deadline) else {
        let e = RequestError::Unavailable(format!(
            "deployment '{}' is at capacity ({} requests queued for version {}); retry later",
            deployment.name, loaded.batcher.capacity, loaded.version
        ));
        return (Outcome::failed(e), Some(inputs));
    };
    let outcome = match tokio::time::timeout_at(deadline.into(), receiver).await {
        Ok(Ok(Ok(done))) => Outcome {
            queue: done.queue,
            inference: done.inference,
            batch_rows: done.batch_rows,
            result: Ok(done.outputs),
            quality,
        },
        Ok(Ok(Err(JobError::Timeout))) | Err(_) => Outcome::failed(RequestError::Timeout(format!(
            "no answer within {} ms (timeout_ms of deployment '{}', or the request's timeout parameter)",
            timeout.as_millis(),
            deployment.name
        ))),
        Ok(Ok(Err(JobError::Inference(m)))) => Outcome::failed(RequestError::Inference(m)),
        Ok(Err(_)) => Outcome::failed(RequestError::Unavailable(
            "the version was unloaded before the request ran; retry".into(),
        )),
    };
    (outcome, Some(inputs))
}
