/*
 * microTVM-compatible session layer: a 3-byte header (uint16 LE session id, uint8 type) on every
 * packet, a start-session handshake with nonces, and the log channel. See docs/rpc-protocol.md.
 */
#ifndef MTP_SESSION_H_
#define MTP_SESSION_H_

#include <stddef.h>
#include <stdint.h>

#define MTP_SESSION_HEADER_SIZE 3u
#define MTP_SESSION_VERSION 1u

enum {
  MTP_MSG_START_INIT = 0x00,
  MTP_MSG_START_REPLY = 0x01,
  MTP_MSG_TERMINATE = 0x02,
  MTP_MSG_LOG = 0x03,
  MTP_MSG_NORMAL = 0x10
};

typedef struct {
  uint16_t session_id;  /* initiator nonce | responder nonce << 8 */
  uint8_t nonce;        /* our (responder) nonce, advanced for every new session */
  uint8_t established;
} mtp_session_t;

/* What a received packet meant for the layer above. */
enum { MTP_SESSION_NOTHING = 0, MTP_SESSION_STARTED = 1, MTP_SESSION_MESSAGE = 2 };

uint8_t mtp_session_next_nonce(uint8_t nonce);

void mtp_session_init(mtp_session_t *s, uint8_t nonce_seed);

/* Handles one unframed packet: answers a start-session request itself (MTP_SESSION_STARTED when
 * it began a new session), or returns MTP_SESSION_MESSAGE for a normal message of the current
 * session (its body follows the header: packet + MTP_SESSION_HEADER_SIZE). */
int mtp_session_receive(mtp_session_t *s, const uint8_t *packet, uint32_t len);

/* Sends one packet of `type` whose body is `head` followed by `tail` (either may be empty). */
void mtp_session_send(const mtp_session_t *s, uint8_t type, const uint8_t *head, size_t head_len,
                      const uint8_t *tail, size_t tail_len);

#endif /* MTP_SESSION_H_ */
