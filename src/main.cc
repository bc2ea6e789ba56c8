#include "cli/cli.h"

int main(int argc, char** argv) { return orch::RunCli(argc, argv); }
