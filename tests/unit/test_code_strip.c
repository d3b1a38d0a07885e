/* test_code_strip: pg_code_strip_c (lib/pack_code.c), what pg-pack --code-self does to the C and
 * C++ files it counts: comments gone (a space, or the newlines they spanned), the blanks at each
 * line's start and end gone, literals untouched, every line where it was. Each case is a
 * source and the exact text it must become. (tests/cli/test-pack.sh builds pg-eval and pg-ttt
 * from the whole stripped tree and checks that they score as the real ones.) */
#include "../../lib/pack_code.h"
#include "../tap.h"

#include <stdlib.h>
#include <string.h>

static void strips_to(const char *src, const char *want, const char *what)
{
    size_t n = strlen(src);
    unsigned char *out = malloc(n + 1);
    size_t m = pg_code_strip_c((const unsigned char *)src, n, out);
    int good = m == strlen(want) && !memcmp(out, want, m);
    ok(good, "%s", what);
    if (!good) diag("got [%.*s], want [%s]", (int)m, (const char *)out, want);
    free(out);
}

int main(void)
{
    strips_to("", "", "empty");
    strips_to("int a; // note\nint b;\n", "int a;\nint b;\n", "a line comment, its line kept");
    strips_to("a/**/b\n", "a b\n", "a block comment between tokens is a space (a/**/b is not ab)");
    strips_to("x = 1; /* one\n two\n three */ y = 2;\n", "x = 1;\n\ny = 2;\n",
              "a block comment over three lines: two newlines, so y stays on line 3");
    strips_to("#include \"a.h\" /* spans\n */ int c;\n", "#include \"a.h\"\nint c;\n",
              "a comment spanning lines ends a directive's line, as before");
    strips_to("s = \"// not /* a */ comment\";\n", "s = \"// not /* a */ comment\";\n",
              "comment marks in a string stay");
    strips_to("c = '\"'; d = \"\\\"/*\"; e = '\\''; // x\n", "c = '\"'; d = \"\\\"/*\"; e = '\\'';\n",
              "escaped quotes do not end a literal");
    strips_to("u = \"http://x\"; // y\n", "u = \"http://x\";\n", "a // in a string, then a comment");
    strips_to("    int a;   \n\t\tb(); \t\n", "int a;\nb();\n", "the blanks at lines' starts and ends");
    strips_to("\n\n  \nz;\n", "\n\n\nz;\n", "empty and blank lines stay, emptied (__LINE__ does not move)");
    strips_to("#define M(x) (x) \\\n    + 1\n", "#define M(x) (x) \\\n + 1\n",
              "a continued line's indent is one space (tokens stay apart)");
    strips_to("#define N a\\\n    b\n", "#define N a\\\n b\n", "a\\<newline> b stays two tokens, not ab");
    strips_to("// one \\\n   two\nint k;\n", "\n\nint k;\n", "a line comment continued by a backslash");
    strips_to("a /* unterminated", "a", "an unterminated comment ends the text");
    strips_to("q = \"open\nr;\n", "q = \"open\nr;\n", "an unterminated string stops at its line");
    strips_to("x = a / b / *p;\n", "x = a / b / *p;\n", "division is not a comment");
    strips_to("no newline at end", "no newline at end", "the last line without a newline");
    return done_testing();
}
