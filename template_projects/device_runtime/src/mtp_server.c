/*
 * The command server: verifies and de-duplicates requests, runs them on mtp_model, and answers.
 * Every reply is built in one buffer and kept there: a request that arrives again with the same
 * sequence number (the host resent it because a frame was lost) gets the kept reply again
 * instead of being executed twice. See docs/rpc-protocol.md.
 */
#include <string.h>

#include "mtp_commands.h"
#include "mtp_framing.h"
#include "mtp_model.h"
#include "mtp_platform.h"
#include "mtp_rpc.h"
#include "mtp_session.h"

#if MTP_MAX_PACKET < 64
#error "MTP_MAX_PACKET must be at least 64 bytes"
#endif

#define MAX_BODY (MTP_MAX_PACKET - MTP_SESSION_HEADER_SIZE)

static uint8_t rx_packet[MTP_MAX_PACKET];
static uint8_t reply[MAX_BODY];
static uint32_t reply_len;
static uint8_t reply_kept;     /* reply[] answers the request (reply_cmd, reply_seq) */
static uint8_t reply_cmd;
static uint16_t reply_seq;
static uint32_t max_body = MAX_BODY; /* lowered by the host's limit in INFO */
static mtp_unframer_t unframer;
static mtp_session_t session;

static uint16_t get_u16(const uint8_t *p) { return (uint16_t)(p[0] | ((uint16_t)p[1] << 8)); }

static uint32_t get_u32(const uint8_t *p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static uint8_t *put_u16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)(v & 0xFFu);
  p[1] = (uint8_t)(v >> 8);
  return p + 2;
}

static uint8_t *put_u32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v & 0xFFu);
  p[1] = (uint8_t)((v >> 8) & 0xFFu);
  p[2] = (uint8_t)((v >> 16) & 0xFFu);
  p[3] = (uint8_t)(v >> 24);
  return p + 4;
}

/* Room for reply data after the header and before the check. */
static uint32_t data_room(void) { return max_body - MTP_REPLY_HEADER_SIZE - MTP_CHECK_SIZE; }

/* Copies a name, cut to what fits (and to 255 bytes), after its length byte. */
static uint8_t *put_name(uint8_t *p, const char *name, uint32_t room) {
  size_t len = name ? strlen(name) : 0;
  if (len > 255u) len = 255u;
  if (room < 1u) return p;
  if (len > room - 1u) len = room - 1u;
  *p++ = (uint8_t)len;
  if (len) memcpy(p, name, len);
  return p + len;
}

static uint8_t capabilities(void) {
#ifdef TVMGEN_PROFILE
  return mtp_model_profile.num_calls ? MTP_CAP_PROFILE : 0u;
#else
  return 0u;
#endif
}

static uint8_t do_info(const uint8_t *args, uint32_t argn, uint8_t **out) {
  uint8_t *p = *out;
  uint32_t host_limit;
  if (argn < 4u) return MTP_STATUS_BAD_REQUEST;
  host_limit = get_u32(args);
  if (host_limit != 0u && host_limit < 64u) return MTP_STATUS_BAD_REQUEST;
  max_body = MAX_BODY;
  if (host_limit != 0u && host_limit - MTP_SESSION_HEADER_SIZE < max_body) {
    max_body = host_limit - MTP_SESSION_HEADER_SIZE;
  }
  *p++ = MTP_COMMAND_VERSION;
  *p++ = MTP_RUNTIME_VERSION_MAJOR;
  *p++ = MTP_RUNTIME_VERSION_MINOR;
  *p++ = MTP_RUNTIME_VERSION_PATCH;
  p = put_u32(p, (uint32_t)MTP_MAX_PACKET);
  p = put_u32(p, mtp_platform_timer_hz());
  *p++ = (uint8_t)(mtp_platform_timer_is_cycles() ? 1u : 0u);
  p = put_u16(p, mtp_model.num_inputs);
  p = put_u16(p, mtp_model.num_outputs);
  p = put_u32(p, mtp_model.workspace_size_bytes);
  p = put_name(p, mtp_model.name, data_room() - 1u - (uint32_t)(p - *out));
  *p++ = capabilities();
  *out = p;
  return MTP_STATUS_OK;
}

