/* server.h — the receive loop: one epoll thread (the main thread) accepts
 * connections, reads frames and the processes' shared span rings (on a timer,
 * on WAKE, and to the end when a process hangs up), validates them and queues
 * spans; it also
 * answers STATUS_REQ and watches a signalfd for SIGTERM/SIGINT/SIGHUP.
 * Nothing here blocks: sockets are non-blocking and the queue lock is only
 * held to link spans in. */
#ifndef TRACESHIM_EXP_SERVER_H
#define TRACESHIM_EXP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "config.h"
#include "frame.h"
#include "listener.h"
#include "metrics.h"
#include "queue.h"
#include "resource.h"
#include "sbuf.h"

enum exp_ep_kind { EXP_EP_LISTENER, EXP_EP_SIGNAL, EXP_EP_CONN };

struct exp_conn {
	enum exp_ep_kind kind; /* first: epoll's data.ptr points at it */
	int fd;
	pid_t pid; /* from SO_PEERCRED */
	struct exp_resource *res; /* NULL until HELLO */
	bool warned;           /* a malformed frame from it was logged already */
	bool closing;          /* hung up (fd closed); kept until its ring is read out */
	bool paused;           /* EPOLLIN off while the queue is full (backpressure) */
	/* The process's shared span ring (frame.h), when it passed one. */
	struct ts_ring_hdr *ring;
	const uint8_t *ring_data;
	uint32_t ring_size;
	uint64_t ring_tail;    /* ours: the shared copy is only ever stored */
	uint64_t ring_read;    /* records consumed */
	uint64_t ring_dropped; /* the process's dropped counter as last seen */
	uint64_t ring_end;     /* closing: head at the hang-up, read up to there */
	struct exp_conn *prev, *next;
};

struct exp_server {
	const struct exp_config *cfg;
	struct exp_listener *listener;
	struct exp_queue *queue;
	struct exp_resource *unknown; /* resource for SPANS before HELLO */
	struct exp_metrics *metrics;  /* NULL: metrics off; set by the caller after init */
	int epfd, sigfd;
	enum exp_ep_kind listener_tag, signal_tag;
	struct exp_conn *conns;
	size_t n_conns;
	bool stopping;
	bool accept_paused; /* out of fds: accept resumes at resume_at */
	struct timespec resume_at;
	size_t n_rings, n_paused;
	bool rings_behind; /* a ring read stopped at a full queue: look again soon (poll_rings) */
	uint32_t ring_poll_ms; /* the shortest TRACESHIM_FLUSH_MS a ring asked for */
	uint64_t next_ring_poll; /* CLOCK_MONOTONIC ns */
	struct sbuf status;
	uint8_t in[TS_FRAME_MAX];
	uint8_t out[TS_FRAME_MAX];
};

/* sigfd: a signalfd for the signals that stop the exporter. */
int exp_server_init(struct exp_server *s, const struct exp_config *cfg, struct exp_listener *l,
		    struct exp_queue *q, int sigfd, char *err, size_t errcap);

/* Serves until a signal arrives, then stops accepting (the socket file is
 * removed), reads every frame already sent on every connection, and closes
 * them. The queue is left to the caller to flush. */
void exp_server_run(struct exp_server *s);

void exp_server_destroy(struct exp_server *s);

#endif
