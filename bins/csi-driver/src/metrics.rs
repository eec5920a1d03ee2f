//! Prometheus metrics and the optional HTTP listener that serves them (`/metrics`).
//!
//! RPC and command metrics are recorded as they happen (by `service::rpc_layer` and the
//! runner's observer). VG, thin pool and RAID gauges are read from LVM when scraped, with
//! one `lvm fullreport` that is reused for a few seconds, so a scraper polling often (or
//! several scrapers) does not turn into a stream of lvm commands.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use vglet_lvm::Report;
use vglet_lvm::tags::VolumeTags;

use crate::driver::Driver;

/// How long one LVM report answers scrapes.
pub const VG_CACHE_TTL: Duration = Duration::from_secs(5);
/// A scrape never waits longer than this for LVM; the previous values are served instead
/// (a frozen device must not make the scraper time out, and the report is read-only, so
/// killing it is harmless).
pub const VG_REFRESH_LIMIT: Duration = Duration::from_secs(8);

pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcCode {
    method: String,
    code: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcMethod {
    method: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommandLabels {
    program: String,
    outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VgLabel {
    vg: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    vg: String,
    pool: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LvLabels {
    vg: String,
    lv: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    vg: String,
    lv: String,
    /// `cache` or `writecache`.
    mode: String,
}

type Percent = Gauge<f64, AtomicU64>;
type Hist<L> = Family<L, Histogram, fn() -> Histogram>;

/// RPCs last from a millisecond (Probe) to minutes (mkfs on a large volume).
fn rpc_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.5, 14))
}

/// An exec costs ~1 ms on a fast host, lvm commands 0.05-2 s, a timeout is at 120 s.
fn command_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.5, 13))
}