static const mtp_tensor_t *find_tensor(uint8_t kind, uint16_t index) {
  if (kind == 0u && index < mtp_model.num_inputs) return &mtp_model.inputs[index];
  if (kind == 1u && index < mtp_model.num_outputs) return &mtp_model.outputs[index];
  return NULL;
}

static uint8_t do_tensor_info(const uint8_t *args, uint32_t argn, uint8_t **out) {
  const mtp_tensor_t *t;
  uint8_t *p = *out;
  uint8_t i;
  if (argn < 3u) return MTP_STATUS_BAD_REQUEST;
  t = find_tensor(args[0], get_u16(args + 1));
  if (!t) return MTP_STATUS_BAD_INDEX;
  if (8u + 4u * (uint32_t)t->ndim > data_room()) return MTP_STATUS_TOO_LARGE;
  *p++ = t->dtype_code;
  *p++ = t->dtype_bits;
  *p++ = t->ndim;
  p = put_u32(p, t->size_bytes);
  for (i = 0; i < t->ndim; ++i) p = put_u32(p, (uint32_t)t->shape[i]);
  *out = put_name(p, t->name, data_room() - (uint32_t)(p - *out));
  return MTP_STATUS_OK;
}

/* True when [offset, offset + len) lies inside a tensor of `size` bytes (no overflow). */
static int in_range(uint32_t offset, uint32_t len, uint32_t size) {
  return offset <= size && len <= size - offset;
}

static uint8_t do_write_input(const uint8_t *args, uint32_t argn) {
  const mtp_tensor_t *t;
  uint32_t offset;
  if (argn < 6u) return MTP_STATUS_BAD_REQUEST;
  t = find_tensor(0u, get_u16(args));
  if (!t) return MTP_STATUS_BAD_INDEX;
  offset = get_u32(args + 2);
  if (!in_range(offset, argn - 6u, t->size_bytes)) return MTP_STATUS_BAD_RANGE;
  if (argn > 6u) memcpy(t->data + offset, args + 6, argn - 6u);
  return MTP_STATUS_OK;
}

static uint8_t model_failed(int32_t code, uint8_t **out) {
  *out = put_u32(*out, (uint32_t)code);
  return MTP_STATUS_MODEL_FAILED;
}

static uint8_t do_run(uint8_t **out) {
  int32_t code = mtp_model.run();
  return code == 0 ? MTP_STATUS_OK : model_failed(code, out);
}

static uint8_t do_reset_state(void) {
  if (mtp_model.reset) mtp_model.reset();
  return MTP_STATUS_OK;
}

static uint8_t do_read_output(const uint8_t *args, uint32_t argn, uint8_t **out) {
  const mtp_tensor_t *t;
  uint32_t offset, len;
  if (argn < 10u) return MTP_STATUS_BAD_REQUEST;
  t = find_tensor(1u, get_u16(args));
  if (!t) return MTP_STATUS_BAD_INDEX;
  offset = get_u32(args + 2);
  len = get_u32(args + 6);
  if (!in_range(offset, len, t->size_bytes)) return MTP_STATUS_BAD_RANGE;
  if (len > data_room()) return MTP_STATUS_TOO_LARGE;
  if (len) memcpy(*out, t->data + offset, len);
  *out += len;
  return MTP_STATUS_OK;
}

