/*
 * adbd.c: a small device-side ADB daemon for the lab's Android-like arm64 image (and for the host,
 * where the fast tests run it natively). Single file, libc only; built statically for aarch64 by
 * `lab/labctl build` (lab/lablib/android.py) and with the host `cc` by pytest_lava/testing/adbd.py.
 *
 * Protocol: A_CNXN (versions 0x01000000/0x01000001, maxdata 256K, no AUTH), OPEN/OKAY/WRTE/CLSE with
 * many streams per connection and one WRTE in flight per stream (the OKAY is the flow control).
 * Services: shell:[cmd] (legacy: raw pipes with a command, a pty without), shell,v2,raw|pty[,TERM=x]:[cmd]
 * (packets: u8 id + u32le length + data; 0 stdin, 1 stdout, 2 stderr, 3 exit, 4 close-stdin, 5 window),
 * exec:cmd (raw, no pty), sync: (STAT LIST SEND RECV DONE QUIT, v1 only), reboot:[target],
 * root: / unroot: (a message: the lab image always runs adbd as root), remount: (/system read-write).
 * Each TCP connection is served by its own forked process; a client going away never ends the daemon.
 *
 * The same binary is the property service's tools when called as getprop / setprop / start / stop (or
 * as `adbd getprop ...`): one file per property in ANDROID_PROPERTY_DIR (default /dev/__properties__);
 * ro.* properties are write-once, like Android's.
 *
 * usage: adbd [--port N] [--listen ADDR] [--chdir DIR] [--root DIR] [--props DIR] [--shell PATH]
 *             [--reboot-cmd CMD] [--pidfile FILE] [--verbose]
 *   --root DIR   sync: paths are resolved under DIR (a sandbox for native runs; "/" on the board)
 *   --chdir DIR  working directory of shells (default: --root, or / with --chroot)
 *   --chroot     shells run chrooted in --root (needs root and a static /bin/sh in it), so absolute
 *                paths mean the same to shell: and sync:; the property directory, if under --root,
 *                is passed to them as the path inside
 *   --reboot-cmd run as `sh -c CMD sh TARGET` for reboot:TARGET; without it reboot: is refused
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define A_SYNC 0x434e5953u
#define A_CNXN 0x4e584e43u
#define A_OPEN 0x4e45504fu
#define A_OKAY 0x59414b4fu
#define A_CLSE 0x45534c43u
#define A_WRTE 0x45545257u
#define A_AUTH 0x48545541u
#define A_VERSION_MIN 0x01000000u
#define A_VERSION 0x01000001u
#define MAX_PAYLOAD (256 * 1024)
#define MAX_IN_PAYLOAD (1024 * 1024)
#define SYNC_DATA_MAX (64 * 1024)
#define MAX_STREAMS 64
#define FEATURES "shell_v2,fixed_push_mkdir"

enum { ST_SHELL, ST_SYNC };
enum { PK_STDIN, PK_STDOUT, PK_STDERR, PK_EXIT, PK_CLOSE_STDIN, PK_WINDOW };

typedef struct { char *d; size_t off, len, cap; } buf_t; /* bytes d[off .. off+len) */

typedef struct {
    int used;
    uint32_t local, remote;
    int type;
    int awaiting;        /* a WRTE of ours is waiting for its OKAY */
    int need_ack;        /* we owe the peer an OKAY for its last WRTE */
    int closing;         /* send CLSE when outbuf is drained */
    buf_t in, out;
    /* shell */
    int v2, pty;
    pid_t pid;
    int reaped, status, exit_sent;
    int fd_in, fd_out, fd_err; /* our ends; -1 when closed (fd_in may equal fd_out for a pty) */
    int close_stdin_pending;
    int pi_in, pi_out, pi_err; /* poll indices of this round */
    int next_err;
    /* sync */
    int send_fd;
    char send_path[4096];
    char send_fail[256];
    int send_active, send_link;
    buf_t link;
    int recv_fd;
} stream_t;

static struct {
    int port;
    const char *listen_addr, *chdir_dir, *root, *props, *shell, *reboot_cmd, *pidfile;
    int verbose, jail;
} opt = {5555, "0.0.0.0", NULL, "/", NULL, "/bin/sh", NULL, NULL, 0, 0};

static int conn_fd = -1;
static uint32_t max_payload = MAX_PAYLOAD;
static stream_t streams[MAX_STREAMS];
static uint32_t next_local = 1;
static int sigpipe_fds[2] = {-1, -1};

static void logmsg(const char *fmt, ...) {
    if (!opt.verbose) return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "adbd[%d]: ", (int)getpid());
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* ---------------------------------------------------------------- buffers and wire */

static void buf_reserve(buf_t *b, size_t more) {
    if (b->off && b->off + b->len + more > b->cap) {
        memmove(b->d, b->d + b->off, b->len);
        b->off = 0;
    }
    if (b->off + b->len + more > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + more) cap *= 2;
        char *d = realloc(b->d, cap);
        if (!d) { perror("adbd: realloc"); _exit(1); }
        b->d = d;
        b->cap = cap;
    }
}
static void buf_add(buf_t *b, const void *p, size_t n) {
    buf_reserve(b, n);
    memcpy(b->d + b->off + b->len, p, n);
    b->len += n;
}
static char *buf_ptr(buf_t *b) { return b->d + b->off; }
static void buf_eat(buf_t *b, size_t n) {
    b->off += n;
    b->len -= n;
    if (!b->len) b->off = 0;
}
static void buf_free(buf_t *b) { free(b->d); memset(b, 0, sizeof *b); }

