/*
 * airlock-agent: the small process that runs as PID 1 inside every sandbox and
 * starts processes on the runtime's request, over one channel the driver provides
 * (fd 3: a socketpair for bubblewrap; a virtio-serial port for the microVM later).
 * Starting a second process in a live session therefore never builds a second
 * sandbox: it is one SPAWN frame. It also writes and removes the few files the runtime
 * puts inside (granted secrets, spilled command output): see file_dir.
 *
 * Safety argument: the agent runs INSIDE the sandbox, with the sandboxed uid and no
 * capabilities, so it is on the adversary's side of the boundary. It holds nothing
 * worth stealing (no host fds besides the channel; the only secrets it sees are those
 * the runtime hands it to write inside, for the sandbox to read) and the runtime
 * treats every frame it sends as untrusted input. It is non-dumpable so sandboxed
 * processes of the same uid cannot ptrace it or write its memory; as PID 1 it
 * ignores signals it does not handle; when it exits the kernel kills every process
 * in the PID namespace, which is how "nothing survives its session" is enforced.
 *
 * Wire format (both directions, little-endian): u32 len, u8 type, u32 id, payload,
 * where len counts type + id + payload. See runtime/agent/channel.ts.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/close_range.h>
#include <linux/magic.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include "egress.h"

#define CHAN 3
#define MAX_FRAME (1u << 20)
#define MAX_PROCS 256
#define READ_CHUNK (64 * 1024)
#define OUT_HIGH (1u << 20) /* unacknowledged output bytes before a process is paused */
#define IN_MAX (8u << 20)   /* queued stdin bytes per process */
/* After a PTY's leader exits, the tty layer may still be moving its last bytes to the
 * master, so the master is read until EIO (every slave closed). A background job
 * holding the slave would keep it open: then this much silence ends the wait. */
#define PTY_GRACE_MS 50

enum { T_SPAWN = 1, T_STDIN = 2, T_STDIN_EOF = 3, T_RESIZE = 4, T_SIGNAL = 5, T_ACK = 6, T_SHUTDOWN = 7,
       T_FILE_PUT = 8, T_FILE_REMOVE = 9, T_OWNER = 10 };
enum { T_READY = 0x81, T_SPAWNED = 0x82, T_SPAWN_FAILED = 0x83, T_STDOUT = 0x84, T_STDERR = 0x85,
       T_EXIT = 0x86, T_LOG = 0x87, T_INPUT_ACK = 0x88, T_FILE_DONE = 0x89, T_OWNER_IS = 0x8a };

/* The only directories the runtime may write files in (see file_dir). */
#define SECRETS_DIR "/run/airlock/secrets"
#define OUTPUT_DIR "/tmp/airlock-output"

struct proc {
  uint32_t id;
  pid_t pid;
  int out, err, in; /* pty mode: out == in == master, err == -1 */
  int pty;
  int exited, status;
  long long quiet_since; /* ms: when output was last seen (or the process exited) */
  uint64_t unacked;
  char *inbuf;
  size_t inlen, inoff;
  int in_eof;
  int pty_hup; /* pty mode: every slave fd is closed; the master is kept but not polled */
};

static struct proc procs[MAX_PROCS];

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
static int nprocs;

static void die(const char *what) {
  dprintf(2, "airlock-agent: %s: %s\n", what, strerror(errno));
  kill(-1, SIGKILL);
  _exit(111);
}

static void write_all(const struct iovec *iov0, int n) {
  struct iovec iov[4];
  memcpy(iov, iov0, sizeof(struct iovec) * n);
  int i = 0;
  while (i < n) {
    ssize_t w = writev(CHAN, iov + i, n - i);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) { struct pollfd p = {CHAN, POLLOUT, 0}; poll(&p, 1, -1); continue; }
      kill(-1, SIGKILL); /* runtime gone: the session ends with it */
      _exit(0);
    }
    while (i < n && (size_t)w >= iov[i].iov_len) { w -= iov[i].iov_len; i++; }
    if (i < n) { iov[i].iov_base = (char *)iov[i].iov_base + w; iov[i].iov_len -= w; }
  }
}

