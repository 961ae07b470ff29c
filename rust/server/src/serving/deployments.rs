//! Deployments as the server holds them: loaded versions with their batchers, routes, and the
//! watcher that follows the registry (deployment changes and alias moves), loading and warming
//! up a new version before traffic moves to it.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use pilothouse_registry::Registry;
use pilothouse_runtime::{ColumnPlan, Model, OwnedTensor, SessionOptions, Signature, Tensor};
use prometheus_client::metrics::gauge::Gauge;
use serde_json::Value as Json;

use crate::metrics::{DeploymentLabels, Metrics, VersionLabels, VersionMetrics};
use crate::paylog::LogSender;
use crate::serving::batcher::{Batcher, Settings};
use crate::spec::{Batching, DeploymentSpec, Monitoring, Target};

/// One version of a model, loaded for one deployment.
pub struct Loaded {
    pub model_name: Arc<str>,
    pub version: i64,
    pub model: Arc<Model>,
    pub batcher: Batcher,
    pub metrics: VersionMetrics,
    pub input_names: Arc<Vec<String>>,
    pub output_names: Arc<Vec<String>>,
    pub batching: Batching,
    /// Rows a batch may hold: the spec's limit, or 1 when outputs cannot be split by rows.
    pub max_batch_rows: usize,
    /// Inference threads (and sessions) of this version.
    pub threads: usize,
    /// Its reference and how its tensors become monitored columns.
    pub watch: Arc<crate::monitor::Watch>,
}

pub struct RouteState {
    pub loaded: Arc<Loaded>,
    pub label: Arc<str>,
    cumulative: f64,
}

pub struct Deployment {
    pub name: Arc<str>,
    pub spec: DeploymentSpec,
    /// `spec.monitoring`, shared with every record of the deployment's traffic.
    pub monitoring: Arc<Monitoring>,
    pub generation: i64,
    pub routes: Vec<RouteState>,
    pub shadow: Option<(Arc<Loaded>, Arc<str>)>,
    pub timeout: Duration,
    pub in_flight: Gauge,
    pub request_seconds: prometheus_client::metrics::histogram::Histogram,
    /// Versions by route target, as resolved when this state was built.
    resolved: Vec<(Target, i64)>,
}

impl Deployment {
    /// The route for a request: by the sticky key's hash when given, else at random, in
    /// proportion to the weights.
    pub fn pick(&self, sticky: Option<&[u8]>) -> &RouteState {
        let total = self.routes.last().map_or(0.0, |r| r.cumulative);
        let u = match sticky {
            Some(key) => (xxhash_rust::xxh3::xxh3_64(key) >> 11) as f64 / (1u64 << 53) as f64,
            None => fastrand::f64(),
        } * total;
        self.routes
            .iter()
            .find(|r| u < r.cumulative)
            .unwrap_or_else(|| self.routes.last().expect("a deployment has routes"))
    }

    /// A version by number, if this deployment serves it (a route or the shadow).
    pub fn version(&self, v: i64) -> Option<&Arc<Loaded>> {
        self.every_loaded().find(|l| l.version == v)
    }

    /// The routes' versions, then the shadow's (a version may appear more than once).
    fn every_loaded(&self) -> impl Iterator<Item = &Arc<Loaded>> {
        self.routes
            .iter()
            .map(|r| &r.loaded)
            .chain(self.shadow.iter().map(|s| &s.0))
    }

    /// Every version this deployment serves, each once, by version number.
    pub fn loaded(&self) -> Vec<&Arc<Loaded>> {
        let mut out: Vec<&Arc<Loaded>> = self.every_loaded().collect();
        out.sort_by_key(|l| l.version);
        out.dedup_by_key(|l| l.version);
        out
    }

    pub fn versions(&self) -> Vec<i64> {
        self.loaded().iter().map(|l| l.version).collect()
    }

    /// The primary version (the first route's).
    pub fn primary(&self) -> &Arc<Loaded> {
        &self.routes[0].loaded
    }
}

#[derive(Default)]
pub struct State {
    pub deployments: ArcSwap<HashMap<String, Arc<Deployment>>>,
    /// Deployments that have nothing loaded, with why: they answer "not ready" on their own
    /// ready endpoint, and never make the server (or other deployments) unready.
    pub failed: ArcSwap<HashMap<String, String>>,
    /// The first sync with the registry is done: every deployment was loaded or failed.
    pub ready: AtomicBool,
}