static uint32_t rd32(const void *p) {
    const unsigned char *c = p;
    return c[0] | c[1] << 8 | c[2] << 16 | (uint32_t)c[3] << 24;
}
static void wr32(void *p, uint32_t v) {
    unsigned char *c = p;
    c[0] = v; c[1] = v >> 8; c[2] = v >> 16; c[3] = v >> 24;
}

static int write_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        c += w;
        n -= w;
    }
    return 0;
}

static void conn_lost(const char *why);

static void send_msg(uint32_t cmd, uint32_t a0, uint32_t a1, const void *data, uint32_t len) {
    unsigned char h[24];
    uint32_t sum = 0;
    for (uint32_t i = 0; i < len; i++) sum += ((const unsigned char *)data)[i];
    wr32(h, cmd); wr32(h + 4, a0); wr32(h + 8, a1); wr32(h + 12, len); wr32(h + 16, sum);
    wr32(h + 20, cmd ^ 0xffffffffu);
    if (write_all(conn_fd, h, 24) || (len && write_all(conn_fd, data, len))) conn_lost("write failed");
}

/* ---------------------------------------------------------------- properties */

static const char *prop_dir(void) {
    const char *d = getenv("ANDROID_PROPERTY_DIR");
    return d && *d ? d : "/dev/__properties__";
}
static int prop_name_ok(const char *n) {
    if (!*n || *n == '.' || strlen(n) > 255) return 0;
    for (const char *c = n; *c; c++) {
        int ok = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
                 strchr("._-:@", *c) != NULL;
        if (!ok) return 0;
    }
    return 1;
}
/* value of a property into out (size n); returns 0 if set, -1 if not */
static int prop_get(const char *name, char *out, size_t n) {
    char path[4096];
    out[0] = 0;
    if (!prop_name_ok(name)) return -1;
    snprintf(path, sizeof path, "%s/%s", prop_dir(), name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t r = read(fd, out, n - 1);
    close(fd);
    if (r < 0) r = 0;
    out[r] = 0;
    while (r > 0 && (out[r - 1] == '\n' || out[r - 1] == '\r')) out[--r] = 0;
    return 0;
}
static int prop_set(const char *name, const char *value) {
    char path[4096], tmp[4200], old[8];
    if (!prop_name_ok(name) || strchr(value, '\n')) return -1;
    if (!strncmp(name, "ro.", 3) && prop_get(name, old, sizeof old) == 0) return -1; /* write-once */
    mkdir(prop_dir(), 0755);
    snprintf(path, sizeof path, "%s/%s", prop_dir(), name);
    snprintf(tmp, sizeof tmp, "%s/.%s.%d", prop_dir(), name, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return -1;
    int bad = write_all(fd, value, strlen(value));
    close(fd);
    if (bad || rename(tmp, path)) { unlink(tmp); return -1; }
    return 0;
}
static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int prop_tool(const char *tool, int argc, char **argv) {
    char val[8192];
    if (!strcmp(tool, "getprop")) {
        if (argc >= 2) {
            if (prop_get(argv[1], val, sizeof val) || !*val) snprintf(val, sizeof val, "%s", argc >= 3 ? argv[2] : "");
            printf("%s\n", val);
            return 0;
        }
        DIR *d = opendir(prop_dir());
        if (!d) return 0;
        char **names = NULL;
        size_t n = 0;
        struct dirent *e;
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.') continue;
            names = realloc(names, (n + 1) * sizeof *names);
            names[n++] = strdup(e->d_name);
        }
        closedir(d);
        qsort(names, n, sizeof *names, cmp_str);
        for (size_t i = 0; i < n; i++) {
            if (prop_get(names[i], val, sizeof val) == 0) printf("[%s]: [%s]\n", names[i], val);
            free(names[i]);
        }
        free(names);
        return 0;
    }
    if (!strcmp(tool, "setprop")) {
        if (argc != 3) { fprintf(stderr, "usage: setprop NAME VALUE\n"); return 1; }
        if (prop_set(argv[1], argv[2])) { fprintf(stderr, "setprop: failed to set property '%s' to '%s'\n", argv[1], argv[2]); return 1; }
        return 0;
    }
    /* start / stop SERVICE: stand-ins that only record init.svc.SERVICE */
    if (argc != 2) { fprintf(stderr, "usage: %s SERVICE\n", tool); return 1; }
    char name[300];
    snprintf(name, sizeof name, "init.svc.%s", argv[1]);
    if (prop_set(name, !strcmp(tool, "start") ? "running" : "stopped")) { fprintf(stderr, "%s: bad service name\n", tool); return 1; }
    return 0;
}

/* ---------------------------------------------------------------- streams */

static stream_t *stream_new(int type) {
    for (int i = 0; i < MAX_STREAMS; i++) {
        stream_t *s = &streams[i];
        if (s->used) continue;
        memset(s, 0, sizeof *s);
        s->used = 1;
        s->type = type;
        s->local = next_local++;
        s->fd_in = s->fd_out = s->fd_err = s->send_fd = s->recv_fd = -1;
        s->pi_in = s->pi_out = s->pi_err = -1;
        return s;
    }
    return NULL;
}
static stream_t *stream_find(uint32_t local) {
    for (int i = 0; i < MAX_STREAMS; i++)
        if (streams[i].used && streams[i].local == local) return &streams[i];
    return NULL;
}
static void close_fd(int *fd) {
    if (*fd >= 0) close(*fd);
    *fd = -1;
}
static void stream_free(stream_t *s) {
    if (s->type == ST_SHELL && s->pid > 0 && !s->reaped) {
        kill(-s->pid, SIGHUP);
        kill(-s->pid, SIGKILL);
    }
    if (s->fd_in == s->fd_out) s->fd_in = -1;
    close_fd(&s->fd_in);
    close_fd(&s->fd_out);
    close_fd(&s->fd_err);
    close_fd(&s->send_fd);
    close_fd(&s->recv_fd);
    buf_free(&s->in);
    buf_free(&s->out);
    buf_free(&s->link);
    s->used = 0;
}
static void kill_all_streams(void) {
    for (int i = 0; i < MAX_STREAMS; i++)
        if (streams[i].used) stream_free(&streams[i]);
}
static void conn_lost(const char *why) {
    logmsg("connection closed: %s", why);
    kill_all_streams();
    _exit(0);
}

/* ---------------------------------------------------------------- shell */

static void set_nonblock(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

/* in a forked child: default signals; with --chroot (and jail) shells run inside --root */
static void child_common(int jail) {
    signal(SIGPIPE, SIG_DFL);
    signal(SIGCHLD, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (jail && opt.jail) {
        size_t n = strlen(opt.root);
        const char *props = getenv("ANDROID_PROPERTY_DIR");
        if (props && !strncmp(props, opt.root, n) && props[n] == '/') setenv("ANDROID_PROPERTY_DIR", props + n, 1);
        if (chroot(opt.root) || chdir("/")) {
            fprintf(stderr, "adbd: chroot %s: %s\n", opt.root, strerror(errno));
            _exit(126);
        }
    }
    const char *dir = opt.chdir_dir ? opt.chdir_dir : opt.jail ? "/" : opt.root;
    if (chdir(dir) && chdir("/")) _exit(126);
}
static void child_exec(const char *cmd) {
    for (int fd = 3; fd < 1024; fd++) close(fd);
    if (cmd && *cmd) execl(opt.shell, "sh", "-c", cmd, (char *)NULL);
    else execl(opt.shell, "sh", "-", (char *)NULL); /* interactive when stdin is a tty, like adbd */
    fprintf(stderr, "adbd: cannot run %s: %s\n", opt.shell, strerror(errno));
    _exit(127);
}

/* service: "shell[,v2][,raw|,pty][,TERM=x]:cmd" or "exec:cmd" */
static stream_t *open_shell(const char *svc) {
    const char *colon = strchr(svc, ':');
    const char *cmd = colon ? colon + 1 : "";
    char args[256] = "", term[64] = "";
    int v2 = 0, pty = -1, is_exec = !strncmp(svc, "exec", 4);
    if (colon && (size_t)(colon - svc) < sizeof args) {
        memcpy(args, svc, colon - svc);
        args[colon - svc] = 0;
    }
    for (char *save = NULL, *a = strtok_r(args, ",", &save); a; a = strtok_r(NULL, ",", &save)) {
        if (!strcmp(a, "v2")) v2 = 1;
        else if (!strcmp(a, "raw")) pty = 0;
        else if (!strcmp(a, "pty")) pty = 1;
        else if (!strncmp(a, "TERM=", 5)) snprintf(term, sizeof term, "%s", a + 5);
    }
    if (pty < 0) pty = !is_exec && !*cmd; /* legacy: pty for an interactive shell, pipes for a command */
    stream_t *s = stream_new(ST_SHELL);
    if (!s) return NULL;
    s->v2 = v2;
    s->pty = pty;
    int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1}, master = -1;
    char *slave_name = NULL;
    if (pty) {
        master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (master < 0 || grantpt(master) || unlockpt(master) || !(slave_name = ptsname(master))) goto fail;
    } else {
        if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC) || (v2 && pipe2(err, O_CLOEXEC))) goto fail;
    }
    pid_t pid = fork();
    if (pid < 0) goto fail;
    if (pid == 0) {
        setsid();
        int sl = pty ? open(slave_name, O_RDWR) : -1; /* before a chroot: /dev/pts is outside */
        if (pty && sl < 0) _exit(126);
        child_common(1);
        if (*term) setenv("TERM", term, 1);
        if (pty) {
            ioctl(sl, TIOCSCTTY, 0);
            dup2(sl, 0); dup2(sl, 1); dup2(sl, 2);
        } else {
            dup2(in[0], 0);
            dup2(out[1], 1);
            dup2(v2 ? err[1] : out[1], 2);
        }
        child_exec(cmd);
    }
    s->pid = pid;
    if (pty) {
        s->fd_in = s->fd_out = master;
        set_nonblock(master);
    } else {
        close(in[0]); close(out[1]);
        if (v2) close(err[1]);
        s->fd_in = in[1];
        s->fd_out = out[0];
        s->fd_err = v2 ? err[0] : -1;
        set_nonblock(s->fd_in); set_nonblock(s->fd_out);
        if (s->fd_err >= 0) set_nonblock(s->fd_err);
    }
    logmsg("stream %u: %s (pid %d, v2=%d, pty=%d)", s->local, svc, (int)pid, v2, pty);
    return s;
fail:
    for (int i = 0; i < 2; i++) {
        if (in[i] >= 0) close(in[i]);
        if (out[i] >= 0) close(out[i]);
        if (err[i] >= 0) close(err[i]);
    }
    if (master >= 0) close(master);
    stream_free(s);
    return NULL;
}

