/* tern-e2e-peer: the E2E interop peer (docs/e2e.md); the work is in src/cli/peer.c. */
#include "cli/cli.h"

int main(int argc, char **argv) { return tern_cli_e2e_peer_main(argc, argv); }
