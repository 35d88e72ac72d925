/* SPDX-License-Identifier: MIT */
/*
 * test_out_file.c - output files appear whole or not at all (out_file.h): a failed write leaves
 * the old file and no temporary beside it, an existing file keeps its mode, a new one gets the
 * umask's, a symbolic link stays a link, a directory in the way is refused; and the JSON file
 * helpers of file_util.h (size cap, version tag) on files this test writes.
 */
#include <config.h>

#include "runtime/base/file_util.h"
#include "runtime/base/out_file.h"
#include "runtime/plan/svg.h"
#include "tests/tap.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[1024];

static const char *
in_dir(const char *name)
{
    static char paths[4][4096];
    static int next;
    char *p = paths[next++ % 4];

    snprintf(p, sizeof(paths[0]), "%s/%s", dir, name);
    return p;
}

static void
put_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    if (f == NULL || fputs(text, f) == EOF || fclose(f) != 0) {
        tap_bail_out("cannot write a test file");
    }
}

/* Whether path holds exactly text. */
static bool
file_is(const char *path, const char *text)
{
    char buf[256];

    if (access(path, F_OK) != 0) {
        return false; /* not an empty one */
    }
    tap_read_text(path, buf, sizeof(buf));
    return strcmp(buf, text) == 0;
}

/* How many entries of the test directory start with '.' (other than . and ..): temporaries. */
static int
hidden_entries(void)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;

    while (d != NULL && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' && strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            n++;
        }
    }
    if (d != NULL) {
        closedir(d);
    }
    return n;
}

/* Open path, write text, commit. */
static mt_status_t
write_whole(const char *path, const char *text)
{
    struct mt_out_file o;
    mt_status_t st = mt_out_file_open(path, "chart", &o);

    if (st != MT_OK) {
        return st;
    }
    fputs(text, o.f);
    return mt_out_file_commit(&o);
}

static void
test_failed_write(void)
{
    static char big[1 << 16];
    struct rlimit old;
    struct rlimit small;
    struct mt_out_file o;
    const char *p = in_dir("full.json");
    mt_status_t st;

    /* a write past RLIMIT_FSIZE fails with EFBIG (SIGXFSZ ignored): a disk that fills up */
    put_file(p, "old\n");
    memset(big, 'x', sizeof(big) - 1);
    getrlimit(RLIMIT_FSIZE, &old);
    small = old;
    small.rlim_cur = 4096;
    signal(SIGXFSZ, SIG_IGN);
    st = mt_out_file_open(p, "plan", &o);
    if (st != MT_OK || setrlimit(RLIMIT_FSIZE, &small) != 0) {
        tap_bail_out("cannot set up a failing write");
    }
    /* larger than stdio's buffer: fwrite itself fails, and fflush has nothing left to report */
    fputs(big, o.f);
    st = mt_out_file_commit(&o);
    setrlimit(RLIMIT_FSIZE, &old);
    tap_ok(st == MT_ERR_IO && strstr(mt_last_error(), "cannot write plan '") != NULL &&
               strstr(mt_last_error(), strerror(EFBIG)) != NULL,
           "a failed write is MT_ERR_IO, with the OS reason: %s", mt_last_error());
    tap_ok(file_is(p, "old\n"), "... the file is left as it was");
    tap_ok(hidden_entries() == 0, "... and no temporary file is left beside it");
    tap_ok(o.f == NULL && o.tmp == NULL, "... and the mt_out_file is finished");

    /* the same through a write that only fails when stdio flushes its buffer at the commit */
    st = mt_out_file_open(p, "plan", &o);
    if (st != MT_OK || setrlimit(RLIMIT_FSIZE, &small) != 0) {
        tap_bail_out("cannot set up a failing write");
    }
    fwrite(big, 1, 4096 + 100, o.f);
    st = mt_out_file_commit(&o);
    setrlimit(RLIMIT_FSIZE, &old);
    tap_ok(st == MT_ERR_IO && file_is(p, "old\n") && hidden_entries() == 0,
           "a write that fails at the commit's flush: MT_ERR_IO, old file kept: %s",
           mt_last_error());

    /* /dev/full is written in place (not a regular file) and fails there */
    st = mt_out_file_open("/dev/full", "trace", &o);
    if (st == MT_OK) {
        fputs("x", o.f);
        st = mt_out_file_commit(&o);
        char want[256];

        snprintf(want, sizeof(want), "cannot write trace '/dev/full': %s", strerror(ENOSPC));
        tap_ok(st == MT_ERR_IO && strcmp(mt_last_error(), want) == 0,
               "/dev/full: written in place, the OS reason named: %s", mt_last_error());
        /* a write larger than stdio's buffer fails in fwrite, in place: the flush and the
         * close have nothing left to fail and there is no temporary to ask the OS again, so
         * only the stream's error flag tells (and no errno is left to name) */
        st = mt_out_file_open("/dev/full", "trace", &o);
        if (st == MT_OK) {
            fputs(big, o.f);
            st = mt_out_file_commit(&o);
        }
        tap_ok(st == MT_ERR_IO &&
                   strcmp(mt_last_error(), "cannot write trace '/dev/full': write error") == 0,
               "/dev/full, a write past stdio's buffer: MT_ERR_IO, a write error (status %d): %s",
               (int)st, mt_last_error());
    } else {
        tap_ok(true, "# SKIP no /dev/full");
        tap_ok(true, "# SKIP no /dev/full");
    }
}

