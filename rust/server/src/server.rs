//! Starting and stopping the server: a tokio runtime owned by the server, the registry watcher,
//! the payload-log writer, and a graceful shutdown that drains requests in flight and flushes
//! the log before returning.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use pilothouse_registry::Registry;

use crate::config::Config;
use crate::error::{Result, ServerError};
use crate::http::{self, App};
use crate::listen;
use crate::metrics::Metrics;
use crate::monitor;
use crate::paylog::{self, LogSender};
use crate::serving::dataplane::DataPlane;
use crate::serving::deployments::{self, State};

/// A running server. `stop` (or dropping it) shuts it down gracefully.
pub struct Server {
    addr: SocketAddr,
    log_dir: PathBuf,
    log: LogSender,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

fn init_logging(config: &Config) {
    use tracing_subscriber::fmt;
    let level: tracing::Level = config.log_level.parse().unwrap_or(tracing::Level::INFO);
    let builder = fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_target(false);
    // The first server in a process sets the format; later ones (tests, notebooks) share it.
    let _ = if config.log_format == "json" {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

fn default_artifacts() -> PathBuf {
    std::env::var_os("PILOTHOUSE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pilothouse")))
        .unwrap_or_else(|| PathBuf::from(".pilothouse"))
        .join("artifacts")
}

impl Server {
    /// Opens the registry, loads every deployment, listens, and serves from background
    /// threads. With `handle_signals`, SIGTERM and SIGINT stop it gracefully.
    pub fn start(config: Config, handle_signals: bool) -> Result<Server> {
        config.validate()?;
        init_logging(&config);
        let artifacts = config.artifacts.clone().unwrap_or_else(default_artifacts);
        let registry = Arc::new(Registry::open(&config.registry, &artifacts)?);
        let log_dir = config.log_dir.clone().unwrap_or_else(|| {
            registry
                .artifact_root()
                .parent()
                .unwrap_or(Path::new("."))
                .join("inference-log")
        });
        pilothouse_registry::files::create_dirs_durably(&log_dir)
            .map_err(|e| ServerError::Log(format!("cannot create {}: {e}", log_dir.display())))?;
        let metrics = Arc::new(Metrics::new());
        // Monitoring: the tap rides on the payload-log thread; closed windows go to the store.
        let (closed_tx, closed_rx) = crossbeam_channel::unbounded();
        // servers in one process (on port 0, in a notebook or a test) are distinct replicas
        static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let nth = STARTED.fetch_add(1, Ordering::Relaxed);
        let replica = config.replica.clone().unwrap_or_else(|| {
            let name = format!("{}:{}:{}", hostname(), config.port, std::process::id());
            if nth == 0 {
                name
            } else {
                format!("{name}/{}", nth + 1)
            }
        });
        let store_thread = monitor::store::start(
            registry.clone(),
            closed_rx,
            metrics.clone(),
            replica,
            monitor::store::Retention {
                fine_days: config.monitor_keep_fine_days,
                hour_days: config.monitor_keep_hour_days,
            },
        );
        let (log, log_thread) = paylog::start(
            log_dir.clone(),
            Duration::from_millis(config.flush_interval_ms),
            metrics.clone(),
            config.log_buffer_bytes,
            if config.log_overflow == "drop" {
                paylog::Overflow::Drop
            } else {
                paylog::Overflow::Block
            },
            Some(monitor::tap::Tap::new(closed_tx)),
        );
        // One HTTP thread: a current-thread runtime on the server thread itself (no
        // work-stealing machinery, no hand-off between an accept thread and a worker).
        let runtime = if config.http_threads() == 1 {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
        } else {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(config.http_threads())
                .thread_name("ph-http")
                .enable_all()
                .build()
        }
        .map_err(|e| ServerError::Config(format!("cannot start the HTTP runtime: {e}")))?;
        let state = Arc::new(State::default());
        let stop_watching = Arc::new(AtomicBool::new(false));
        let ctx = deployments::Context {
            metrics: metrics.clone(),
            log: log.clone(),
            inference_threads: config.inference_threads(),
            runtime: runtime.handle().clone(),
        };
        // The first sync happens before the port opens, so a started server serves what is
        // deployed; later ones follow the registry from a background thread.
        let mut watcher = deployments::Watcher::new(registry.clone(), state.clone(), ctx);
        watcher.sync();
        let poll = Duration::from_millis(config.poll_interval_ms);
        let watch_stop = stop_watching.clone();
        let watch_thread = std::thread::Builder::new()
            .name("ph-watch".into())
            .spawn(move || watcher.run(poll, &watch_stop))
            .expect("spawning the registry watcher");

        let addr_text = format!("{}:{}", config.host, config.port);
        let listener = std::net::TcpListener::bind(&addr_text).map_err(|e| ServerError::Bind {
            addr: addr_text.clone(),
            reason: e.to_string(),
        })?;
        listener
            .set_nonblocking(true)
            .map_err(|e| ServerError::Bind {
                addr: addr_text.clone(),
                reason: e.to_string(),
            })?;
        let addr = listener.local_addr().map_err(|e| ServerError::Bind {
            addr: addr_text.clone(),
            reason: e.to_string(),
        })?;
        let shadows = Arc::new(crate::serving::dataplane::Running::default());
        let shadows_at_stop = shadows.clone();
        let app = Arc::new(App {
            plane: Arc::new(DataPlane {
                state,
                metrics,
                log: log.clone(),
                shadows,
            }),
            max_body: config.max_body_bytes,
            body_timeout: Duration::from_millis(config.body_read_timeout_ms),
            in_flight: http::ByteBudget::new(config.max_inflight_bytes),
            registry,
        });
        let limits = listen::Limits {
            max_connections: config.max_connections,
            header_read_timeout: Duration::from_millis(config.header_read_timeout_ms),
            write_timeout: Duration::from_millis(config.write_timeout_ms),
        };
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let grace = Duration::from_secs(config.shutdown_timeout_s);
        let final_log = log.clone();
        tracing::info!(event = "server_started", address = %addr, registry = %pilothouse_registry::redact(&config.registry), payload_log = %log_dir.display(), "listening on http://{addr}");
        let thread =
            std::thread::Builder::new()
                .name("ph-server".into())
                .spawn(move || {
                    runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!(event = "listen_failed", error = %e, "cannot listen");
                            return;
                        }
                    };
                    tokio::spawn(arm_timers());
                    let signal = async move {
                        wait_for_stop(shutdown_rx, handle_signals).await;
                        tracing::info!(
                            event = "shutdown_started",
                            "stopping: no new connections; finishing requests in flight"
                        );
                    };
                    if !listen::serve(listener, http::service(app), limits, signal, grace).await {
                        tracing::warn!(
                            event = "shutdown_timeout",
                            seconds = grace.as_secs(),
                            "requests still in flight after the shutdown timeout were cut"
                        );
                    }
                    // shadow runs of answered requests finish (and are logged) within the
                    // grace; a runtime that stops cancels its tasks instead of finishing them
                    if tokio::time::timeout(grace, shadows_at_stop.idle()).await.is_err() {
                        tracing::warn!(
                            event = "shadow_runs_cut",
                            "shadow runs still running after the shutdown timeout were cut"
                        );
                    }
                });
                    runtime.shutdown_timeout(Duration::from_secs(2));
                    stop_watching.store(true, Ordering::SeqCst);
                    let _ = watch_thread.join();
                    // Every request is answered and logged: the writer flushes what it holds, exits.
                    final_log.shutdown();
                    let _ = log_thread.join();
                    // the tap closed its windows and dropped its sender: the store writes, ends
                    let _ = store_thread.join();
                    tracing::info!(
                        event = "server_stopped",
                        "stopped; the payload log is flushed"
                    );
                })
                .expect("spawning the server thread");
        Ok(Server {
            addr,
            log_dir,
            log,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }

    /// Writes the buffered payload-log rows now.
    pub fn flush_log(&self) {
        self.log.flush();
    }

    /// Stops accepting connections, finishes requests in flight, flushes the payload log.
    pub fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.wait();
    }

    /// Blocks until the server has stopped (by `stop` from another handle, or a signal).
    pub fn wait(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn wait_for_stop(stop: tokio::sync::oneshot::Receiver<()>, handle_signals: bool) {
    if !handle_signals {
        let _ = stop.await;
        return;
    }
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            let _ = stop.await;
            return;
        };
        tokio::select! {
            _ = stop => {}
            _ = term.recv() => tracing::info!(event = "signal", signal = "SIGTERM", "received SIGTERM"),
            _ = int.recv() => tracing::info!(event = "signal", signal = "SIGINT", "received SIGINT"),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::select! {
            _ = stop => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
}

/// Keeps one timer armed a short while ahead, for the life of the runtime.
///
/// Each request waits for its answer under a deadline, which is a tokio timer. Tokio interrupts
/// its own reactor (an eventfd write, and an extra trip through epoll) whenever a new timer
/// expires before every timer it knew of when it last went to sleep, and when it knew of none,
/// which is the case at the first request after every pause. Measured at 16 connections: 0.6
/// such writes per request. With this timer always pending 100 ms ahead, deadlines further out
/// (30 s by default) never interrupt anything; only requests asking for less than 100 ms still
/// do. Costs ten wake-ups a second.
async fn arm_timers() {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
    }
}