/// Every metric vglet exports.
pub struct Metrics {
    registry: Registry,
    rpc_requests: Family<RpcCode, Counter>,
    rpc_duration: Hist<RpcMethod>,
    command_duration: Hist<CommandLabels>,
    vg_size: Family<VgLabel, Gauge>,
    vg_free: Family<VgLabel, Gauge>,
    volumes: Family<VgLabel, Gauge>,
    thin_data: Family<PoolLabels, Percent>,
    thin_metadata: Family<PoolLabels, Percent>,
    thin_full: Family<PoolLabels, Gauge>,
    raid_sync: Family<LvLabels, Percent>,
    cache_read_hits: Family<CacheLabels, Gauge>,
    cache_read_misses: Family<CacheLabels, Gauge>,
    cache_write_hits: Family<CacheLabels, Gauge>,
    cache_write_misses: Family<CacheLabels, Gauge>,
    cache_dirty: Family<CacheLabels, Gauge>,
    cache_total: Family<CacheLabels, Gauge>,
    vg_report_errors: Counter,
    last_refresh: tokio::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let rpc_requests = Family::<RpcCode, Counter>::default();
        // The OpenMetrics encoder appends `_total` to counters.
        registry.register(
            "vglet_rpc_requests",
            "CSI RPCs handled, by method and gRPC status code",
            rpc_requests.clone(),
        );
        let rpc_duration: Hist<RpcMethod> = Family::new_with_constructor(rpc_histogram);
        registry.register(
            "vglet_rpc_duration_seconds",
            "CSI RPC latency in seconds",
            rpc_duration.clone(),
        );
        let command_duration: Hist<CommandLabels> = Family::new_with_constructor(command_histogram);
        registry.register(
            "vglet_command_duration_seconds",
            "External command (lvm, mkfs, ...) run time in seconds, by program and outcome (ok, failed, timeout, spawn_error)",
            command_duration.clone(),
        );
        let vg_size = Family::<VgLabel, Gauge>::default();
        registry.register(
            "vglet_vg_size_bytes",
            "Size of a served volume group",
            vg_size.clone(),
        );
        let vg_free = Family::<VgLabel, Gauge>::default();
        registry.register(
            "vglet_vg_free_bytes",
            "Free space of a served volume group",
            vg_free.clone(),
        );
        let volumes = Family::<VgLabel, Gauge>::default();
        registry.register(
            "vglet_volumes",
            "Volumes (LVs owned by this driver) in a served volume group",
            volumes.clone(),
        );
        let thin_data = Family::<PoolLabels, Percent>::default();
        registry.register(
            "vglet_thin_pool_data_percent",
            "Data space used in a thin pool, percent",
            thin_data.clone(),
        );
        let thin_metadata = Family::<PoolLabels, Percent>::default();
        registry.register(
            "vglet_thin_pool_metadata_percent",
            "Metadata space used in a thin pool, percent",
            thin_metadata.clone(),
        );
        let thin_full = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "vglet_thin_pool_full",
            "1 when a thin pool cannot take writes (out of data or metadata space, read-only, \
             failed or needing a check), else 0: every thin volume in it is abnormal",
            thin_full.clone(),
        );
        let raid_sync = Family::<LvLabels, Percent>::default();
        registry.register(
            "vglet_raid_sync_percent",
            "Synchronisation of a RAID or mirror LV, percent (lvm copy_percent)",
            raid_sync.clone(),
        );
        let cache_gauge = |registry: &mut Registry, name: &str, help: &str| {
            let g = Family::<CacheLabels, Gauge>::default();
            registry.register(name, help, g.clone());
            g
        };
        let cache_read_hits = cache_gauge(
            &mut registry,
            "vglet_cache_read_hits",
            "Reads of a cached volume served from its fast tier (dm-cache, since the volume was activated)",
        );
        let cache_read_misses = cache_gauge(
            &mut registry,
            "vglet_cache_read_misses",
            "Reads of a cached volume that went to its origin (dm-cache, since activation)",
        );
        let cache_write_hits = cache_gauge(
            &mut registry,
            "vglet_cache_write_hits",
            "Writes to blocks a cached volume held in its fast tier (dm-cache, since activation)",
        );
        let cache_write_misses = cache_gauge(
            &mut registry,
            "vglet_cache_write_misses",
            "Writes to blocks not in a cached volume's fast tier (dm-cache, since activation)",
        );
        let cache_dirty = cache_gauge(
            &mut registry,
            "vglet_cache_dirty_blocks",
            "Cache blocks of a volume not yet written back to its origin (dm-cache dirty blocks; \
             dm-writecache: every used block), what a detach writes back first",
        );
        let cache_total = cache_gauge(
            &mut registry,
            "vglet_cache_blocks",
            "Size of a volume's cache in its own blocks",
        );
        let vg_report_errors = Counter::default();
        registry.register(
            "vglet_vg_report_errors",
            "Scrapes whose LVM report failed or timed out (the VG gauges kept their last values)",
            vg_report_errors.clone(),
        );
        Metrics {
            registry,
            rpc_requests,
            rpc_duration,
            command_duration,
            vg_size,
            vg_free,
            volumes,
            thin_data,
            thin_metadata,
            thin_full,
            raid_sync,
            cache_read_hits,
            cache_read_misses,
            cache_write_hits,
            cache_write_misses,
            cache_dirty,
            cache_total,
            vg_report_errors,
            last_refresh: tokio::sync::Mutex::new(None),
        }
    }

    /// One finished RPC; `code` is the gRPC status name (`OK`, `NOT_FOUND`, ...).
    pub fn observe_rpc(&self, method: &str, code: &str, duration: Duration) {
        self.rpc_requests
            .get_or_create(&RpcCode {
                method: method.to_string(),
                code: code.to_string(),
            })
            .inc();
        self.rpc_duration
            .get_or_create(&RpcMethod {
                method: method.to_string(),
            })
            .observe(duration.as_secs_f64());
    }

    pub fn observe_command(&self, e: &vglet_runner::CommandEvent) {
        self.command_duration
            .get_or_create(&CommandLabels {
                program: e.program.clone(),
                outcome: e.outcome.label().to_string(),
            })
            .observe(e.duration.as_secs_f64());
    }

    /// The hook for [`vglet_runner::SystemRunner::with_observer`].
    pub fn command_observer(self: &Arc<Self>) -> vglet_runner::Observer {
        let me = self.clone();
        Arc::new(move |e| me.observe_command(e))
    }

    /// Replaces every LVM-derived gauge with what `report` says about the served VGs.
    /// Series of pools or LVs that disappeared are dropped, not left at their last value.
    pub fn set_lvm_state(&self, report: &Report, served: &[String], driver_name: &str) {
        self.vg_size.clear();
        self.vg_free.clear();
        self.volumes.clear();
        self.thin_data.clear();
        self.thin_metadata.clear();
        self.thin_full.clear();
        self.raid_sync.clear();
        for g in [
            &self.cache_read_hits,
            &self.cache_read_misses,
            &self.cache_write_hits,
            &self.cache_write_misses,
            &self.cache_dirty,
            &self.cache_total,
        ] {
            g.clear();
        }
        for vg in report.vgs.iter().filter(|v| served.contains(&v.name)) {
            let label = VgLabel {
                vg: vg.name.clone(),
            };
            self.vg_size
                .get_or_create(&label)
                .set(i64::try_from(vg.size).unwrap_or(i64::MAX));
            self.vg_free
                .get_or_create(&label)
                .set(i64::try_from(vg.free).unwrap_or(i64::MAX));
            let mut owned: i64 = 0;
            for lv in report.lvs_in(&vg.name) {
                if VolumeTags::from_tags(&lv.tags).is_some_and(|t| t.owner == driver_name) {
                    owned += 1;
                }
                if lv.segtype == "thin-pool" {
                    let pool = PoolLabels {
                        vg: vg.name.clone(),
                        pool: lv.name.clone(),
                    };
                    if let Some(p) = lv.data_percent {
                        self.thin_data.get_or_create(&pool).set(p);
                    }
                    if let Some(p) = lv.metadata_percent {
                        self.thin_metadata.get_or_create(&pool).set(p);
                    }
                    let full = crate::rules::health::pool_fault(lv).is_some();
                    self.thin_full.get_or_create(&pool).set(i64::from(full));
                }
                let copies = lv.segtype.starts_with("raid") || lv.segtype == "mirror";
                if copies
                    && !lv.is_hidden()
                    && let Some(p) = lv.copy_percent
                {
                    self.raid_sync
                        .get_or_create(&LvLabels {
                            vg: vg.name.clone(),
                            lv: lv.name.clone(),
                        })
                        .set(p);
                }
            }
            for lv in report.lvs_in(&vg.name).filter(|l| !l.is_hidden()) {
                let Some(attached) = vglet_lvm::cache::attached(lv) else {
                    continue;
                };
                let labels = CacheLabels {
                    vg: vg.name.clone(),
                    lv: lv.name.clone(),
                    mode: attached.mode.to_string(),
                };
                let c = &lv.cache;
                let total = c.total_blocks.or(c.writecache_total_blocks);
                for (g, v) in [
                    (&self.cache_read_hits, c.read_hits),
                    (&self.cache_read_misses, c.read_misses),
                    (&self.cache_write_hits, c.write_hits),
                    (&self.cache_write_misses, c.write_misses),
                    (&self.cache_dirty, c.dirty()),
                    (&self.cache_total, total),
                ] {
                    if let Some(v) = v {
                        g.get_or_create(&labels)
                            .set(i64::try_from(v).unwrap_or(i64::MAX));
                    }
                }
            }
            self.volumes.get_or_create(&label).set(owned);
        }
    }

    /// Reads LVM again unless the last read is younger than [`VG_CACHE_TTL`]. Concurrent
    /// scrapes wait for one read instead of starting their own.
    pub async fn refresh_lvm_state(&self, driver: &Driver) {
        let mut last = self.last_refresh.lock().await;
        if last.is_some_and(|t| t.elapsed() < VG_CACHE_TTL) {
            return;
        }
        match tokio::time::timeout(VG_REFRESH_LIMIT, driver.lvm.report(None)).await {
            Ok(Ok(report)) => {
                self.set_lvm_state(&report, &driver.cfg.volume_groups, &driver.cfg.driver_name);
                *last = Some(Instant::now());
            }
            Ok(Err(e)) => {
                self.vg_report_errors.inc();
                tracing::warn!(error = %e, "metrics: lvm report failed; serving the previous VG values");
            }
            Err(_) => {
                self.vg_report_errors.inc();
                tracing::warn!(
                    limit_s = VG_REFRESH_LIMIT.as_secs(),
                    "metrics: lvm report too slow; serving the previous VG values"
                );
            }
        }
    }

    /// The exposition text (OpenMetrics, which Prometheus reads natively).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Binds the metrics listener. Called before the CSI socket is served, so a taken port or
