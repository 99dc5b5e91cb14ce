/* The lab's talosctl and helm as a native program: hands each call to the lab's apid server.
 *
 * Built by lab/runtime.py at lab start (`cc -O2`), once per lab, with the server's socket and the
 * lab's bin directory baked in: -DAPID_SOCKET="..." -DBIN_DIR="...". The tool is the program's own
 * name (bin/talosctl or bin/helm); its fallback is the Python client BIN_DIR/.<tool>.py.
 * Protocol (lab/apid.py): a 4-byte big-endian length, then NUL-separated fields
 *   tool, cwd, argc, argv[1..], environ entries
 * sent with this process's stdin, stdout and stderr attached (SCM_RIGHTS). The server answers the
 * worker's pid, then the exit status (4 bytes each, big-endian). SIGTERM and SIGINT are forwarded
 * to the worker; if it dies of one, this process dies of it too. If no server answers, the
 * fallback (the Python client, which runs the tool in-process) takes over with the same argv.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>
#include <unistd.h>

extern char **environ;
static volatile sig_atomic_t forwarded = 0;
static volatile pid_t worker = 0;

static void forward(int signum) {
    forwarded = signum;
    if (worker > 0) kill(worker, signum);
}

static int read_int(int fd, int32_t *value) {
    unsigned char buffer[4];
    size_t got = 0;
    while (got < 4) {
        ssize_t n = read(fd, buffer + got, 4 - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        got += (size_t)n;
    }
    *value = (int32_t)(((uint32_t)buffer[0] << 24) | ((uint32_t)buffer[1] << 16) | ((uint32_t)buffer[2] << 8) | buffer[3]);
    return 0;
}

static void append(char **buffer, size_t *size, size_t *used, const char *text) {
    /* grows the request; on failure the program ends (it has printed nothing yet) */
    size_t length = strlen(text) + 1;
    if (*used + length > *size) {
        while (*used + length > *size) *size *= 2;
        *buffer = realloc(*buffer, *size);
        if (*buffer == NULL) { perror("lab client"); exit(1); }
    }
    memcpy(*buffer + *used, text, length);
    *used += length;
}

int main(int argc, char **argv) {
    const char *slash = strrchr(argv[0], '/');
    const char *tool = slash ? slash + 1 : argv[0];
    if (strcmp(tool, "talosctl") != 0 && strcmp(tool, "helm") != 0) {
        fprintf(stderr, "%s: the lab's client runs as talosctl or helm\n", argv[0]);
        return 127;
    }
    char fallback[4096];
    snprintf(fallback, sizeof fallback, "%s/.%s.py", BIN_DIR, tool);
    int sock = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un address;
    memset(&address, 0, sizeof address);
    address.sun_family = AF_UNIX;
    strncpy(address.sun_path, APID_SOCKET, sizeof address.sun_path - 1);
    if (sock < 0 || APID_SOCKET[0] == '\0' || connect(sock, (struct sockaddr *)&address, sizeof address) != 0) {
        execv(fallback, argv);
        perror(fallback);
        return 127;
    }
    size_t size = 4096, used = 4;
    char *buffer = malloc(size);
    if (buffer == NULL) { perror(tool); return 1; }
    char cwd[4096], count[16];
    if (getcwd(cwd, sizeof cwd) == NULL) { perror(tool); return 1; }
    snprintf(count, sizeof count, "%d", argc - 1);
    append(&buffer, &size, &used, tool);
    append(&buffer, &size, &used, cwd);
    append(&buffer, &size, &used, count);
    for (int i = 1; i < argc; i++) append(&buffer, &size, &used, argv[i]);
    for (char **entry = environ; *entry != NULL; entry++) append(&buffer, &size, &used, *entry);
    uint32_t body = (uint32_t)(used - 4);
    buffer[0] = (char)(body >> 24); buffer[1] = (char)(body >> 16); buffer[2] = (char)(body >> 8); buffer[3] = (char)body;

    int fds[3] = {0, 1, 2};
    char control[CMSG_SPACE(sizeof fds)];
    memset(control, 0, sizeof control);
    struct iovec vector = {buffer, used};
    struct msghdr message;
    memset(&message, 0, sizeof message);
    message.msg_iov = &vector;
    message.msg_iovlen = 1;
    message.msg_control = control;
    message.msg_controllen = sizeof control;
    struct cmsghdr *header = CMSG_FIRSTHDR(&message);
    header->cmsg_level = SOL_SOCKET;
    header->cmsg_type = SCM_RIGHTS;
    header->cmsg_len = CMSG_LEN(sizeof fds);
    memcpy(CMSG_DATA(header), fds, sizeof fds);
    ssize_t sent = sendmsg(sock, &message, 0);
    if (sent < 0) { perror(tool); return 1; }
    for (size_t done = (size_t)sent; done < used;) {  /* the rest of a long request, without the fds */
        ssize_t n = write(sock, buffer + done, used - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) { perror(tool); return 1; }
        done += (size_t)n;
    }
    free(buffer);

    int32_t pid, status;
    if (read_int(sock, &pid) != 0) return 1;
    worker = (pid_t)pid;
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = forward;
    sigemptyset(&action.sa_mask);
    sigaction(SIGTERM, &action, NULL);
    sigaction(SIGINT, &action, NULL);
    if (forwarded) kill(worker, forwarded);
    if (read_int(sock, &status) != 0) {
        if (forwarded) {
            signal(forwarded, SIG_DFL);
            raise(forwarded);
        }
        return 1;
    }
    return status & 0xff;
}
