/*
 * microTVM-compatible framing: escapes, packet start, uint32 LE length, payload,
 * CRC-16/CCITT-FALSE over the escaped wire bytes. See docs/rpc-protocol.md, "Framing".
 */
#ifndef MTP_FRAMING_H_
#define MTP_FRAMING_H_

#include <stddef.h>
#include <stdint.h>

#include "mtp_crc.h"
#include "mtp_rpc.h"

#define MTP_ESCAPE 0xFFu
#define MTP_ESCAPE_NOP 0xFEu
#define MTP_ESCAPE_START 0xFDu


/* Receiving: push wire bytes one at a time; a complete packet with a good CRC is left in buf. */
typedef struct {
  uint8_t *buf;        /* caller-owned payload buffer */
  uint32_t cap;        /* its size: longer packets are dropped */
  uint32_t length;     /* payload length from the header */
  uint32_t count;      /* bytes of the current field received so far */
  uint16_t crc;        /* running CRC of the wire bytes */
  uint16_t wire_crc;   /* CRC field as received */
  uint8_t state;
  uint8_t escape;      /* the previous byte was an unpaired 0xFF */
  /* Why packets were lost, for debugging. */
  uint16_t bad_crc, bad_escape, too_long, aborted;
} mtp_unframer_t;

void mtp_unframer_init(mtp_unframer_t *u, uint8_t *buf, uint32_t cap);

/* Returns 1 when `byte` completes a packet with a good CRC (u->length bytes in u->buf), else 0. */
int mtp_unframer_push(mtp_unframer_t *u, uint8_t byte);

/* The same over many bytes, copying and checksumming runs inside a payload in bulk: consumes
 * bytes until one completes a good packet (then *packet_done = 1) or all are used; returns how
 * many it consumed. */
size_t mtp_unframer_feed(mtp_unframer_t *u, const uint8_t *data, size_t len, int *packet_done);

/* Sending: begin(len), put() exactly len payload bytes in any pieces, end(). Bytes go out through
 * mtp_platform_write in MTP_WRITE_CHUNK pieces. */
typedef struct {
  uint16_t crc;
  size_t used;
  uint8_t out[MTP_WRITE_CHUNK];
} mtp_framer_t;

void mtp_framer_begin(mtp_framer_t *f, uint32_t payload_len);
void mtp_framer_put(mtp_framer_t *f, const uint8_t *data, size_t len);
void mtp_framer_end(mtp_framer_t *f);

/* The next packet starts with a lone 0xFE (as after a device reset), which ends any escape
 * the receiver might be stuck in. */
void mtp_framer_reset(void);

#endif /* MTP_FRAMING_H_ */
