/*
 * Our command layer, carried in normal session messages (docs/rpc-protocol.md, "Commands").
 * Request: version, command, uint16 LE sequence number, arguments, CRC-32 (LE).
 * Reply:   version, command | 0x80, the request's sequence number, status, data, CRC-32 (LE).
 */
#ifndef MTP_COMMANDS_H_
#define MTP_COMMANDS_H_

#include <stddef.h>
#include <stdint.h>

#include "mtp_crc.h"

#define MTP_COMMAND_VERSION 1u
#define MTP_RUNTIME_VERSION_MAJOR 0u
#define MTP_RUNTIME_VERSION_MINOR 1u
#define MTP_RUNTIME_VERSION_PATCH 0u

#define MTP_REQUEST_HEADER_SIZE 4u
#define MTP_REPLY_HEADER_SIZE 5u
#define MTP_CHECK_SIZE 4u
#define MTP_REPLY_FLAG 0x80u

enum {
  MTP_CMD_PING = 0x00,
  MTP_CMD_INFO = 0x01,
  MTP_CMD_TENSOR_INFO = 0x02,
  MTP_CMD_WRITE_INPUT = 0x03,
  MTP_CMD_RUN = 0x04,
  MTP_CMD_READ_OUTPUT = 0x05,
  MTP_CMD_TIME_RUNS = 0x06,
  MTP_CMD_RESET_STATE = 0x07,
  MTP_CMD_PROFILE_RUNS = 0x10   /* profiling builds only (-DTVMGEN_PROFILE); see MTP_CAP_PROFILE */
};

/* Capability bits, the byte after the model name in the INFO reply (absent = 0 in older runtimes). */
#define MTP_CAP_PROFILE 0x01u

enum {
  MTP_STATUS_OK = 0,
  MTP_STATUS_BAD_REQUEST = 1,      /* arguments too short or malformed */
  MTP_STATUS_UNKNOWN_COMMAND = 2,
  MTP_STATUS_BAD_INDEX = 3,        /* no such input/output */
  MTP_STATUS_BAD_RANGE = 4,        /* offset/length outside the tensor */
  MTP_STATUS_MODEL_FAILED = 5,     /* data: int32 LE return code of the model */
  MTP_STATUS_BAD_VERSION = 6,      /* the request's command-layer version is not ours */
  MTP_STATUS_TOO_LARGE = 7         /* the reply would exceed the negotiated packet size */
};

/* Resets the server (framing, session, reply cache); the nonce seed makes tests reproducible. */
void mtp_server_reset(uint8_t nonce_seed);

/* Feeds received wire bytes to the server, which answers through mtp_platform_write. */
void mtp_server_feed(const uint8_t *data, size_t len);

#endif /* MTP_COMMANDS_H_ */
