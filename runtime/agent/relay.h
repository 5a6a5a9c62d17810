/* The egress relay of airlock-agent (relay.c): loopback TCP inside, the runtime's proxy socket outside. */
#ifndef AIRLOCK_RELAY_H
#define AIRLOCK_RELAY_H
#include <poll.h>
#include <stdint.h>
#include <sys/types.h>

/* Connections relayed at once; each holds two fds and two buffers while it lives. */
#define MAX_RELAYS 1024

/* Listens on 127.0.0.1:PORT and relays to the unix socket at SOCKET_PATH. 0 or -1. */
int relay_init(const char *socket_path, int port);
/* Appends the relay's pollfds to FDS (room for 1 + 2 * MAX_RELAYS); returns how many. */
int relay_pollfds(struct pollfd *fds);
/* Handles the events of the N pollfds relay_pollfds appended. */
void relay_handle(const struct pollfd *fds, int n);
/* Connections accepted and waiting for the proxy to take them (poll again soon). */
int relay_waiting(void);
/* Defined by agent.c: the session's process number of the process PID, or 0. */
uint32_t agent_process_id(pid_t pid);
#endif