static uint8_t do_time_runs(const uint8_t *args, uint32_t argn, uint8_t **out) {
  uint32_t number, i;
  uint64_t start, ticks;
  if (argn < 4u) return MTP_STATUS_BAD_REQUEST;
  number = get_u32(args);
  if (number == 0u) return MTP_STATUS_BAD_REQUEST;
  start = mtp_platform_timer_ticks();
  for (i = 0; i < number; ++i) {
    int32_t code = mtp_model.run();
    if (code != 0) return model_failed(code, out);
  }
  ticks = mtp_platform_timer_ticks() - start;
  *out = put_u32(*out, (uint32_t)(ticks & 0xFFFFFFFFu));
  *out = put_u32(*out, (uint32_t)(ticks >> 32));
  *out = put_u32(*out, mtp_platform_timer_hz());
  *(*out)++ = (uint8_t)(mtp_platform_timer_is_cycles() ? 1u : 0u);
  return MTP_STATUS_OK;
}

#ifdef TVMGEN_PROFILE
/* The generated runtime's timer (tvmgen_<mod>.h): the platform's. */
uint64_t tvmgen_profile_ticks(void) { return mtp_platform_timer_ticks(); }

static uint64_t profile_total;  /* ticks of the last PROFILE_RUNS' runs, kernels and all */
static uint32_t profile_runs;

/* PROFILE_RUNS number:u32 first:u16. number > 0 zeroes the kernels' tick table and runs the model
 * number times between two timer reads, as TIME_RUNS; number 0 only reads. The reply carries the
 * totals and as many table entries from `first` on as fit the packet; the host asks for the rest
 * with number 0. */
static uint8_t do_profile_runs(const uint8_t *args, uint32_t argn, uint8_t **out) {
  uint32_t number, i, fit;
  uint16_t first, count;
  uint64_t start;
  const uint16_t calls = mtp_model_profile.num_calls;
  if (argn < 6u) return MTP_STATUS_BAD_REQUEST;
  if (calls == 0u) return MTP_STATUS_UNKNOWN_COMMAND;
  number = get_u32(args);
  first = get_u16(args + 4);
  if (first > calls) return MTP_STATUS_BAD_RANGE;
  if (number > 0u) {
    for (i = 0; i < calls; ++i) mtp_model_profile.call_ticks[i] = 0u;
    start = mtp_platform_timer_ticks();
    for (i = 0; i < number; ++i) {
      int32_t code = mtp_model.run();
      if (code != 0) return model_failed(code, out);
    }
    profile_total = mtp_platform_timer_ticks() - start;
    profile_runs = number;
  }
  fit = (data_room() - 23u) / 8u; /* after the 23 bytes of totals */
  count = (uint16_t)((uint32_t)(calls - first) < fit ? (uint32_t)(calls - first) : fit);
  *out = put_u32(*out, (uint32_t)(profile_total & 0xFFFFFFFFu));
  *out = put_u32(*out, (uint32_t)(profile_total >> 32));
  *out = put_u32(*out, mtp_platform_timer_hz());
  *(*out)++ = (uint8_t)(mtp_platform_timer_is_cycles() ? 1u : 0u);
  *out = put_u32(*out, profile_runs);
  *out = put_u16(*out, calls);
  *out = put_u16(*out, first);
  *out = put_u16(*out, count);
  for (i = 0; i < count; ++i) {
    uint64_t ticks = mtp_model_profile.call_ticks[first + i];
    *out = put_u32(*out, (uint32_t)(ticks & 0xFFFFFFFFu));
    *out = put_u32(*out, (uint32_t)(ticks >> 32));
  }
  return MTP_STATUS_OK;
}
#endif

static void send_reply(void) {
  mtp_session_send(&session, MTP_MSG_NORMAL, reply, reply_len, NULL, 0);
}