static void shell_stdin(stream_t *s, const char *p, size_t n) {
    if (s->fd_in >= 0) buf_add(&s->in, p, n);
}

/* data of a WRTE for a shell stream: raw stdin (legacy) or v2 packets */
static void shell_data(stream_t *s, const char *p, size_t n) {
    if (!s->v2) { shell_stdin(s, p, n); return; }
    /* v2 packets may span WRTEs: keep the unparsed rest in s->link (reused as the packet buffer) */
    buf_add(&s->link, p, n);
    while (s->link.len >= 5) {
        unsigned char *h = (unsigned char *)buf_ptr(&s->link);
        uint32_t len = rd32(h + 1);
        if (len > MAX_PAYLOAD) conn_lost("shell v2 packet longer than the maximum payload");
        if (s->link.len < 5 + (size_t)len) break;
        int id = h[0];
        char *data = (char *)h + 5;
        if (id == PK_STDIN) shell_stdin(s, data, len);
        else if (id == PK_CLOSE_STDIN) s->close_stdin_pending = 1;
        else if (id == PK_WINDOW && s->pty && s->fd_out >= 0) {
            char tmp[64];
            struct winsize ws = {0};
            unsigned r = 0, c = 0, x = 0, y = 0;
            snprintf(tmp, sizeof tmp, "%.*s", (int)(len < 63 ? len : 63), data);
            if (sscanf(tmp, "%ux%u,%ux%u", &r, &c, &x, &y) >= 2) {
                ws.ws_row = r; ws.ws_col = c; ws.ws_xpixel = x; ws.ws_ypixel = y;
                ioctl(s->fd_out, TIOCSWINSZ, &ws);
            }
        }
        buf_eat(&s->link, 5 + len);
    }
}

