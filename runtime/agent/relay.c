/*
 * The sandbox's only way out: airlock-agent listens on 127.0.0.1:PORT inside the
 * sandbox's own network namespace and relays every accepted connection to the
 * runtime's egress proxy over a unix socket the driver bound into the sandbox.
 *
 * Safety argument: the sandbox's network namespace has no interface but loopback, so
 * this relay adds no route: it only reaches the one unix socket of this sandbox, and
 * the proxy behind it decides every connection. Each sandbox has its own socket, so a
 * connection cannot claim another session. The 12-byte header written first
 * ("ALK1", u32 pid, u32 process number) is attribution within this session only: code
 * in the sandbox can connect to the socket itself and write any header, which is why
 * the runtime records it as reported, never as observed.
 *
 * Buffers are allocated per connection while it lives (an idle sandbox holds none),
 * in the agent's memory, which the session's limits cover. splice(2) through pipes
 * measured no faster here (the proxy, not the relay, bounds throughput) and its pipes
 * count against the host user's pipe-buffer quota, shared with their own programs.
 * At most MAX_RELAYS connections at once; more, or any while the proxy's own listen
 * queue is full, wait in this listener's queue (TCP's backpressure) rather than being
 * refused: a refusal here would be an attempt the proxy never saw, so never audited.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include "relay.h"

#define RELAY_BUF (64 * 1024)
/* Connections accepted, and attributed together, in one poll round at most. */
#define ACCEPT_BATCH 128
/* The kernel caps it at net.core.somaxconn (4096 by default): a deep queue is where a
 * burst waits while the proxy is busy; a full one resets connections (syncookies). */
#define LISTEN_BACKLOG 4096

struct relay {
  int c, u;            /* the sandboxed client (TCP) and the runtime's proxy (unix) */
  char *up, *down;     /* client -> proxy, proxy -> client */
  size_t uplen, upoff, dnlen, dnoff;
  int c_eof, u_eof;    /* that side will send no more */
};

static struct relay relays[MAX_RELAYS];
static int nrelays;
/* Relays whose client was accepted while the proxy's backlog was full: they wait,
 * unread, for a later connect (no new client is accepted meanwhile: the kernel's
 * listen queue holds them), so a burst is slowed down, never refused unrecorded. */
static int nwaiting;
static int listener = -1;
static struct sockaddr_un proxy_addr;
/* Which relay and side each pollfd appended by relay_pollfds belongs to. */
static int pmap[1 + 2 * MAX_RELAYS][2];

int relay_init(const char *socket_path, int port) {
  if (strlen(socket_path) >= sizeof proxy_addr.sun_path) return -1;
  proxy_addr.sun_family = AF_UNIX;
  strcpy(proxy_addr.sun_path, socket_path);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, LISTEN_BACKLOG) < 0) { close(fd); return -1; }
  listener = fd;
  return 0;
}

/* The inode of the client's socket, asked of the kernel by its exact addresses
 * (sock_diag): one netlink round trip instead of reading all of /proc/net/tcp. */
static unsigned long socket_inode(int c) {
  struct sockaddr_in peer, self;
  socklen_t pl = sizeof peer, sl = sizeof self;
  if (getpeername(c, (struct sockaddr *)&peer, &pl) < 0 || getsockname(c, (struct sockaddr *)&self, &sl) < 0) return 0;
  int nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (nl < 0) return 0;
  struct { struct nlmsghdr nh; struct inet_diag_req_v2 r; } req;
  memset(&req, 0, sizeof req);
  req.nh.nlmsg_len = sizeof req;
  req.nh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  req.nh.nlmsg_flags = NLM_F_REQUEST;
  req.r.sdiag_family = AF_INET;
  req.r.sdiag_protocol = IPPROTO_TCP;
  req.r.idiag_states = ~0U;
  /* The client's own socket: its source is the peer we accepted, its destination us. */
  req.r.id.idiag_sport = peer.sin_port;
  req.r.id.idiag_dport = self.sin_port;
  req.r.id.idiag_src[0] = peer.sin_addr.s_addr;
  req.r.id.idiag_dst[0] = self.sin_addr.s_addr;
  req.r.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
  req.r.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
  unsigned long inode = 0;
  char buf[1024];
  if (send(nl, &req, sizeof req, 0) == (ssize_t)sizeof req) {
    ssize_t n = recv(nl, buf, sizeof buf, 0);
    struct nlmsghdr *h = (struct nlmsghdr *)buf;
    if (n > 0 && NLMSG_OK(h, (size_t)n) && h->nlmsg_type == SOCK_DIAG_BY_FAMILY) {
      struct inet_diag_msg *m = NLMSG_DATA(h);
      inode = m->idiag_inode;
    }
  }
  close(nl);
  return inode;
}

