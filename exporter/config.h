/* config.h — every environment variable the exporter reads, in one table
 * (docs/EXPORTER.md documents the same table). The exporter has no options
 * besides its mode flags: configuration comes from the environment, as for
 * any OpenTelemetry SDK. An empty value counts as unset. */
#ifndef TRACESHIM_EXP_CONFIG_H
#define TRACESHIM_EXP_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "log.h"
#include "paths.h" /* ts_getenv_fn */

/*  variable                                default             meaning */
#define EXP_ENV_TABLE(X)                                                                                   \
	X(TRACESHIM_SOCKET, "see paths.h", "SEQPACKET socket the exporter listens on")                     \
	X(LISTEN_PID, "", "socket activation (sd_listen_fds): the pid the passed sockets are for")       \
	X(LISTEN_FDS, "", "socket activation: number of sockets passed from fd 3; fd 3 is used")           \
	X(TRACESHIM_FILE, "see paths.h", "OTLP/JSON lines file; setting it also enables the file sink")   \
	X(TRACESHIM_LOG, "warn", "exporter log level: off|error|warn|info|debug")                         \
	X(TRACESHIM_QUEUE_MAX_BYTES, "16777216", "byte cap of queued span records")                       \
	X(TRACESHIM_SPOOL_DIR, "see paths.h", "on-disk spool of undelivered OTLP batches")                  \
	X(TRACESHIM_SPOOL_MAX_BYTES, "268435456", "spool size bound (oldest dropped); 0: no spool")        \
	X(TRACESHIM_ALLOWED_UIDS, "", "other uids admitted (comma list); socket becomes 0666")             \
	X(TRACESHIM_MAX_CONNECTIONS, "4096", "connections served at once; more are refused")              \
	X(TRACESHIM_EXPORTER_SCHED, "normal", "batch: SCHED_BATCH, never preempts traced programs")        \
	X(TRACESHIM_TAIL_SAMPLING, "0", "1: tail sampling per trace in the exporter")                     \
	X(TRACESHIM_TAIL_WAIT_MS, "5000", "ms from a trace's first span to its decision")                 \
	X(TRACESHIM_TAIL_SLOW_MS, "1000", "a span at least this long keeps its trace")                    \
	X(TRACESHIM_TAIL_RATIO, "0.1", "fraction of ordinary traces kept (by trace id)")                  \
	X(TRACESHIM_TAIL_MAX_SPANS, "100000", "spans held for undecided traces; over: decide early")      \
	X(TRACESHIM_TAIL_MAX_BYTES, "67108864", "record bytes held for undecided traces")                 \
	X(OTEL_TRACES_EXPORTER, "(auto)", "comma list of otlp, file, none")                               \
	X(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, "", "full URL, used as is")                                 \
	X(OTEL_EXPORTER_OTLP_ENDPOINT, "", "base URL; /v1/traces is appended")                            \
	X(OTEL_EXPORTER_OTLP_TRACES_HEADERS, "", "k=v,... (values percent-decoded); replaces the next")    \
	X(OTEL_EXPORTER_OTLP_HEADERS, "", "k=v,... (values percent-decoded)")                             \
	X(OTEL_EXPORTER_OTLP_TRACES_TIMEOUT, "", "ms per export request; overrides the next")             \
	X(OTEL_EXPORTER_OTLP_TIMEOUT, "10000", "ms per export request")                                   \
	X(OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE, "", "CA bundle for https; overrides the next")           \
	X(OTEL_EXPORTER_OTLP_CERTIFICATE, "", "CA bundle for https")                                      \
	X(OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE, "", "client certificate (mTLS)")                  \
	X(OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE, "", "client certificate (mTLS)")                         \
	X(OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY, "", "client key (mTLS)")                                  \
	X(OTEL_EXPORTER_OTLP_CLIENT_KEY, "", "client key (mTLS)")                                         \
	X(OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, "http/protobuf", "only http/protobuf is supported")          \
	X(OTEL_EXPORTER_OTLP_PROTOCOL, "http/protobuf", "only http/protobuf is supported")                 \
	X(OTEL_EXPORTER_OTLP_TRACES_COMPRESSION, "none", "gzip or none; overrides the next")              \
	X(OTEL_EXPORTER_OTLP_COMPRESSION, "none", "gzip or none")                                         \
	X(OTEL_BSP_SCHEDULE_DELAY, "200", "ms between exports (SDK default 5000)")                        \
	X(OTEL_BSP_MAX_QUEUE_SIZE, "8192", "spans waiting for export; more are dropped (SDK 2048)")       \
	X(OTEL_BSP_MAX_EXPORT_BATCH_SIZE, "512", "spans per export request (<= queue size)")             \
	X(OTEL_BSP_EXPORT_TIMEOUT, "5000", "ms a batch may wait in memory, and the shutdown budget")         \
	X(OTEL_METRICS_EXPORTER, "none", "comma list of prometheus, otlp, none")                          \
	X(OTEL_EXPORTER_PROMETHEUS_HOST, "localhost", "address the Prometheus endpoint listens on")        \
	X(OTEL_EXPORTER_PROMETHEUS_PORT, "9464", "port of the Prometheus endpoint (/metrics)")             \
	X(OTEL_EXPORTER_OTLP_METRICS_ENDPOINT, "", "full OTLP metrics URL; else the base + /v1/metrics")   \
	X(OTEL_METRIC_EXPORT_INTERVAL, "60000", "ms between OTLP metrics exports")                        \
	X(TRACESHIM_METRICS_DIMENSIONS, "", "span attributes added as span-metrics dimensions (comma list)") \
	X(TRACESHIM_METRICS_MAX_SERIES, "10000", "metric series held; more go to one overflow series")     \
	X(TRACESHIM_METRICS_GRAPH_WAIT_MS, "10000", "ms a client/server span waits for its other half")    \
	X(TRACESHIM_METRICS_GRAPH_MAX_PENDING, "10000", "halves waiting at once; over: oldest unpaired")