static void
test_existing_and_new(void)
{
    struct stat sb;
    const char *p = in_dir("old.svg");
    const char *q = in_dir("new.svg");
    const char *target = in_dir("target.svg");
    const char *link = in_dir("link.svg");
    struct mt_out_file o;
    mode_t mask;
    bool ok;

    put_file(p, "old\n");
    chmod(p, 0604);
    ok = write_whole(p, "new\n") == MT_OK && file_is(p, "new\n") && hidden_entries() == 0;
    tap_ok(ok && stat(p, &sb) == 0 && (sb.st_mode & 07777) == 0604,
           "an existing file is replaced whole and keeps its mode 0604");

    mask = umask(027);
    ok = write_whole(q, "x") == MT_OK;
    umask(mask);
    tap_ok(ok && stat(q, &sb) == 0 && (sb.st_mode & 07777) == 0640,
           "a new file gets what fopen would give under umask 027: 0640");

    put_file(target, "old\n");
    if (symlink("target.svg", link) != 0) {
        tap_bail_out("symlink failed");
    }
    tap_ok(write_whole(link, "through\n") == MT_OK && lstat(link, &sb) == 0 &&
               S_ISLNK(sb.st_mode) && file_is(target, "through\n"),
           "a symbolic link stays a link, and its target is replaced");

    tap_ok(mt_out_file_open(p, "plan", &o) == MT_OK && fputs("half", o.f) != EOF,
           "open over an existing file");
    mt_out_file_abort(&o);
    tap_ok(file_is(p, "new\n") && hidden_entries() == 0 && o.f == NULL,
           "abort leaves the file as it was and removes the temporary");

    tap_ok(mt_out_file_open(p, "plan", &o) == MT_OK && mt_out_file_commit(&o) == MT_OK &&
               mt_out_file_commit(&o) == MT_ERR_INTERNAL &&
               strstr(mt_last_error(), "(null)") == NULL,
           "a second commit is MT_ERR_INTERNAL: %s", mt_last_error());
}

static void
test_directory_in_the_way(void)
{
    struct mt_out_file o;
    const char *d = in_dir("sub");
    mt_status_t st;

    if (mkdir(d, 0755) != 0) {
        tap_bail_out("mkdir failed");
    }
    put_file(in_dir("sub/keep"), "k");
    st = mt_out_file_open(d, "plan", &o);
    if (st == MT_OK) {
        fputs("x", o.f);
        st = mt_out_file_commit(&o);
    }
    tap_ok(st == MT_ERR_IO && file_is(in_dir("sub/keep"), "k"),
           "a directory in the way is MT_ERR_IO, and left as it was: %s", mt_last_error());
    st = mt_out_file_open(in_dir("none/x.json"), "plan", &o);
    tap_ok(st == MT_ERR_IO && strstr(mt_last_error(), "cannot create plan '") != NULL &&
               strstr(mt_last_error(), strerror(ENOENT)) != NULL && o.f == NULL,
           "a missing directory: MT_ERR_IO naming the OS reason: %s", mt_last_error());
}