static void send_frame(uint8_t type, uint32_t id, const void *a, size_t alen, const void *b, size_t blen) {
  unsigned char hdr[9];
  uint32_t len = 5 + alen + blen;
  memcpy(hdr, &len, 4); hdr[4] = type; memcpy(hdr + 5, &id, 4);
  struct iovec iov[3] = {{hdr, 9}, {(void *)a, alen}, {(void *)b, blen}};
  write_all(iov, 3);
}

static void set_flags(int fd, int nonblock) {
  fcntl(fd, F_SETFD, FD_CLOEXEC);
  if (nonblock) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

static struct proc *find(uint32_t id) {
  for (int i = 0; i < nprocs; i++) if (procs[i].id == id) return &procs[i];
  return NULL;
}

uint32_t agent_process_id(pid_t pid) {
  for (int i = 0; i < nprocs; i++) if (procs[i].pid == pid && !procs[i].exited) return procs[i].id;
  return 0;
}

static void spawn_failed(uint32_t id, int err, const char *msg) {
  int32_t e = err;
  send_frame(T_SPAWN_FAILED, id, &e, 4, msg, strlen(msg));
}

/* SPAWN payload: u8 flags(bit0 pty), u16 cols, u16 rows, u32 argc, u32 envc, then NUL-terminated cwd, argv[], env[]. */
static void do_spawn(uint32_t id, const unsigned char *p, uint32_t n) {
  if (n < 13 || find(id) || nprocs >= MAX_PROCS) { spawn_failed(id, EINVAL, "bad spawn request"); return; }
  int pty = p[0] & 1;
  uint16_t cols, rows; uint32_t argc, envc;
  memcpy(&cols, p + 1, 2); memcpy(&rows, p + 3, 2); memcpy(&argc, p + 5, 4); memcpy(&envc, p + 9, 4);
  if (argc < 1 || argc > 65536 || envc > 65536) { spawn_failed(id, EINVAL, "bad argument count"); return; }
  char **strs = calloc(1 + argc + 1 + envc + 1, sizeof(char *));
  if (!strs) { spawn_failed(id, ENOMEM, "out of memory"); return; }
  const char *s = (const char *)p + 13, *end = (const char *)p + n;
  uint32_t want = 1 + argc + envc, got = 0;
  while (got < want && s < end) {
    const char *z = memchr(s, 0, end - s);
    if (!z) break;
    strs[got < 1 + argc ? got : got + 1] = (char *)s;
    got++; s = z + 1;
  }
  if (got != want) { free(strs); spawn_failed(id, EINVAL, "truncated spawn request"); return; }
  char *cwd = strs[0], **argv = strs + 1, **envp = strs + 1 + argc + 1;

  int m = -1, in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1}, st[2];
  char *slave = NULL;
  if (pty) {
    m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (m < 0 || grantpt(m) || unlockpt(m) || !(slave = ptsname(m))) { spawn_failed(id, errno, "cannot allocate a pty"); if (m >= 0) close(m); free(strs); return; }
    struct winsize ws = {rows ? rows : 24, cols ? cols : 80, 0, 0};
    ioctl(m, TIOCSWINSZ, &ws);
  } else if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC)) {
    spawn_failed(id, errno, "cannot create pipes"); free(strs); return;
  }
  if (pipe2(st, O_CLOEXEC)) { spawn_failed(id, errno, "cannot create a status pipe"); free(strs); return; }

  /* vfork: the child borrows our memory until it execs (no copy of our page tables,
   * ~0.4 ms a spawn here), and we resume once it has exec'd or exited. So the child
   * only makes system calls on its own state (signal mask and dispositions, limits,
   * session, fds, cwd) and reports an error through the status pipe. The one thing of
   * ours it writes is environ, for execvp's PATH search (glibc's searches the caller's
   * own PATH, whatever envp says); we put it back as soon as we resume. */
  extern char **environ;
  char **volatile our_environ = environ;
  pid_t pid = vfork();
  if (pid == 0) {
    sigset_t all; sigemptyset(&all); sigprocmask(SIG_SETMASK, &all, NULL);
    for (int sig = 1; sig < NSIG; sig++) signal(sig, SIG_DFL);
    setsid();
    int stage = 0;
    if (pty) {
      int sfd = open(slave, O_RDWR);
      if (sfd < 0 || ioctl(sfd, TIOCSCTTY, 0) < 0) goto fail;
      dup2(sfd, 0); dup2(sfd, 1); dup2(sfd, 2);
      if (sfd > 2) close(sfd);
    } else {
      dup2(in[0], 0); dup2(out[1], 1); dup2(err[1], 2);
    }
    stage = 1;
    if (chdir(cwd) < 0) goto fail;
    stage = 2;
    environ = envp; /* execvp searches the PATH of the process's own environment */
    execvp(argv[0], argv);
  fail:;
    int e[2] = {stage, errno};
    (void)!write(st[1], e, sizeof e);
    _exit(127);
  }
  environ = our_environ;
  close(st[1]);
  if (pid < 0) { spawn_failed(id, errno, "fork failed"); close(st[0]); free(strs); return; }
  int e[2]; ssize_t r;
  do r = read(st[0], e, sizeof e); while (r < 0 && errno == EINTR);
  close(st[0]);
  if (r == sizeof e) {
    waitpid(pid, NULL, 0);
    char msg[512];
    snprintf(msg, sizeof msg, "%s %s: %s", e[0] == 0 ? "cannot open terminal for" : e[0] == 1 ? "cannot chdir to" : "cannot execute",
             e[0] == 1 ? cwd : argv[0], strerror(e[1]));
    spawn_failed(id, e[1], msg);
    if (pty) close(m); else { close(in[0]); close(in[1]); close(out[0]); close(out[1]); close(err[0]); close(err[1]); }
    free(strs);
    return;
  }
  free(strs);
  struct proc *pr = &procs[nprocs++];
  memset(pr, 0, sizeof *pr);
  pr->id = id; pr->pid = pid; pr->pty = pty;
  if (pty) { pr->out = pr->in = m; pr->err = -1; set_flags(m, 1); }
  else {
    close(in[0]); close(out[1]); close(err[1]);
    pr->in = in[1]; pr->out = out[0]; pr->err = err[0];
    set_flags(pr->in, 1); set_flags(pr->out, 1); set_flags(pr->err, 1);
  }
  uint32_t upid = pid;
  send_frame(T_SPAWNED, id, &upid, 4, NULL, 0);
}