/* write pending stdin; returns when the pipe would block */
static void shell_flush_stdin(stream_t *s) {
    while (s->in.len && s->fd_in >= 0) {
        ssize_t w = write(s->fd_in, buf_ptr(&s->in), s->in.len);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && errno == EAGAIN) return;
        if (w <= 0) { /* child closed its stdin: drop the rest */
            buf_eat(&s->in, s->in.len);
            if (!s->pty) close_fd(&s->fd_in);
            break;
        }
        buf_eat(&s->in, w);
    }
    if (!s->in.len && s->close_stdin_pending && !s->pty) close_fd(&s->fd_in);
}

/* read one chunk of child output into out (when out is empty). Returns 1 if something happened. */
static int shell_read(stream_t *s, int *fd, int pk) {
    char tmp[MAX_PAYLOAD];
    size_t room = max_payload - (s->v2 ? 5 : 0);
    if (room > sizeof tmp) room = sizeof tmp;
    ssize_t r = read(*fd, tmp, room);
    if (r < 0 && (errno == EINTR)) return 0;
    if (r < 0 && errno == EAGAIN) {
        if (s->reaped) { /* child gone and nothing left now: done with this output */
            if (s->fd_in == *fd) s->fd_in = -1;
            close_fd(fd);
            return 1;
        }
        return 0;
    }
    if (r <= 0) { /* EOF (or EIO of a pty whose slave is gone) */
        if (s->fd_in == *fd) s->fd_in = -1;
        close_fd(fd);
        return 1;
    }
    if (s->v2) {
        unsigned char h[5];
        h[0] = pk;
        wr32(h + 1, r);
        buf_add(&s->out, h, 5);
    }
    buf_add(&s->out, tmp, r);
    return 1;
}

/* ---------------------------------------------------------------- sync */

static void sync_reply(stream_t *s, const char *id, uint32_t v, const void *data, size_t n) {
    char h[8];
    memcpy(h, id, 4);
    wr32(h + 4, v);
    buf_add(&s->out, h, 8);
    if (n) buf_add(&s->out, data, n);
}
static void sync_fail(stream_t *s, const char *msg) { sync_reply(s, "FAIL", strlen(msg), msg, strlen(msg)); }

static void sync_path(char *out, size_t n, const char *p) {
    if (!strcmp(opt.root, "/")) snprintf(out, n, "%s", p);
    else snprintf(out, n, "%s%s%s", opt.root, *p == '/' ? "" : "/", p);
}
static void mkdirs_for(const char *path) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *c = tmp + 1; *c; c++) {
        if (*c != '/') continue;
        *c = 0;
        mkdir(tmp, 0775);
        *c = '/';
    }
}

