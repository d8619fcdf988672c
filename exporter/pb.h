/* pb.h — OTLP protobuf encoding of a batch (ExportTraceServiceRequest), for
 * the OTLP/HTTP sink, through protobuf-c and the project's own .proto files
 * in proto/. String fields are made valid UTF-8 (a collector rejects a whole
 * request with one bad string): invalid sequences and NUL bytes, which
 * protobuf-c's C strings cannot carry, become U+FFFD. */
#ifndef TRACESHIM_EXP_PB_H
#define TRACESHIM_EXP_PB_H

#include <stdbool.h>

#include "batch.h"
#include "sbuf.h"

/* Appends the serialized request to out; false when out of memory. */
bool exp_pb_encode(struct sbuf *out, const struct exp_batch *b);

#endif