static void close_input(struct proc *pr) {
  if (!pr->pty && pr->in >= 0) { close(pr->in); pr->in = -1; }
  free(pr->inbuf); pr->inbuf = NULL; pr->inlen = pr->inoff = 0;
}

static void flush_input(struct proc *pr) {
  while (pr->in >= 0 && pr->inoff < pr->inlen) {
    ssize_t w = write(pr->in, pr->inbuf + pr->inoff, pr->inlen - pr->inoff);
    if (w < 0) { if (errno == EINTR) continue; if (errno == EAGAIN) break; close_input(pr); return; }
    pr->inoff += w;
    uint32_t n = w;
    send_frame(T_INPUT_ACK, pr->id, &n, 4, NULL, 0);
  }
  if (pr->inoff == pr->inlen) {
    pr->inoff = pr->inlen = 0;
    if (pr->in_eof) {
      if (pr->pty) { if (pr->in >= 0) (void)!write(pr->in, "\x04", 1); pr->in_eof = 0; }
      else close_input(pr);
    }
  }
}

static void queue_input(struct proc *pr, const unsigned char *d, uint32_t n) {
  if (pr->in < 0 || pr->in_eof) return;
  if (pr->inlen + n > IN_MAX) { send_frame(T_LOG, pr->id, "stdin queue full: input dropped", 31, NULL, 0); return; }
  if (pr->inoff > 0) { memmove(pr->inbuf, pr->inbuf + pr->inoff, pr->inlen - pr->inoff); pr->inlen -= pr->inoff; pr->inoff = 0; }
  char *nb = realloc(pr->inbuf, pr->inlen + n);
  if (!nb) return;
  pr->inbuf = nb; memcpy(pr->inbuf + pr->inlen, d, n); pr->inlen += n;
  flush_input(pr);
}

