/*
 * libFuzzer harness for the device runtime's receive path: unframer, session and command server
 * (built and run by tests/test_rpc_fuzz.py with clang -fsanitize=fuzzer,address,undefined).
 *
 * The first input byte picks how the rest is used:
 *   even: raw wire bytes, fed in pieces whose sizes come from the input (framing + session);
 *   odd:  a list of [length][bytes] command messages, which the harness wraps in a valid session
 *         and valid frames with valid checks, so the fuzzer reaches the command layer itself.
 * Every byte the device sends must parse back into whole packets with good CRCs; anything else
 * aborts (a finding).
 */
#include <stdlib.h>
#include <string.h>

#include "mtp_commands.h"
#include "mtp_framing.h"
#include "mtp_model.h"
#include "mtp_platform.h"
#include "mtp_session.h"

extern unsigned fuzz_model_runs; /* fuzz_model.c */

static uint8_t reply_buf[MTP_MAX_PACKET];
static mtp_unframer_t reply_check;

void mtp_platform_write(const uint8_t *data, size_t len) {
  size_t i;
  for (i = 0; i < len; ++i) mtp_unframer_push(&reply_check, data[i]);
  if (reply_check.bad_crc || reply_check.bad_escape || reply_check.too_long || reply_check.aborted) abort();
}
int mtp_platform_read(uint8_t *buf, size_t cap) { (void)buf; (void)cap; return -1; }
uint64_t mtp_platform_timer_ticks(void) { return 0; }
uint32_t mtp_platform_timer_hz(void) { return 1000u; }
int mtp_platform_timer_is_cycles(void) { return 1; }

/* Host-side framing of one packet, fed straight to the server. */
static uint8_t wire[2 * MTP_MAX_PACKET + 16];

static size_t put(size_t n, uint8_t byte, uint16_t *crc) {
  if (byte == MTP_ESCAPE) {
    if (crc) *crc = mtp_crc16_update(*crc, byte);
    wire[n++] = byte;
  }
  if (crc) *crc = mtp_crc16_update(*crc, byte);
  wire[n++] = byte;
  return n;
}

static void send_packet(const uint8_t *payload, size_t len) {
  uint16_t crc = 0xFFFFu;
  size_t n = 0, i;
  wire[n++] = MTP_ESCAPE;
  crc = mtp_crc16_update(crc, MTP_ESCAPE);
  wire[n++] = MTP_ESCAPE_START;
  crc = mtp_crc16_update(crc, MTP_ESCAPE_START);
  for (i = 0; i < 4; ++i) n = put(n, (uint8_t)(len >> (8 * i)), &crc);
  for (i = 0; i < len; ++i) n = put(n, payload[i], &crc);
  n = put(n, (uint8_t)(crc & 0xFFu), NULL);
  n = put(n, (uint8_t)(crc >> 8), NULL);
  mtp_server_feed(wire, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static uint8_t packet[MTP_MAX_PACKET];
  size_t pos = 1;
  if (size < 1) return 0;
  mtp_unframer_init(&reply_check, reply_buf, sizeof(reply_buf));
  mtp_server_reset(0xA3); /* the device nonce becomes 0x66 */
  fuzz_model_runs = 0;
  if ((data[0] & 1u) == 0) {
    while (pos < size) {
      size_t piece = (size_t)(data[pos] % 17u) + 1u;
      ++pos;
      if (piece > size - pos) piece = size - pos;
      mtp_server_feed(data + pos, piece);
      pos += piece;
    }
    return 0;
  }
  {
    const uint8_t init[4] = {0x82, 0x00, MTP_MSG_START_INIT, MTP_SESSION_VERSION};
    send_packet(init, sizeof(init));
  }
  while (pos < size) {
    size_t len = data[pos++];
    uint32_t check;
    if (len > size - pos) len = size - pos;
    if (len + 3u + 4u > sizeof(packet)) len = sizeof(packet) - 7u;
    packet[0] = 0x82;
    packet[1] = 0x66;
    packet[2] = MTP_MSG_NORMAL;
    memcpy(packet + 3, data + pos, len);
    pos += len;
    check = mtp_crc32(packet + 3, len);
    packet[3 + len] = (uint8_t)check;
    packet[4 + len] = (uint8_t)(check >> 8);
    packet[5 + len] = (uint8_t)(check >> 16);
    packet[6 + len] = (uint8_t)(check >> 24);
    send_packet(packet, len + 7u);
  }
  return 0;
}