/*
 * The pids inside the sandbox holding the sockets INODES[0..N) (the first found each),
 * into PIDS (0: not found). One walk over /proc/PID/fd for the whole batch: the walk
 * costs a readlink per open file in the sandbox, so a process holding a thousand
 * connections made attribution one at a time quadratic (measured: about 300 accepts a
 * second), while a batch of everything accepted in one poll round pays it once.
 */
static void socket_owners(const unsigned long *inodes, pid_t *pids, int n) {
  int left = 0;
  for (int i = 0; i < n; i++) { pids[i] = 0; if (inodes[i]) left++; }
  if (!left) return;
  char path[300], link[64];
  DIR *proc = opendir("/proc");
  if (!proc) return;
  struct dirent *d;
  /* With one process in the sandbox besides this agent (PID 1), that one holds every
   * client socket there is: no walk at all (a lone flooding process is the costly case). */
  pid_t only = 0;
  int procs = 0;
  while (procs < 2 && (d = readdir(proc))) {
    pid_t pid = atoi(d->d_name);
    if (pid > 1) { only = pid; procs++; }
  }
  if (procs == 1) {
    for (int i = 0; i < n; i++) if (inodes[i]) pids[i] = only;
    closedir(proc);
    return;
  }
  rewinddir(proc);
  while (left && (d = readdir(proc))) {
    pid_t pid = atoi(d->d_name);
    if (pid <= 1) continue;
    snprintf(path, sizeof path, "/proc/%d/fd", pid);
    DIR *fds = opendir(path);
    if (!fds) continue;
    struct dirent *e;
    while (left && (e = readdir(fds))) {
      if (e->d_name[0] == '.') continue;
      snprintf(path, sizeof path, "/proc/%d/fd/%s", pid, e->d_name);
      ssize_t len = readlink(path, link, sizeof link - 1);
      if (len < 9 || memcmp(link, "socket:[", 8)) continue;
      link[len] = 0;
      unsigned long inode = strtoul(link + 8, NULL, 10);
      for (int i = 0; i < n; i++) {
        if (!pids[i] && inodes[i] == inode) { pids[i] = pid; left--; break; }
      }
    }
    closedir(fds);
  }
  closedir(proc);
}

static pid_t parent_of(pid_t pid) {
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE *f = fopen(path, "re");
  if (!f) return 0;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  char *p = strrchr(buf, ')'); /* comm may contain spaces and parentheses */
  int ppid = 0;
  if (!p || sscanf(p + 1, " %*c %d", &ppid) != 1) return 0;
  return ppid;
}

/* The session's process (spawned by this agent) that PID descends from, or 0. */
static uint32_t process_of(pid_t pid) {
  for (int hops = 0; pid > 1 && hops < 64; hops++) {
    uint32_t id = agent_process_id(pid);
    if (id) return id;
    pid = parent_of(pid);
  }
  return 0;
}

static void relay_close(int i) {
  struct relay *r = &relays[i];
  close(r->c);
  if (r->u >= 0) close(r->u);
  else nwaiting--;
  free(r->up);
  free(r->down);
  relays[i] = relays[--nrelays];
}

/* Connects relay R to the proxy: 1 done, 0 the proxy's backlog is full (try again
 * later), -1 the proxy is gone. */
static int proxy_connect(struct relay *r) {
  int u = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (u < 0) return errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM ? 0 : -1;
  /* A unix connect completes at once or fails; EAGAIN: the backlog is full. */
  if (connect(u, (struct sockaddr *)&proxy_addr, sizeof proxy_addr) == 0) { r->u = u; return 1; }
  int err = errno;
  close(u);
  return err == EAGAIN ? 0 : -1;
}

/* Opens the relay for accepted client C (header written by attribute(), the proxy
 * connected now or, while its backlog is full, later): its index, or -1. */
static int accept_one(int c) {
  if (nrelays >= MAX_RELAYS) { close(c); return -1; }
  struct relay *r = &relays[nrelays];
  memset(r, 0, sizeof *r);
  r->c = c;
  r->u = -1;
  r->up = malloc(RELAY_BUF);
  r->down = malloc(RELAY_BUF);
  if (!r->up || !r->down || proxy_connect(r) < 0) { free(r->up); free(r->down); close(c); return -1; }
  if (r->u < 0) nwaiting++;
  return nrelays++;
}

/* Writes the header of the N relays just accepted (indices IDX): who connected. */
static void attribute(const int *idx, int n) {
  unsigned long inodes[ACCEPT_BATCH];
  pid_t pids[ACCEPT_BATCH];
  for (int i = 0; i < n; i++) inodes[i] = socket_inode(relays[idx[i]].c);
  socket_owners(inodes, pids, n);
  for (int i = 0; i < n; i++) {
    struct relay *r = &relays[idx[i]];
    uint32_t head[2] = {(uint32_t)pids[i], process_of(pids[i])};
    memcpy(r->up, "ALK1", 4);
    memcpy(r->up + 4, head, 8);
    r->uplen = 12;
  }
}

