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

/* CRC-32 as zlib's crc32 (reflected 0x04C11DB7). AVR keeps a 64-byte table (4 bits a step) to
 * spare its RAM; elsewhere a 1 KiB table in flash does a byte a step (twice as fast). */
#ifndef MTP_CRC32_SMALL_TABLE
#if defined(__AVR__)
#define MTP_CRC32_SMALL_TABLE 1
#else
#define MTP_CRC32_SMALL_TABLE 0
#endif
#endif

#if MTP_CRC32_SMALL_TABLE
static const uint32_t crc32_nibble_table[16] = {
    0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu, 0x76DC4190u, 0x6B6B51F4u,
    0x4DB26158u, 0x5005713Cu, 0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu,
    0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu};

uint32_t mtp_crc32(const uint8_t *data, size_t len) {
  uint32_t crc = 0xFFFFFFFFu;
  size_t i;
  for (i = 0; i < len; ++i) {
    crc ^= data[i];
    crc = (crc >> 4) ^ crc32_nibble_table[crc & 0x0Fu];
    crc = (crc >> 4) ^ crc32_nibble_table[crc & 0x0Fu];
  }
  return crc ^ 0xFFFFFFFFu;
}
#else
static const uint32_t crc32_table[256] = {
    0x00000000u, 0x77073096u, 0xEE0E612Cu, 0x990951BAu, 0x076DC419u, 0x706AF48Fu,
    0xE963A535u, 0x9E6495A3u, 0x0EDB8832u, 0x79DCB8A4u, 0xE0D5E91Eu, 0x97D2D988u,
    0x09B64C2Bu, 0x7EB17CBDu, 0xE7B82D07u, 0x90BF1D91u, 0x1DB71064u, 0x6AB020F2u,
    0xF3B97148u, 0x84BE41DEu, 0x1ADAD47Du, 0x6DDDE4EBu, 0xF4D4B551u, 0x83D385C7u,
    0x136C9856u, 0x646BA8C0u, 0xFD62F97Au, 0x8A65C9ECu, 0x14015C4Fu, 0x63066CD9u,
    0xFA0F3D63u, 0x8D080DF5u, 0x3B6E20C8u, 0x4C69105Eu, 0xD56041E4u, 0xA2677172u,
    0x3C03E4D1u, 0x4B04D447u, 0xD20D85FDu, 0xA50AB56Bu, 0x35B5A8FAu, 0x42B2986Cu,
    0xDBBBC9D6u, 0xACBCF940u, 0x32D86CE3u, 0x45DF5C75u, 0xDCD60DCFu, 0xABD13D59u,
    0x26D930ACu, 0x51DE003Au, 0xC8D75180u, 0xBFD06116u, 0x21B4F4B5u, 0x56B3C423u,
    0xCFBA9599u, 0xB8BDA50Fu, 0x2802B89Eu, 0x5F058808u, 0xC60CD9B2u, 0xB10BE924u,
    0x2F6F7C87u, 0x58684C11u, 0xC1611DABu, 0xB6662D3Du, 0x76DC4190u, 0x01DB7106u,
    0x98D220BCu, 0xEFD5102Au, 0x71B18589u, 0x06B6B51Fu, 0x9FBFE4A5u, 0xE8B8D433u,
    0x7807C9A2u, 0x0F00F934u, 0x9609A88Eu, 0xE10E9818u, 0x7F6A0DBBu, 0x086D3D2Du,
    0x91646C97u, 0xE6635C01u, 0x6B6B51F4u, 0x1C6C6162u, 0x856530D8u, 0xF262004Eu,
    0x6C0695EDu, 0x1B01A57Bu, 0x8208F4C1u, 0xF50FC457u, 0x65B0D9C6u, 0x12B7E950u,
    0x8BBEB8EAu, 0xFCB9887Cu, 0x62DD1DDFu, 0x15DA2D49u, 0x8CD37CF3u, 0xFBD44C65u,
    0x4DB26158u, 0x3AB551CEu, 0xA3BC0074u, 0xD4BB30E2u, 0x4ADFA541u, 0x3DD895D7u,
    0xA4D1C46Du, 0xD3D6F4FBu, 0x4369E96Au, 0x346ED9FCu, 0xAD678846u, 0xDA60B8D0u,
    0x44042D73u, 0x33031DE5u, 0xAA0A4C5Fu, 0xDD0D7CC9u, 0x5005713Cu, 0x270241AAu,
    0xBE0B1010u, 0xC90C2086u, 0x5768B525u, 0x206F85B3u, 0xB966D409u, 0xCE61E49Fu,
    0x5EDEF90Eu, 0x29D9C998u, 0xB0D09822u, 0xC7D7A8B4u, 0x59B33D17u, 0x2EB40D81u,
    0xB7BD5C3Bu, 0xC0BA6CADu, 0xEDB88320u, 0x9ABFB3B6u, 0x03B6E20Cu, 0x74B1D29Au,
    0xEAD54739u, 0x9DD277AFu, 0x04DB2615u, 0x73DC1683u, 0xE3630B12u, 0x94643B84u,
    0x0D6D6A3Eu, 0x7A6A5AA8u, 0xE40ECF0Bu, 0x9309FF9Du, 0x0A00AE27u, 0x7D079EB1u,
    0xF00F9344u, 0x8708A3D2u, 0x1E01F268u, 0x6906C2FEu, 0xF762575Du, 0x806567CBu,
    0x196C3671u, 0x6E6B06E7u, 0xFED41B76u, 0x89D32BE0u, 0x10DA7A5Au, 0x67DD4ACCu,
    0xF9B9DF6Fu, 0x8EBEEFF9u, 0x17B7BE43u, 0x60B08ED5u, 0xD6D6A3E8u, 0xA1D1937Eu,
    0x38D8C2C4u, 0x4FDFF252u, 0xD1BB67F1u, 0xA6BC5767u, 0x3FB506DDu, 0x48B2364Bu,
    0xD80D2BDAu, 0xAF0A1B4Cu, 0x36034AF6u, 0x41047A60u, 0xDF60EFC3u, 0xA867DF55u,
    0x316E8EEFu, 0x4669BE79u, 0xCB61B38Cu, 0xBC66831Au, 0x256FD2A0u, 0x5268E236u,
    0xCC0C7795u, 0xBB0B4703u, 0x220216B9u, 0x5505262Fu, 0xC5BA3BBEu, 0xB2BD0B28u,
    0x2BB45A92u, 0x5CB36A04u, 0xC2D7FFA7u, 0xB5D0CF31u, 0x2CD99E8Bu, 0x5BDEAE1Du,
    0x9B64C2B0u, 0xEC63F226u, 0x756AA39Cu, 0x026D930Au, 0x9C0906A9u, 0xEB0E363Fu,
    0x72076785u, 0x05005713u, 0x95BF4A82u, 0xE2B87A14u, 0x7BB12BAEu, 0x0CB61B38u,
    0x92D28E9Bu, 0xE5D5BE0Du, 0x7CDCEFB7u, 0x0BDBDF21u, 0x86D3D2D4u, 0xF1D4E242u,
    0x68DDB3F8u, 0x1FDA836Eu, 0x81BE16CDu, 0xF6B9265Bu, 0x6FB077E1u, 0x18B74777u,
    0x88085AE6u, 0xFF0F6A70u, 0x66063BCAu, 0x11010B5Cu, 0x8F659EFFu, 0xF862AE69u,
    0x616BFFD3u, 0x166CCF45u, 0xA00AE278u, 0xD70DD2EEu, 0x4E048354u, 0x3903B3C2u,
    0xA7672661u, 0xD06016F7u, 0x4969474Du, 0x3E6E77DBu, 0xAED16A4Au, 0xD9D65ADCu,
    0x40DF0B66u, 0x37D83BF0u, 0xA9BCAE53u, 0xDEBB9EC5u, 0x47B2CF7Fu, 0x30B5FFE9u,
    0xBDBDF21Cu, 0xCABAC28Au, 0x53B39330u, 0x24B4A3A6u, 0xBAD03605u, 0xCDD70693u,
    0x54DE5729u, 0x23D967BFu, 0xB3667A2Eu, 0xC4614AB8u, 0x5D681B02u, 0x2A6F2B94u,
    0xB40BBE37u, 0xC30C8EA1u, 0x5A05DF1Bu, 0x2D02EF8Du};

uint32_t mtp_crc32(const uint8_t *data, size_t len) {
  uint32_t crc = 0xFFFFFFFFu;
  size_t i;
  for (i = 0; i < len; ++i) crc = (crc >> 8) ^ crc32_table[(crc ^ data[i]) & 0xFFu];
  return crc ^ 0xFFFFFFFFu;
}
#endif

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
  *out = put_name(p, mtp_model.name, data_room() - (uint32_t)(p - *out));
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
  size_t i;
  for (i = 0; i < len; ++i) {
    if (!mtp_unframer_push(&unframer, data[i])) continue;
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