#define EXP_DEFAULT_ENDPOINT "http://localhost:4318/v1/traces"
#define EXP_DEFAULT_TIMEOUT_MS 10000u
#define EXP_DEFAULT_SCHEDULE_DELAY_MS 200u
#define EXP_DEFAULT_MAX_QUEUE 8192u
#define EXP_DEFAULT_MAX_BATCH 512u
#define EXP_DEFAULT_QUEUE_MAX_BYTES ((size_t)16 << 20)
#define EXP_DEFAULT_EXPORT_TIMEOUT_MS 5000u /* SDK: 30000; see docs/EXPORTER.md */
#define EXP_DEFAULT_SPOOL_MAX_BYTES ((uint64_t)256 << 20)
#define EXP_DEFAULT_MAX_CONNECTIONS 4096u
#define EXP_DEFAULT_FILE_MAX_BYTES (256ull << 20)
#define EXP_DEFAULT_TAIL_WAIT_MS 5000u
#define EXP_DEFAULT_TAIL_SLOW_MS 1000u
#define EXP_DEFAULT_TAIL_RATIO 0.1
#define EXP_DEFAULT_TAIL_MAX_SPANS 100000u
#define EXP_DEFAULT_TAIL_MAX_BYTES ((size_t)64 << 20)
#define EXP_MAX_ALLOWED_UIDS 64
#define EXP_DEFAULT_METRICS_ENDPOINT "http://localhost:4318/v1/metrics"
#define EXP_DEFAULT_PROM_HOST "localhost"
#define EXP_DEFAULT_PROM_PORT 9464u
#define EXP_DEFAULT_METRIC_INTERVAL_MS 60000u
#define EXP_DEFAULT_METRICS_MAX_SERIES 10000u
#define EXP_DEFAULT_GRAPH_WAIT_MS 10000u
#define EXP_DEFAULT_GRAPH_MAX_PENDING 10000u
#define EXP_METRICS_DIMS_MAX 16

/* Delivery (OTLP spec: exponential backoff with jitter, honour Retry-After). */
#define EXP_BACKOFF_BASE_MS 1000u
#define EXP_BACKOFF_MAX_MS 30000u
#define EXP_RETRY_AFTER_MAX_MS 120000u
/* Encoded batches waiting for the backend in memory; beyond, the oldest go
 * to the spool at once (they would anyway after OTEL_BSP_EXPORT_TIMEOUT). */
#define EXP_OUTBOX_MAX_BYTES ((size_t)32 << 20)
/* Shutdown: how long past the budget (OTEL_BSP_EXPORT_TIMEOUT) the export
 * thread may still be writing before it is given up on and the process ends
 * without it (export.c, exp_exporter_stop). Slack for a healthy sink under a
 * tiny budget, not for a stuck one. */
#define EXP_STOP_GRACE_MS 250u
/* HELLO resources held at once (connections and queued spans reference them). */
#define EXP_RESOURCE_BUDGET_BYTES ((size_t)64 << 20)
#define EXP_PATH_MAX 4096
#define EXP_SUN_PATH_MAX 108 /* sizeof(((struct sockaddr_un *)0)->sun_path) */

enum exp_sink_mask { EXP_SINK_FILE = 1u << 0, EXP_SINK_OTLP = 1u << 1 };
enum exp_metrics_mask { EXP_METRICS_PROMETHEUS = 1u << 0, EXP_METRICS_OTLP = 1u << 1 };

/* Extra HTTP request headers as ready-made "Name: value" lines. */
struct exp_headers {
	char **lines;
	size_t n;
};