static void
test_same_file(void)
{
    char spelled[4096];
    char a[4096];

    snprintf(a, sizeof(a), "%s", in_dir("a.json"));
    snprintf(spelled, sizeof(spelled), "%s/./a.json", dir);
    tap_ok(mt_path_is_same_file(a, spelled), "a file not yet written, spelled two ways");
    tap_ok(!mt_path_is_same_file(a, in_dir("b.json")), "another name in the same directory");
    tap_ok(!mt_path_is_same_file(a, in_dir("a.json.bak")),
           "another name in the same directory, one that begins with the first");
    tap_ok(!mt_path_is_same_file(a, in_dir("sub/a.json")), "the same name in another directory");
    put_file(a, "a");
    put_file(in_dir("b.json"), "a");
    tap_ok(!mt_path_is_same_file(a, in_dir("b.json")), "two files with the same bytes");
    tap_ok(mt_path_is_same_file(in_dir("link.svg"), in_dir("target.svg")), "a link and its target");
    tap_ok(!mt_path_is_same_file(a, NULL) && !mt_path_is_same_file(NULL, a), "NULL: false");
    /* a bare name is in the working directory */
    if (chdir(dir) != 0) {
        tap_bail_out("chdir failed");
    }
    tap_ok(mt_path_is_same_file("c.json", "./c.json") &&
               mt_path_is_same_file("c.json", in_dir("c.json")),
           "a bare name not yet written is the name in the working directory");
    tap_ok(!mt_path_is_same_file("c.json", in_dir("sub/c.json")),
           "... not the same name in another directory");
    if (chdir("/") != 0) {
        tap_bail_out("chdir failed");
    }
}

static void
test_json_files(void)
{
    const char *p = in_dir("v.json");
    json_t *root = NULL;
    char *data = NULL;
    size_t len = 0;
    mt_status_t st;

    put_file(p, "0123456789");
    st = mt_file_read_all(p, "plan", 10, &data, &len);
    tap_ok(st == MT_OK && len == 10 && strcmp(data, "0123456789") == 0,
           "a file of exactly max_bytes is read whole");
    free(data);
    data = NULL;
    st = mt_file_read_all(p, "plan", 9, &data, &len);
    tap_ok(st == MT_ERR_FORMAT && data == NULL && strstr(mt_last_error(), "too large") != NULL,
           "one byte over max_bytes is MT_ERR_FORMAT: %s", mt_last_error());

    put_file(p, "{\"format\": \"moetier-plan\", \"version\": 2}");
    st = mt_json_load_versioned(p, "plan", "moetier-plan", 3, &root);
    tap_ok(st == MT_ERR_FORMAT && root == NULL &&
               strstr(mt_last_error(), "has version 2, this moetier reads version 3") != NULL,
           "an older version is refused: %s", mt_last_error());
    st = mt_json_load_versioned(p, "plan", "moetier-plan", 1, &root);
    tap_ok(st == MT_ERR_FORMAT && root == NULL, "a newer version is refused: %s", mt_last_error());
    st = mt_json_load_versioned(p, "plan", "moetier-trace", 2, &root);
    tap_ok(st == MT_ERR_FORMAT && root == NULL &&
               strstr(mt_last_error(), "is not a moetier") != NULL,
           "another format tag is refused: %s", mt_last_error());
    put_file(p, "{\"format\": \"moetier-plan\"}");
    st = mt_json_load_versioned(p, "plan", "moetier-plan", 1, &root);
    tap_ok(st == MT_ERR_FORMAT && strstr(mt_last_error(), "missing field 'version'") != NULL,
           "a missing version is named: %s", mt_last_error());
    put_file(p, "[\"format\", \"moetier-plan\"]");
    st = mt_json_load_versioned(p, "plan", "moetier-plan", 1, &root);
    tap_ok(st == MT_ERR_FORMAT && root == NULL, "an array is not a moetier file: %s",
           mt_last_error());
    put_file(p, "{\"format\": \"moetier-plan\", \"version\": 1, \"version\": 1}");
    st = mt_json_load_versioned(p, "plan", "moetier-plan", 1, &root);
    tap_ok(st == MT_ERR_FORMAT && root == NULL, "a key given twice is refused: %s",
           mt_last_error());
    st = mt_json_parse("{\"a\": 1, \"a\": 2}", 16, "request", &root);
    tap_ok(st == MT_ERR_FORMAT && root == NULL, "... in text in memory too: %s", mt_last_error());

    root = json_pack("{s:s, s:i}", "format", "moetier-plan", "version", 1);
    st = mt_json_save_file(root, p, "plan", JSON_COMPACT);
    json_decref(root);
    root = NULL;
    tap_ok(st == MT_OK && file_is(p, "{\"format\":\"moetier-plan\",\"version\":1}\n"),
           "mt_json_save_file writes the JSON and a newline");
    st = mt_json_load_versioned(p, "plan", "moetier-plan", 1, &root);
    tap_ok(st == MT_OK && root != NULL, "... which loads back");
    json_decref(root);
}

