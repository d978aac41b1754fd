/* test_pyframe.c: the report-time half of the version seam (pyframe.h part
 * 1): which interpreter facts a capture gets by the py_hexversion in its
 * header. */
#include <string.h>

#include "ctest.h"
#include "pyframe.h"

static void test_each_supported_version_has_its_row(void)
{
    size_t n = 0;
    const mr_pyversion_facts_t *rows = mr_pyversion_facts(0, &n);
    CHECK_EQ(n, 3);
    /* Newest first, one row per minor version. */
    CHECK_EQ(rows[0].since, 0x030D0000);
    CHECK_EQ(rows[1].since, 0x030C0000);
    CHECK_EQ(rows[2].since, 0x030B0000);
    /* 3.11.7 final, 3.12.1 final, 3.13.0 final. */
    CHECK(mr_pyversion_facts(0x030B07F0, NULL) == &rows[2]);
    CHECK(mr_pyversion_facts(0x030C01F0, NULL) == &rows[1]);
    CHECK(mr_pyversion_facts(0x030D00F0, NULL) == &rows[0]);
    /* A 3.13 alpha is 3.13; the last 3.12 release is still 3.12. */
    CHECK(mr_pyversion_facts(0x030D00A1, NULL) == &rows[0]);
    CHECK(mr_pyversion_facts(0x030CFFFF, NULL) == &rows[1]);
    for (size_t i = 0; i < n; i++) {
        CHECK(strcmp(rows[i].eval_symbol, "_PyEval_EvalFrameDefault") == 0);
        CHECK(strstr(rows[i].runpy_files, "<frozen runpy>") != NULL);
        CHECK(strstr(rows[i].import_files, "<frozen importlib._bootstrap>") != NULL);
    }
}

static void test_unknown_versions_get_the_nearest_row(void)
{
    size_t n = 0;
    const mr_pyversion_facts_t *rows = mr_pyversion_facts(0, &n);
    /* Unknown (0) or older than supported: the oldest; newer: the newest. */
    CHECK(mr_pyversion_facts(0, NULL) == &rows[n - 1]);
    CHECK(mr_pyversion_facts(0x030A0DF0, NULL) == &rows[n - 1]);
    CHECK(mr_pyversion_facts(0x030E00F0, NULL) == &rows[0]);
}

int main(void)
{
    RUN(test_each_supported_version_has_its_row);
    RUN(test_unknown_versions_get_the_nearest_row);
    DONE();
}