static void sync_stat(stream_t *s, const char *path) {
    struct stat st;
    char r[12] = {0};
    if (lstat(path, &st) == 0) {
        wr32(r, st.st_mode); wr32(r + 4, st.st_size); wr32(r + 8, st.st_mtime);
    }
    sync_reply(s, "STAT", rd32(r), r + 4, 8);
}
static void sync_list(stream_t *s, const char *path) {
    DIR *d = opendir(path);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        char full[8192 + 512], r[16];
        struct stat st;
        snprintf(full, sizeof full, "%s/%s", path, e->d_name);
        if (lstat(full, &st)) continue;
        size_t nl = strlen(e->d_name);
        wr32(r, st.st_size); wr32(r + 4, st.st_mtime); wr32(r + 8, nl);
        sync_reply(s, "DENT", st.st_mode, r, 12);
        buf_add(&s->out, e->d_name, nl);
    }
    if (d) closedir(d);
    char z[12] = {0};
    sync_reply(s, "DONE", 0, z, 12);
}
static void sync_send_begin(stream_t *s, char *arg) {
    char *comma = strrchr(arg, ',');
    unsigned mode = 0100644;
    if (comma) { *comma = 0; mode = strtoul(comma + 1, NULL, 10); }
    sync_path(s->send_path, sizeof s->send_path, arg);
    s->send_active = 1;
    s->send_fail[0] = 0;
    s->send_link = S_ISLNK(mode);
    if (s->send_link) return;
    mkdirs_for(s->send_path);
    unlink(s->send_path);
    s->send_fd = open(s->send_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, (mode & 0777) ? (mode & 0777) : 0644);
    if (s->send_fd < 0) snprintf(s->send_fail, sizeof s->send_fail, "couldn't create file: %s", strerror(errno));
}
static void sync_send_data(stream_t *s, const char *p, size_t n) {
    if (s->send_link) { buf_add(&s->link, p, n); return; }
    if (s->send_fd >= 0 && write_all(s->send_fd, p, n)) {
        snprintf(s->send_fail, sizeof s->send_fail, "write failed: %s", strerror(errno));
        close_fd(&s->send_fd);
    }
}
static void sync_send_done(stream_t *s, uint32_t mtime) {
    if (s->send_link && !s->send_fail[0]) {
        char target[4096];
        snprintf(target, sizeof target, "%.*s", (int)s->link.len, s->link.len ? buf_ptr(&s->link) : "");
        buf_eat(&s->link, s->link.len);
        mkdirs_for(s->send_path);
        unlink(s->send_path);
        if (symlink(target, s->send_path)) snprintf(s->send_fail, sizeof s->send_fail, "symlink failed: %s", strerror(errno));
    } else if (s->send_fd >= 0) {
        struct timespec ts[2] = {{mtime, 0}, {mtime, 0}};
        futimens(s->send_fd, ts);
        if (close(s->send_fd) && !s->send_fail[0]) snprintf(s->send_fail, sizeof s->send_fail, "close failed: %s", strerror(errno));
        s->send_fd = -1;
    }
    s->send_active = 0;
    if (s->send_fail[0]) sync_fail(s, s->send_fail);
    else sync_reply(s, "OKAY", 0, NULL, 0);
}
static void sync_recv_chunk(stream_t *s) {
    char tmp[SYNC_DATA_MAX];
    ssize_t r;
    do r = read(s->recv_fd, tmp, sizeof tmp); while (r < 0 && errno == EINTR);
    if (r > 0) { sync_reply(s, "DATA", r, tmp, r); return; }
    close_fd(&s->recv_fd);
    if (r < 0) sync_fail(s, strerror(errno));
    else sync_reply(s, "DONE", 0, NULL, 0);
}

/* parse and serve complete requests in s->in; stops while a RECV is streaming or output piles up */
static void sync_serve(stream_t *s) {
    while (!s->closing && s->recv_fd < 0 && s->out.len < SYNC_DATA_MAX && s->in.len >= 8) {
        char *h = buf_ptr(&s->in);
        uint32_t len = rd32(h + 4);
        char id[5] = {h[0], h[1], h[2], h[3], 0};
        int has_data = !strcmp(id, "STAT") || !strcmp(id, "LIST") || !strcmp(id, "SEND") ||
                       !strcmp(id, "RECV") || !strcmp(id, "DATA");
        if (has_data && len > (strcmp(id, "DATA") ? 4096u : (uint32_t)SYNC_DATA_MAX)) {
            sync_fail(s, "sync request too long");
            s->closing = 1;
            break;
        }
        if (has_data && s->in.len < 8 + (size_t)len) break;
        char arg[4097];
        if (has_data && strcmp(id, "DATA")) {
            memcpy(arg, h + 8, len);
            arg[len] = 0;
        }
        char path[8192];
        if (!strcmp(id, "DATA")) {
            if (s->send_active) sync_send_data(s, h + 8, len);
        } else if (!strcmp(id, "DONE")) {
            if (s->send_active) sync_send_done(s, len);
        } else if (!strcmp(id, "QUIT")) {
            s->closing = 1;
        } else if (!strcmp(id, "STAT")) {
            sync_path(path, sizeof path, arg);
            sync_stat(s, path);
        } else if (!strcmp(id, "LIST")) {
            sync_path(path, sizeof path, arg);
            sync_list(s, path);
        } else if (!strcmp(id, "SEND")) {
            sync_send_begin(s, arg);
        } else if (!strcmp(id, "RECV")) {
            sync_path(path, sizeof path, arg);
            s->recv_fd = open(path, O_RDONLY | O_CLOEXEC);
            if (s->recv_fd < 0) sync_fail(s, strerror(errno));
        } else {
            sync_fail(s, "unknown sync request");
            s->closing = 1;
        }
        buf_eat(&s->in, 8 + (has_data ? len : 0));
    }
}

