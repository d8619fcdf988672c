/* pb.h — OTLP protobuf encoding of a batch (ExportTraceServiceRequest), for
 * the OTLP/HTTP sink: the wire format of the project's .proto files in proto/,
 * written directly from the queued span records (no protobuf-c message tree).
 * String fields are made valid UTF-8 (a collector rejects a whole request
 * with one bad string): invalid sequences become U+FFFD, and so do NUL bytes,
 * as they did when the encoder went through protobuf-c's C strings — the
 * bytes are what that encoder produced. */
#ifndef TRACESHIM_EXP_PB_H
#define TRACESHIM_EXP_PB_H

#include <stdbool.h>

#include "batch.h"
#include "sbuf.h"

/* Appends the serialized request to out; false when out of memory. */
bool exp_pb_encode(struct sbuf *out, const struct exp_batch *b);

#endif