/*
 * File operations: the runtime writes secrets granted in file mode into the tmpfs at
 * SECRETS_DIR and the full output of capped commands under OUTPUT_DIR, and removes them.
 * Safety argument: the agent has the sandbox user's rights and nothing more, so these
 * writes reach nothing the sandbox could not write itself; the checks keep the
 * runtime's writes where it means them although the sandbox (same uid) may have
 * planted symlinks or files there first. Only NAME directly in one of the two
 * directories is accepted; the directory is opened O_NOFOLLOW|O_DIRECTORY and every
 * later call is relative to that fd; the file is opened O_NOFOLLOW (or O_EXCL) and a
 * put renames over the target, which replaces a planted symlink instead of following
 * it. A secret is written only where statfs says tmpfs, so it never reaches a disk.
 * LIMITATION: removing a secret cannot take back a copy the sandbox already made.
 */

/* Opens the directory of PATH and points *name at its last component; -errno on refusal. */
static int file_dir(const char *path, const char **name, int create) {
  int secret = !strncmp(path, SECRETS_DIR "/", sizeof SECRETS_DIR);
  if (!secret && strncmp(path, OUTPUT_DIR "/", sizeof OUTPUT_DIR)) return -EPERM;
  const char *base = path + (secret ? sizeof SECRETS_DIR : sizeof OUTPUT_DIR);
  /* No '/', so no '..' either; a leading dot is refused too: temp names use it. */
  if (!*base || base[0] == '.' || strchr(base, '/') || strlen(base) > NAME_MAX) return -EPERM;
  if (!secret && create && mkdir(OUTPUT_DIR, 0700) < 0 && errno != EEXIST) return -errno;
  int dfd = open(secret ? SECRETS_DIR : OUTPUT_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (dfd < 0) return -errno;
  struct statfs fs;
  if (secret && (fstatfs(dfd, &fs) < 0 || fs.f_type != TMPFS_MAGIC)) { close(dfd); return -EXDEV; }
  *name = base;
  return dfd;
}

static int write_fd(int fd, const unsigned char *d, size_t n) {
  while (n) {
    ssize_t w = write(fd, d, n);
    if (w < 0) { if (errno == EINTR) continue; return errno; }
    d += w; n -= w;
  }
  return 0;
}

/* FILE_PUT payload: u32 mode, u8 flags (bit0 append), NUL-terminated path, data. Returns 0 or an errno. */
static int file_put(const unsigned char *p, uint32_t n) {
  const char *path = (const char *)p + 5, *z = n > 5 ? memchr(path, 0, n - 5) : NULL;
  if (!z) return EINVAL;
  uint32_t mode; memcpy(&mode, p, 4); mode &= 0777;
  int append = p[4] & 1;
  const unsigned char *data = (const unsigned char *)z + 1;
  size_t len = p + n - data;
  const char *name;
  int dfd = file_dir(path, &name, 1), err = 0;
  if (dfd < 0) return -dfd;
  if (append) {
    int fd = openat(dfd, name, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0) err = errno;
    else { err = fchmod(fd, mode) < 0 ? errno : write_fd(fd, data, len); close(fd); }
    close(dfd);
    return err;
  }
  /* Readers see the old file or the new one, never a part: write a fresh name, rename over. */
  char tmp[64];
  int fd = -1;
  for (int tries = 0; fd < 0 && tries < 8; tries++) {
    uint64_t r = 0;
    if (getrandom(&r, sizeof r, GRND_NONBLOCK) != sizeof r) r ^= (uint64_t)now_ms() * 2654435761u + tries;
    snprintf(tmp, sizeof tmp, ".airlock-%016llx.tmp", (unsigned long long)r);
    fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0 && errno != EEXIST) break;
  }
  if (fd < 0) err = errno;
  else {
    err = fchmod(fd, mode) < 0 ? errno : write_fd(fd, data, len); /* exact mode, whatever the umask */
    if (close(fd) < 0 && !err) err = errno;
    if (!err && renameat(dfd, tmp, dfd, name) < 0) err = errno;
    if (err) unlinkat(dfd, tmp, 0);
  }
  close(dfd);
  return err;
}