/* ---------------------------------------------------------------- services */

static void do_reboot(const char *target) {
    sync();
    pid_t pid = fork();
    if (pid == 0) {
        setsid();
        child_common(0);
        for (int fd = 3; fd < 1024; fd++) close(fd);
        execl(opt.shell, "sh", "-c", opt.reboot_cmd, "sh", target, (char *)NULL);
        _exit(127);
    }
}

static void handle_open(uint32_t remote, const char *svc) {
    stream_t *s = NULL;
    logmsg("OPEN %u %s", remote, svc);
    if (!strncmp(svc, "shell", 5) && (svc[5] == ':' || svc[5] == ',' || !svc[5])) s = open_shell(svc);
    else if (!strncmp(svc, "exec:", 5)) s = open_shell(svc);
    else if (!strcmp(svc, "root:")) s = open_shell("exec:echo adbd is already running as root");
    else if (!strcmp(svc, "unroot:")) s = open_shell("exec:echo adbd not running as root: lab image is always root");
    else if (!strcmp(svc, "remount:"))
        s = open_shell("exec:mount -o remount,rw /system 2>&1 && echo remount succeeded || echo remount failed");
    else if (!strcmp(svc, "sync:")) s = stream_new(ST_SYNC);
    else if (!strncmp(svc, "reboot:", 7) && opt.reboot_cmd) {
        s = stream_new(ST_SYNC);
        if (s) {
            s->remote = remote;
            send_msg(A_OKAY, s->local, remote, NULL, 0);
            do_reboot(svc + 7);
            s->closing = 1;
            return;
        }
    }
    if (!s) { send_msg(A_CLSE, 0, remote, NULL, 0); return; }
    s->remote = remote;
    send_msg(A_OKAY, s->local, remote, NULL, 0);
}

static void banner(char *out, size_t n) {
    char name[128], model[128], device[128];
    prop_get("ro.product.name", name, sizeof name);
    prop_get("ro.product.model", model, sizeof model);
    prop_get("ro.product.device", device, sizeof device);
    snprintf(out, n, "device::ro.product.name=%s;ro.product.model=%s;ro.product.device=%s;features=" FEATURES,
             name, model, device);
}

static void handle_msg(uint32_t cmd, uint32_t a0, uint32_t a1, char *data, uint32_t len) {
    stream_t *s;
    switch (cmd) {
    case A_CNXN: {
        char b[512];
        kill_all_streams();
        max_payload = a1 < MAX_PAYLOAD ? a1 : MAX_PAYLOAD;
        if (max_payload < 4096) max_payload = 4096;
        banner(b, sizeof b);
        send_msg(A_CNXN, a0 < A_VERSION ? (a0 < A_VERSION_MIN ? A_VERSION_MIN : a0) : A_VERSION, MAX_PAYLOAD, b, strlen(b));
        logmsg("CNXN version %08x maxdata %u", a0, a1);
        break;
    }
    case A_OPEN: {
        char svc[4096];
        snprintf(svc, sizeof svc, "%.*s", (int)len, data);
        handle_open(a0, svc);
        break;
    }
    case A_OKAY:
        if ((s = stream_find(a1))) { s->awaiting = 0; s->remote = a0; }
        break;
    case A_WRTE:
        if (!(s = stream_find(a1))) { send_msg(A_CLSE, 0, a0, NULL, 0); break; }
        if (s->type == ST_SHELL) shell_data(s, data, len);
        else buf_add(&s->in, data, len);
        s->need_ack = 1;
        break;
    case A_CLSE:
        if ((s = stream_find(a1))) stream_free(s);
        break;
    default: /* A_AUTH, A_SYNC, anything else: ignored */
        break;
    }
}

/* ---------------------------------------------------------------- connection loop */

/* SIGTERM/SIGHUP of a connection process: its shells' process groups go with it */
static void on_term_conn(int sig) {
    (void)sig;
    for (int i = 0; i < MAX_STREAMS; i++)
        if (streams[i].used && streams[i].type == ST_SHELL && streams[i].pid > 0 && !streams[i].reaped)
            kill(-streams[i].pid, SIGKILL);
    _exit(0);
}

static void on_sigchld(int sig) {
    (void)sig;
    int e = errno;
    if (write(sigpipe_fds[1], "c", 1) < 0) {}
    errno = e;
}

static void reap(void) {
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (int i = 0; i < MAX_STREAMS; i++) {
            stream_t *s = &streams[i];
            if (s->used && s->type == ST_SHELL && s->pid == pid) {
                s->reaped = 1;
                s->status = status;
            }
        }
    }
}