pub struct Context {
    pub metrics: Arc<Metrics>,
    pub log: LogSender,
    pub inference_threads: usize,
    /// The HTTP runtime, to which inference threads hand their answers.
    pub runtime: tokio::runtime::Handle,
}

pub struct Watcher {
    registry: Arc<Registry>,
    state: Arc<State>,
    ctx: Context,
    /// (deployment, version) -> when loading it last failed, to retry at most every 10 s.
    failures: HashMap<(String, i64), Instant>,
    registry_error: Option<String>,
    spec_errors: HashMap<String, String>,
    /// When loaded versions' references were last compared with the registry's.
    references_checked: Instant,
}

impl Watcher {
    pub fn new(registry: Arc<Registry>, state: Arc<State>, ctx: Context) -> Self {
        Watcher {
            registry,
            state,
            ctx,
            failures: HashMap::new(),
            registry_error: None,
            spec_errors: HashMap::new(),
            references_checked: Instant::now(),
        }
    }

    /// Replaces the reference of every loaded version whose stored one changed (at most
    /// every two seconds: one small read of every reference's time).
    fn refresh_references(&mut self) {
        if self.references_checked.elapsed() < Duration::from_secs(2) {
            return;
        }
        self.references_checked = Instant::now();
        let times: HashMap<(String, i64), i64> = match self.registry.reference_times() {
            Ok(t) => t.into_iter().map(|(m, v, at)| ((m, v), at)).collect(),
            Err(_) => return, // unreachable registry: said by the deployments' poll
        };
        for deployment in self.state.deployments.load().values() {
            for loaded in deployment.loaded() {
                let key = (loaded.model_name.to_string(), loaded.version);
                loaded.watch.refresh(
                    &self.registry,
                    &loaded.model_name,
                    loaded.version,
                    times.get(&key).copied(),
                );
            }
        }
    }