/* FILE_REMOVE payload: NUL-terminated path. */
static int file_remove(const unsigned char *p, uint32_t n) {
  if (!n || !memchr(p, 0, n)) return EINVAL;
  const char *name;
  int dfd = file_dir((const char *)p, &name, 0);
  if (dfd < 0) return -dfd;
  int err = unlinkat(dfd, name, 0) < 0 ? errno : 0;
  close(dfd);
  return err;
}

/* OWNER queries (u16 client port) read in one channel read, answered together (one
 * walk over /proc) once the read's frames are handled: OWNER_IS = u32 pid, u32 process. */
static int proxy_port;
static uint16_t owner_ports[OWNER_BATCH];
static uint32_t owner_ids[OWNER_BATCH];
static int nowners;

static void answer_owners(void) {
  static uint32_t out[OWNER_BATCH][2];
  if (!nowners) return;
  egress_owners(owner_ports, nowners, proxy_port, out);
  for (int i = 0; i < nowners; i++) send_frame(T_OWNER_IS, owner_ids[i], out[i], 8, NULL, 0);
  nowners = 0;
}

static void handle_frame(uint8_t type, uint32_t id, const unsigned char *p, uint32_t n) {
  if (type == T_SPAWN) { do_spawn(id, p, n); return; }
  if (type == T_OWNER) {
    uint16_t port = 0;
    if (n >= 2) memcpy(&port, p, 2);
    if (nowners == OWNER_BATCH) answer_owners();
    owner_ports[nowners] = port;
    owner_ids[nowners++] = id;
    return;
  }
  if (type == T_SHUTDOWN) { kill(-1, SIGKILL); _exit(0); }
  /* File ops have ids of their own (the runtime's counter, echoed back): no process is looked up. */
  if (type == T_FILE_PUT || type == T_FILE_REMOVE) {
    int32_t e = type == T_FILE_PUT ? file_put(p, n) : file_remove(p, n);
    send_frame(T_FILE_DONE, id, &e, 4, NULL, 0);
    return;
  }
  struct proc *pr = find(id);
  if (!pr) return; /* a process that already exited: late input is dropped */
  switch (type) {
  case T_STDIN: queue_input(pr, p, n); break;
  case T_STDIN_EOF: pr->in_eof = 1; flush_input(pr); break;
  case T_RESIZE:
    if (pr->pty && n >= 4) {
      struct winsize ws = {0}; uint16_t c, r; memcpy(&c, p, 2); memcpy(&r, p + 2, 2);
      ws.ws_col = c; ws.ws_row = r; ioctl(pr->out, TIOCSWINSZ, &ws);
    }
    break;
  case T_SIGNAL:
    if (n >= 4) { uint32_t sig; memcpy(&sig, p, 4); if (sig > 0 && sig < NSIG && kill(-pr->pid, sig) < 0) kill(pr->pid, sig); }
    break;
  case T_ACK:
    if (n >= 4) { uint32_t a; memcpy(&a, p, 4); pr->unacked = a > pr->unacked ? 0 : pr->unacked - a; }
    break;
  }
}

/* Reads what fd has now. Returns 1 while the fd stays open, 0 at end of file. */
/* Reads what fd has now, coalescing short reads (a PTY hands out a few KiB at a time)
 * into frames of up to READ_CHUNK bytes. Returns 1 while the fd stays open, 0 at EOF. */
