/*
 * bench/egress.mjs's reference point: the least any proxy in the middle of a loopback
 * connection can cost. One TCP connection at a time, relayed both ways by two threads
 * doing nothing but read(2) and write(2) of up to 1 MiB: no parsing, no policy, no audit.
 * With `connect`, it first reads a request head up to its blank line and answers
 * "200 Connection Established" once connected to the target, as a CONNECT proxy does
 * (the head itself is not looked at: the target is fixed; bytes sent with it are dropped).
 * Built by the bench with the C compiler (never part of Airlock).
 *   relay-floor TARGET_PORT [connect]   (prints the port it listens on, on 127.0.0.1)
 */
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct pair { int from, to; };

static void *pump(void *arg) {
  struct pair *p = arg;
  static __thread char buf[1024 * 1024];
  for (;;) {
    ssize_t n = read(p->from, buf, sizeof buf);
    if (n <= 0) break;
    for (ssize_t off = 0; off < n;) {
      ssize_t w = write(p->to, buf + off, n - off);
      if (w <= 0) return NULL;
      off += w;
    }
  }
  shutdown(p->to, SHUT_WR);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  int connect_mode = argc > 2 && !strcmp(argv[2], "connect");
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  socklen_t len = sizeof a;
  if (bind(l, (struct sockaddr *)&a, sizeof a) < 0 || listen(l, 16) < 0 || getsockname(l, (struct sockaddr *)&a, &len) < 0) { perror("relay-floor: listen"); return 1; }
  printf("%d\n", ntohs(a.sin_port));
  fflush(stdout);
  for (;;) {
    int c = accept(l, NULL, NULL);
    if (c < 0) continue;
    if (connect_mode) {
      char head[8192];
      size_t got = 0;
      while (got < sizeof head - 1) {
        ssize_t n = read(c, head + got, sizeof head - 1 - got);
        if (n <= 0) break;
        got += n;
        head[got] = 0;
        if (strstr(head, "\r\n\r\n")) break;
      }
    }
    int u = socket(AF_INET, SOCK_STREAM, 0);
    a.sin_port = htons(atoi(argv[1]));
    if (connect(u, (struct sockaddr *)&a, sizeof a) < 0) { close(c); close(u); continue; }
    static const char ok[] = "HTTP/1.1 200 Connection Established\r\n\r\n";
    if (connect_mode && write(c, ok, sizeof ok - 1) < 0) { close(c); close(u); continue; }
    struct pair up = {c, u}, down = {u, c};
    pthread_t t;
    pthread_create(&t, NULL, pump, &up);
    pump(&down);
    pthread_join(t, NULL);
    close(c);
    close(u);
  }
}
