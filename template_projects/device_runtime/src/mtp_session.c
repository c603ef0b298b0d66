#include "mtp_session.h"

#include "mtp_framing.h"

uint8_t mtp_session_next_nonce(uint8_t nonce) {
  uint8_t next = (uint8_t)((uint8_t)((nonce << 5) | (nonce >> 5)) + 1u);
  return next ? next : 1u;
}

void mtp_session_init(mtp_session_t *s, uint8_t nonce_seed) {
  s->session_id = 0;
  s->nonce = nonce_seed;
  s->established = 0;
}

void mtp_session_send(const mtp_session_t *s, uint8_t type, const uint8_t *head, size_t head_len,
                      const uint8_t *tail, size_t tail_len) {
  mtp_framer_t framer;
  uint8_t header[MTP_SESSION_HEADER_SIZE];
  header[0] = (uint8_t)(s->session_id & 0xFFu);
  header[1] = (uint8_t)(s->session_id >> 8);
  header[2] = type;
  mtp_framer_begin(&framer, (uint32_t)(MTP_SESSION_HEADER_SIZE + head_len + tail_len));
  mtp_framer_put(&framer, header, sizeof(header));
  if (head_len) mtp_framer_put(&framer, head, head_len);
  if (tail_len) mtp_framer_put(&framer, tail, tail_len);
  mtp_framer_end(&framer);
}

int mtp_session_receive(mtp_session_t *s, const uint8_t *packet, uint32_t len) {
  uint16_t id;
  uint8_t version = MTP_SESSION_VERSION;
  int started = MTP_SESSION_NOTHING;
  if (len < MTP_SESSION_HEADER_SIZE) return MTP_SESSION_NOTHING;
  id = (uint16_t)(packet[0] | ((uint16_t)packet[1] << 8));
  switch (packet[2]) {
    case MTP_MSG_START_INIT:
      /* A repeated request for the session we already started (the host resent it because our
       * reply was lost) gets the same answer; any other starts a new session. */
      if (!s->established || (uint8_t)(id & 0xFFu) != (uint8_t)(s->session_id & 0xFFu)) {
        s->nonce = mtp_session_next_nonce(s->nonce);
        s->session_id = (uint16_t)((id & 0xFFu) | ((unsigned)s->nonce << 8));
        s->established = 1;
        started = MTP_SESSION_STARTED;
      }
      /* We speak version 1 only; the host sees our version in the reply and gives up if it
       * differs from what it asked for. */
      mtp_session_send(s, MTP_MSG_START_REPLY, &version, 1, NULL, 0);
      return started;
    case MTP_MSG_TERMINATE:
      if (s->established && id == s->session_id) s->established = 0;
      return MTP_SESSION_NOTHING;
    case MTP_MSG_NORMAL:
      return (s->established && id == s->session_id) ? MTP_SESSION_MESSAGE : MTP_SESSION_NOTHING;
    default: /* logs from the host, stray replies, unknown types */
      return MTP_SESSION_NOTHING;
  }
}
