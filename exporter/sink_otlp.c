/* sink_otlp.c — the otlp sink: encodes each batch as an OTLP protobuf
 * ExportTraceServiceRequest (pb.c) and hands it to the delivery thread
 * (delivery.c), which sends, retries, backs off and spools it. So deliver()
 * costs an encoding and never waits on the network. */
#include <stdio.h>
#include <stdlib.h>

#include "delivery.h"
#include "log.h"
#include "pb.h"
#include "sink.h"

struct otlp_sink {
	struct exp_sink base;
	struct exp_delivery *delivery;
	struct sbuf body;
};

static struct exp_deliver_result otlp_deliver(struct exp_sink *s, const struct exp_batch *b)
{
	struct otlp_sink *o = (struct otlp_sink *)s;
	struct exp_deliver_result r = {.kind = EXP_DELIVER_PERMANENT};
	sbuf_reset(&o->body);
	if (!exp_pb_encode(&o->body, b)) {
		snprintf(r.reason, sizeof r.reason, "out of memory encoding protobuf");
		snprintf(r.error, sizeof r.error, "out of memory encoding protobuf");
		return r;
	}
	if (!exp_delivery_push(o->delivery, &o->body, (uint32_t)b->n)) {
		snprintf(r.reason, sizeof r.reason, "out of memory");
		snprintf(r.error, sizeof r.error, "out of memory queueing a batch for delivery");
		return r;
	}
	r.kind = EXP_DELIVER_OK;
	return r;
}

static void otlp_begin_close(struct exp_sink *s, uint32_t budget_ms)
{
	exp_delivery_begin_close(((struct otlp_sink *)s)->delivery, budget_ms);
}

static void otlp_end_input(struct exp_sink *s) { exp_delivery_finish(((struct otlp_sink *)s)->delivery); }

static void otlp_destroy(struct exp_sink *s)
{
	struct otlp_sink *o = (struct otlp_sink *)s;
	exp_delivery_free(o->delivery);
	sbuf_free(&o->body);
	free(o);
}

struct exp_sink *exp_otlp_sink_open(const struct exp_config *c, char *err, size_t errcap)
{
	struct otlp_sink *o = calloc(1, sizeof *o);
	if (!o) {
		snprintf(err, errcap, "out of memory");
		return NULL;
	}
	o->base = (struct exp_sink){.name = "otlp", .deliver = otlp_deliver, .begin_close = otlp_begin_close,
				    .end_input = otlp_end_input, .destroy = otlp_destroy, .async = true};
	sbuf_init(&o->body);
	if (!(o->delivery = exp_delivery_open(c, err, errcap))) {
		free(o);
		return NULL;
	}
	return &o->base;
}