    /// Polls the registry every `every` until `stop` is set.
    pub fn run(&mut self, every: Duration, stop: &AtomicBool) {
        while !stop.load(Ordering::SeqCst) {
            let until = Instant::now() + every;
            while Instant::now() < until && !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(10).min(every));
            }
            if !stop.load(Ordering::SeqCst) {
                self.sync();
            }
        }
    }

    /// One poll: reads every deployment and alias, loads what is new, swaps it in.
    pub fn sync(&mut self) {
        let list = match self.registry.deployments() {
            Ok(list) => {
                if self.registry_error.take().is_some() {
                    tracing::info!(
                        event = "registry_reachable",
                        "the registry is reachable again"
                    );
                }
                list
            }
            Err(e) => {
                let message = e.to_string();
                if self.registry_error.as_deref() != Some(&message) {
                    tracing::warn!(event = "registry_unreachable", error = %message, "cannot read deployments; serving what is loaded");
                }
                self.registry_error = Some(message);
                return;
            }
        };
        let current = self.state.deployments.load_full();
        let mut next: HashMap<String, Arc<Deployment>> = HashMap::new();
        let mut failed: HashMap<String, String> = HashMap::new();
        let mut changed = false;
        for record in &list {
            let name = record.name.clone();
            match self.build(record, current.get(&name)) {
                Ok(Some(built)) => {
                    changed = true;
                    next.insert(name, built);
                }
                Ok(None) => {
                    next.insert(name.clone(), current[&name].clone());
                }
                Err(message) => {
                    if self.spec_errors.get(&name) != Some(&message) {
                        tracing::error!(event = "deployment_error", deployment = %name, error = %message, "deployment not updated");
                        self.spec_errors.insert(name.clone(), message.clone());
                    }
                    match current.get(&name) {
                        Some(old) => {
                            next.insert(name, old.clone());
                        }
                        None => {
                            failed.insert(name, message);
                        }
                    }
                }
            }
        }
        for name in current.keys() {
            if !next.contains_key(name) {
                changed = true;
                tracing::info!(event = "deployment_removed", deployment = %name, "deployment removed");
            }
        }
        if changed {
            self.state.deployments.store(Arc::new(next));
        }
        if **self.state.failed.load() != failed {
            self.state.failed.store(Arc::new(failed));
        }
        self.state.ready.store(true, Ordering::SeqCst);
        self.refresh_references();
    }

    /// The new state of one deployment, None when nothing changed, or why it cannot be built.
    fn build(
        &mut self,
        record: &pilothouse_registry::Deployment,
        current: Option<&Arc<Deployment>>,
    ) -> Result<Option<Arc<Deployment>>, String> {
        let name = record.name.as_str();
        let model = record.model.as_str();
        let generation = record.generation;
        let spec = DeploymentSpec::from_json(&record.spec).map_err(|e| e.to_string())?;
        let aliases = &record.aliases;
        let resolve = |t: &Target| -> Result<i64, String> {
            match t {
                Target::Version(v) => Ok(*v),
                Target::Alias(a) => aliases
                    .get(a.as_str())
                    .copied()
                    .ok_or_else(|| format!("alias '{a}' of model '{model}' is not set")),
            }
        };
        let resolved: Vec<(Target, i64)> = spec
            .targets()
            .iter()
            .map(|t| resolve(t).map(|v| (t.clone(), v)))
            .collect::<Result<_, _>>()?;
        if let Some(cur) = current {
            if cur.generation == generation && cur.resolved == resolved {
                self.spec_errors.remove(name);
                return Ok(None);
            }
        }
        // Versions loaded already (same batching) are reused; the rest load and warm up now.
        let mut loaded: BTreeMap<i64, Arc<Loaded>> = BTreeMap::new();
        let reusable: Vec<&Arc<Loaded>> = current.map(|c| c.loaded()).unwrap_or_default();
        for (_, v) in &resolved {
            if loaded.contains_key(v) {
                continue;
            }
            if let Some(l) = reusable
                .iter()
                .find(|l| l.version == *v && l.batching == spec.batching && &*l.model_name == model)
            {
                loaded.insert(*v, (*l).clone());
                continue;
            }
            if let Some(when) = self.failures.get(&(name.to_string(), *v)) {
                if when.elapsed() < Duration::from_secs(10) {
                    return Err(format!(
                        "version {v} of '{model}' failed to load recently; retrying shortly"
                    ));
                }
            }
            match self.load(name, model, *v, &spec.batching) {
                Ok(l) => {
                    self.failures.remove(&(name.to_string(), *v));
                    loaded.insert(*v, Arc::new(l));
                }
                Err(e) => {
                    self.failures.insert((name.to_string(), *v), Instant::now());
                    self.ctx
                        .metrics
                        .load_failures
                        .get_or_create(&VersionLabels {
                            deployment: name.into(),
                            version: v.to_string(),
                        })
                        .inc();
                    return Err(format!("cannot load version {v} of '{model}': {e}"));
                }
            }
        }
        let mut cumulative = 0.0;
        let routes = spec
            .routes
            .iter()
            .zip(&resolved)
            .map(|(route, (target, v))| {
                cumulative += route.weight;
                RouteState {
                    loaded: loaded[v].clone(),
                    label: target.label().into(),
                    cumulative,
                }
            })
            .collect::<Vec<_>>();
        let shadow = spec.shadow.as_ref().map(|t| {
            let v = resolved
                .iter()
                .find(|(r, _)| r == t)
                .expect("resolved above")
                .1;
            (loaded[&v].clone(), Arc::<str>::from(t.label()))
        });
        let before = current.map(|c| c.versions());
        let deployment = Deployment {
            name: name.into(),
            timeout: Duration::from_millis(spec.timeout_ms),
            in_flight: self
                .ctx
                .metrics
                .in_flight
                .get_or_create_owned(&DeploymentLabels {
                    deployment: name.into(),
                }),
            request_seconds: self.ctx.metrics.request_seconds.get_or_create_owned(
                &DeploymentLabels {
                    deployment: name.into(),
                },
            ),
            generation,
            routes,
            shadow,
            resolved,
            monitoring: Arc::new(spec.monitoring.clone()),
            spec,
        };
        self.ctx.log.set_policy(name, deployment.spec.log.clone());
        self.spec_errors.remove(name);
        tracing::info!(event = "deployment_ready", deployment = %name, model = %model, generation, versions = ?deployment.versions(), previous = ?before, "traffic moved to the new versions");
        Ok(Some(Arc::new(deployment)))
    }

    fn load(
        &self,
        deployment: &str,
        model: &str,
        version: i64,
        batching: &Batching,
    ) -> Result<Loaded, String> {
        let start = Instant::now();
        let record = self
            .registry
            .get_version(model, version)
            .map_err(|e| e.to_string())?;
        let bytes = self
            .registry
            .artifact(model, version)
            .map_err(|e| e.to_string())?;
        let threads = self.ctx.inference_threads;
        let options = SessionOptions {
            max_sessions: threads,
            ..SessionOptions::default()
        };
        let origin = format!("models:/{model}/{version}");
        let runtime_model = Arc::new(
            Model::from_bytes(bytes, Path::new(&origin), options).map_err(|e| e.to_string())?,
        );
        let signature = runtime_model.signature();
        let example = from_example(signature, record.input_example.as_deref())
            .map(|inputs| (inputs, "the input example"))
            .or_else(|| {
                let profile = self
                    .registry
                    .dataset_profile(record.dataset.as_deref()?)
                    .ok()??;
                let profile = pilothouse_drift::Profile::from_bytes(&profile).ok()?;
                Some((from_reference(signature, &profile)?, "the reference data"))
            });
        let batchable = match &example {
            Some((inputs, "the input example")) => warm_up(&runtime_model, inputs, threads)
                .map_err(|e| format!("{e} (warming up with the input example)"))?,
            // Values taken from a profile (a median, the commonest category) may be ones the
            // model refuses: then no warm-up, rather than no deployment.
            Some((inputs, source)) => match warm_up(&runtime_model, inputs, threads) {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(event = "warm_up_skipped", deployment = %deployment, model = %model, version, error = %e, "warming up with {source} failed: not warmed up");
                    batchable_by_signature(signature)
                }
            },
            None => {
                // Invented values (zeros, empty strings) can be refused by a model that is
                // fine: better no warm-up than a deployment that never loads.
                tracing::warn!(event = "warm_up_skipped", deployment = %deployment, model = %model, version, "no input example and no reference data stored with this version: not warmed up (the first requests open the sessions); log it with input_example= or training_data=");
                batchable_by_signature(signature)
            }
        };
        let metrics = VersionMetrics::new(&self.ctx.metrics, deployment, version);
        let max_batch_rows = if batchable {
            batching.max_batch_size
        } else {
            1
        };
        let settings = Settings {
            max_batch_rows,
            max_delay: Duration::from_micros(batching.max_queue_delay_us),
            capacity: batching.queue_capacity,
            threads,
            runtime: self.ctx.runtime.clone(),
        };
        let batcher = Batcher::start(
            runtime_model.clone(),
            settings,
            metrics.clone(),
            &format!("{deployment}-v{version}"),
        );
        let signature = runtime_model.signature();
        let elapsed = start.elapsed();
        self.ctx
            .metrics
            .load_seconds
            .get_or_create(&VersionLabels {
                deployment: deployment.into(),
                version: version.to_string(),
            })
            .observe(elapsed.as_secs_f64());
        tracing::info!(event = "version_loaded", deployment = %deployment, model = %model, version, load_ms = elapsed.as_secs_f64() * 1e3, batchable, "loaded and warmed up");
        let watch = Arc::new(crate::monitor::Watch::load(
            &self.registry,
            model,
            version,
            signature,
        ));
        Ok(Loaded {
            model_name: model.into(),
            version,
            input_names: Arc::new(signature.inputs.iter().map(|s| s.name.clone()).collect()),
            output_names: Arc::new(signature.outputs.iter().map(|s| s.name.clone()).collect()),
            model: runtime_model,
            batcher,
            metrics,
            batching: batching.clone(),
            max_batch_rows,
            threads,
            watch,
        })
    }
}