/// a bad address stops start-up instead of silently running without metrics.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves `/metrics` until `shutdown` resolves. HTTP/1.1 only, GET only, no other path:
/// the listener exposes nothing but the exposition text.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    driver: Arc<Driver>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) {
    if let Ok(local) = listener.local_addr() {
        tracing::info!(address = %local, "serving metrics on /metrics");
    }
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "metrics: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let metrics = metrics.clone();
        let driver = driver.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let metrics = metrics.clone();
                let driver = driver.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(req, &metrics, &driver).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                // A client that opens a connection and sends nothing must not hold a task
                // forever.
                .header_read_timeout(Duration::from_secs(10))
                .timer(hyper_util::rt::TokioTimer::new())
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "metrics connection ended with an error");
            }
        });
    }
}

async fn handle(
    req: Request<Incoming>,
    metrics: &Metrics,
    driver: &Driver,
) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, ctype: &str, body: String| {
        Response::builder()
            .status(status)
            .header(hyper::header::CONTENT_TYPE, ctype)
            .body(Full::new(Bytes::from(body)))
            .expect("static response parts are valid")
    };
    if req.uri().path() != "/metrics" {
        return reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "only /metrics is served\n".into(),
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        );
    }
    metrics.refresh_lvm_state(driver).await;
    reply(StatusCode::OK, CONTENT_TYPE, metrics.encode())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vglet_lvm::{Lv, Vg};

    fn lv(vg: &str, name: &str, segtype: &str) -> Lv {
        Lv {
            vg: vg.into(),
            name: name.into(),
            segtype: segtype.into(),
            ..Default::default()
        }
    }

    fn sample() -> Report {
        let owned = VolumeTags {
            owner: "lvm.vglet.io".into(),
            name: "pvc-1".into(),
            size: 1,
            fs: "ext4".into(),
        }
        .to_tags();
        let mut a = lv("vg0", "csi-pvc-1", "linear");
        a.tags = owned.clone();
        let mut pool = lv("vg0", "pool0", "thin-pool");
        pool.data_percent = Some(42.5);
        pool.metadata_percent = Some(7.25);
        let mut full = lv("vg0", "full0", "thin-pool");
        full.attr = "twi-aotzD-".into();
        let mut raid = lv("vg0", "csi-r", "raid1");
        raid.copy_percent = Some(63.0);
        raid.tags = owned.clone();
        let mut image = lv("vg0", "[csi-r_rimage_0]", "linear");
        image.copy_percent = Some(63.0);
        let mut other = lv("other", "csi-x", "linear");
        other.tags = owned;
        Report {
            vgs: vec![
                Vg {
                    name: "vg0".into(),
                    size: 1 << 30,
                    free: 1 << 29,
                    ..Default::default()
                },
                Vg {
                    name: "other".into(),
                    size: 5,
                    ..Default::default()
                },
            ],
            pvs: vec![],
            lvs: vec![a, pool, full, raid, image, other],
        }
    }

    #[test]
    fn lvm_state_of_served_vgs_only() {
        let m = Metrics::new();
        m.set_lvm_state(&sample(), &["vg0".to_string()], "lvm.vglet.io");
        let text = m.encode();
        for line in [
            "vglet_vg_size_bytes{vg=\"vg0\"} 1073741824",
            "vglet_vg_free_bytes{vg=\"vg0\"} 536870912",
            "vglet_volumes{vg=\"vg0\"} 2",
            "vglet_thin_pool_data_percent{vg=\"vg0\",pool=\"pool0\"} 42.5",
            "vglet_thin_pool_metadata_percent{vg=\"vg0\",pool=\"pool0\"} 7.25",
            "vglet_thin_pool_full{vg=\"vg0\",pool=\"pool0\"} 0",
            "vglet_thin_pool_full{vg=\"vg0\",pool=\"full0\"} 1",
            "vglet_raid_sync_percent{vg=\"vg0\",lv=\"csi-r\"} 63.0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert!(!text.contains("other"), "{text}");
        assert!(
            !text.contains("rimage"),
            "hidden sub-LVs are not volumes: {text}"
        );
    }

    #[test]
    fn cache_statistics_of_cached_volumes() {
        let mut r = sample();
        let mut c = lv("vg0", "csi-c", "cache");
        c.pool_lv = "[vglet-cache.00_cvol]".into();
        c.cache = vglet_lvm::CacheStats {
            total_blocks: Some(896),
            dirty_blocks: Some(0),
            read_hits: Some(7),
            read_misses: Some(2),
            write_hits: Some(1),
            write_misses: Some(10),
            ..Default::default()
        };
        let mut w = lv("vg0", "csi-w", "writecache");
        w.cache = vglet_lvm::CacheStats {
            writecache_total_blocks: Some(127100),
            writecache_free_blocks: Some(106588),
            ..Default::default()
        };
        // The hidden cachevol is no volume of its own.
        let mut cvol = lv("vg0", "[vglet-cache.00_cvol]", "linear");
        cvol.cache.read_hits = Some(99);
        r.lvs.extend([c, w, cvol]);
        let m = Metrics::new();
        m.set_lvm_state(&r, &["vg0".to_string()], "lvm.vglet.io");
        let text = m.encode();
        for line in [
            "vglet_cache_read_hits{vg=\"vg0\",lv=\"csi-c\",mode=\"cache\"} 7",
            "vglet_cache_read_misses{vg=\"vg0\",lv=\"csi-c\",mode=\"cache\"} 2",
            "vglet_cache_write_hits{vg=\"vg0\",lv=\"csi-c\",mode=\"cache\"} 1",
            "vglet_cache_write_misses{vg=\"vg0\",lv=\"csi-c\",mode=\"cache\"} 10",
            "vglet_cache_dirty_blocks{vg=\"vg0\",lv=\"csi-c\",mode=\"cache\"} 0",
            "vglet_cache_blocks{vg=\"vg0\",lv=\"csi-c\",mode=\"cache\"} 896",
            "vglet_cache_dirty_blocks{vg=\"vg0\",lv=\"csi-w\",mode=\"writecache\"} 20512",
            "vglet_cache_blocks{vg=\"vg0\",lv=\"csi-w\",mode=\"writecache\"} 127100",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert!(!text.contains("_cvol"), "{text}");
        assert!(
            !text.contains("vglet_cache_read_hits{vg=\"vg0\",lv=\"csi-w\""),
            "writecache has no read hits: {text}"
        );
        // Detached: the series go.
        r.lvs.retain(|l| l.segtype != "cache");
        m.set_lvm_state(&r, &["vg0".to_string()], "lvm.vglet.io");
        assert!(!m.encode().contains("csi-c"));
    }

    #[test]
    fn vanished_lvs_are_dropped() {
        let m = Metrics::new();
        m.set_lvm_state(&sample(), &["vg0".to_string()], "lvm.vglet.io");
        let mut r = sample();
        r.lvs.retain(|l| l.segtype != "thin-pool");
        m.set_lvm_state(&r, &["vg0".to_string()], "lvm.vglet.io");
        assert!(!m.encode().contains("pool0"));
    }

    #[test]
    fn rpc_and_command_families() {
        let m = Arc::new(Metrics::new());
        m.observe_rpc("CreateVolume", "OK", Duration::from_millis(30));
        m.observe_rpc("CreateVolume", "OK", Duration::from_millis(30));
        m.observe_rpc(
            "CreateVolume",
            "RESOURCE_EXHAUSTED",
            Duration::from_millis(3),
        );
        (m.command_observer())(&vglet_runner::CommandEvent {
            program: "lvm".into(),
            duration: Duration::from_millis(200),
            outcome: vglet_runner::CommandOutcome::TimedOut,
        });
        let text = m.encode();
        for line in [
            "vglet_rpc_requests_total{method=\"CreateVolume\",code=\"OK\"} 2",
            "vglet_rpc_requests_total{method=\"CreateVolume\",code=\"RESOURCE_EXHAUSTED\"} 1",
            "vglet_rpc_duration_seconds_count{method=\"CreateVolume\"} 3",
            "vglet_command_duration_seconds_count{program=\"lvm\",outcome=\"timeout\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }
}