/*
 * mt_file_open_input and mt_file_read_all (file_util.h) on inputs that are not plain files: a FIFO
 * and a directory fail at once (the FIFO with the stdin hint), the fd of a regular file comes back
 * blocking, max_bytes 0 is the default cap, and a file that holds more than its fstat size (as
 * /proc files do) is reported as grown, not read short.
 */
static void
test_inputs(void)
{
    const char *fifo = in_dir("in.fifo");
    const char *p = in_dir("in.txt");
    uint64_t size = 7;
    char *data = NULL;
    size_t len = 0;
    int fd = -1;
    mt_status_t st;

    put_file(p, "hello\n");
    st = mt_file_open_input(p, "plan", &fd, &size);
    tap_ok(st == MT_OK && fd >= 0 && size == 6 && (fcntl(fd, F_GETFL) & O_NONBLOCK) == 0,
           "a regular file opens, with its size, and reads blocking");
    if (fd >= 0) {
        close(fd);
    }
    if (mkfifo(fifo, 0600) == 0) {
        fd = -1;
        st = mt_file_open_input(fifo, "plan", &fd, &size);
        tap_ok(st == MT_ERR_IO && fd == -1 && strstr(mt_last_error(), "FIFO") != NULL &&
                   strstr(mt_last_error(), "pass '-'") != NULL,
               "a FIFO is refused at once, with the stdin hint: %s", mt_last_error());
    } else {
        tap_ok(true, "# SKIP cannot make a FIFO");
    }
    /* a terminal or /dev/stdin is a character device: a flag meant '-' there too */
    fd = -1;
    st = mt_file_open_input("/dev/null", "plan", &fd, &size);
    tap_ok(st == MT_ERR_IO && fd == -1 && strstr(mt_last_error(), "pass '-'") != NULL,
           "a character device is refused at once, with the stdin hint: %s", mt_last_error());
    st = mt_file_read_all(dir, "plan", 0, &data, &len);
    tap_ok(st == MT_ERR_IO && data == NULL && strstr(mt_last_error(), "a directory") != NULL &&
               strstr(mt_last_error(), "pass '-'") == NULL,
           "a directory is refused, without the stdin hint: %s", mt_last_error());
    st = mt_file_read_all(p, "plan", 0, &data, &len);
    tap_ok(st == MT_OK && len == 6 && strcmp(data, "hello\n") == 0,
           "max_bytes 0 is the default cap, not none");
    free(data);
    data = NULL;
    /* the text ends in a NUL the read puts there: a block of the size the read allocates
     * (40 + 2 bytes), filled and freed just before, is what malloc most likely hands it (its
     * first 16 bytes hold the allocator's own links, so the text is longer than that) */
    put_file(p, "0123456789012345678901234567890123456789");
    data = malloc(42);
    if (data != NULL) {
        volatile char *v = data; /* (a plain memset before free may be dropped) */

        for (int i = 0; i < 42; i++) {
            v[i] = 'x';
        }
        free(data);
    }
    data = NULL;
    st = mt_file_read_all(p, "plan", 0, &data, &len);
    tap_ok(st == MT_OK && len == 40 && strlen(data) == 40,
           "the text read ends in a NUL (%zu bytes, strlen %zu)", len,
           data != NULL ? strlen(data) : 0);
    free(data);
    data = NULL;
    if (access("/proc/self/status", R_OK) == 0) {
        st = mt_file_read_all("/proc/self/status", "plan", 0, &data, &len);
        tap_ok(st == MT_ERR_IO && data == NULL && strstr(mt_last_error(), "grew") != NULL,
               "a file longer than its fstat size (/proc/self/status) is refused: %s",
               mt_last_error());
        free(data);
    } else {
        tap_ok(true, "# SKIP no /proc/self/status");
    }
}