static int pump(struct proc *pr, int fd, uint8_t type, int max_rounds) {
  static char buf[READ_CHUNK];
  size_t len = 0;
  int open = 1;
  for (int rounds = 0; rounds < max_rounds && pr->unacked + len < OUT_HIGH; rounds++) {
    ssize_t r = read(fd, buf + len, sizeof buf - len);
    if (r > 0) {
      len += r;
      if (len == sizeof buf) { send_frame(type, pr->id, buf, len, NULL, 0); pr->unacked += len; len = 0; }
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    if (!(r < 0 && errno == EAGAIN)) open = 0; /* EOF, or EIO on a pty whose slave side is closed */
    break;
  }
  if (len) { send_frame(type, pr->id, buf, len, NULL, 0); pr->unacked += len; }
  if (len || !open) pr->quiet_since = now_ms();
  return open;
}

static void finish(int i) {
  struct proc *pr = &procs[i];
  int32_t res[2] = {WIFEXITED(pr->status) ? WEXITSTATUS(pr->status) : -1, WIFSIGNALED(pr->status) ? WTERMSIG(pr->status) : 0};
  send_frame(T_EXIT, pr->id, res, 8, NULL, 0);
  if (pr->out >= 0) close(pr->out);
  if (pr->err >= 0) close(pr->err);
  if (!pr->pty && pr->in >= 0) close(pr->in);
  free(pr->inbuf);
  procs[i] = procs[--nprocs];
}

/* Arguments come in pairs: --nproc N, --fsize BYTES, --as BYTES, --nice N, and
 * --egress-fd FD --proxy-port PORT (the egress proxy's listener, handed to the runtime
 * over FD; see egress.c). Runs before the inherited descriptors are closed. */
static void apply_args(int argc, char **argv) {
  int egress_fd = -1;
  for (int i = 1; i + 1 < argc; i += 2) {
    long long v = atoll(argv[i + 1]);
    struct rlimit rl = {(rlim_t)v, (rlim_t)v};
    if (!strcmp(argv[i], "--nproc")) setrlimit(RLIMIT_NPROC, &rl);
    else if (!strcmp(argv[i], "--fsize")) setrlimit(RLIMIT_FSIZE, &rl);
    else if (!strcmp(argv[i], "--as")) setrlimit(RLIMIT_AS, &rl);
    else if (!strcmp(argv[i], "--nice")) setpriority(PRIO_PROCESS, 0, (int)v);
    else if (!strcmp(argv[i], "--egress-fd")) egress_fd = (int)v;
    else if (!strcmp(argv[i], "--proxy-port")) proxy_port = (int)v;
  }
  if (egress_fd > 2 && proxy_port > 0 && proxy_port < 65536 && egress_handoff(egress_fd, proxy_port) < 0) {
    /* The runtime sees no listener and fails the session's start with this message. */
    dprintf(2, "airlock-agent: cannot hand the egress listener 127.0.0.1:%d to the runtime: %s\n", proxy_port, strerror(errno));
  }
}

int main(int argc, char **argv) {
  /* Everything below (kill(-1), reaping orphans) is right only for the init of a
   * sandbox's own PID namespace. Run anywhere else, kill(-1, SIGKILL) would kill every
   * process the caller may signal, so refuse outright. */
  if (getpid() != 1) {
    dprintf(2, "airlock-agent: refusing to run: it must be PID 1 of a sandbox's PID namespace (started by the airlock runtime)\n");
    return 64;
  }
  prctl(PR_SET_DUMPABLE, 0);
  apply_args(argc, argv);
  /* Only the channel is ours to keep; bubblewrap's setup fds (and the egress hand-off's)
   * must not leak into children. */
  close_range(4, ~0U, 0);
  set_flags(CHAN, 0);
  signal(SIGPIPE, SIG_IGN);
  signal(SIGXFSZ, SIG_IGN); /* a file op past RLIMIT_FSIZE fails with EFBIG instead */
  sigset_t mask; sigemptyset(&mask); sigaddset(&mask, SIGCHLD);
  sigprocmask(SIG_BLOCK, &mask, NULL);
  int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sfd < 0) die("signalfd");
  uint32_t mypid = getpid();
  send_frame(T_READY, 0, &mypid, 4, "airlock-agent 1", 15);

  unsigned char *rbuf = malloc(MAX_FRAME + 9);
  size_t rlen = 0;
  static struct pollfd fds[2 + 3 * MAX_PROCS];
  for (;;) {
    /* Exited processes report once their output is drained (flow control may pause that). */
    int waiting = 0;
    for (int i = 0; i < nprocs; i++) {
      struct proc *pr = &procs[i];
      if (!pr->exited || pr->unacked >= OUT_HIGH) continue;
      if (pr->pty) {
        int open = pr->out >= 0 && pump(pr, pr->out, T_STDOUT, 1 << 20);
        if (pr->unacked >= OUT_HIGH) continue;
        if (open && now_ms() - pr->quiet_since < PTY_GRACE_MS) { waiting = 1; continue; }
      } else {
        /* pipe writes are synchronous: what the leader wrote is in the pipe already */
        if (pr->out >= 0) pump(pr, pr->out, T_STDOUT, 1 << 20);
        if (pr->err >= 0) pump(pr, pr->err, T_STDERR, 1 << 20);
        if (pr->unacked >= OUT_HIGH) continue;
      }
      finish(i); i--;
    }
    int nf = 0;
    fds[nf++] = (struct pollfd){CHAN, POLLIN, 0};
    fds[nf++] = (struct pollfd){sfd, POLLIN, 0};
    int map[3 * MAX_PROCS][2];
    for (int i = 0; i < nprocs; i++) {
      struct proc *pr = &procs[i];
      if (pr->unacked < OUT_HIGH) {
        if (pr->out >= 0 && !pr->pty_hup) { map[nf - 2][0] = i; map[nf - 2][1] = 0; fds[nf++] = (struct pollfd){pr->out, POLLIN, 0}; }
        if (pr->err >= 0) { map[nf - 2][0] = i; map[nf - 2][1] = 1; fds[nf++] = (struct pollfd){pr->err, POLLIN, 0}; }
      }
      if (pr->in >= 0 && pr->inoff < pr->inlen) { map[nf - 2][0] = i; map[nf - 2][1] = 2; fds[nf++] = (struct pollfd){pr->in, POLLOUT, 0}; }
    }
    if (poll(fds, nf, waiting ? 10 : -1) < 0) { if (errno == EINTR) continue; die("poll"); }
    for (int k = 2; k < nf; k++) {
      if (!fds[k].revents) continue;
      struct proc *pr = &procs[map[k - 2][0]];
      int which = map[k - 2][1];
      if (which == 2) { flush_input(pr); continue; }
      int fd = which == 0 ? pr->out : pr->err;
      if (fd < 0 || fd != fds[k].fd) continue;
      if (!pump(pr, fd, which == 0 ? T_STDOUT : T_STDERR, 16)) {
        if (pr->pty) { /* keep the master until exit: closing it would hang up the session */
          if (pr->exited) continue;
          /* The slave side is closed but the leader is not reaped yet: stop polling the
           * master, and keep it open until exit. Closing it here hung up the session,
           * and a leader that had just closed its terminal on its way to exit(0) was then
           * reported as killed by SIGHUP (about 1 in 10 `cat` runs ended by ^D). */
          pr->pty_hup = 1;
        } else if (which == 0) { close(pr->out); pr->out = -1; }
        else { close(pr->err); pr->err = -1; }
      }
    }
    if (fds[1].revents) {
      struct signalfd_siginfo si;
      while (read(sfd, &si, sizeof si) == sizeof si) {}
      int status; pid_t pid;
      while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (int i = 0; i < nprocs; i++)
          if (procs[i].pid == pid) { procs[i].exited = 1; procs[i].status = status; procs[i].quiet_since = now_ms(); }
        /* other pids are orphans re-parented to us as PID 1: reaped, nothing to report */
      }
    }
    if (fds[0].revents) {
      ssize_t r = read(CHAN, rbuf + rlen, MAX_FRAME + 9 - rlen);
      if (r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN)) { kill(-1, SIGKILL); _exit(0); }
      if (r > 0) rlen += r;
      size_t off = 0;
      while (rlen - off >= 9) {
        uint32_t len; memcpy(&len, rbuf + off, 4);
        if (len < 5 || len > MAX_FRAME) { dprintf(2, "airlock-agent: bad frame length %u\n", len); kill(-1, SIGKILL); _exit(112); }
        if (rlen - off < 4 + (size_t)len) break;
        uint32_t id; memcpy(&id, rbuf + off + 5, 4);
        handle_frame(rbuf[off + 4], id, rbuf + off + 9, len - 5);
        off += 4 + len;
      }
      memmove(rbuf, rbuf + off, rlen - off); rlen -= off;
      answer_owners();
    }
  }
}