int relay_pollfds(struct pollfd *fds) {
  int n = 0;
  if (listener < 0) return 0;
  pmap[n][0] = -1;
  fds[n++] = (struct pollfd){nrelays < MAX_RELAYS && !nwaiting ? listener : -1, POLLIN, 0};
  for (int i = 0; i < nrelays; i++) {
    struct relay *r = &relays[i];
    short ce = 0, ue = 0;
    if (r->u < 0) {
      pmap[n][0] = -1; fds[n++] = (struct pollfd){-1, 0, 0};
      pmap[n][0] = -1; fds[n++] = (struct pollfd){-1, 0, 0};
      continue;
    }
    if (!r->c_eof && r->uplen < RELAY_BUF) ce |= POLLIN;
    if (r->dnoff < r->dnlen) ce |= POLLOUT;
    if (!r->u_eof && r->dnlen < RELAY_BUF) ue |= POLLIN;
    if (r->upoff < r->uplen) ue |= POLLOUT;
    /* A side with nothing to do is left out (fd -1): POLLHUP is reported even with no
     * events asked for, and a hung-up side waiting for the other to drain would spin. */
    pmap[n][0] = i; pmap[n][1] = 0; fds[n++] = (struct pollfd){ce ? r->c : -1, ce, 0};
    pmap[n][0] = i; pmap[n][1] = 1; fds[n++] = (struct pollfd){ue ? r->u : -1, ue, 0};
  }
  return n;
}

/* Moves what it can from FROM into BUF, and from BUF to TO. Returns -1 on a broken side. */
static int pump_side(int from, int to, char *buf, size_t *len, size_t *off, int *eof, short revents, int readable) {
  if (readable && (revents & (POLLIN | POLLHUP | POLLERR)) && !*eof && *len < RELAY_BUF) {
    ssize_t n = read(from, buf + *len, RELAY_BUF - *len);
    if (n > 0) *len += n;
    else if (n == 0) *eof = 1;
    else if (errno != EAGAIN && errno != EINTR) return -1;
  }
  while (*off < *len) {
    ssize_t w = write(to, buf + *off, *len - *off);
    if (w > 0) { *off += w; continue; }
    if (w < 0 && (errno == EAGAIN || errno == EINTR)) break;
    return -1;
  }
  if (*off == *len) { *off = *len = 0; if (*eof) shutdown(to, SHUT_WR); }
  return 0;
}

void relay_handle(const struct pollfd *fds, int n) {
  if (n == 0) return;
  if (fds[0].revents & POLLIN) {
    /* Everything waiting (up to a batch), then one attribution for all of it, before
     * any client byte is read: each header goes first on its connection. */
    int idx[ACCEPT_BATCH], n_new = 0;
    while (n_new < ACCEPT_BATCH && nrelays < MAX_RELAYS && !nwaiting) {
      int c = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (c < 0) break;
      int i = accept_one(c);
      if (i >= 0) idx[n_new++] = i;
    }
    attribute(idx, n_new);
  }
  /* Mark broken relays first and close them after: closing moves the last relay into
   * the freed slot, which would shift the pollfd mapping under our feet. */
  static char dead[MAX_RELAYS];
  int count = nrelays;
  memset(dead, 0, count);
  for (int k = 1; k < n; k++) {
    int i = pmap[k][0];
    if (i < 0 || i >= count || dead[i] || !fds[k].revents) continue;
    struct relay *r = &relays[i];
    int rc = pmap[k][1] == 0
      ? pump_side(r->c, r->u, r->up, &r->uplen, &r->upoff, &r->c_eof, fds[k].revents, 1)
      : pump_side(r->u, r->c, r->down, &r->dnlen, &r->dnoff, &r->u_eof, fds[k].revents, 1);
    /* The other direction may now have room or data: writes to the side that just
     * became writable are flushed by the pump of the side that feeds it. */
    if (rc == 0) {
      rc = pmap[k][1] == 0
        ? pump_side(r->u, r->c, r->down, &r->dnlen, &r->dnoff, &r->u_eof, 0, 0)
        : pump_side(r->c, r->u, r->up, &r->uplen, &r->upoff, &r->c_eof, 0, 0);
    }
    if (rc < 0 || (fds[k].revents & POLLERR) || (r->c_eof && r->u_eof && r->uplen == 0 && r->dnlen == 0)) dead[i] = 1;
  }
  for (int i = count - 1; i >= 0; i--) if (dead[i]) relay_close(i);
  /* The waiting ones, while the proxy takes them. */
  for (int i = nrelays - 1; nwaiting && i >= 0; i--) {
    if (relays[i].u >= 0) continue;
    int rc = proxy_connect(&relays[i]);
    if (rc == 0) break;
    if (rc > 0) nwaiting--;
    else relay_close(i);
  }
}

int relay_waiting(void) {
  return nwaiting;
}
