/* utf8.h — UTF-8 validation shared by the JSON and protobuf encoders. Span
 * text comes from arbitrary program traffic; OTLP string fields must be
 * valid UTF-8 (a collector rejects the whole request otherwise). */
#ifndef TRACESHIM_EXP_UTF8_H
#define TRACESHIM_EXP_UTF8_H

#include <stddef.h>
#include <stdint.h>

#define EXP_UTF8_BAD 0xFFFFFFFFu

/* Decodes one code point at p (n > 0). Returns the bytes consumed (>= 1) and
 * sets *cp, or EXP_UTF8_BAD for an ill-formed sequence; the bytes consumed
 * then are its "maximal subpart" (Unicode 3.9, U+FFFD substitution), so one
 * bad sequence yields exactly one U+FFFD, as in browsers and Python. */
size_t exp_utf8_next(const uint8_t *p, size_t n, uint32_t *cp);

#endif
