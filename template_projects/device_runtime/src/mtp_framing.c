#include "mtp_framing.h"

#include <string.h>

#include "mtp_platform.h"

enum { HUNT = 0, LENGTH = 1, PAYLOAD = 2, CRC = 3 };

void mtp_unframer_init(mtp_unframer_t *u, uint8_t *buf, uint32_t cap) {
  u->buf = buf;
  u->cap = cap;
  u->length = 0;
  u->count = 0;
  u->crc = 0;
  u->wire_crc = 0;
  u->state = HUNT;
  u->escape = 0;
  u->bad_crc = 0;
  u->bad_escape = 0;
  u->too_long = 0;
  u->aborted = 0;
}

static void start_packet(mtp_unframer_t *u) {
  u->state = LENGTH;
  u->length = 0;
  u->count = 0;
  u->crc = mtp_crc16_update(mtp_crc16_update(0xFFFFu, MTP_ESCAPE), MTP_ESCAPE_START);
}

int mtp_unframer_push(mtp_unframer_t *u, uint8_t byte) {
  uint8_t value = byte;
  if (u->escape) {
    u->escape = 0;
    if (byte == MTP_ESCAPE_START) {
      if (u->state != HUNT) ++u->aborted;
      start_packet(u);
      return 0;
    }
    if (byte == MTP_ESCAPE_NOP) {
      /* A no-op; inside the CRC-covered part its wire bytes still count, as in microTVM. */
      if (u->state == LENGTH || u->state == PAYLOAD) {
        u->crc = mtp_crc16_update(mtp_crc16_update(u->crc, MTP_ESCAPE), MTP_ESCAPE_NOP);
      }
      return 0;
    }
    if (byte != MTP_ESCAPE) {
      if (u->state != HUNT) ++u->bad_escape;
      u->state = HUNT;
      return 0;
    }
    /* 0xFF 0xFF: a literal 0xFF; the first 0xFF enters the CRC here, the second below. */
    if (u->state == LENGTH || u->state == PAYLOAD) u->crc = mtp_crc16_update(u->crc, MTP_ESCAPE);
  } else if (byte == MTP_ESCAPE) {
    u->escape = 1;
    return 0;
  }

  switch (u->state) {
    case LENGTH:
      u->crc = mtp_crc16_update(u->crc, byte);
      u->length |= (uint32_t)value << (8u * u->count);
      if (++u->count == 4u) {
        u->count = 0;
        if (u->length > u->cap) {
          ++u->too_long;
          u->state = HUNT;
        } else {
          u->state = u->length ? PAYLOAD : CRC;
        }
      }
      return 0;
    case PAYLOAD:
      u->crc = mtp_crc16_update(u->crc, byte);
      u->buf[u->count] = value;
      if (++u->count == u->length) {
        u->count = 0;
        u->state = CRC;
      }
      return 0;
    case CRC:
      if (u->count == 0) {
        u->wire_crc = value;
        u->count = 1;
        return 0;
      }
      u->wire_crc = (uint16_t)(u->wire_crc | ((uint16_t)value << 8));
      u->state = HUNT;
      u->count = 0;
      if (u->wire_crc == u->crc) return 1;
      ++u->bad_crc;
      return 0;
    default: /* HUNT: bytes between packets are ignored */
      return 0;
  }
}

size_t mtp_unframer_feed(mtp_unframer_t *u, const uint8_t *data, size_t len, int *packet_done) {
  size_t i = 0;
  *packet_done = 0;
  while (i < len) {
    /* Inside a payload or between packets, a run up to the next 0xFF needs no state machine:
     * copy it (and checksum it) in one go, or skip it. */
    if (!u->escape && (u->state == PAYLOAD || u->state == HUNT)) {
      size_t run = len - i;
      const uint8_t *escape;
      if (u->state == PAYLOAD && run > (size_t)(u->length - u->count)) run = (size_t)(u->length - u->count);
      escape = (const uint8_t *)memchr(data + i, MTP_ESCAPE, run);
      if (escape) run = (size_t)(escape - (data + i));
      if (run) {
        if (u->state == PAYLOAD) {
          memcpy(u->buf + u->count, data + i, run);
          u->crc = mtp_crc16(u->crc, data + i, run);
          u->count += (uint32_t)run;
          if (u->count == u->length) {
            u->count = 0;
            u->state = CRC;
          }
        }
        i += run;
        continue;
      }
    }
    if (mtp_unframer_push(u, data[i++])) {
      *packet_done = 1;
      break;
    }
  }
  return i;
}

static uint8_t reset_pending = 1;

void mtp_framer_reset(void) { reset_pending = 1; }

static void flush(mtp_framer_t *f) {
  if (f->used) {
    mtp_platform_write(f->out, f->used);
    f->used = 0;
  }
}

static void emit(mtp_framer_t *f, uint8_t byte, int in_crc) {
  if (in_crc) f->crc = mtp_crc16_update(f->crc, byte);
  f->out[f->used++] = byte;
  if (f->used == sizeof(f->out)) flush(f);
}

static void emit_escaped(mtp_framer_t *f, uint8_t byte, int in_crc) {
  if (byte == MTP_ESCAPE) emit(f, MTP_ESCAPE, in_crc);
  emit(f, byte, in_crc);
}

void mtp_framer_begin(mtp_framer_t *f, uint32_t payload_len) {
  uint8_t i;
  f->used = 0;
  f->crc = 0xFFFFu;
  if (reset_pending) {
    emit(f, MTP_ESCAPE_NOP, 0);
    reset_pending = 0;
  }
  emit(f, MTP_ESCAPE, 1);
  emit(f, MTP_ESCAPE_START, 1);
  for (i = 0; i < 4u; ++i) emit_escaped(f, (uint8_t)(payload_len >> (8u * i)), 1);
}

/* Stages bytes already counted in the CRC. */
static void stage(mtp_framer_t *f, const uint8_t *data, size_t len) {
  while (len) {
    size_t room = sizeof(f->out) - f->used;
    size_t take = len < room ? len : room;
    memcpy(f->out + f->used, data, take);
    f->used += take;
    data += take;
    len -= take;
    if (f->used == sizeof(f->out)) flush(f);
  }
}

void mtp_framer_put(mtp_framer_t *f, const uint8_t *data, size_t len) {
  while (len) {
    const uint8_t *escape = (const uint8_t *)memchr(data, MTP_ESCAPE, len);
    size_t run = escape ? (size_t)(escape - data) : len;
    f->crc = mtp_crc16(f->crc, data, run);
    /* A long run without 0xFF needs no escaping: it goes to the link straight from `data`, in
     * one write, instead of through the staging buffer. */
    if (run >= sizeof(f->out)) {
      flush(f);
      mtp_platform_write(data, run);
    } else {
      stage(f, data, run);
    }
    data += run;
    len -= run;
    if (len) {
      emit_escaped(f, *data, 1);
      ++data;
      --len;
    }
  }
}

void mtp_framer_end(mtp_framer_t *f) {
  uint16_t crc = f->crc;
  emit_escaped(f, (uint8_t)(crc & 0xFFu), 0);
  emit_escaped(f, (uint8_t)(crc >> 8), 0);
  flush(f);
}
