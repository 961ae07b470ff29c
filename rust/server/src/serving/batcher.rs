//! Dynamic batching: a bounded queue per loaded version and inference threads that coalesce
//! waiting requests into one ONNX Runtime call and split the outputs back per request.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use pilothouse_runtime::{Model, OwnedTensor, Tensor, TensorData};
use tokio::runtime::Handle;
use tokio::sync::oneshot;

use crate::metrics::VersionMetrics;

/// A finished request: its outputs (signature order) and where the time went.
pub struct Done {
    pub outputs: Arc<Vec<OwnedTensor>>,
    pub queue: Duration,
    pub inference: Duration,
    pub batch_rows: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum JobError {
    /// The request's deadline passed while it waited in the queue.
    Timeout,
    /// ONNX Runtime refused the call.
    Inference(String),
}

struct Job {
    inputs: Arc<Vec<OwnedTensor>>,
    rows: usize,
    enqueued: Instant,
    deadline: Instant,
    reply: oneshot::Sender<Result<Done, JobError>>,
}

/// The queue in front of one version's inference threads.
pub struct Batcher {
    queue: Sender<Job>,
    pub capacity: usize,
    metrics: VersionMetrics,
}

pub struct Settings {
    pub max_batch_rows: usize,
    pub max_delay: Duration,
    pub capacity: usize,
    pub threads: usize,
    /// The HTTP runtime: a batch's answers are handed to it in one task (one wake-up of the
    /// HTTP thread per batch, not one per request).
    pub runtime: Handle,
}

type Reply = (
    oneshot::Sender<Result<Done, JobError>>,
    Result<Done, JobError>,
);

/// Hands a batch's answers to the waiting requests. One answer is sent from here; several go
/// through one task on the HTTP runtime, so the HTTP thread wakes once and finds them all.
fn deliver(runtime: &Handle, mut replies: Vec<Reply>) {
    if replies.len() <= 1 {
        if let Some((tx, result)) = replies.pop() {
            let _ = tx.send(result);
        }
        return;
    }
    runtime.spawn(async move {
        for (tx, result) in replies {
            let _ = tx.send(result);
        }
    });
}

/// Submitting found the queue full.
pub struct QueueFull;

impl Batcher {
    /// Starts `threads` inference threads for `model`; they exit when the batcher is dropped
    /// and the queue is empty, releasing the model.
    pub fn start(
        model: Arc<Model>,
        settings: Settings,
        metrics: VersionMetrics,
        name: &str,
    ) -> Batcher {
        let (tx, rx) = crossbeam_channel::bounded::<Job>(settings.capacity);
        for i in 0..settings.threads.max(1) {
            let rx = rx.clone();
            let model = model.clone();
            let metrics = metrics.clone();
            let max_rows = settings.max_batch_rows.max(1);
            let delay = settings.max_delay;
            let runtime = settings.runtime.clone();
            std::thread::Builder::new()
                .name(format!("ph-infer-{name}-{i}"))
                .spawn(move || {
                    crate::sched::batch_thread(0);
                    worker(&model, &rx, max_rows, delay, &metrics, &runtime)
                })
                .expect("spawning an inference thread");
        }
        Batcher {
            queue: tx,
            capacity: settings.capacity,
            metrics,
        }
    }