/* move a stream forward: stdin, output, acks, exit, close. */
static void pump(stream_t *s, struct pollfd *pf) {
    if (s->type == ST_SHELL) {
        shell_flush_stdin(s);
        if (!s->out.len) {
            int *first = s->next_err ? &s->fd_err : &s->fd_out, *second = s->next_err ? &s->fd_out : &s->fd_err;
            int fi = s->next_err ? s->pi_err : s->pi_out, si = s->next_err ? s->pi_out : s->pi_err;
            int pk1 = s->next_err ? PK_STDERR : PK_STDOUT, pk2 = s->next_err ? PK_STDOUT : PK_STDERR;
            int ready1 = *first >= 0 && (s->reaped || (fi >= 0 && pf[fi].revents));
            int ready2 = *second >= 0 && (s->reaped || (si >= 0 && pf[si].revents));
            if (ready1) shell_read(s, first, pk1);
            if (!s->out.len && ready2) shell_read(s, second, pk2);
            s->next_err = !s->next_err;
        }
        if (s->need_ack && !s->in.len) {
            send_msg(A_OKAY, s->local, s->remote, NULL, 0);
            s->need_ack = 0;
        }
        if (s->reaped && s->fd_out < 0 && s->fd_err < 0 && !s->out.len && !s->closing) {
            if (s->v2 && !s->exit_sent) {
                unsigned char p[6] = {PK_EXIT, 1, 0, 0, 0, 0};
                int st = s->status;
                p[5] = WIFEXITED(st) ? WEXITSTATUS(st) : WIFSIGNALED(st) ? 128 + WTERMSIG(st) : 255;
                buf_add(&s->out, p, 6);
                s->exit_sent = 1;
            } else {
                s->closing = 1;
            }
        }
    } else {
        if (s->recv_fd >= 0 && !s->out.len) sync_recv_chunk(s);
        sync_serve(s);
        if (s->need_ack && (s->in.len < 8 || s->in.len < 8 + (size_t)rd32(buf_ptr(&s->in) + 4)) &&
            s->recv_fd < 0 && s->out.len < SYNC_DATA_MAX) {
            send_msg(A_OKAY, s->local, s->remote, NULL, 0);
            s->need_ack = 0;
        }
        if (s->recv_fd >= 0 && !s->out.len) sync_recv_chunk(s);
    }
    if (s->out.len && !s->awaiting) {
        uint32_t n = s->out.len < max_payload ? s->out.len : max_payload;
        send_msg(A_WRTE, s->local, s->remote, buf_ptr(&s->out), n);
        buf_eat(&s->out, n);
        s->awaiting = 1;
    }
    if (s->closing && !s->out.len && !s->awaiting) {
        send_msg(A_CLSE, s->local, s->remote, NULL, 0);
        stream_free(s);
    }
}

static void serve_connection(int fd) {
    buf_t in = {0};
    conn_fd = fd;
    if (pipe2(sigpipe_fds, O_CLOEXEC | O_NONBLOCK)) _exit(1);
    struct sigaction sa = {0};
    sa.sa_handler = on_sigchld;
    sa.sa_flags = SA_NOCLDSTOP;
    sigaction(SIGCHLD, &sa, NULL);
    struct sigaction st = {0};
    st.sa_handler = on_term_conn;
    sigaction(SIGTERM, &st, NULL);
    sigaction(SIGHUP, &st, NULL);
    for (;;) {
        struct pollfd pf[2 + 3 * MAX_STREAMS];
        int n = 0, timeout = -1;
        pf[n++] = (struct pollfd){fd, POLLIN, 0};
        pf[n++] = (struct pollfd){sigpipe_fds[0], POLLIN, 0};
        for (int i = 0; i < MAX_STREAMS; i++) {
            stream_t *s = &streams[i];
            s->pi_in = s->pi_out = s->pi_err = -1;
            if (!s->used) continue;
            if (s->type == ST_SHELL) {
                if (s->in.len && s->fd_in >= 0) { s->pi_in = n; pf[n++] = (struct pollfd){s->fd_in, POLLOUT, 0}; }
                if (!s->out.len && s->fd_out >= 0) { s->pi_out = n; pf[n++] = (struct pollfd){s->fd_out, POLLIN, 0}; }
                if (!s->out.len && s->fd_err >= 0) { s->pi_err = n; pf[n++] = (struct pollfd){s->fd_err, POLLIN, 0}; }
                /* the child is gone: drain what its pipes still hold without waiting */
                if (s->reaped && !s->out.len && (s->fd_out >= 0 || s->fd_err >= 0)) timeout = 0;
            }
        }
        int r = poll(pf, n, timeout);
        if (r < 0 && errno != EINTR) conn_lost("poll failed");
        if (r > 0 && pf[1].revents) {
            char tmp[64];
            while (read(sigpipe_fds[0], tmp, sizeof tmp) > 0) {}
        }
        reap();
        if (r > 0 && pf[0].revents) {
            buf_reserve(&in, 256 * 1024);
            ssize_t got = read(fd, in.d + in.off + in.len, 256 * 1024);
            if (got < 0 && errno == EINTR) got = -2;
            if (got == 0 || got == -1) conn_lost(got ? strerror(errno) : "peer closed");
            if (got > 0) in.len += got;
            while (in.len >= 24) {
                unsigned char *h = (unsigned char *)buf_ptr(&in);
                uint32_t cmd = rd32(h), dlen = rd32(h + 12);
                if ((cmd ^ 0xffffffffu) != rd32(h + 20) || dlen > MAX_IN_PAYLOAD) conn_lost("bad message header");
                if (in.len < 24 + (size_t)dlen) break;
                handle_msg(cmd, rd32(h + 4), rd32(h + 8), (char *)h + 24, dlen);
                buf_eat(&in, 24 + dlen);
            }
        }
        for (int i = 0; i < MAX_STREAMS; i++)
            if (streams[i].used) pump(&streams[i], pf);
    }
}