/// Runs the example on every inference thread at once (so each opens its session now, not
/// on the first request), and says whether outputs follow the rows (so batches can be split).
fn warm_up(model: &Arc<Model>, inputs: &[OwnedTensor], threads: usize) -> Result<bool, String> {
    let rows = inputs
        .first()
        .and_then(|t| t.shape.first().copied())
        .unwrap_or(1);
    let results: Vec<Result<Vec<(String, OwnedTensor)>, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads.max(1))
            .map(|_| {
                s.spawn(|| {
                    let mut last = Err("not run".to_string());
                    for _ in 0..3 {
                        last = model.run_prepared(inputs).map_err(|e| e.to_string());
                        last.as_ref().map_err(Clone::clone)?;
                    }
                    last
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("warm-up panicked".into())))
            .collect()
    });
    let mut outputs = None;
    for r in results {
        outputs = Some(r.map_err(|e| format!("warm-up failed: {e}"))?);
    }
    let outputs = outputs.unwrap_or_default();
    let dynamic_inputs = model
        .signature()
        .inputs
        .iter()
        .all(|s| matches!(s.shape.first(), Some(None) | Some(Some(-1))));
    Ok(dynamic_inputs && outputs.iter().all(|(_, t)| t.shape.first() == Some(&rows)))
}

