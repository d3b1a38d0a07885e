/* pg-pack: placeholder until its issue lands; says so and exits 3 (feature unavailable), so
 * scripts can tell "not built yet" from a failure. */
#include "cli.h"

#include <string.h>

static const char usage[] = "Usage: pg-pack ...\n"
                            "Not implemented yet in this version of pgolf (exit status 3).\n";

int main(int argc, char **argv)
{
    struct pg_cli cli;
    pg_cli_init(&cli, "pg-pack", usage);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) pg_cli_common(&cli, 'h');
        if (strcmp(argv[i], "-V") == 0 || strcmp(argv[i], "--version") == 0) pg_cli_common(&cli, 'V');
    }
    pg_cli_not_implemented("pg-pack");
}