/* "version": 1.0 is version 1 (mt_json_load_versioned), a string or 1.5 is not an integer. */
static void
test_versions(void)
{
    const char *p = in_dir("v.json");
    json_t *root = NULL;
    mt_status_t st;

    put_file(p, "{\"format\": \"moetier-plan\", \"version\": 1.0}");
    st = mt_json_load_versioned(p, "plan", "moetier-plan", 1, &root);
    tap_ok(st == MT_OK && root != NULL, "version 1.0 is version 1");
    json_decref(root);
    root = NULL;
    put_file(p, "{\"format\": \"moetier-plan\", \"version\": \"1\"}");
    st = mt_json_load_versioned(p, "plan", "moetier-plan", 1, &root);
    tap_ok(st == MT_ERR_FORMAT && root == NULL &&
               strstr(mt_last_error(), "must be an integer") != NULL,
           "version \"1\" is refused: %s", mt_last_error());
    put_file(p, "{\"format\": \"moetier-plan\", \"version\": 1.5}");
    st = mt_json_load_versioned(p, "plan", "moetier-plan", 1, &root);
    tap_ok(st == MT_ERR_FORMAT && root == NULL, "version 1.5 is refused: %s", mt_last_error());
}

/* The x of the axis label text (a decade, "%g") in svg, or NAN. */
static double
axis_x(const char *svg, const char *label)
{
    char pat[64];
    const char *p;
    double x;

    snprintf(pat, sizeof(pat), "fill=\"#444\">%s</text>", label);
    p = strstr(svg, pat);
    while (p != NULL && p > svg && strncmp(p, "<text x=\"", 9) != 0) {
        p--;
    }
    return p != NULL && sscanf(p, "<text x=\"%lf\"", &x) == 1 ? x : NAN;
}

/* Count the occurrences of pat in s. */
static int
count_of(const char *s, const char *pat)
{
    int n = 0;

    for (const char *p = s; (p = strstr(p, pat)) != NULL; p++) {
        n++;
    }
    return n;
}

/* svg.h: a log10 axis covering every value, each bar with its value as text and its tier's
 * colour, "not measured" for a value <= 0, text escaped for XML, MT_ERR_INVAL for no bars. */
