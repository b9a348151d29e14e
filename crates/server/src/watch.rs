//! `latchkey courier watch`: the courier's dispatcher on its own and, with
//! `--expose-metrics-port`, a listener serving its metrics (as Kratos's
//! `courier watch` does); both stop together.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use latchkey_domain::Store;
use latchkey_domain::courier::Dispatcher;
use latchkey_http::Metrics;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::serve::Limits;
use crate::startup::{StartError, bind, dispatcher, open_store};

/// A courier ready to run: its database open, its metrics listener bound.
pub struct Watcher {
    dispatcher: Dispatcher,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    listener: Option<TcpListener>,
    limits: Limits,
}

impl Watcher {
    /// `metrics_port` 0 serves no metrics (Kratos's default). Any other is
    /// bound on `serve.admin.host` (loopback unless configured), where
    /// Kratos binds it too, before the database is opened, so a port in use
    /// stops the start at once.
    pub async fn build(config: &Config, metrics_port: u16) -> Result<Self, StartError> {
        if config.courier.smtp.connection_uri.is_empty() {
            return Err(StartError::NoRelay);
        }
        let listener = match metrics_port {
            0 => None,
            port => Some(
                bind(&config.serve.admin.host, port)
                    .await
                    .map_err(|e| StartError::MetricsListener(e.to_string()))?,
            ),
        };
        let (store, _) = open_store(&config.dsn).await?;
        let metrics = Arc::new(Metrics::for_courier());
        let dispatcher = match dispatcher(config, store.clone(), Arc::new(latchkey_domain::time::SystemClock))
        {
            Ok(Some(dispatcher)) => dispatcher.with_recorder(metrics.clone()),
            failed => {
                store.close().await;
                return Err(failed.err().unwrap_or(StartError::NoRelay));
            }
        };
        let limits = Limits::from_config(&config.serve.limits);
        Ok(Self { dispatcher, store, metrics, listener, limits })
    }

    /// Where the metrics are served, when they are.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Sends until `shutdown` resolves; a send in progress and scrapes in
    /// flight finish first. Then closes the database.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(());
        let exporter = self.listener.map(|listener| {
            let router = latchkey_http::courier_metrics_router(
                self.metrics,
                latchkey_domain::health::Health::new(self.store.clone()),
            );
            // Scrapes are not traced.
            let router = latchkey_http::edge(router, None, None);
            tokio::spawn(crate::serve::serve(
                listener,
                crate::serve::Routes::new(router),
                self.limits,
                stop_rx.clone(),
            ))
        });
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(());
        });
        let mut stop = stop_rx;
        self.dispatcher
            .run(Duration::from_secs(1), async move {
                let _ = stop.changed().await;
            })
            .await;
        if let Some(exporter) = exporter {
            let _ = exporter.await;
        }
        self.store.close().await;
    }
}