    /// Queues inputs (already checked, in the model's input order) with `rows` rows.
    pub fn submit(
        &self,
        inputs: Arc<Vec<OwnedTensor>>,
        rows: usize,
        deadline: Instant,
    ) -> Result<oneshot::Receiver<Result<Done, JobError>>, QueueFull> {
        let (reply, rx) = oneshot::channel();
        let job = Job {
            inputs,
            rows,
            enqueued: Instant::now(),
            deadline,
            reply,
        };
        match self.queue.try_send(job) {
            Ok(()) => {
                self.metrics.queue_depth.inc();
                Ok(rx)
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => Err(QueueFull),
        }
    }
}

fn worker(
    model: &Model,
    rx: &Receiver<Job>,
    max_rows: usize,
    delay: Duration,
    metrics: &VersionMetrics,
    runtime: &Handle,
) {
    let mut pending: Option<Job> = None;
    loop {
        let first = match pending.take() {
            Some(job) => job,
            None => match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
        };
        metrics.queue_depth.dec();
        let mut rows = first.rows;
        let mut batch = vec![first];
        let until = batch[0].enqueued + delay;
        while rows < max_rows {
            let next = match rx.try_recv() {
                Ok(job) => job,
                Err(_) => {
                    let now = Instant::now();
                    if now >= until {
                        break;
                    }
                    match rx.recv_timeout(until - now) {
                        Ok(job) => job,
                        Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                            break
                        }
                    }
                }
            };
            metrics.queue_depth.dec();
            if rows + next.rows > max_rows || !same_row_shape(&next.inputs, &batch[0].inputs) {
                pending = Some(next);
                break;
            }
            rows += next.rows;
            batch.push(next);
        }
        deliver(runtime, run_batch(model, batch, metrics));
    }
}

/// Whether two requests' inputs have the same dims after the first (can share a batch).
fn same_row_shape(a: &[OwnedTensor], b: &[OwnedTensor]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.shape.get(1..) == y.shape.get(1..))
}

/// Runs one batch; returns each request's answer.
fn run_batch(model: &Model, batch: Vec<Job>, metrics: &VersionMetrics) -> Vec<Reply> {
    let start = Instant::now();
    let (live, expired): (Vec<Job>, Vec<Job>) = batch.into_iter().partition(|j| j.deadline > start);
    let mut replies: Vec<Reply> = expired
        .into_iter()
        .map(|job| (job.reply, Err(JobError::Timeout)))
        .collect();
    if live.is_empty() {
        return replies;
    }
    let rows: usize = live.iter().map(|j| j.rows).sum();
    let result = if live.len() == 1 {
        model.run_prepared(&live[0].inputs)
    } else {
        let joined = concat(&live);
        model.run_prepared(&joined)
    };
    let inference = start.elapsed();
    metrics.inference_seconds.observe(inference.as_secs_f64());
    metrics.batch_size.observe(live.len() as f64);
    metrics.stats.executed(rows, live.len(), inference);
    let outputs = match result {
        Ok(outputs) => outputs.into_iter().map(|(_, t)| t).collect::<Vec<_>>(),
        Err(e) => {
            let message = e.to_string();
            replies.extend(
                live.into_iter()
                    .map(|job| (job.reply, Err(JobError::Inference(message.clone())))),
            );
            return replies;
        }
    };
    if live.len() == 1 {
        let job = live.into_iter().next().expect("one job");
        let queue = start.saturating_duration_since(job.enqueued);
        metrics.queue_seconds.observe(queue.as_secs_f64());
        metrics.stats.queued(queue);
        replies.push((
            job.reply,
            Ok(Done {
                outputs: Arc::new(outputs),
                queue,
                inference,
                batch_rows: rows,
            }),
        ));
        return replies;
    }
    if let Some(bad) = outputs.iter().find(|t| t.shape.first() != Some(&rows)) {
        let message = format!(
            "the model's output has shape {:?} for a batch of {rows} rows, so it cannot be split per request; set batching.max_batch_size = 1 for this deployment",
            bad.shape
        );
        replies.extend(
            live.into_iter()
                .map(|job| (job.reply, Err(JobError::Inference(message.clone())))),
        );
        return replies;
    }
    let mut offset = 0;
    for job in live {
        let queue = start.saturating_duration_since(job.enqueued);
        metrics.queue_seconds.observe(queue.as_secs_f64());
        metrics.stats.queued(queue);
        let mine: Vec<OwnedTensor> = outputs
            .iter()
            .map(|t| slice_rows(t, offset, job.rows))
            .collect();
        offset += job.rows;
        replies.push((
            job.reply,
            Ok(Done {
                outputs: Arc::new(mine),
                queue,
                inference,
                batch_rows: rows,
            }),
        ));
    }
    replies
}

