/*
 * The sandbox's only way out: airlock-agent makes the listening socket 127.0.0.1:PORT
 * inside the sandbox's own network namespace and hands it to the runtime at start-up,
 * over a one-message channel (Node's IPC framing: a JSON line with the descriptor
 * attached, which Node turns into a server handle), then closes its own copy. The
 * runtime's egress proxy accepts every connection itself: no byte passes through this
 * process, and nothing in the sandbox can reach the proxy any other way.
 *
 * Safety argument: the network namespace has no interface but loopback, so the
 * listener adds no route; it is handed out before any sandboxed process exists (the
 * agent starts none until the runtime asks, after the hand-off), and the agent closes
 * its end of the IPC channel right after (close_range, before it reads a frame), so no
 * sandboxed process ever holds it.
 *
 * Attribution: for each connection the runtime asks (OWNER frame, by the client's
 * port) which process holds the client's socket; the answer comes from the kernel's
 * socket table (sock_diag) and /proc, read by this agent, not from bytes the client
 * sent, so code in the sandbox cannot claim another process's connection.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "egress.h"

/* The kernel caps it at net.core.somaxconn (4096 by default): a deep queue is where a
 * burst waits while the proxy is busy; a full one resets connections (syncookies). */
#define LISTEN_BACKLOG 4096

int egress_handoff(int ipc_fd, int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, LISTEN_BACKLOG) < 0) { int e = errno; close(fd); errno = e; return -1; }
  /* Node's IPC message for a handle: {"cmd":"NODE_HANDLE","type":...} with the fd
   * attached (SCM_RIGHTS). "net.Native" hands the raw handle to the runtime as is. */
  static const char msg[] = "{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Native\",\"msg\":{\"airlock\":\"egress-listener\"}}\n";
  struct iovec iov = {(void *)msg, sizeof msg - 1};
  union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } ctl;
  memset(&ctl, 0, sizeof ctl);
  struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf};
  struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(c), &fd, sizeof fd);
  ssize_t w;
  do w = sendmsg(ipc_fd, &mh, MSG_NOSIGNAL); while (w < 0 && errno == EINTR);
  int e = errno;
  close(fd);
  if (w != (ssize_t)iov.iov_len) { errno = w < 0 ? e : EIO; return -1; }
  return 0;
}

/* The inode of the client's socket, asked of the kernel by its exact addresses
 * (sock_diag): one netlink round trip instead of reading all of /proc/net/tcp. The
 * netlink socket stays open between questions; each answer is matched to its question
 * by sequence number. */
static unsigned long socket_inode(uint16_t client_port, uint16_t proxy_port) {
  static int nl = -1;
  static uint32_t seq;
  if (nl < 0) nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (nl < 0) return 0;
  struct { struct nlmsghdr nh; struct inet_diag_req_v2 r; } req;
  memset(&req, 0, sizeof req);
  req.nh.nlmsg_len = sizeof req;
  req.nh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  req.nh.nlmsg_flags = NLM_F_REQUEST;
  req.nh.nlmsg_seq = ++seq;
  req.r.sdiag_family = AF_INET;
  req.r.sdiag_protocol = IPPROTO_TCP;
  req.r.idiag_states = ~0U;
  /* The client's own socket: from 127.0.0.1:CLIENT_PORT to the proxy's 127.0.0.1:PROXY_PORT. */
  req.r.id.idiag_sport = htons(client_port);
  req.r.id.idiag_dport = htons(proxy_port);
  req.r.id.idiag_src[0] = htonl(INADDR_LOOPBACK);
  req.r.id.idiag_dst[0] = htonl(INADDR_LOOPBACK);
  req.r.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
  req.r.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
  unsigned long inode = 0;
  char buf[1024];
  if (send(nl, &req, sizeof req, 0) != (ssize_t)sizeof req) {
    close(nl);
    nl = -1;
    return 0;
  }
  /* One reply per question (the socket or an error); an older question's late reply is skipped. */
  for (;;) {
    ssize_t n = recv(nl, buf, sizeof buf, 0);
    struct nlmsghdr *h = (struct nlmsghdr *)buf;
    if (n <= 0 || !NLMSG_OK(h, (size_t)n)) { close(nl); nl = -1; return 0; }
    if (h->nlmsg_seq != seq) continue;
    if (h->nlmsg_type == SOCK_DIAG_BY_FAMILY) inode = ((struct inet_diag_msg *)NLMSG_DATA(h))->idiag_inode;
    return inode;
  }
}

/*
 * The pids inside the sandbox holding the sockets INODES[0..N) (the first found each),
 * into PIDS (0: not found). One walk over /proc/PID/fd for the whole batch: the walk
 * costs a readlink per open file in the sandbox, so a process holding a thousand
 * connections made attribution one at a time quadratic (measured: about 300 accepts a
 * second), while a batch of every query read from the channel at once pays it once.
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

void egress_owners(const uint16_t *ports, int n, int proxy_port, uint32_t (*out)[2]) {
  unsigned long inodes[OWNER_BATCH];
  pid_t pids[OWNER_BATCH];
  if (n > OWNER_BATCH) n = OWNER_BATCH;
  for (int i = 0; i < n; i++) inodes[i] = socket_inode(ports[i], (uint16_t)proxy_port);
  socket_owners(inodes, pids, n);
  for (int i = 0; i < n; i++) {
    out[i][0] = (uint32_t)pids[i];
    out[i][1] = process_of(pids[i]);
  }
}
