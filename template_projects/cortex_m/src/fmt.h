/*
 * A tiny output formatter on the UART: strings and hexadecimal only, so no printf and no
 * 64-bit division is ever linked (standalone images stay a few kilobytes).
 */
#ifndef CORTEX_M_FMT_H_
#define CORTEX_M_FMT_H_

#include <stddef.h>
#include <stdint.h>

void fmt_str(const char *text);
/* `value` in lowercase hex without leading zeros ("0" for zero). */
void fmt_hex(uint32_t value);
void fmt_hex64(uint64_t value);
/* Each byte as two lowercase hex digits, in memory order. */
void fmt_bytes(const uint8_t *data, size_t len);

#endif /* CORTEX_M_FMT_H_ */