struct exp_config {
	char socket_path[EXP_SUN_PATH_MAX];
	char file_path[EXP_PATH_MAX]; /* "" when the file sink is off */
	uint64_t file_max_bytes;      /* TRACESHIM_FILE_MAX_BYTES: rotate to <file>.1 beyond this; 0: never */
	char endpoint[EXP_PATH_MAX];  /* "" when the otlp sink is off */
	unsigned sinks;               /* enum exp_sink_mask */
	struct exp_headers headers;
	char ca_file[EXP_PATH_MAX], client_cert[EXP_PATH_MAX], client_key[EXP_PATH_MAX];
	uint32_t timeout_ms;
	uint32_t schedule_delay_ms;
	uint32_t max_queue, max_batch;
	size_t queue_max_bytes;
	uint32_t export_timeout_ms; /* OTEL_BSP_EXPORT_TIMEOUT */
	bool gzip;
	char spool_dir[EXP_PATH_MAX]; /* absolute; used by the otlp sink only */
	uint64_t spool_max_bytes;     /* 0: no spool */
	unsigned allowed_uids[EXP_MAX_ALLOWED_UIDS];
	size_t n_allowed_uids;
	uint32_t max_connections;
	bool sched_batch; /* TRACESHIM_EXPORTER_SCHED */
	bool tail_sampling;
	uint32_t tail_wait_ms, tail_slow_ms;
	double tail_ratio;
	uint32_t tail_max_spans;
	size_t tail_max_bytes;
	enum exp_log_level log_level;
	/* metrics (metrics.h); OTLP metrics use the traces' headers, timeout,
	 * TLS files and compression */
	unsigned metrics_exporters; /* enum exp_metrics_mask; 0: no metrics at all */
	char prom_host[256];
	uint16_t prom_port;
	char metrics_endpoint[EXP_PATH_MAX]; /* "" unless otlp metrics are on */
	uint32_t metric_interval_ms;
	char metrics_dims[EXP_METRICS_DIMS_MAX][129];
	size_t n_metrics_dims;
	uint32_t metrics_max_series, graph_wait_ms, graph_max_pending;
};

/* Reads the environment (getenv_fn NULL: getenv). Warns about and ignores bad
 * values; returns -1 with a message in err only when it cannot go on. */
int exp_config_load(struct exp_config *c, ts_getenv_fn getenv_fn, char *err, size_t errcap);
void exp_config_free(struct exp_config *c);

/* Just the socket path (absolute), for the client modes. */
int exp_config_socket_path(char *out, size_t cap, ts_getenv_fn getenv_fn);

/* ---- pure helpers, unit-tested ------------------------------------------ */

/* Parses OTEL_EXPORTER_OTLP_HEADERS: "k=v,k2=v2", spaces around keys and
 * values trimmed, values percent-decoded. Entries with no '=', a key that is
 * not an HTTP token, or a value with control characters (header injection)
 * are skipped. Returns how many were skipped, or -1 when out of memory. */
int exp_headers_parse(const char *s, struct exp_headers *out);
void exp_headers_free(struct exp_headers *h);

/* base + "/v1/traces" without doubling the slash; -1 if it does not fit. */
int exp_endpoint_join(const char *base, char *out, size_t cap);
/* The same with another path ("/v1/metrics"). */
int exp_endpoint_join_path(const char *base, const char *path, char *out, size_t cap);

/* OTEL_METRICS_EXPORTER → enum exp_metrics_mask; unknown names counted in
 * *unknown and ignored. Unset, empty or "none": 0. */
unsigned exp_parse_metrics_exporters(const char *list, unsigned *unknown);

/* TRACESHIM_METRICS_DIMENSIONS: comma list of attribute keys (spaces
 * trimmed, empty items skipped, at most cap kept). Refused, counted: keys
 * over 128 bytes, and keys whose Prometheus label (dots → '_') would be one
 * the span metrics have (service_name, span_name, span_kind, status_code, le,
 * otel_metric_overflow), start with "__", or repeat an earlier key's.
 * Returns how many were refused. */
int exp_parse_dims(const char *s, char out[][129], size_t cap, size_t *n);

/* OTEL_TRACES_EXPORTER → enum exp_sink_mask. Unknown names are counted in
 * *unknown and ignored; when nothing recognisable is listed (unset, empty,
 * only typos) the default applies: otlp if an endpoint is configured, file if
 * TRACESHIM_FILE is set or no endpoint is. "none" alone selects nothing. */
unsigned exp_parse_exporters(const char *list, bool have_endpoint, bool have_file_env,
			     unsigned *unknown);

/* Strict unsigned decimal (no sign, no suffix, no overflow). */
bool exp_parse_u64(const char *s, uint64_t *out);

/* A fraction in [0, 1] ("0", "0.25", "1", "1e-3"); false otherwise. */
bool exp_parse_ratio(const char *s, double *out);

/* TRACESHIM_ALLOWED_UIDS: "1000, 1001" (decimal uids, spaces allowed).
 * Returns how many entries were invalid (skipped), at most `cap` are kept. */
int exp_parse_uids(const char *s, unsigned *out, size_t cap, size_t *n);

#endif
