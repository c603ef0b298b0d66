/* Host-driven firmware: the host sets inputs, runs the model and reads outputs over the UART. */
#include "board.h"
#include "mtp_rpc.h"

int main(void) {
  board_init();
  mtp_rpc_server_run(); /* returns only if the link closes, which a UART never reports */
  return 0;
}