static void handle_request(const uint8_t *body, uint32_t len) {
  const uint8_t *args = body + MTP_REQUEST_HEADER_SIZE;
  uint32_t argn;
  uint8_t *out = reply + MTP_REPLY_HEADER_SIZE;
  uint8_t cmd, status;
  uint16_t seq;
  if (len < MTP_REQUEST_HEADER_SIZE + MTP_CHECK_SIZE) return;
  argn = len - MTP_REQUEST_HEADER_SIZE - MTP_CHECK_SIZE;
  /* A request that passed the frame CRC but fails its own check is dropped like a bad frame:
   * the host resends it. */
  if (mtp_crc32(body, len - MTP_CHECK_SIZE) != get_u32(body + len - MTP_CHECK_SIZE)) return;
  cmd = body[1];
  seq = get_u16(body + 2);
  if (reply_kept && seq == reply_seq && cmd == reply_cmd) {
    send_reply();
    return;
  }
  reply_kept = 0;
  if (body[0] != MTP_COMMAND_VERSION) {
    status = MTP_STATUS_BAD_VERSION;
  } else {
    switch (cmd) {
      case MTP_CMD_PING: status = MTP_STATUS_OK; break;
      case MTP_CMD_INFO: status = do_info(args, argn, &out); break;
      case MTP_CMD_TENSOR_INFO: status = do_tensor_info(args, argn, &out); break;
      case MTP_CMD_WRITE_INPUT: status = do_write_input(args, argn); break;
      case MTP_CMD_RUN: status = do_run(&out); break;
      case MTP_CMD_READ_OUTPUT: status = do_read_output(args, argn, &out); break;
      case MTP_CMD_TIME_RUNS: status = do_time_runs(args, argn, &out); break;
#ifdef TVMGEN_PROFILE
      case MTP_CMD_PROFILE_RUNS: status = do_profile_runs(args, argn, &out); break;
#endif
      case MTP_CMD_RESET_STATE: status = do_reset_state(); break;
      default: status = MTP_STATUS_UNKNOWN_COMMAND; break;
    }
  }
  if (status != MTP_STATUS_OK && status != MTP_STATUS_MODEL_FAILED) out = reply + MTP_REPLY_HEADER_SIZE;
  reply[0] = MTP_COMMAND_VERSION;
  reply[1] = (uint8_t)(cmd | MTP_REPLY_FLAG);
  put_u16(reply + 2, seq);
  reply[4] = status;
  reply_len = (uint32_t)(out - reply);
  put_u32(out, mtp_crc32(reply, reply_len));
  reply_len += MTP_CHECK_SIZE;
  reply_cmd = cmd;
  reply_seq = seq;
  reply_kept = 1;
  send_reply();
}

void mtp_server_reset(uint8_t nonce_seed) {
  mtp_unframer_init(&unframer, rx_packet, sizeof(rx_packet));
  mtp_session_init(&session, nonce_seed);
  mtp_framer_reset();
  reply_kept = 0;
  reply_len = 0;
  max_body = MAX_BODY;
}

void mtp_server_feed(const uint8_t *data, size_t len) {
  while (len) {
    int packet_done;
    size_t used = mtp_unframer_feed(&unframer, data, len, &packet_done);
    data += used;
    len -= used;
    if (!packet_done) continue;
    switch (mtp_session_receive(&session, rx_packet, unframer.length)) {
      case MTP_SESSION_STARTED:
        reply_kept = 0; /* sequence numbers start afresh with the session */
        max_body = MAX_BODY;
        break;
      case MTP_SESSION_MESSAGE:
        handle_request(rx_packet + MTP_SESSION_HEADER_SIZE, unframer.length - MTP_SESSION_HEADER_SIZE);
        break;
      default:
        break;
    }
  }
}

void mtp_rpc_server_run(void) {
  uint8_t chunk[MTP_READ_CHUNK];
  mtp_server_reset((uint8_t)(mtp_platform_timer_ticks() & 0xFFu));
  for (;;) {
    int n = mtp_platform_read(chunk, sizeof(chunk));
    if (n < 0) return;
    if (n > 0) mtp_server_feed(chunk, (size_t)n);
  }
}

void mtp_log(const char *message) {
  size_t len = message ? strlen(message) : 0;
  if (len > max_body) len = max_body;
  mtp_session_send(&session, MTP_MSG_LOG, (const uint8_t *)message, len, NULL, 0);
}
