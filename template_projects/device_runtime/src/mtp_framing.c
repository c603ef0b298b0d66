#include "mtp_framing.h"

#include "mtp_platform.h"

enum { HUNT = 0, LENGTH = 1, PAYLOAD = 2, CRC = 3 };

/* CRC-16/CCITT-FALSE four bits at a time: a 32-byte table, small enough for AVR RAM. */
static const uint16_t crc16_nibble_table[16] = {
    0x0000u, 0x1021u, 0x2042u, 0x3063u, 0x4084u, 0x50A5u, 0x60C6u, 0x70E7u,
    0x8108u, 0x9129u, 0xA14Au, 0xB16Bu, 0xC18Cu, 0xD1ADu, 0xE1CEu, 0xF1EFu};

uint16_t mtp_crc16_update(uint16_t crc, uint8_t byte) {
  crc = (uint16_t)(((unsigned)crc << 4) ^ crc16_nibble_table[((crc >> 12) ^ (byte >> 4)) & 0x0Fu]);
  crc = (uint16_t)(((unsigned)crc << 4) ^ crc16_nibble_table[((crc >> 12) ^ byte) & 0x0Fu]);
  return crc;
}

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

void mtp_framer_put(mtp_framer_t *f, const uint8_t *data, size_t len) {
  size_t i = 0;
  while (i < len) {
    size_t run = i;
    /* A run without 0xFF needs no escaping: it goes to the link straight from `data`, in one
     * write, instead of byte by byte through the staging buffer. */
    while (run < len && data[run] != MTP_ESCAPE) {
      f->crc = mtp_crc16_update(f->crc, data[run]);
      ++run;
    }
    if (run - i >= sizeof(f->out)) {
      flush(f);
      mtp_platform_write(data + i, run - i);
    } else {
      for (; i < run; ++i) emit(f, data[i], 0);
    }
    i = run;
    if (i < len) emit_escaped(f, data[i++], 1);
  }
}

void mtp_framer_end(mtp_framer_t *f) {
  uint16_t crc = f->crc;
  emit_escaped(f, (uint8_t)(crc & 0xFFu), 0);
  emit_escaped(f, (uint8_t)(crc >> 8), 0);
  flush(f);
}
