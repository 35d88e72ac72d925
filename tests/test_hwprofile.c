/* SPDX-License-Identifier: MIT */
/*
 * test_hwprofile.c - the hardware profile survives a JSON round trip, a sparse what-if file
 * loads with zeros for what it omits, and bad, missing or wrong-version files fail with one
 * clear message naming the file and the key.
 */
#include <config.h>

#include "runtime/plan/hwprofile.h"
#include "tests/tap.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void
fill(struct mt_hwprofile *p)
{
    mt_hwprofile_init(p);
    snprintf(p->source, sizeof(p->source), "moetier bench 0.1.0");
    snprintf(p->host, sizeof(p->host), "testhost");
    snprintf(p->date, sizeof(p->date), "2026-11-28T14:00:00Z");
    p->dram_bytes = 128ull << 30;
    p->gpu.present = true;
    snprintf(p->gpu.name, sizeof(p->gpu.name), "NVIDIA H200");
    p->gpu.count = 1;
    p->gpu.mem_bytes = 150ull << 30;
    p->gpu.sm_count = 132;
    p->gpu.hbm_read_gbps = 4321.5;
    p->gpu.copy_gbps = 4000.25;
    p->gpu.bf16_tflops = 750.0;
    p->pcie.h2d_gbps = 55.5;
    p->pcie.d2h_gbps = 53.25;
    p->pcie.bidir_gbps = 100.125;
    p->pcie.large_bytes = 256ull << 20;
    p->pcie.n_h2d = 3;
    p->pcie.n_d2h = 2;
    for (int i = 0; i < 3; i++) {
        p->pcie.h2d_curve[i] = (struct mt_hw_curve_point){65536ull << (4 * i), 10.0 * (i + 1)};
    }
    p->pcie.d2h_curve[0] = (struct mt_hw_curve_point){65536, 9.5};
    p->pcie.d2h_curve[1] = (struct mt_hw_curve_point){1ull << 20, 30.5};
    snprintf(p->cpu.model, sizeof(p->cpu.model), "Xeon \"quoted\" model");
    p->cpu.cores = 16;
    p->cpu.threads = 32;
    p->cpu.n_nodes = 2;
    p->cpu.nodes[0] = (struct mt_hw_numa_node){0, 8, 64ull << 30, 100.5, 90.25};
    p->cpu.nodes[1] = (struct mt_hw_numa_node){1, 8, 64ull << 30, 101.5, 91.25};
    p->cpu.read_gbps = 200.0;
    p->cpu.triad_gbps = 180.0;
    p->cpu.fma_gflops = 3000.0;
    p->cpu.amx_bf16_gflops = 20000.0;
    p->cpu.read_ceiling_gbps = 240.5;
    p->cpu.expert_eff = 0.875;
    p->cpu.expert_prefill_gbps = 38.25;
    p->cpu.expert_prefill_gflops = 6125.5;
    p->cpu.isa = MT_HW_ISA_AVX2 | MT_HW_ISA_FMA | MT_HW_ISA_AVX512F | MT_HW_ISA_AMX_BF16;
    p->n_disks = 2;
    snprintf(p->disks[0].path, sizeof(p->disks[0].path), "/nvme0");
    p->disks[0].n_points = 2;
    p->disks[0].points[0] = (struct mt_hw_disk_point){1, 1 << 20, 1.5};
    p->disks[0].points[1] = (struct mt_hw_disk_point){64, 4 << 20, 6.75};
    p->disks[0].best_gbps = 6.75;
    p->disks[0].best_qd = 64;
    p->disks[0].best_block_bytes = 4 << 20;
    snprintf(p->disks[1].path, sizeof(p->disks[1].path), "/nvme1");
    p->disks[1].best_gbps = 3.25;
}

static bool
same(const struct mt_hwprofile *a, const struct mt_hwprofile *b)
{
    bool ok = a->version == b->version && strcmp(a->source, b->source) == 0 &&
              strcmp(a->host, b->host) == 0 && strcmp(a->date, b->date) == 0 &&
              a->dram_bytes == b->dram_bytes;

    ok = ok && a->gpu.present == b->gpu.present && strcmp(a->gpu.name, b->gpu.name) == 0 &&
         a->gpu.count == b->gpu.count && a->gpu.mem_bytes == b->gpu.mem_bytes &&
         a->gpu.sm_count == b->gpu.sm_count && a->gpu.hbm_read_gbps == b->gpu.hbm_read_gbps &&
         a->gpu.copy_gbps == b->gpu.copy_gbps && a->gpu.bf16_tflops == b->gpu.bf16_tflops;
    ok = ok && memcmp(&a->pcie, &b->pcie, sizeof(a->pcie)) == 0;
    ok = ok && strcmp(a->cpu.model, b->cpu.model) == 0 && a->cpu.cores == b->cpu.cores &&
         a->cpu.threads == b->cpu.threads && a->cpu.n_nodes == b->cpu.n_nodes &&
         a->cpu.read_gbps == b->cpu.read_gbps && a->cpu.triad_gbps == b->cpu.triad_gbps &&
         a->cpu.fma_gflops == b->cpu.fma_gflops &&
         a->cpu.amx_bf16_gflops == b->cpu.amx_bf16_gflops && a->cpu.isa == b->cpu.isa &&
         a->cpu.read_ceiling_gbps == b->cpu.read_ceiling_gbps &&
         a->cpu.expert_eff == b->cpu.expert_eff &&
         a->cpu.expert_prefill_gbps == b->cpu.expert_prefill_gbps &&
         a->cpu.expert_prefill_gflops == b->cpu.expert_prefill_gflops;
    for (int i = 0; ok && i < a->cpu.n_nodes; i++) {
        ok = memcmp(&a->cpu.nodes[i], &b->cpu.nodes[i], sizeof(a->cpu.nodes[i])) == 0;
    }
    ok = ok && a->n_disks == b->n_disks;
    for (int i = 0; ok && i < a->n_disks; i++) {
        const struct mt_hw_disk *x = &a->disks[i];
        const struct mt_hw_disk *y = &b->disks[i];

        ok = strcmp(x->path, y->path) == 0 && x->best_gbps == y->best_gbps &&
             x->best_qd == y->best_qd && x->best_block_bytes == y->best_block_bytes &&
             x->n_points == y->n_points;
        for (int k = 0; ok && k < x->n_points; k++) {
            ok = memcmp(&x->points[k], &y->points[k], sizeof(x->points[k])) == 0;
        }
    }
    return ok;
}

