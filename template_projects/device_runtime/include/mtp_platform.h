/*
 * What a template implements so the shared device runtime can run on its board.
 * Five functions: a byte link to the host and a monotonic timer. Nothing else is board-specific.
 */
#ifndef MTP_PLATFORM_H_
#define MTP_PLATFORM_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Write all `len` bytes to the host link; returns when they are queued or sent. */
void mtp_platform_write(const uint8_t *data, size_t len);

/* Read up to `cap` received bytes into `buf` without waiting for more than are available:
 * returns the count (> 0), 0 when none has arrived yet, or < 0 when the link is closed
 * (the host runtime's stdin reached EOF); mtp_rpc_server_run() then returns. */
int mtp_platform_read(uint8_t *buf, size_t cap);

/* A monotonic tick counter and its frequency, for on-device timing. */
uint64_t mtp_platform_timer_ticks(void);
uint32_t mtp_platform_timer_hz(void);

/* 1 when one tick is one CPU cycle (e.g. SysTick at the core clock), else 0. */
int mtp_platform_timer_is_cycles(void);

#ifdef __cplusplus
}
#endif

#endif /* MTP_PLATFORM_H_ */
