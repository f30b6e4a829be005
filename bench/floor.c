/*
 * floor: the I/O floor for indexing a DICOM archive.
 *
 * Walks the tree, then for every regular file: open, read 16 KiB, close.
 * That is the least any header indexer must do, so fastindex is measured
 * against it.  The walk uses readdir's d_type (lstat only when the file
 * system does not fill it in), as a lean indexer would, and does not follow
 * symlinks.  The walk comes first, into a list; then N threads take files
 * from the list (--threads, default 1).
 *
 *   floor [--threads N] [--resident] DIR...
 *
 * Prints one line:  files=N errors=N threads=N walk=S read=S seconds=S
 * --resident reads nothing: it reports how many files have their first
 * page in the page cache (mincore), to check that cache eviction worked.
 *
 * Build: gcc -O2 -pthread -o floor floor.c
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define READ_SIZE (16 * 1024)

static char **paths;
static size_t npaths, cap;
static atomic_size_t next_file;
static atomic_size_t errors;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void push(const char *path) {
    if (npaths == cap) {
        cap = cap ? cap * 2 : 4096;
        paths = realloc(paths, cap * sizeof *paths);
        if (!paths) { perror("realloc"); exit(1); }
    }
    paths[npaths++] = strdup(path);
}

static void walk(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) { fprintf(stderr, "floor: %s: %s\n", dir, strerror(errno)); errors++; return; }
    size_t len = strlen(dir);
    char *path = malloc(len + 258);
    memcpy(path, dir, len);
    path[len] = '/';
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        strcpy(path + len + 1, e->d_name);
        unsigned char type = e->d_type;
        if (type == DT_UNKNOWN) {  /* some file systems leave it to lstat */
            struct stat st;
            if (lstat(path, &st)) { errors++; continue; }
            type = S_ISDIR(st.st_mode) ? DT_DIR : S_ISREG(st.st_mode) ? DT_REG : DT_UNKNOWN;
        }
        if (type == DT_DIR) walk(path);
        else if (type == DT_REG) push(path);
    }
    free(path);
    closedir(d);
}

static void *reader(void *arg) {
    (void)arg;
    char *buf = malloc(READ_SIZE);
    size_t i;
    while ((i = atomic_fetch_add(&next_file, 1)) < npaths) {
        int fd = open(paths[i], O_RDONLY | O_CLOEXEC);
        if (fd < 0) { errors++; continue; }
        if (read(fd, buf, READ_SIZE) < 0) errors++;
        close(fd);
    }
    free(buf);
    return NULL;
}

/* Files whose first page is in the page cache. */
static size_t count_resident(void) {
    size_t resident = 0;
    long page = sysconf(_SC_PAGESIZE);
    for (size_t i = 0; i < npaths; i++) {
        int fd = open(paths[i], O_RDONLY | O_CLOEXEC);
        if (fd < 0) { errors++; continue; }
        void *map = mmap(NULL, page, PROT_READ, MAP_SHARED, fd, 0);
        unsigned char vec = 0;
        if (map != MAP_FAILED) {
            if (mincore(map, page, &vec) == 0 && (vec & 1)) resident++;
            munmap(map, page);
        }
        close(fd);
    }
    return resident;
}

int main(int argc, char **argv) {
    int threads = 1, resident = 0, ndirs = 0;
    char **dirs = calloc(argc, sizeof *dirs);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--resident")) resident = 1;
        else if (argv[i][0] == '-') {
            fprintf(stderr, "usage: floor [--threads N] [--resident] DIR...\n");
            return 2;
        } else dirs[ndirs++] = argv[i];
    }
    if (!ndirs || threads < 1) {
        fprintf(stderr, "usage: floor [--threads N] [--resident] DIR...\n");
        return 2;
    }

    double t0 = now();
    for (int i = 0; i < ndirs; i++) walk(dirs[i]);
    double t1 = now();

    if (resident) {
        size_t n = count_resident();
        printf("files=%zu resident=%zu errors=%zu\n", npaths, n, (size_t)errors);
        return 0;
    }
    pthread_t *tid = calloc(threads, sizeof *tid);
    for (int i = 0; i < threads; i++) pthread_create(&tid[i], NULL, reader, NULL);
    for (int i = 0; i < threads; i++) pthread_join(tid[i], NULL);
    double t2 = now();

    printf("files=%zu errors=%zu threads=%d walk=%.4f read=%.4f seconds=%.4f\n",
           npaths, (size_t)errors, threads, t1 - t0, t2 - t1, t2 - t0);
    return errors ? 1 : 0;
}