/* Parse text; true if it fails with `want` and the message contains `needle`. */
static bool
fails(const char *text, mt_status_t want, const char *needle)
{
    struct mt_hwprofile p;
    mt_status_t st = mt_hwprofile_parse(text, "bad.json", &p);

    if (st != want || strstr(mt_last_error(), needle) == NULL) {
        tap_diag("got status %d, message: %s", st, mt_last_error());
        return false;
    }
    return true;
}

int
main(void)
{
    static struct mt_hwprofile a;
    static struct mt_hwprofile b;
    static struct mt_hwprofile c;
    char path[512];
    const char *dir = tap_tmpdir();
    mt_status_t st;

    tap_plan(87);
    mt_log_set_quiet(true);

    fill(&a);
    snprintf(path, sizeof(path), "%s/h.json", dir);
    st = mt_hwprofile_save(&a, path);
    tap_ok(st == MT_OK, "save writes the profile");
    memset(&b, 0xab, sizeof(b));
    st = mt_hwprofile_load(path, &b);
    tap_ok(st == MT_OK, "load reads it back: %s", st == MT_OK ? "" : mt_last_error());
    tap_ok(same(&a, &b), "round trip keeps every field");
    tap_ok(mt_hwprofile_disk_total_gbps(&b) == 10.0, "disk total sums best_gbps");
    tap_ok(strcmp(mt_hw_isa_name(MT_HW_ISA_AMX_BF16), "amx_bf16") == 0 &&
               mt_hw_isa_name(1u << 30) == NULL,
           "ISA names");

    /* A what-if file: only what one knows of a machine one does not have. */
    st = mt_hwprofile_parse("{\"version\": 1, \"source\": \"what-if: RTX 4090 + 2x Xeon\","
                            " \"dram_bytes\": 549755813888,"
                            " \"gpu\": {\"present\": true, \"mem_bytes\": 25769803776,"
                            "          \"hbm_read_gbps\": 1008},"
                            " \"pcie\": {\"h2d_gbps\": 25, \"d2h_gbps\": 25},"
                            " \"cpu\": {\"read_gbps\": 307, \"isa\": [\"avx512f\", \"amx_bf16\"]},"
                            " \"disks\": [{\"path\": \"/nvme0\", \"best_gbps\": 7}]}",
                            "whatif.json", &c);
    tap_ok(st == MT_OK && c.gpu.hbm_read_gbps == 1008 && c.pcie.h2d_gbps == 25 &&
               c.cpu.read_gbps == 307 && c.gpu.copy_gbps == 0 && c.cpu.n_nodes == 0 &&
               c.n_disks == 1 && c.disks[0].best_gbps == 7 &&
               c.cpu.isa == (MT_HW_ISA_AVX512F | MT_HW_ISA_AMX_BF16) &&
               c.dram_bytes == (512ull << 30),
           "a sparse what-if profile loads, absent fields are 0");

    /* README's format leaves out gpu.present: a what-if GPU given by its numbers is present. */
    st = mt_hwprofile_parse("{\"version\": 1, \"gpu\": {\"mem_bytes\": 25769803776, "
                            "\"hbm_read_gbps\": 1008}}",
                            "nopresent.json", &c);
    tap_ok(st == MT_OK && c.gpu.present, "a gpu object with numbers but no 'present' is present");
    st = mt_hwprofile_parse("{\"version\": 1, \"gpu\": {\"present\": false, \"hbm_read_gbps\": 9}}",
                            "absent.json", &c);
    tap_ok(st == MT_OK && !c.gpu.present, "an explicit \"present\": false wins");
    st = mt_hwprofile_parse("{\"version\": 1, \"gpu\": {\"name\": \"\"}}", "empty.json", &c);
    tap_ok(st == MT_OK && !c.gpu.present, "a gpu object of zeros is not present");

    st = mt_hwprofile_load("/nonexistent/dir/h.json", &c);
    tap_ok(st == MT_ERR_IO && strstr(mt_last_error(), "/nonexistent/dir/h.json") != NULL &&
               strstr(mt_last_error(), "No such file") != NULL,
           "missing file: %s", mt_last_error());
    tap_ok(fails("{\"source\": \"x\"}", MT_ERR_FORMAT, "no \"version\""),
           "missing version is named");
    tap_ok(fails("{\"version\": 2}", MT_ERR_FORMAT, "version 2 is not supported"),
           "another version is refused");
    tap_ok(fails("{\"version\": \"1\"}", MT_ERR_FORMAT, "must be an integer"),
           "a string version is refused");
    /* JSON tools may rewrite 1 as 1.0: the same version, as for plans and traces (json_num.h) */
    st = mt_hwprofile_parse("{\"version\": 1.0}", "real.json", &c);
    tap_ok(st == MT_OK && c.version == 1, "version 1.0 is version 1: %s",
           st == MT_OK ? "loads" : mt_last_error());
    tap_ok(fails("{\"version\": 1.5}", MT_ERR_FORMAT, "must be an integer"),
           "version 1.5 is refused");
    tap_ok(fails("{\"version\": 1, ", MT_ERR_FORMAT, "not JSON"), "truncated JSON is refused");
    tap_ok(fails("{\"version\": 1, \"source\": \"a\", \"source\": \"b\"}", MT_ERR_FORMAT,
                 "duplicate object key"),
           "a key given twice is refused, not 'the last one wins'");
    tap_ok(fails("[1, 2]", MT_ERR_FORMAT, "top level must be an object"), "non-object refused");
    tap_ok(fails("{\"version\": 1, \"gpu\": {\"hbm_read_gpbs\": 3}}", MT_ERR_FORMAT,
                 "unknown key 'gpu.hbm_read_gpbs'"),
           "a typo in a key is named");
    tap_ok(fails("{\"version\": 1, \"pcie\": {\"h2d_gbps\": -1}}", MT_ERR_FORMAT,
                 "'pcie.h2d_gbps' must be a non-negative number"),
           "a negative bandwidth is refused");
    tap_ok(fails("{\"version\": 1, \"gpu\": {\"hbm_read_gbps\": 1e308}}", MT_ERR_FORMAT,
                 "'gpu.hbm_read_gbps' must be a non-negative number (at most 1e9)"),
           "an absurd bandwidth is refused (1e308 GB/s overflowed the planner's rate: inf tok/s)");
    tap_ok(fails("{\"version\": 1, \"pcie\": {\"h2d_curve\": [[65536, 1e300]]}}", MT_ERR_FORMAT,
                 "'pcie.h2d_curve[0]' must be [bytes, gbps]"),
           "an absurd curve point is refused");
    tap_ok(fails("{\"version\": 1, \"cpu\": {\"cores\": 2.5}}", MT_ERR_FORMAT,
                 "'cpu.cores' must be a non-negative integer"),
           "a fractional core count is refused");
    tap_ok(fails("{\"version\": 1, \"cpu\": {\"cores\": -1}}", MT_ERR_FORMAT,
                 "'cpu.cores' must be a non-negative integer"),
           "a negative core count is refused");
    tap_ok(fails("{\"version\": 1, \"gpu\": {\"mem_bytes\": -1}}", MT_ERR_FORMAT,
                 "'gpu.mem_bytes' must be a non-negative integer"),
           "a negative byte count is refused (not read as 16 EiB)");
    tap_ok(fails("{\"version\": 1, \"cpu\": {\"threads\": 2147483648}}", MT_ERR_FORMAT,
                 "'cpu.threads' must be a non-negative integer"),
           "a count past INT_MAX is refused (not wrapped negative)");
    st = mt_hwprofile_parse("{\"version\": 1, \"cpu\": {\"threads\": 2147483647}, "
                            "\"gpu\": {\"mem_bytes\": 4294967296}}",
                            "text", &b);
    tap_ok(st == MT_OK && b.cpu.threads == 2147483647 && b.gpu.mem_bytes == 4294967296ull,
           "INT_MAX threads and 4 GiB of GPU memory (past 32 bits) load");

    /* a string must fit its field with its NUL (gpu.name holds 127 characters), and a PCIe
       curve holds at most MT_HWPROFILE_MAX_CURVE points: one more of either is refused, not
       written past the field */
    {
        char name[128], text[4096];
        size_t off;

        memset(name, 'x', sizeof(name));
        name[127] = '\0';
        snprintf(text, sizeof(text), "{\"version\": 1, \"gpu\": {\"name\": \"%s\"}}", name);
        st = mt_hwprofile_parse(text, "text", &b);
        tap_ok(st == MT_OK && strlen(b.gpu.name) == 127, "a GPU name of 127 characters loads");
        snprintf(text, sizeof(text), "{\"version\": 1, \"gpu\": {\"name\": \"%sx\"}}", name);
        tap_ok(fails(text, MT_ERR_FORMAT, "'gpu.name' must be a string"),
               "a GPU name of 128 characters (no room for its NUL) is refused");
        for (int n = MT_HWPROFILE_MAX_CURVE; n <= MT_HWPROFILE_MAX_CURVE + 1; n++) {
            off = (size_t)snprintf(text, sizeof(text), "%s",
                                   "{\"version\": 1, \"pcie\": {\"h2d_curve\": [");
            for (int i = 0; i < n; i++) {
                off += (size_t)snprintf(text + off, sizeof(text) - off, "%s[%d, 10]",
                                        i > 0 ? ", " : "", 4096 << (i % 16));
            }
            snprintf(text + off, sizeof(text) - off, "]}}");
            if (n == MT_HWPROFILE_MAX_CURVE) {
                st = mt_hwprofile_parse(text, "text", &b);
                tap_ok(st == MT_OK && b.pcie.n_h2d == n, "a curve of %d points loads", n);
            } else {
                tap_ok(fails(text, MT_ERR_FORMAT, "'pcie.h2d_curve' must be an array of at most"),
                       "a curve of %d points is refused", n);
            }
        }
    }
    tap_ok(fails("{\"version\": 1, \"pcie\": {\"h2d_curve\": [[65536, 10, 5]]}}",
                 MT_ERR_FORMAT, "'pcie.h2d_curve[0]' must be [bytes, gbps]"),
           "a curve point of three numbers is refused");
    tap_ok(fails("{\"version\": 1, \"pcie\": {\"d2h_curve\": [[0, 10]]}}",
                 MT_ERR_FORMAT, "'pcie.d2h_curve[0]' must be [bytes, gbps]"),
           "a curve point of 0 bytes is refused");
    tap_ok(fails("{\"version\": 1, \"pcie\": {\"h2d_curve\": [[65536, -1]]}}",
                 MT_ERR_FORMAT, "'pcie.h2d_curve[0]' must be [bytes, gbps]"),
           "a curve point of a negative rate is refused");
    tap_ok(fails("{\"version\": 1, \"pcie\": {\"h2d_curve\": [[65536, 1e-300]]}}",
                 MT_ERR_FORMAT, "'pcie.h2d_curve[0]' must be [bytes, gbps]"),
           "a curve point of 1e-300 GB/s (below MT_HW_RATE_MIN, not 0) is refused");
    tap_ok(fails("{\"version\": 1, \"cpu\": {\"read_ceiling_gbps\": 56, "
                 "\"expert_eff\": 1.01}}",
                 MT_ERR_FORMAT, "'cpu.expert_eff' is 1.01; it must be in [0, 1]"),
           "a cpu.expert_eff just above 1 is refused");
    tap_ok(fails("{\"version\": 1, \"cpu\": {\"numa_nodes\": 17}}", MT_ERR_FORMAT,
                 "'cpu.numa_nodes' is 17; a profile holds at most 16"),
           "17 NUMA nodes (one more than a profile holds) are refused");
    tap_ok(fails("{\"version\": 1, \"cpu\": {\"isa\": \"avx2\"}}", MT_ERR_FORMAT,
                 "'cpu.isa' must be an array"),
           "an ISA list that is not an array is refused, not ignored");
    {
        char text[4096];
        size_t off = (size_t)snprintf(text, sizeof(text), "%s",
                                      "{\"version\": 1, \"cpu\": {\"nodes\": [");

        for (int i = 0; i <= MT_HWPROFILE_MAX_NODES; i++) {
            off += (size_t)snprintf(text + off, sizeof(text) - off, "%s{\"id\": %d}",
                                    i > 0 ? ", " : "", i);
        }
        snprintf(text + off, sizeof(text) - off, "]}}");
        tap_ok(fails(text, MT_ERR_FORMAT, "'cpu.nodes' must be an array of at most 16 nodes"),
               "a nodes list of 17 is refused, not written past cpu.nodes");
    }
    st = mt_hwprofile_parse("{\"version\": 1, \"cpu\": {\"nodes\": [{\"id\": 0}, "
                            "{\"id\": 1, \"read_gbps\": 40}]}}",
                            "text", &b);
    tap_ok(st == MT_OK && b.cpu.n_nodes == 2 && b.cpu.nodes[1].read_gbps == 40,
           "nodes without cpu.numa_nodes load, counted from the list");
    {
        char text[8192];
        size_t off = (size_t)snprintf(text, sizeof(text), "%s", "{\"version\": 1, \"disks\": [");

        for (int i = 0; i <= MT_HWPROFILE_MAX_DISKS; i++) {
            off += (size_t)snprintf(text + off, sizeof(text) - off, "%s{\"path\": \"/d%d\"}",
                                    i > 0 ? ", " : "", i);
        }
        snprintf(text + off, sizeof(text) - off, "]}");
        tap_ok(fails(text, MT_ERR_FORMAT, "'disks' must be an array of at most"),
               "one disk more than a profile holds is refused");
        off = (size_t)snprintf(text, sizeof(text), "%s",
                               "{\"version\": 1, \"disks\": [{\"path\": \"/d\", \"points\": [");
        for (int i = 0; i <= MT_HWPROFILE_MAX_POINTS; i++) {
            off += (size_t)snprintf(text + off, sizeof(text) - off, "%s{\"qd\": %d}",
                                    i > 0 ? ", " : "", i + 1);
        }
        snprintf(text + off, sizeof(text) - off, "]}]}");
        tap_ok(fails(text, MT_ERR_FORMAT, "'disks[0].points' must be an array of at most"),
               "one disk point more than a profile holds is refused");
    }
    /* best_gbps within the 6 written digits of the best point, not 0.3% off it */
    tap_ok(fails("{\"version\": 1, \"disks\": [{\"path\": \"/d\", \"best_gbps\": 2.99, "
                 "\"points\": [{\"qd\": 1, \"block_bytes\": 1048576, \"gbps\": 3}]}]}",
                 MT_ERR_FORMAT, "'disks[0].best_gbps' is 2.99 but its best point reads 3 GB/s"),
           "a best_gbps 0.3%% below the best point is refused");

    /* the cache directory (hwprofile.h): $MOETIER_CACHE_DIR, else $XDG_CACHE_HOME/moetier, else
       $HOME/.cache/moetier, empty ones unset; a path that does not fit is refused */
    {
        char dir[64];

        setenv("MOETIER_CACHE_DIR", "/m/c", 1);
        setenv("XDG_CACHE_HOME", "/x", 1);
        setenv("HOME", "/h", 1);
        st = mt_hwprofile_cache_dir(dir, sizeof(dir));
        tap_ok(st == MT_OK && strcmp(dir, "/m/c") == 0, "MOETIER_CACHE_DIR first: %s", dir);
        tap_ok(mt_hwprofile_cache_dir(dir, 4) == MT_ERR_INVAL,
               "a cache directory one byte too long for the buffer is refused");
        st = mt_hwprofile_cache_dir(dir, 5);
        tap_ok(st == MT_OK && strcmp(dir, "/m/c") == 0, "one that just fits is taken");
        setenv("MOETIER_CACHE_DIR", "", 1);
        st = mt_hwprofile_cache_dir(dir, sizeof(dir));
        tap_ok(st == MT_OK && strcmp(dir, "/x/moetier") == 0, "then XDG_CACHE_HOME: %s", dir);
        setenv("XDG_CACHE_HOME", "", 1);
        st = mt_hwprofile_cache_dir(dir, sizeof(dir));
        tap_ok(st == MT_OK && strcmp(dir, "/h/.cache/moetier") == 0, "then HOME: %s", dir);
        setenv("HOME", "", 1);
        tap_ok(mt_hwprofile_cache_dir(dir, sizeof(dir)) == MT_ERR_INVAL,
               "none of the three set: refused");
    }
    tap_ok(fails("{\"version\": 1, \"cpu\": {\"isa\": [\"sse9\"]}}", MT_ERR_FORMAT,
                 "'cpu.isa[0]' is not a known ISA name"),
           "an unknown ISA name is refused");
    tap_ok(fails("{\"version\": 1, \"disks\": [{\"path\": \"/a\", \"points\": [{\"qd\": \"x\"}]}]}",
                 MT_ERR_FORMAT, "'disks[0].points[0].qd'"),
           "a bad disk point is named by its path");
    tap_ok(fails("{\"version\": 1, \"cpu\": {\"numa_nodes\": 2, \"nodes\": [{\"id\": 0}]}}",
                 MT_ERR_FORMAT, "'cpu.numa_nodes' is 2 but 'cpu.nodes' lists 1"),
           "an inconsistent node count is refused");
    tap_ok(fails("{\"version\": 1, \"cpu\": {\"numa_nodes\": 200}}", MT_ERR_FORMAT,
                 "'cpu.numa_nodes' is 200; a profile holds at most 16"),
           "more NUMA nodes than a profile holds is refused (found by fuzz_profile: the planner "
           "read past cpu.nodes)");

    /* the "learned" section (moetier plan --learn): absent until something was learned */
    {
        char text[16384];
        size_t n = tap_read_text(path, text, sizeof(text));

        tap_ok(n > 0 && strstr(text, "learned") == NULL,
               "a profile that never learned is written without a \"learned\" section");
    }
    a.learned = (struct mt_hw_learned){
        .reports = 2, .cpu_expert_eff = 0.3125, .disk_eff = 0.75, .cpu_prefill_eff = 0.625,
        .gpu_prefill_eff = 0.375, .from = "runs/r.json"};
    st = mt_hwprofile_save(&a, path);
    if (st == MT_OK) {
        memset(&b, 0, sizeof(b));
        st = mt_hwprofile_load(path, &b);
    }
    tap_ok(st == MT_OK && b.learned.reports == 2 && b.learned.cpu_expert_eff == 0.3125 &&
               b.learned.disk_eff == 0.75 && b.learned.gpu_eff == 0 &&
               b.learned.cpu_prefill_eff == 0.625 && b.learned.gpu_prefill_eff == 0.375 &&
               strcmp(b.learned.from, "runs/r.json") == 0 && same(&a, &b),
           "the learned efficiencies round-trip");
    tap_ok(fails("{\"version\": 1, \"learned\": {\"cpu_expert_eff\": 2.5}}", MT_ERR_FORMAT,
                 "'learned.cpu_expert_eff' is 2.5, above 2"),
           "a learned efficiency above 2 is refused");
    tap_ok(fails("{\"version\": 1, \"learned\": {\"cpu_prefill_eff\": 3}}", MT_ERR_FORMAT,
                 "'learned.cpu_prefill_eff' is 3, above 2"),
           "a learned prefill efficiency above 2 is refused");
    st = mt_hwprofile_parse("{\"version\": 1, \"learned\": {\"reports\": 1, "
                            "\"cpu_expert_eff\": 1.17, \"host_layer_ms\": 0.6}}",
                            "text", &b);
    tap_ok(st == MT_OK && b.learned.cpu_expert_eff == 1.17 && b.learned.host_layer_ms == 0.6,
           "a learned efficiency of 1.17 (the kernels beat the quick ceiling) and a host wait "
           "load");

    tap_ok(fails("{\"version\": 1, \"learned\": {\"gpu_prefill_eff\": 2.5}}", MT_ERR_FORMAT,
                 "'learned.gpu_prefill_eff' is 2.5, above 2"),
           "a learned GPU prefill efficiency above 2 is refused");

    /* a rate next to 0 is no rate: 1e-300 GB/s planned "0.00 tok/s" at a 300-digit ms/token,
       5e-324 (a denormal) gave a wrong message; 0 stays "not measured", a host wait any size */
    tap_ok(fails("{\"version\": 1, \"cpu\": {\"read_gbps\": 1e-300}}", MT_ERR_FORMAT,
                 "'cpu.read_gbps' must be a non-negative number (at most 1e9), either 0"),
           "a rate of 1e-300 GB/s is refused");
    tap_ok(fails("{\"version\": 1, \"learned\": {\"reports\": 1, \"disk_eff\": 5e-324}}",
                 MT_ERR_FORMAT, "'learned.disk_eff' must be a non-negative number"),
           "an efficiency of 5e-324 is refused");
    st = mt_hwprofile_parse("{\"version\": 1, \"cpu\": {\"read_gbps\": 0, \"fma_gflops\": 1e-6}, "
                            "\"learned\": {\"reports\": 1, \"host_layer_ms\": 1e-9}}",
                            "text", &b);
    tap_ok(st == MT_OK && b.cpu.fma_gflops == 1e-6 && b.learned.host_layer_ms == 1e-9,
           "0 (not measured), the floor itself and a tiny host wait load");
    /* a "learned" section the planner would ignore (reports 0) is refused, not dropped */
    tap_ok(fails("{\"version\": 1, \"learned\": {\"cpu_expert_eff\": 0.5}}", MT_ERR_FORMAT,
                 "'learned.cpu_expert_eff' is given but 'learned.reports' is missing"),
           "learned values without reports are refused");
    st = mt_hwprofile_parse("{\"version\": 1, \"learned\": {\"reports\": 0}}", "text", &b);
    tap_ok(st == MT_OK && b.learned.reports == 0, "a learned section of reports 0 alone loads");
    /* best_gbps is the best point's rate: 0 beside a point at 3 GB/s was planned as no disk */
    tap_ok(fails("{\"version\": 1, \"disks\": [{\"path\": \"/d\", \"best_gbps\": 0, \"points\": "
                 "[{\"qd\": 1, \"block_bytes\": 1048576, \"gbps\": 3}]}]}",
                 MT_ERR_FORMAT, "'disks[0].best_gbps' is 0 but its best point reads 3 GB/s"),
           "a best_gbps that is not the best point's is refused");

    /* cpu.expert_eff is a fraction of the read ceiling that bench caps at 1: 5 was planned as
       1.0 and still called "measured"; 0 is "not measured" (bench --only dram writes it) */
    tap_ok(fails("{\"version\": 1, \"cpu\": {\"read_ceiling_gbps\": 56, \"expert_eff\": 5}}",
                 MT_ERR_FORMAT, "'cpu.expert_eff' is 5; it must be in [0, 1]"),
           "a cpu.expert_eff above 1 is refused, naming the key");
    st = mt_hwprofile_parse("{\"version\": 1, \"cpu\": {\"read_ceiling_gbps\": 56, "
                            "\"expert_eff\": 0}}",
                            "text", &b);
    bool zero_ok = st == MT_OK && b.cpu.expert_eff == 0;
    st = mt_hwprofile_parse("{\"version\": 1, \"cpu\": {\"read_ceiling_gbps\": 56, "
                            "\"expert_eff\": 1}}",
                            "text", &b);
    tap_ok(zero_ok && st == MT_OK && b.cpu.expert_eff == 1,
           "a cpu.expert_eff of 0 (not measured) and of 1 load");

    /* the CPU's prefill runs from two batches: 352 MB and 0.7 GFLOP a token of 8 experts */
    double gbps, gflops;
    bool fit = mt_hw_fit_expert_prefill(0.004 + 32 * 1e-4, 32, 0.004 + 256 * 1e-4, 256, 352e6,
                                        0.7e9, 90, &gbps, &gflops);
    tap_ok(fit && fabs(gbps - 88) < 1e-9 * 88 && fabs(gflops - 7000) < 1e-9 * 7000,
           "AMX-like runs (4 ms + 0.1 ms a token): %.1f GB/s of weights, %.0f GFLOP/s", gbps,
           gflops);
    /* 2 AVX-512 cores (cli_bench.c): bound by the products from 32 tokens, the line crosses 0 */
    fit = mt_hw_fit_expert_prefill(0.21858, 32, 1.77475, 256, 352e6, 0.7e9, 30.66, &gbps, &gflops);
    tap_ok(fit && fabs(gbps - 30.66) < 1e-9 * 30.66 &&
               fabs(gflops - 0.7e9 * 256 / (1.77475 - 352e6 / 30.66e9) * 1e-9) < 1e-6,
           "FMA-bound runs: the weights at the decode rate (%.2f GB/s), the rest products "
           "(%.1f GFLOP/s)", gbps, gflops);
    tap_ok(!mt_hw_fit_expert_prefill(0.21858, 32, 1.77475, 256, 352e6, 0.7e9, 0, &gbps, &gflops) &&
               !mt_hw_fit_expert_prefill(0.5, 32, 0.4, 256, 352e6, 0.7e9, 30, &gbps, &gflops) &&
               gbps == 0 && gflops == 0,
           "no fit without a decode rate for FMA-bound runs, nor where more tokens took less time");
    /* a line through 0 (1 s at 1 token, 2 s at 2) has no fixed part to read weights in: the
       products-bound case, weights at the decode rate (1 GB at 10 GB/s: 0.1 s), products the
       other 1.9 s of 2 tokens; with a decode rate too slow for the larger step (10 s), or two
       batches of one size, nothing positive comes out */
    fit = mt_hw_fit_expert_prefill(1.0, 1, 2.0, 2, 1e9, 1e9, 10, &gbps, &gflops);
    tap_ok(fit && fabs(gbps - 10) < 1e-9 && fabs(gflops - 1.0 / 0.95) < 1e-9,
           "runs whose line crosses 0 at 0 tokens: %.2f GB/s, %.4f GFLOP/s", gbps, gflops);
    tap_ok(!mt_hw_fit_expert_prefill(1.0, 1, 2.0, 2, 1e9, 1e9, 0.1, &gbps, &gflops) &&
               !mt_hw_fit_expert_prefill(1.0, 16, 2.0, 16, 1e9, 1e9, 10, &gbps, &gflops),
           "no fit where the weights alone outlast the step, nor from one batch size");

    /* "present" left out: any one non-zero GPU number, or a name, makes the GPU present */
    {
        static const char *const one[] = {
            "\"name\": \"RTX 4090\"", "\"count\": 1",      "\"mem_bytes\": 1",
            "\"sm_count\": 1",        "\"hbm_read_gbps\": 1", "\"copy_gbps\": 1",
            "\"bf16_tflops\": 1",
        };
        int n_present = 0;

        for (size_t i = 0; i < sizeof(one) / sizeof(one[0]); i++) {
            char text[128];

            snprintf(text, sizeof(text), "{\"version\": 1, \"gpu\": {%s}}", one[i]);
            st = mt_hwprofile_parse(text, "text", &b);
            if (st == MT_OK && b.gpu.present) {
                n_present++;
            } else {
                tap_diag("gpu {%s}: status %d, present %d", one[i], st, b.gpu.present);
            }
        }
        tap_ok(n_present == 7, "a gpu object with only one field set is present (%d of 7)",
               n_present);
    }
    tap_ok(mt_hw_isa_name(MT_HW_ISA_AVX2 | MT_HW_ISA_FMA) == NULL && mt_hw_isa_name(0) == NULL,
           "two ISA bits at once, or none, have no name");

    /* the limits themselves load: hwprofile.h refuses numbers "above 1e9" and learned
       efficiencies "above MT_HW_LEARNED_EFF_MAX", not the limits */
    st = mt_hwprofile_parse("{\"version\": 1, \"gpu\": {\"hbm_read_gbps\": 1e9}}", "text", &b);
    tap_ok(st == MT_OK && b.gpu.hbm_read_gbps == 1e9, "a rate of exactly 1e9 GB/s loads");
    st = mt_hwprofile_parse("{\"version\": 1, \"pcie\": {\"h2d_curve\": [[65536, 1e9]]}}", "text",
                            &b);
    tap_ok(st == MT_OK && b.pcie.n_h2d == 1 && b.pcie.h2d_curve[0].gbps == 1e9,
           "a PCIe curve point of exactly 1e9 GB/s loads");
    st = mt_hwprofile_parse("{\"version\": 1, \"learned\": {\"reports\": 1, \"gpu_eff\": 2}}",
                            "text", &b);
    tap_ok(st == MT_OK && b.learned.gpu_eff == MT_HW_LEARNED_EFF_MAX,
           "a learned efficiency of exactly %g loads", MT_HW_LEARNED_EFF_MAX);

    /* best_gbps as bench writes it (6 digits) beside its best point loads; one off in the 5th
       digit was edited and is refused; a disk whose every point read 0 agrees with a 0 */
    st = mt_hwprofile_parse("{\"version\": 1, \"disks\": [{\"path\": \"/d\", \"best_gbps\": "
                            "3.14159, \"points\": [{\"qd\": 1, \"block_bytes\": 1048576, "
                            "\"gbps\": 3.14159265}]}]}",
                            "text", &b);
    tap_ok(st == MT_OK && b.disks[0].best_gbps == 3.14159,
           "a best_gbps rounded to 6 digits of its best point loads");
    tap_ok(fails("{\"version\": 1, \"disks\": [{\"path\": \"/d\", \"best_gbps\": 2.9999, "
                 "\"points\": [{\"qd\": 1, \"block_bytes\": 1048576, \"gbps\": 3}]}]}",
                 MT_ERR_FORMAT, "'disks[0].best_gbps' is 2.9999 but its best point reads 3"),
           "a best_gbps off its best point in the 5th digit is refused");
    st = mt_hwprofile_parse("{\"version\": 1, \"disks\": [{\"path\": \"/d\", \"best_gbps\": 0, "
                            "\"points\": [{\"qd\": 1, \"block_bytes\": 1048576, \"gbps\": 0}]}]}",
                            "text", &b);
    tap_ok(st == MT_OK && b.n_disks == 1 && b.disks[0].n_points == 1,
           "a best_gbps of 0 beside points that all read 0 loads");

    /* no positive pair from no weights or no products (hwprofile.h: false, both rates 0) */
    tap_ok(!mt_hw_fit_expert_prefill(0.0072, 32, 0.0296, 256, 352e6, 0, 90, &gbps, &gflops) &&
               gbps == 0 && gflops == 0 &&
               !mt_hw_fit_expert_prefill(0.0072, 32, 0.0296, 256, 0, 0.7e9, 90, &gbps, &gflops) &&
               gbps == 0 && gflops == 0,
           "no fit from a step of no products or no weights");
    tap_ok(fails("{\"version\": 1, \"gpu\": {\"present\": 1}}", MT_ERR_FORMAT,
                 "'gpu.present' must be true or false"),
           "a gpu.present of 1 (not a boolean) is refused");

    /* a profile filled to every capacity (16 NUMA nodes, 16 disks of 32 points) survives the
       round trip: each limit is "at most", not "fewer than" */
    fill(&c);
    c.cpu.n_nodes = MT_HWPROFILE_MAX_NODES;
    for (int i = 0; i < MT_HWPROFILE_MAX_NODES; i++) {
        c.cpu.nodes[i] = (struct mt_hw_numa_node){i, 4, 8ull << 30, 10.0 + i, 9.0 + i};
    }
    c.n_disks = MT_HWPROFILE_MAX_DISKS;
    for (int i = 0; i < MT_HWPROFILE_MAX_DISKS; i++) {
        struct mt_hw_disk *d = &c.disks[i];

        snprintf(d->path, sizeof(d->path), "/nvme%d", i);
        d->n_points = MT_HWPROFILE_MAX_POINTS;
        for (int k = 0; k < MT_HWPROFILE_MAX_POINTS; k++) {
            d->points[k] = (struct mt_hw_disk_point){k + 1, 4096ull << (k % 10), 0.25 * (k + 1)};
        }
        d->best_gbps = 0.25 * MT_HWPROFILE_MAX_POINTS;
        d->best_qd = MT_HWPROFILE_MAX_POINTS;
        d->best_block_bytes = d->points[MT_HWPROFILE_MAX_POINTS - 1].block_bytes;
    }
    snprintf(path, sizeof(path), "%s/full.json", dir);
    st = mt_hwprofile_save(&c, path);
    if (st == MT_OK) {
        memset(&b, 0xab, sizeof(b));
        st = mt_hwprofile_load(path, &b);
    }
    tap_ok(st == MT_OK && same(&c, &b) && b.cpu.n_nodes == MT_HWPROFILE_MAX_NODES &&
               b.n_disks == MT_HWPROFILE_MAX_DISKS &&
               b.disks[15].n_points == MT_HWPROFILE_MAX_POINTS,
           "a profile of %d NUMA nodes and %d disks of %d points round-trips: %s",
           MT_HWPROFILE_MAX_NODES, MT_HWPROFILE_MAX_DISKS, MT_HWPROFILE_MAX_POINTS,
           st == MT_OK ? "" : mt_last_error());

    /* the cache (hwprofile.h): cache_dir_make creates the directory itself and its parents;
       cache_save creates the directories on the way to its file, beside ones that exist (as
       mkdir -p); the cached profile's path is refused, not cut, where it does not fit */
    {
        char want[600];
        char got[600];
        char host[256] = "";
        struct stat sb;
        size_t len;

        snprintf(want, sizeof(want), "%s/cache/a/b", dir);
        setenv("MOETIER_CACHE_DIR", want, 1);
        st = mt_hwprofile_cache_dir_make(got, sizeof(got));
        tap_ok(st == MT_OK && strcmp(got, want) == 0 && stat(want, &sb) == 0 &&
                   S_ISDIR(sb.st_mode),
               "cache_dir_make creates the cache directory and its parents: %s",
               st == MT_OK ? got : mt_last_error());
        snprintf(got, sizeof(got), "%s/cache/a/c/d/p.json", dir);
        st = mt_hwprofile_cache_save(&a, got);
        if (st == MT_OK) {
            st = mt_hwprofile_load(got, &b);
        }
        tap_ok(st == MT_OK && same(&a, &b),
               "cache_save writes a profile under new directories beside existing ones: %s",
               st == MT_OK ? "" : mt_last_error());

        if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0' ||
            strchr(host, '/') != NULL) {
            snprintf(host, sizeof(host), "localhost");
        }
        setenv("MOETIER_CACHE_DIR", "/m/c", 1);
        snprintf(want, sizeof(want), "/m/c/profile-%s.json", host);
        len = strlen(want);
        st = mt_hwprofile_cache_path(got, len + 1);
        bool fits = st == MT_OK && strcmp(got, want) == 0;
        tap_ok(fits && mt_hwprofile_cache_path(got, len) == MT_ERR_INVAL,
               "the cached profile's path %s is taken in %zu bytes, refused in one less", want,
               len + 1);
        unsetenv("MOETIER_CACHE_DIR");
    }

    a.version = 7;
    st = mt_hwprofile_save(&a, path);
    tap_ok(st == MT_ERR_INVAL, "save refuses a profile of another version");
    tap_rmtree(dir);
    return tap_done();
}
