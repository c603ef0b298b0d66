/*
 * The golden vectors of docs/rpc-protocol.md (microTVM's framing and session) against the device
 * runtime's C code. Built and run by tests/test_device_runtime.py; prints one line per failure
 * and exits non-zero if any.
 */
#include <stdio.h>
#include <string.h>

#include "mtp_commands.h"
#include "mtp_framing.h"
#include "mtp_platform.h"
#include "mtp_session.h"

static uint8_t wire[256];
static size_t wire_len;
static int failures;

void mtp_platform_write(const uint8_t *data, size_t len) {
  if (wire_len + len <= sizeof(wire)) memcpy(wire + wire_len, data, len);
  wire_len += len;
}
int mtp_platform_read(uint8_t *buf, size_t cap) { (void)buf; (void)cap; return -1; }
uint64_t mtp_platform_timer_ticks(void) { return 0; }
uint32_t mtp_platform_timer_hz(void) { return 1; }
int mtp_platform_timer_is_cycles(void) { return 0; }

static void expect_wire(const char *what, const uint8_t *want, size_t want_len) {
  size_t i;
  if (wire_len == want_len && memcmp(wire, want, want_len) == 0) return;
  ++failures;
  printf("FAIL %s: got", what);
  for (i = 0; i < wire_len && i < sizeof(wire); ++i) printf(" %02X", wire[i]);
  printf("\n");
}

static void check_frame(const char *what, const uint8_t *payload, size_t len, const uint8_t *want,
                        size_t want_len) {
  mtp_framer_t framer;
  mtp_unframer_t unframer;
  uint8_t buf[64];
  size_t i;
  int done = 0;
  wire_len = 0;
  mtp_framer_begin(&framer, (uint32_t)len);
  mtp_framer_put(&framer, payload, len);
  mtp_framer_end(&framer);
  expect_wire(what, want, want_len);
  mtp_unframer_init(&unframer, buf, sizeof(buf));
  for (i = 0; i < want_len; ++i) {
    done = mtp_unframer_push(&unframer, want[i]);
    if (done && i != want_len - 1) break;
  }
  if (!done || unframer.length != len || memcmp(buf, payload, len) != 0) {
    ++failures;
    printf("FAIL unframe %s\n", what);
  }
}

int main(void) {
  static const uint8_t one_wire[] = {0xFF, 0xFD, 0x03, 0x00, 0x00, 0x00, 0x6F, 0x6E, 0x65, 0x58, 0xF4};
  static const uint8_t empty_wire[] = {0xFF, 0xFD, 0x00, 0x00, 0x00, 0x00, 0x83, 0x44};
  static const uint8_t esc_payload[] = "es_\xff_capeir/^>t@\"hr";
  static const uint8_t esc_wire[] = {0xFF, 0xFD, 0x13, 0x00, 0x00, 0x00, 0x65, 0x73, 0x5F, 0xFF, 0xFF,
                                     0x5F, 0x63, 0x61, 0x70, 0x65, 0x69, 0x72, 0x2F, 0x5E, 0x3E, 0x74,
                                     0x40, 0x22, 0x68, 0x72, 0xB4, 0xFF, 0xFF};
  static const uint8_t host_init[] = {0xFF, 0xFD, 0x04, 0x00, 0x00, 0x00, 0x82, 0x00, 0x00, 0x01, 0x7B, 0xE9};
  static const uint8_t device_reply[] = {0xFE, 0xFF, 0xFD, 0x04, 0x00, 0x00, 0x00,
                                         0x82, 0x66, 0x01, 0x01, 0x81, 0xF3};
  static const uint8_t hello_wire[] = {0xFF, 0xFD, 0x08, 0x00, 0x00, 0x00, 0x82, 0x66,
                                       0x10, 0x68, 0x65, 0x6C, 0x6C, 0x6F, 0x90, 0x28};
  static const uint8_t crc32_input[] = "123456789";
  mtp_session_t session;

  /* Framing: the lone 0xFE goes before the first packet after a reset, then never. */
  mtp_framer_reset();
  wire_len = 0;
  {
    mtp_framer_t framer;
    mtp_framer_begin(&framer, 0);
    mtp_framer_end(&framer);
    if (wire_len != 9 || wire[0] != 0xFE) { ++failures; printf("FAIL first packet lacks 0xFE\n"); }
  }
  check_frame("payload 'one'", (const uint8_t *)"one", 3, one_wire, sizeof(one_wire));
  check_frame("empty payload", (const uint8_t *)"", 0, empty_wire, sizeof(empty_wire));
  check_frame("escaped payload", esc_payload, sizeof(esc_payload) - 1, esc_wire, sizeof(esc_wire));

  /* Session: host nonce 0x82, device nonce 0x66 (seed 0xA3 advances to 0x66). */
  if (mtp_session_next_nonce(0x3C) != 0x82) { ++failures; printf("FAIL nonce update of 0x3C\n"); }
  mtp_server_reset(0xA3);
  wire_len = 0;
  mtp_server_feed(host_init, sizeof(host_init));
  expect_wire("start-session reply", device_reply, sizeof(device_reply));
  /* The host resends its request (our reply was lost): the same reply, the same session. */
  wire_len = 0;
  mtp_server_feed(host_init, sizeof(host_init));
  expect_wire("repeated start-session reply", device_reply + 1, sizeof(device_reply) - 1);

  session.session_id = 0x6682;
  session.established = 1;
  session.nonce = 0x66;
  wire_len = 0;
  mtp_session_send(&session, MTP_MSG_NORMAL, (const uint8_t *)"hello", 5, NULL, 0);
  expect_wire("normal message 'hello'", hello_wire, sizeof(hello_wire));

  if (mtp_crc32(crc32_input, 9) != 0xCBF43926u) { ++failures; printf("FAIL crc32 check value\n"); }

  if (failures == 0) printf("PASS\n");
  return failures ? 1 : 0;
}