/// Rows `offset..offset + rows` of a batch-major tensor.
pub fn slice_rows(tensor: &OwnedTensor, offset: usize, rows: usize) -> OwnedTensor {
    let per_row: usize = tensor.shape[1..].iter().product();
    let (a, b) = (offset * per_row, (offset + rows) * per_row);
    let mut shape = tensor.shape.clone();
    shape[0] = rows;
    let data = match &tensor.data {
        // A batch's strings are bytes when any request's are; each request's own rows are
        // text again when they are (its answer is JSON, not binary, then).
        TensorData::Bytes(v) => TensorData::from_byte_strings(v[a..b].to_vec()),
        data => pilothouse_runtime::map_tensor_data!(data, v => v[a..b].to_vec()),
    };
    Tensor { shape, data }
}

/// Appends every part's elements to one vector of the first part's type. Strings stack as
/// text unless some part holds bytes that are not UTF-8; then every part's strings stack as
/// bytes (the two are one element type, so one signature admits both).
fn stack<'p>(
    first: &TensorData<'_>,
    parts: impl Iterator<Item = &'p TensorData<'static>> + Clone,
    len: usize,
) -> TensorData<'static> {
    if parts.clone().any(|p| matches!(p, TensorData::Bytes(_))) {
        let mut out = Vec::with_capacity(len);
        for part in parts {
            out.extend((0..part.len()).filter_map(|i| part.byte_string(i).map(<[u8]>::to_vec)));
        }
        return TensorData::Bytes(Cow::Owned(out));
    }
    macro_rules! by_first {
        ($($variant:ident),*) => {
            match first {
                $(TensorData::$variant(_) => {
                    let mut out = Vec::with_capacity(len);
                    for part in parts {
                        if let TensorData::$variant(v) = part {
                            out.extend_from_slice(v);
                        }
                    }
                    TensorData::$variant(Cow::Owned(out))
                })*
            }
        };
    }
    by_first!(
        Float16, BFloat16, Float32, Float64, Int8, Int16, Int32, Int64, UInt8, UInt16, UInt32,
        UInt64, Bool, String, Bytes
    )
}

/// The jobs' inputs stacked along the first axis (every job has the same trailing dims).
fn concat(jobs: &[Job]) -> Vec<OwnedTensor> {
    let inputs = jobs[0].inputs.len();
    (0..inputs)
        .map(|i| {
            let first = &jobs[0].inputs[i];
            let mut shape = first.shape.clone();
            shape[0] = jobs.iter().map(|j| j.inputs[i].shape[0]).sum();
            let len = jobs.iter().map(|j| j.inputs[i].data.len()).sum();
            let parts = jobs.iter().map(|j| &j.inputs[i].data);
            let data = stack(&first.data, parts, len);
            Tensor { shape, data }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_rows_of_a_matrix() {
        let t = Tensor {
            shape: vec![3, 2],
            data: TensorData::Int64(Cow::Owned(vec![1, 2, 3, 4, 5, 6])),
        };
        let s = slice_rows(&t, 1, 2);
        assert_eq!(s.shape, vec![2, 2]);
        assert_eq!(s.data, TensorData::Int64(Cow::Owned(vec![3, 4, 5, 6])));
    }

    #[test]
    fn text_and_bytes_stack_as_bytes_and_slice_back_to_each_own() {
        let text = TensorData::String(Cow::Owned(vec!["a".into()]));
        let raw = TensorData::Bytes(Cow::Owned(vec![vec![0xff]]));
        let stacked = stack(&text, [&text, &raw].into_iter(), 2);
        assert_eq!(
            stacked,
            TensorData::Bytes(Cow::Owned(vec![b"a".to_vec(), vec![0xff]]))
        );
        let batch = Tensor {
            shape: vec![2],
            data: stacked,
        };
        assert_eq!(slice_rows(&batch, 0, 1).data, text);
        assert_eq!(slice_rows(&batch, 1, 1).data, raw);
    }
}
