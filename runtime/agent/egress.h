/* The egress side of airlock-agent (egress.c): the proxy's listener inside, handed to the runtime; who owns a connection. */
#ifndef AIRLOCK_EGRESS_H
#define AIRLOCK_EGRESS_H
#include <stdint.h>
#include <sys/types.h>

/* Owner queries answered together, with one walk over /proc. */
#define OWNER_BATCH 256

/* Listens on 127.0.0.1:PORT and sends the listening socket to the runtime over IPC_FD
 * (Node's IPC framing); keeps no copy. 0, or -1 with errno set. */
int egress_handoff(int ipc_fd, int port);
/* For the N client ports PORTS (connections to 127.0.0.1:PROXY_PORT): OUT[i] = {pid,
 * the session's process number}, 0 where unknown. */
void egress_owners(const uint16_t *ports, int n, int proxy_port, uint32_t (*out)[2]);
/* Defined by agent.c: the session's process number of the process PID, or 0. */
uint32_t agent_process_id(pid_t pid);
#endif