static void
test_svg(void)
{
    static const struct mt_svg_bar bars[] = {
        {"HBM <read> & \"copy\"", "gpu", 100},
        {"PCIe", "pcie", 10},
        {"DRAM", "dram", 0},
        {"disk", "disk", 0.5},
        {"other", NULL, 3},
    };
    static char svg[16384];
    const char *p = in_dir("chart.svg");
    double x0;
    double x100;
    double w[5];
    bool ok = true;
    size_t n;
    int i = 0;

    tap_ok(mt_svg_bars_write(p, "t", "s", "GB/s", bars, 0) == MT_ERR_INVAL && access(p, F_OK) != 0,
           "a chart without bars is MT_ERR_INVAL, and no file is made");
    tap_ok(mt_svg_bars_write(p, "t", "s", "GB/s", bars, 5) == MT_OK, "a chart of five bars");
    tap_read_text(p, svg, sizeof(svg));
    tap_ok(strstr(svg, ">HBM &lt;read&gt; &amp; &quot;copy&quot;</text>") != NULL,
           "a label's <, >, & and \" are escaped");
    tap_ok(strstr(svg, "font-weight=\"bold\">100</text>") != NULL &&
               strstr(svg, "font-weight=\"bold\">10.0</text>") != NULL &&
               strstr(svg, "font-weight=\"bold\">3.00</text>") != NULL &&
               strstr(svg, "font-weight=\"bold\">0.50</text>") != NULL,
           "each bar carries its value: 100, 10.0, 3.00, 0.50");
    tap_ok(strstr(svg, "not measured") != NULL &&
               strstr(strstr(svg, "not measured") + 1, "not measured") == NULL &&
               strstr(svg, "#e8a33d") == NULL,
           "the bar of 0 is 'not measured', and draws no DRAM-coloured bar");
    tap_ok(strstr(svg, "fill=\"#76b900\"/>") != NULL && strstr(svg, "fill=\"#2f7ed8\"/>") &&
               strstr(svg, "fill=\"#b5487a\"/>") != NULL && strstr(svg, "fill=\"#888888\"/>"),
           "gpu, pcie, disk and other bars in their colours");
    /* the axis covers 0.5 .. 100 in decades: labels from at most 0.1 up to 100, none past */
    x0 = axis_x(svg, "0.1");
    x100 = axis_x(svg, "100");
    tap_ok(!isnan(x0) && !isnan(x100) && isnan(axis_x(svg, "1000")),
           "the axis has decades 0.1 .. 100 and stops at 100 (x %.1f .. %.1f)", x0, x100);
    /* each bar ends where its value is on that axis: x0 + (x100 - x0) * (log10 v + 1) / 3 */
    for (const char *r = svg; (r = strstr(r, "<rect x=\"300\" y=")) != NULL && i < 5; r++) {
        double x;

        if (sscanf(r, "<rect x=\"%lf\" y=\"%*d\" width=\"%lf\"", &x, &w[i]) == 2) {
            w[i++] += x;
        }
    }
    static const double vals[4] = {100, 10, 0.5, 3};
    for (int k = 0; k < 4 && i == 4; k++) {
        double want = x0 + (x100 - x0) * (log10(vals[k]) + 1) / 3;
        ok = ok && fabs(w[k] - want) < 0.2;
    }
    tap_ok(i == 4 && ok, "four bars, each ending at its value on the log axis");
    /* a decade of room below the smallest value (0.5): the axis starts at 0.01, not 0.1 */
    tap_ok(!isnan(axis_x(svg, "0.01")) && isnan(axis_x(svg, "0.001")),
           "the axis starts one decade below the smallest value (0.01)");
    /* 0.01 .. 100: a labelled line on each of the 5 decades, lines at 2 and 5 within the 4
       decades between them (none past 100), and no label on those (the 6th #444 text is the
       unit's) */
    tap_ok(count_of(svg, "stroke=\"#bbb\"") == 5 && count_of(svg, "stroke=\"#e6e6e6\"") == 8 &&
               count_of(svg, "fill=\"#444\">") == 6 && isnan(axis_x(svg, "2")),
           "gridlines: 5 decades labelled, 8 lines at 2 and 5 unlabelled (%d, %d)",
           count_of(svg, "stroke=\"#bbb\""), count_of(svg, "stroke=\"#e6e6e6\""));
    tap_ok(strstr(svg, "font-weight=\"bold\">t</text>") != NULL &&
               strstr(svg, "fill=\"#555\">s</text>") != NULL &&
               strstr(svg, ">GB/s (log scale)</text>") != NULL,
           "the title, the subtitle and the unit are each written in their place");
    /* layout: every text inside the picture, every bar between the gridlines' ends */
    {
        int height = 0;
        int top = 0;
        int bottom = 0;
        bool inside = sscanf(svg,
                             "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%*d\" "
                             "height=\"%d\"",
                             &height) == 1 &&
                      strstr(svg, "<line ") != NULL &&
                      sscanf(strstr(svg, "<line "),
                             "<line x1=\"%*f\" y1=\"%d\" x2=\"%*f\" y2=\"%d\"", &top, &bottom) == 2;
        for (const char *r = svg; inside && (r = strstr(r, "<text x=\"")) != NULL; r++) {
            int y;
            inside = sscanf(r, "<text x=\"%*f\" y=\"%d\"", &y) == 1 && y > 0 && y < height;
        }
        for (const char *r = svg; inside && (r = strstr(r, "<rect x=\"300\" y=\"")) != NULL; r++) {
            int y;
            int bh;
            inside =
                sscanf(r, "<rect x=\"300\" y=\"%d\" width=\"%*f\" height=\"%d\"", &y, &bh) == 2 &&
                y >= top && y + bh <= bottom;
        }
        tap_ok(inside, "every text lies within the height %d, every bar within y %d .. %d", height,
               top, bottom);
    }

    /* a largest value between decades: the axis goes up to the next one */
    static const struct mt_svg_bar one = {"HBM", "gpu", 150};
    tap_ok(mt_svg_bars_write(p, "t", "s", "GB/s", &one, 1) == MT_OK &&
               tap_read_text(p, svg, sizeof(svg)) > 0,
           "a chart of one bar of 150");
    tap_ok(!isnan(axis_x(svg, "1000")), "... has its axis up to 1000, covering 150");

    /* nothing measured: still a chart, every bar 'not measured' */
    tap_ok(mt_svg_bars_write(p, "t", "s", "GB/s", &bars[2], 1) == MT_OK &&
               tap_read_text(p, svg, sizeof(svg)) > 0,
           "a chart with nothing measured is written");
    tap_ok(strstr(svg, "not measured") != NULL && strstr(svg, "</svg>") != NULL,
           "... and says 'not measured'");
    tap_ok(!isnan(axis_x(svg, "0.1")) && !isnan(axis_x(svg, "10")) && isnan(axis_x(svg, "100")),
           "... on an axis of 0.1 .. 10");

    /* 600 decades apart: the smallest bar is below 2 pixels on the axis, and drawn 2 wide */
    static const struct mt_svg_bar far[] = {{"tiny", "dram", 1e-300}, {"huge", "gpu", 1e300}};
    static char big[1 << 20]; /* the chart is some 200 KB: 1800 gridlines */
    tap_ok(mt_svg_bars_write(p, "t", "s", "GB/s", far, 2) == MT_OK &&
               (n = tap_read_text(p, big, sizeof(big))) > 0,
           "a chart of 1e-300 and 1e300");
    tap_ok(strstr(big, "width=\"2.0\" height=\"18\" fill=\"#e8a33d\"/>") != NULL,
           "... draws the tiny value as a 2-pixel sliver in the DRAM colour (%zu bytes)", n);

    /* a chart that cannot be written whole is MT_ERR_IO, and the old file stays */
    {
        struct rlimit old;
        struct rlimit small;
        mt_status_t st;

        put_file(p, "old\n");
        getrlimit(RLIMIT_FSIZE, &old);
        small = old;
        small.rlim_cur = 512;
        signal(SIGXFSZ, SIG_IGN);
        if (setrlimit(RLIMIT_FSIZE, &small) != 0) {
            tap_bail_out("cannot set up a failing write");
        }
        st = mt_svg_bars_write(p, "t", "s", "GB/s", bars, 5);
        setrlimit(RLIMIT_FSIZE, &old);
        tap_ok(st == MT_ERR_IO && file_is(p, "old\n"),
               "a chart whose write fails is MT_ERR_IO and keeps the old file: %s",
               mt_last_error());
    }
}

int
main(void)
{
    const char *tmp = tap_tmpdir();

    tap_plan(0);
    if (tmp == NULL) {
        tap_bail_out("no temporary directory");
    }
    snprintf(dir, sizeof(dir), "%s", tmp);
    mt_log_set_quiet(true);
    test_failed_write();
    test_existing_and_new();
    test_directory_in_the_way();
    test_same_file();
    test_json_files();
    test_inputs();
    test_versions();
    test_svg();
    tap_rmtree(dir);
    return tap_done();
}
