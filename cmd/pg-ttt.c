/* pg-ttt: placeholder until its issue lands: answers -h/-V, otherwise says "not implemented" and
 * exits 3 (feature unavailable), so scripts can tell "not built yet" from a failure. */
#include "cli.h"

int main(int argc, char **argv) { pg_cli_stub_main("pg-ttt", argc, argv); }