/* ---------------------------------------------------------------- main */

#define MAX_CONNS 256
static volatile pid_t conns[MAX_CONNS]; /* live connection processes of the listening daemon */

static void on_sigchld_main(int sig) {
    (void)sig;
    int e = errno, status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
        for (int i = 0; i < MAX_CONNS; i++)
            if (conns[i] == pid) conns[i] = 0;
    errno = e;
}
static void on_term_main(int sig) {
    for (int i = 0; i < MAX_CONNS; i++)
        if (conns[i] > 0) kill(conns[i], SIGTERM);
    signal(sig, SIG_DFL);
    raise(sig);
}

static void usage(void) {
    fprintf(stderr, "usage: adbd [--port N] [--listen ADDR] [--chdir DIR] [--root DIR] [--props DIR]\n"
                    "            [--shell PATH] [--reboot-cmd CMD] [--pidfile FILE] [--chroot] [--verbose]\n"
                    "       adbd getprop [NAME [DEFAULT]] | setprop NAME VALUE | start SVC | stop SVC\n");
    exit(2);
}

int main(int argc, char **argv) {
    char *me = basename(argv[0]);
    const char *tools[] = {"getprop", "setprop", "start", "stop"};
    for (int i = 0; i < 4; i++) {
        if (!strcmp(me, tools[i])) return prop_tool(tools[i], argc, argv);
        if (argc > 1 && !strcmp(argv[1], tools[i])) return prop_tool(tools[i], argc - 1, argv + 1);
    }
    static struct option lo[] = {
        {"port", 1, 0, 'p'}, {"listen", 1, 0, 'l'}, {"chdir", 1, 0, 'c'}, {"root", 1, 0, 'r'},
        {"props", 1, 0, 'P'}, {"shell", 1, 0, 's'}, {"reboot-cmd", 1, 0, 'R'}, {"pidfile", 1, 0, 'f'},
        {"chroot", 0, 0, 'C'}, {"verbose", 0, 0, 'v'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "p:l:c:r:P:s:R:f:Cvh", lo, NULL)) != -1) {
        switch (c) {
        case 'p': opt.port = atoi(optarg); break;
        case 'l': opt.listen_addr = optarg; break;
        case 'c': opt.chdir_dir = optarg; break;
        case 'r': opt.root = optarg; break;
        case 'P': opt.props = optarg; break;
        case 's': opt.shell = optarg; break;
        case 'R': opt.reboot_cmd = optarg; break;
        case 'f': opt.pidfile = optarg; break;
        case 'C': opt.jail = 1; break;
        case 'v': opt.verbose = 1; break;
        default: usage();
        }
    }
    if (optind != argc || opt.port <= 0 || opt.port > 65535) usage();
    if (opt.props) setenv("ANDROID_PROPERTY_DIR", opt.props, 1);
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sc = {0};
    sc.sa_handler = on_sigchld_main;
    sc.sa_flags = SA_NOCLDSTOP | SA_RESTART;
    sigaction(SIGCHLD, &sc, NULL);
    struct sigaction stm = {0};
    stm.sa_handler = on_term_main;
    sigaction(SIGTERM, &stm, NULL);
    sigaction(SIGINT, &stm, NULL);
    sigset_t chld, old;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigaddset(&chld, SIGTERM);

    int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(opt.port);
    if (inet_pton(AF_INET, opt.listen_addr, &sa.sin_addr) != 1) { fprintf(stderr, "adbd: bad --listen address %s\n", opt.listen_addr); return 2; }
    if (bind(ls, (struct sockaddr *)&sa, sizeof sa) || listen(ls, 16)) {
        fprintf(stderr, "adbd: cannot listen on %s:%d: %s\n", opt.listen_addr, opt.port, strerror(errno));
        return 1;
    }
    if (opt.pidfile) {
        FILE *f = fopen(opt.pidfile, "w");
        if (f) { fprintf(f, "%d\n", (int)getpid()); fclose(f); }
    }
    fprintf(stderr, "adbd: listening on %s:%d\n", opt.listen_addr, opt.port);
    for (;;) {
        int fd = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EINTR) usleep(100000);
            continue;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        sigprocmask(SIG_BLOCK, &chld, &old);
        pid_t pid = fork();
        if (pid == 0) {
            signal(SIGTERM, SIG_DFL);
            signal(SIGINT, SIG_DFL);
            sigprocmask(SIG_SETMASK, &old, NULL);
            close(ls);
            serve_connection(fd);
        }
        for (int i = 0; pid > 0 && i < MAX_CONNS; i++)
            if (conns[i] == 0) { conns[i] = pid; break; }
        sigprocmask(SIG_SETMASK, &old, NULL);
        close(fd);
    }
}