/// Without a warm-up run, whether batches can be split by rows is read from the signature:
/// every input and output has a free first dimension.
fn batchable_by_signature(signature: &Signature) -> bool {
    let free =
        |s: &pilothouse_runtime::TensorSpec| matches!(s.shape.first(), Some(None) | Some(Some(-1)));
    signature.inputs.iter().all(free) && signature.outputs.iter().all(free)
}

/// One row of typical values from the version's reference profile (its training data): a
/// number's median, a category's most frequent value. The columns feed the model as a
/// table would (one input per column, or stacked into one input).
fn from_reference(
    signature: &Signature,
    profile: &pilothouse_drift::Profile,
) -> Option<Vec<OwnedTensor>> {
    let mut columns = serde_json::Map::new();
    for c in &profile.columns {
        let value = match (&c.numeric, &c.categories) {
            (Some(n), _) => {
                let v = n.buckets().quantile(0.5).or(n.min)?;
                if c.kind == pilothouse_drift::Kind::Integer {
                    Json::from(v.round() as i64)
                } else {
                    Json::from(v)
                }
            }
            (_, Some(cats)) => {
                let (top, _) = *cats.sorted().first()?;
                match c.kind {
                    pilothouse_drift::Kind::Boolean => Json::from(top == "true"),
                    _ => Json::from(top),
                }
            }
            _ => return None,
        };
        columns.insert(c.name.clone(), Json::Array(vec![value]));
    }
    let example = serde_json::json!({"columns": columns}).to_string();
    from_example(signature, Some(&example))
}

fn nested_shape(v: &Json) -> Vec<usize> {
    let mut shape = Vec::new();
    let mut cur = v;
    while let Json::Array(items) = cur {
        shape.push(items.len());
        match items.first() {
            Some(first) => cur = first,
            None => break,
        }
    }
    shape
}

fn from_example(signature: &Signature, example: Option<&str>) -> Option<Vec<OwnedTensor>> {
    let parsed: Json = serde_json::from_str(example?).ok()?;
    let mut named: Vec<(String, Tensor<'static>)> = Vec::new();
    if let Some(inputs) = parsed.get("inputs").and_then(Json::as_object) {
        for spec in &signature.inputs {
            let v = inputs.get(&spec.name)?;
            let data = crate::protocol::decode_json_values(spec.dtype, v).ok()?;
            named.push((spec.name.clone(), Tensor::new(nested_shape(v), data).ok()?));
        }
    } else if let Some(columns) = parsed.get("columns").and_then(Json::as_object) {
        let names: Vec<String> = columns.keys().cloned().collect();
        match signature.plan_columns(&names).ok()? {
            ColumnPlan::Stack {
                input,
                columns: order,
            } => {
                let spec = signature.input(&input)?;
                let cols: Vec<&Vec<Json>> = order
                    .iter()
                    .map(|c| columns.get(c)?.as_array())
                    .collect::<Option<_>>()?;
                let rows = cols.first()?.len();
                let mut flat = Vec::with_capacity(rows * cols.len());
                for r in 0..rows {
                    for c in &cols {
                        flat.push(c.get(r)?.clone());
                    }
                }
                let data =
                    crate::protocol::decode_json_values(spec.dtype, &Json::Array(flat)).ok()?;
                named.push((input, Tensor::new(vec![rows, cols.len()], data).ok()?));
            }
            ColumnPlan::ByName { inputs } => {
                for input in inputs {
                    let spec = signature.input(&input)?;
                    let v = columns.get(&input)?;
                    let data = crate::protocol::decode_json_values(spec.dtype, v).ok()?;
                    named.push((input, Tensor::new(nested_shape(v), data).ok()?));
                }
            }
        }
    } else {
        return None;
    }
    // conform reshapes [rows] columns into [rows, 1] inputs and checks everything else.
    let model_order: Vec<OwnedTensor> = signature
        .inputs
        .iter()
        .map(|s| {
            named
                .iter()
                .find(|(n, _)| n == &s.name)
                .and_then(|(_, t)| t.clone().conform(s).ok())
        })
        .collect::<Option<_>>()?;
    Some(model_order)
}
